"""The pod runtime: each container as a process group on this machine (its argv, environment and
log file), restarted with the crash back-off of its ``restartPolicy``, and stopped with SIGTERM
then SIGKILL after the grace period."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import shutil
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

from mabeam.models._base import rfc3339

from ._pods import Container, Pod, StartError, container_env, expand, image_repository, should_restart
from ._probes import Prober
from ._process import cancel, kill_group, killpg, start_group

__all__ = ["PodRuntime"]


class PodRuntime:
    """Runs and stops the containers of pods; ``report`` is called at every change of state.

    ``python`` replaces a leading ``python``/``python3``; ``env`` is the base environment of every
    process; ``images`` maps an image repository to its entrypoint; ``backoff_base``/``backoff_cap``
    and ``grace_period`` override the crash back-off and the pods' termination grace period.
    """

    def __init__(
        self,
        *,
        workdir: Path,
        python: str,
        env: Mapping[str, str],
        images: Mapping[str, list[str]],
        backoff_base: float,
        backoff_cap: float,
        grace_period: float | None,
        prober: Prober,
        report: Callable[[Pod], None],
    ) -> None:
        self.workdir = workdir
        self.python = python
        self.env = env
        self.images = images
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.grace_period = grace_period
        self.prober = prober
        self.report = report

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.workdir / f"{namespace}_{pod}_{container}.log"

    def kubeconfig_for(self, namespace: str, pod: str) -> Path:
        return self.workdir / "kubeconfigs" / f"{namespace}_{pod}.yaml"

    def prepare(self, rt: Pod, c: Container) -> tuple[list[str], dict[str, str], str | None]:
        """The argv, environment and working directory of a container (raises ``StartError``)."""
        declared = container_env(rt.obj, c.spec)
        env = {
            **self.env,
            "HOSTNAME": rt.name,
            **declared,
            "KUBECONFIG": str(self.kubeconfig_for(rt.namespace, rt.name)),
        }
        command, args = c.spec.get("command") or [], c.spec.get("args") or []
        if not isinstance(command, list) or not isinstance(args, list):
            raise StartError(
                "CreateContainerConfigError", f"container {c.name}: command and args must be lists"
            )
        if not command:
            command = self.images.get(image_repository(str(c.spec.get("image") or "")), [])
        argv = [expand(str(a), declared) for a in [*command, *args]]
        if not command:
            raise StartError(
                "CommandNotFound",
                f"container {c.name} has no command; the local kubelet ignores "
                f"images ({c.spec.get('image', 'no image')}), so it needs one",
            )
        if argv[0] in ("python", "python3"):
            argv[0] = self.python
        cwd = c.spec.get("workingDir") or None
        if cwd is not None and not os.path.isdir(cwd):
            raise StartError(
                "CreateContainerError", f"container {c.name}: workingDir {cwd} does not exist here"
            )
        if os.sep in argv[0]:
            exe = argv[0] if os.path.isabs(argv[0]) else os.path.join(cwd or os.getcwd(), argv[0])
            found = exe if os.path.isfile(exe) and os.access(exe, os.X_OK) else None
        else:
            found = shutil.which(argv[0], path=env.get("PATH", os.defpath))
        if found is None:
            raise StartError(
                "CommandNotFound",
                f"container {c.name}: executable {argv[0]!r} was not found on "
                f"this machine (the local kubelet ignores images)",
            )
        return [found, *argv[1:]], env, cwd

    async def run_container(self, rt: Pod, c: Container) -> None:
        """Run the container until it ends for good (its policy) or the pod terminates."""
        policy = (rt.obj.get("spec") or {}).get("restartPolicy") or "Always"
        loop = asyncio.get_running_loop()
        crashes = 0
        while not rt.terminating:
            try:
                argv, env, cwd = self.prepare(rt, c)
            except StartError as exc:
                c.state = {"waiting": {"reason": exc.reason, "message": exc.message}}
                self.report(rt)
                return
            try:
                with open(self.log_path(rt.namespace, rt.name, c.name), "ab") as log:
                    proc = await start_group(argv, env=env, cwd=cwd, output=log)
            except OSError as exc:
                c.state = {
                    "waiting": {"reason": "RunContainerError", "message": f"container {c.name}: {exc}"}
                }
                self.report(rt)
                return
            c.process, started, started_at = proc, loop.time(), rfc3339(_dt.datetime.now(_dt.UTC))
            if rt.terminating:  # deleted while starting
                killpg(proc.pid, signal.SIGTERM)
            probe = c.spec.get("readinessProbe")
            c.state, c.ready = {"running": {"startedAt": started_at}}, not probe
            self.report(rt)
            prober = asyncio.create_task(self.prober.run(rt, c, probe, env, cwd, proc)) if probe else None
            try:
                code = await proc.wait()
            finally:
                if prober is not None:
                    await cancel(prober)
                await kill_group(proc.pid)  # what the main process left behind dies with it
            exit_code = code if code >= 0 else 128 - code
            terminated = {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": rfc3339(_dt.datetime.now(_dt.UTC)),
                "containerID": f"local://{proc.pid}",
            }
            c.ready = False
            if rt.terminating or not should_restart(policy, exit_code):
                c.state = {"terminated": terminated}
                self.report(rt)
                return
            if loop.time() - started > 2 * self.backoff_cap:
                crashes = 0  # it ran long enough: the back-off starts over, as in Kubernetes
            delay = min(self.backoff_base * 2**crashes, self.backoff_cap)
            crashes += 1
            c.last_state = {"terminated": terminated}
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": (
                        f"back-off {delay:g}s restarting failed container={c.name} "
                        f"pod={rt.name}_{rt.namespace}({rt.uid})"
                    ),
                }
            }
            self.report(rt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.stopping.wait(), delay)
            if rt.terminating:
                return
            c.restart_count += 1

    async def terminate(self, rt: Pod) -> None:
        """SIGTERM every process group of the pod, SIGKILL after the grace period, reap them all."""
        rt.terminating = True
        rt.stopping.set()
        grace = self.grace_period
        if grace is None:
            meta, spec = rt.obj.get("metadata") or {}, rt.obj.get("spec") or {}
            # The local API server has no graceful pod deletion and sets 0 when a finalizer holds the
            # object: 0 there means "not chosen", so the pod's own grace period applies.
            grace = float(
                meta.get("deletionGracePeriodSeconds") or spec.get("terminationGracePeriodSeconds", 30)
            )
        procs = [c.process for c in rt.containers.values() if c.process and c.process.returncode is None]
        for proc in procs:
            killpg(proc.pid, signal.SIGTERM)
        waits = [asyncio.create_task(proc.wait()) for proc in procs]
        if waits:
            await asyncio.wait(waits, timeout=grace)
            for proc in procs:
                if proc.returncode is None:
                    killpg(proc.pid, signal.SIGKILL)
            await asyncio.gather(*waits)
        runners = [t for t in rt.tasks if t.get_name().startswith("container ")]
        await asyncio.gather(*runners, return_exceptions=True)
