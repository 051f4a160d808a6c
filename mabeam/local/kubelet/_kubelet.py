"""The kubelet itself: it lists and watches all Pods, takes those of its node, binds them,
starts them with the pod runtime and reports their status through the ``status`` subresource."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from mabeam.errors import ApiError
from mabeam.models._base import rfc3339

from ._api import ApiClient, Credentials, pod_path, write_pod_kubeconfig
from ._node import bind, register_node
from ._pods import TERMINAL, Container, Pod, StartError, pod_status
from ._probes import Prober
from ._process import cancel
from ._runtime import PodRuntime

__all__ = ["LocalKubelet"]

logger = logging.getLogger(__name__)


class LocalKubelet:
    """A kubelet for one local node: the Pods bound to it run as processes on this machine.

    Use ``async with LocalKubelet(...) as kubelet:`` or run ``await kubelet.run()`` in a task
    and end it with ``await kubelet.stop()``.

    ``kubeconfig_path`` is the kubelet's own kubeconfig for the local API: the bearer token of
    its current user, if any, authenticates the kubelet's requests (none are sent without it).
    ``env`` is the base environment of every process (default: this process's environment).
    ``probe_period``, ``backoff_base``/``backoff_cap`` and ``grace_period`` override, for all
    pods, the probes' periodSeconds, the crash back-off (10 s to 300 s) and the pods'
    terminationGracePeriodSeconds; tests set them to fractions of a second.
    """

    def __init__(
        self,
        api_url: str,
        *,
        node_name: str = "local",
        workdir: Path,
        kubeconfig_path: Path | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        probe_period: float | None = None,
        backoff_base: float = 10.0,
        backoff_cap: float = 300.0,
        grace_period: float | None = None,
        retry_delay: float = 0.5,
        watch_timeout: float = 300.0,
        register_node: bool = False,
        token_seconds: int = 86400,
        images: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.node_name = node_name
        self.workdir = Path(workdir)
        self.retry_delay = retry_delay
        self.watch_timeout = watch_timeout
        self.register_node = register_node
        self.token_seconds = token_seconds
        self._api = ApiClient(
            self.api_url, Credentials.read(kubeconfig_path) if kubeconfig_path else Credentials()
        )
        self._prober = Prober(python=python, period=probe_period, report=self._report)
        self._runtime = PodRuntime(
            workdir=self.workdir,
            python=python,
            env=dict(os.environ if env is None else env),
            images={k: list(v) for k, v in (images or {}).items()},
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            grace_period=grace_period,
            prober=self._prober,
            report=self._report,
        )
        self._pods: dict[tuple[str, str], Pod] = {}
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # forgetting deleted pods

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> LocalKubelet:
        self._run_task = asyncio.create_task(self.run(), name=f"kubelet {self.node_name}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Serve pods until ``stop()`` is called (or the task is cancelled); then end every process."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._api.connect()
        self._prober.open()
        if self.register_node:
            await register_node(self._api, self.node_name, retry_delay=self.retry_delay)
        sync = asyncio.create_task(self._sync_loop(), name="kubelet sync")
        stop = asyncio.create_task(self._stop_requested.wait())
        try:
            await asyncio.wait({sync, stop}, return_when=asyncio.FIRST_COMPLETED)
            if sync.done():
                sync.result()  # an unexpected crash of the sync loop surfaces here
        finally:
            for task in (sync, stop):
                task.cancel()
            await asyncio.gather(sync, stop, return_exceptions=True)
            await self._shutdown()

    async def stop(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL after the grace period) and stop."""
        self._stop_requested.set()
        if self._run_task is not None:
            await asyncio.gather(self._run_task, return_exceptions=True)
        elif self._api.open:
            await self._stopped.wait()
        else:
            await self._shutdown()

    async def _shutdown(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self._runtime.terminate(rt) for rt in self._pods.values()))
        for rt in self._pods.values():
            await asyncio.gather(*(cancel(task) for task in rt.tasks))
        self._pods.clear()
        await self._api.close()
        await self._prober.close()
        self._stopped.set()

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """Where the output of a container goes."""
        return self._runtime.log_path(namespace, pod, container)

    def kubeconfig_for(self, namespace: str, pod: str) -> Path:
        """The kubeconfig written for a pod (its ``KUBECONFIG``)."""
        return self._runtime.kubeconfig_for(namespace, pod)

    async def evict(self, namespace: str, name: str, reason: str = "Evicted", message: str = "") -> None:
        """Simulate a node-pressure eviction: kill the pod's processes and mark it Failed.

        As in Kubernetes, the pod object stays (phase Failed, with the reason and message);
        whoever owns it must create a replacement.
        """
        rt = self._pods.get((namespace, name))
        if rt is None:
            raise LookupError(f"pod {namespace}/{name} does not run on node {self.node_name}")
        rt.failure = (
            reason,
            message or f"The node {self.node_name} was low on resources (simulated by the local kubelet).",
        )
        await self._runtime.terminate(rt)
        try:
            await self._write_status(rt)
        except ApiError as exc:
            # The reporter may already have written the Failed phase while the processes
            # stopped, and the owner may have deleted the pod in response: that is fine.
            if exc.status != 404:
                raise

    # ----------------------------------------------------------------- list and watch

    async def _sync_loop(self) -> None:
        while True:
            try:
                version = await self._relist()
                await self._watch(version)
            except (aiohttp.ClientError, ApiError, TimeoutError, ValueError) as exc:
                logger.warning("kubelet %s: pod watch failed (%s); listing again", self.node_name, exc)
                await asyncio.sleep(self.retry_delay)

    async def _relist(self) -> str:
        listing = await self._api.call("GET", "/api/v1/pods")
        seen = set()
        for obj in listing.get("items") or []:
            seen.add((obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
            self._on_pod(obj)
        for key in [k for k in self._pods if k not in seen]:
            self._on_deleted(self._pods[key].obj)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, version: str) -> None:
        async with contextlib.aclosing(self._api.watch_pods(version, self.watch_timeout)) as events:
            async for event in events:
                if not self._on_event(event):
                    return

    def _on_event(self, event: dict[str, Any]) -> bool:
        """Handle one watch event; False means the watch must start over with a new listing."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            logger.info("kubelet %s: watch error %s; listing again", self.node_name, obj.get("message"))
            return False
        if kind in ("ADDED", "MODIFIED"):
            self._on_pod(obj)
        elif kind == "DELETED":
            self._on_deleted(obj)
        return True

    def _on_pod(self, obj: dict[str, Any]) -> None:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        node = spec.get("nodeName")
        if node and node != self.node_name:
            return
        uid = meta.get("uid") or f"{key[0]}/{key[1]}"
        rt = self._pods.get(key)
        if rt is not None and rt.uid != uid:  # replaced by a new pod of the same name
            self._on_deleted(rt.obj)
            rt = None
        if rt is not None:
            rt.obj = obj
            if meta.get("deletionTimestamp") and not rt.terminating:
                rt.tasks.append(asyncio.create_task(self._finish_deletion(rt)))
            return
        if meta.get("deletionTimestamp") or (obj.get("status") or {}).get("phase") in TERMINAL:
            return  # nothing to run: already finished, or going away before it started here
        rt = Pod(obj=obj, namespace=key[0], name=key[1], uid=uid)
        self._pods[key] = rt
        rt.tasks.append(asyncio.create_task(self._reporter(rt), name=f"status {key}"))
        rt.tasks.append(asyncio.create_task(self._start_pod(rt), name=f"start {key}"))

    def _on_deleted(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        rt = self._pods.pop((meta.get("namespace", ""), meta.get("name", "")), None)
        if rt is not None:
            task = asyncio.create_task(self._forget(rt))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _forget(self, rt: Pod) -> None:
        await self._runtime.terminate(rt)
        for task in rt.tasks:
            task.cancel()
        await asyncio.gather(*rt.tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.kubeconfig_for(rt.namespace, rt.name).unlink()

    async def _finish_deletion(self, rt: Pod) -> None:
        await self._runtime.terminate(rt)
        try:
            await self._write_status(rt)
            if not (rt.obj.get("metadata") or {}).get("finalizers"):
                path = pod_path(rt.namespace, rt.name)
                await self._api.call(
                    "DELETE", path, body={"gracePeriodSeconds": 0}, params={"gracePeriodSeconds": "0"}
                )
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            if not isinstance(exc, ApiError) or exc.status != 404:
                logger.warning(
                    "kubelet %s: could not finish deleting %s/%s: %s",
                    self.node_name,
                    rt.namespace,
                    rt.name,
                    exc,
                )

    # ----------------------------------------------------------------- running a pod

    async def _start_pod(self, rt: Pod) -> None:
        if (rt.obj.get("spec") or {}).get("nodeName") != self.node_name and not await bind(
            self._api, rt, self.node_name, retry_delay=self.retry_delay
        ):
            if self._pods.get((rt.namespace, rt.name)) is rt:
                self._on_deleted(rt.obj)  # seen again at the next listing, if it still exists
            return
        now = rfc3339(_dt.datetime.now(_dt.UTC))
        rt.start_time = now
        spec = rt.obj.get("spec") or {}
        for c in spec.get("containers") or []:
            name = str(c.get("name", "")) if isinstance(c, dict) else ""
            rt.containers[name] = Container(spec=c if isinstance(c, dict) else {}, name=name)
        if spec.get("initContainers"):
            for c in rt.containers.values():
                c.state = {
                    "waiting": {
                        "reason": "InitContainersUnsupported",
                        "message": "the local kubelet does not run initContainers",
                    }
                }
            self._report(rt)
            return
        try:
            await write_pod_kubeconfig(
                self._api,
                rt,
                self.kubeconfig_for(rt.namespace, rt.name),
                token_seconds=self.token_seconds,
                retry_delay=self.retry_delay,
            )
        except StartError as exc:
            for c in rt.containers.values():
                c.state = {"waiting": {"reason": exc.reason, "message": exc.message}}
            self._report(rt)
            return
        for c in rt.containers.values():
            rt.tasks.append(
                asyncio.create_task(self._runtime.run_container(rt, c), name=f"container {c.name}")
            )
        self._report(rt)

    # ----------------------------------------------------------------- status

    def _report(self, rt: Pod) -> None:
        if self._pods.get((rt.namespace, rt.name)) is rt:  # not for pods that are gone
            rt.dirty.set()

    async def _reporter(self, rt: Pod) -> None:
        failing = False
        while True:
            await rt.dirty.wait()
            rt.dirty.clear()
            try:
                await self._write_status(rt)
                failing = False
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                if isinstance(exc, ApiError) and exc.status == 404:
                    return
                if not failing:  # once per outage, not at every retry
                    logger.warning(
                        "kubelet %s: status of %s/%s not written, retrying: %s",
                        self.node_name,
                        rt.namespace,
                        rt.name,
                        exc,
                    )
                failing = True
                await asyncio.sleep(self.retry_delay)
                rt.dirty.set()

    async def _write_status(self, rt: Pod) -> None:
        async with rt.write_lock:
            status = pod_status(rt, _dt.datetime.now(_dt.UTC))
            await self._api.call(
                "PATCH", pod_path(rt.namespace, rt.name) + "/status", body={"status": status}
            )
