"""The local kubelet: runs the Pods of ``mabeam local`` as processes on this machine.

It talks to the API server over HTTP only, as a real kubelet does: it lists and watches
all Pods, binds the unbound ones to its node (a merge patch of ``spec.nodeName``), starts
each container as a local process, and reports what happened through the ``status``
subresource. What it does, and what it leaves out on purpose:

- The image is ignored. A container runs its ``command`` + ``args`` as a process on this
  machine, in its own process group, with ``env`` and ``workingDir``. A leading ``python``
  or ``python3`` is replaced by the kubelet's interpreter (``python=``), so that agent
  programs run in the same virtualenv. A container without a command, or whose executable
  is not found here, waits with reason ``CommandNotFound``; the pod stays ``Pending``.
- ``env``: plain values (with ``$(VAR)`` expansion) and ``valueFrom.fieldRef`` for
  metadata.name, metadata.namespace, metadata.uid, spec.nodeName,
  spec.serviceAccountName, status.podIP, status.hostIP. Anything else (secretKeyRef,
  configMapKeyRef, resourceFieldRef, envFrom) makes the container wait with reason
  ``CreateContainerConfigError`` and a message that names the field.
- Every process also gets ``KUBECONFIG``: a kubeconfig for the local API, written per pod,
  whose bearer token ``sa:<namespace>:<serviceAccountName>`` tells the API server who speaks.
  ``HOSTNAME`` is the pod name. Output goes to ``<workdir>/<namespace>_<pod>_<container>.log``.
- Readiness: ready once running, or, with a ``readinessProbe`` (``exec`` or ``httpGet`` on
  127.0.0.1), after the probe passes. Liveness and startup probes, init containers,
  lifecycle hooks and resource limits are not supported (init containers are reported as such).
- ``restartPolicy`` Always / OnFailure / Never, with the crash back-off of Kubernetes
  (10 s doubling up to 5 min; both configurable) and ``CrashLoopBackOff`` between restarts.
- Deletion: SIGTERM to each process group, SIGKILL after the grace period; then, if the
  object still exists with a ``deletionTimestamp`` and has no finalizers, the kubelet deletes
  it with grace period 0, as the real kubelet does.
- ``evict()`` simulates a node-pressure eviction; ``stop()`` ends every process.

Against a real API server (``mabeam cluster``) it behaves as a real kubelet does where MABEAM
relies on it: it speaks TLS with the CA and client certificate of its kubeconfig, registers its
``Node`` (``register_node=True``), binds pods with the ``pods/binding`` subresource (there is
no scheduler; a server without that subresource gets a merge patch of ``spec.nodeName``),
and hands every pod a ServiceAccount token obtained with the TokenRequest API, bound to the
pod (``token_requests=True``), in the pod's kubeconfig next to the cluster's CA. ``images``
maps an image (its repository, without tag or digest) to its entrypoint, for containers that
give only ``args``, as the operator's Deployment does. Every process dies with the kubelet
(``PR_SET_PDEATHSIG`` on Linux), so a killed kubelet leaves no pod behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import shutil
import signal
import ssl
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from mabeam.errors import ApiError
from mabeam.models._base import rfc3339

__all__ = ["LocalKubelet", "die_with_parent"]

logger = logging.getLogger(__name__)

POD_IP = "127.0.0.1"
_TERMINAL = ("Succeeded", "Failed")
_FIELD_REFS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.hostIP",
)
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _load_prctl() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # looked up here: a forked child must not import or dlopen


def die_with_parent() -> None:
    """In a child before exec: be killed when the parent dies (Linux only; elsewhere a no-op)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _image_repository(image: str) -> str:
    """``registry/repo:tag@sha256:...`` -> ``registry/repo``."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


class _StartError(Exception):
    """A container that cannot be started here: a waiting reason and a message for the user."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


@dataclass
class _Container:
    spec: dict[str, Any]
    name: str
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    restart_count: int = 0
    ready: bool = False


@dataclass
class _Pod:
    obj: dict[str, Any]
    namespace: str
    name: str
    uid: str
    containers: dict[str, _Container] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    start_time: str = ""
    conditions: dict[str, dict[str, str]] = field(default_factory=dict)
    failure: tuple[str, str] | None = None  # (reason, message) of an eviction
    terminating: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _service_account(pod: Mapping[str, Any]) -> str:
    spec = pod.get("spec", {})
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def _field(pod: Mapping[str, Any], path: str) -> str:
    """The value of a supported ``fieldRef`` (one of ``_FIELD_REFS``)."""
    if path in ("status.podIP", "status.hostIP"):
        return POD_IP
    if path == "spec.serviceAccountName":
        return _service_account(pod)
    section, key = path.split(".")
    return str((pod.get(section) or {}).get(key) or "")


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REF.sub(sub, text)


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
    """The variables a container declares, resolved as Kubernetes would (raises ``_StartError``)."""
    cname = container.get("name", "?")
    if container.get("envFrom"):
        raise _StartError(
            "CreateContainerConfigError",
            f"container {cname}: envFrom is not supported by the local kubelet; list variables in env",
        )
    entries = container.get("env") or []
    if not isinstance(entries, list):
        raise _StartError("CreateContainerConfigError", f"container {cname}: env must be a list")
    env: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = f"container {cname}: env[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _StartError("CreateContainerConfigError", f"{where} must be an object with a name")
        if "valueFrom" in entry:
            ref = (entry["valueFrom"] or {}).get("fieldRef") or {}
            path = ref.get("fieldPath") if isinstance(ref, dict) else None
            if path not in _FIELD_REFS:
                raise _StartError(
                    "CreateContainerConfigError",
                    f"{where} ({entry['name']}).valueFrom is not supported by the local kubelet: "
                    f"only fieldRef to {', '.join(sorted(_FIELD_REFS))} is",
                )
            env[entry["name"]] = _field(pod, path)
        else:
            env[entry["name"]] = _expand(str(entry.get("value", "")), env)
    return env


def pod_phase(containers: list[_Container], restart_policy: str) -> str:
    """The pod phase from its containers' states, following the kubelet's ``getPhase``."""
    running = waiting = stopped = succeeded = 0
    for c in containers:
        if "running" in c.state:
            running += 1
        elif "terminated" in c.state:
            stopped += 1
            succeeded += c.state["terminated"]["exitCode"] == 0
        elif c.last_state.get("terminated"):
            stopped += 1  # waiting to be restarted: it ran before
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped and restart_policy == "Always":
        return "Running"
    if stopped and stopped == succeeded:
        return "Succeeded"
    if stopped and restart_policy == "Never":
        return "Failed"
    return "Running" if stopped else "Pending"


def _should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process group still has a member that is not a zombie (Linux: read /proc)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                return True
    return False  # only zombies, which their new parent (init) reaps


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait for it, cancelling again if a cancellation was swallowed."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        logger.debug("a cancelled task ended with %r", task.exception())


async def _kill_group(pgid: int, timeout: float = 2.0) -> None:
    """SIGKILL a process group and wait (a bounded time) until none of its members runs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    _killpg(pgid, signal.SIGKILL)
    while _group_alive(pgid) and loop.time() < deadline:
        await asyncio.sleep(0.01)
        _killpg(pgid, signal.SIGKILL)


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
        token_requests: bool = True,
        token_seconds: int = 86400,
        images: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.node_name = node_name
        self.workdir = Path(workdir)
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.probe_period = probe_period
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.grace_period = grace_period
        self.retry_delay = retry_delay
        self.watch_timeout = watch_timeout
        self.register_node = register_node
        self.token_requests = token_requests
        self.token_seconds = token_seconds
        self.images = {k: list(v) for k, v in (images or {}).items()}
        self._credentials = _Credentials.read(kubeconfig_path) if kubeconfig_path else _Credentials()
        self._token = self._credentials.token
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._session: aiohttp.ClientSession | None = None
        self._probe_session: aiohttp.ClientSession | None = None
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
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        ssl_context = self._credentials.ssl_context()
        connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context is not None else None
        self._session = aiohttp.ClientSession(headers=headers, connector=connector)
        self._probe_session = aiohttp.ClientSession()
        if self.register_node:
            await self._register_node()
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
        elif self._session is not None:
            await self._stopped.wait()
        else:
            await self._shutdown()

    async def _shutdown(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self._terminate(rt) for rt in self._pods.values()))
        for rt in self._pods.values():
            await asyncio.gather(*(_cancel(task) for task in rt.tasks))
        self._pods.clear()
        for session in (self._session, self._probe_session):
            if session is not None:
                await session.close()
        self._stopped.set()

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """Where the output of a container goes."""
        return self.workdir / f"{namespace}_{pod}_{container}.log"

    def kubeconfig_for(self, namespace: str, pod: str) -> Path:
        """The kubeconfig written for a pod (its ``KUBECONFIG``)."""
        return self.workdir / "kubeconfigs" / f"{namespace}_{pod}.yaml"

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
        await self._terminate(rt)
        try:
            await self._write_status(rt)
        except ApiError as exc:
            # The reporter may already have written the Failed phase while the processes
            # stopped, and the owner may have deleted the pod in response: that is fine.
            if exc.status != 404:
                raise

    # ----------------------------------------------------------------- API access

    async def _call(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        assert self._session is not None, "the kubelet is not running"
        headers = {}
        if body is not None:
            headers["Content-Type"] = (
                "application/merge-patch+json" if method == "PATCH" else "application/json"
            )
        async with self._session.request(
            method,
            self.api_url + path,
            data=None if body is None else json.dumps(body),
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    detail = json.loads(text).get("message", text)
                except ValueError:
                    detail = text
                raise ApiError(f"{method} {path}: HTTP {resp.status}: {detail}", status=resp.status)
            result = json.loads(text) if text else {}
            return result if isinstance(result, dict) else {}

    @staticmethod
    def _pod_path(namespace: str, name: str) -> str:
        return f"/api/v1/namespaces/{namespace}/pods/{name}"

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
        listing = await self._call("GET", "/api/v1/pods")
        seen = set()
        for obj in listing.get("items") or []:
            seen.add((obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
            self._on_pod(obj)
        for key in [k for k in self._pods if k not in seen]:
            self._on_deleted(self._pods[key].obj)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, version: str) -> None:
        assert self._session is not None
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(self.watch_timeout)),
        }
        if version:
            params["resourceVersion"] = version
        timeout = aiohttp.ClientTimeout(total=self.watch_timeout + 10, sock_connect=10)
        try:
            async with self._session.get(
                self.api_url + "/api/v1/pods", params=params, timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    raise ApiError(f"watch pods: HTTP {resp.status}", status=resp.status)
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip() and not self._on_event(json.loads(line)):
                            return
        except TimeoutError:
            return  # the client-side guard against silent watches: list again

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
        if meta.get("deletionTimestamp") or (obj.get("status") or {}).get("phase") in _TERMINAL:
            return  # nothing to run: already finished, or going away before it started here
        rt = _Pod(obj=obj, namespace=key[0], name=key[1], uid=uid)
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

    async def _forget(self, rt: _Pod) -> None:
        await self._terminate(rt)
        for task in rt.tasks:
            task.cancel()
        await asyncio.gather(*rt.tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.kubeconfig_for(rt.namespace, rt.name).unlink()

    async def _finish_deletion(self, rt: _Pod) -> None:
        await self._terminate(rt)
        try:
            await self._write_status(rt)
            if not (rt.obj.get("metadata") or {}).get("finalizers"):
                path = self._pod_path(rt.namespace, rt.name)
                await self._call(
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

    async def _register_node(self) -> None:
        """Create this kubelet's Node (Ready, on 127.0.0.1), or find it from an earlier run."""
        now = rfc3339(_dt.datetime.now(_dt.UTC))
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "the MABEAM local kubelet runs pods as processes on this machine",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "10000", "ephemeral-storage": "100Gi"}
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "mabeam.io/local-kubelet": "true",
                },
            },
        }
        status = {
            "status": {
                "conditions": [ready],
                "addresses": [{"type": "InternalIP", "address": POD_IP}],
                "capacity": capacity,
                "allocatable": capacity,
                "nodeInfo": {"kubeletVersion": "mabeam-local", "operatingSystem": "linux"},
            }
        }
        while True:
            try:
                with contextlib.suppress(ApiError):  # 409: registered by an earlier run
                    await self._call("POST", "/api/v1/nodes", body=body)
                await self._call("PATCH", f"/api/v1/nodes/{self.node_name}/status", body=status)
                return
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("kubelet %s: cannot register the node yet (%s)", self.node_name, exc)
                await asyncio.sleep(self.retry_delay)

    async def _bind_once(self, rt: _Pod) -> None:
        """Bind with the ``binding`` subresource, as a scheduler does; merge-patch where absent."""
        path = self._pod_path(rt.namespace, rt.name)
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": rt.name, "namespace": rt.namespace, "uid": rt.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            await self._call("POST", path + "/binding", body=binding)
        except ApiError as exc:
            if exc.status not in (404, 405):
                raise
            rt.obj = await self._call("PATCH", path, body={"spec": {"nodeName": self.node_name}})
            return
        rt.obj = await self._call("GET", path)

    async def _bind(self, rt: _Pod) -> bool:
        """Bind the pod to this node (retrying while the API is unreachable); False if it is gone."""
        while not rt.terminating:
            try:
                await self._bind_once(rt)
                return True
            except ApiError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    logger.warning(
                        "kubelet %s: cannot bind %s/%s: %s", self.node_name, rt.namespace, rt.name, exc
                    )
                    return False
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(self.retry_delay)
        return False

    async def _start_pod(self, rt: _Pod) -> None:
        if (rt.obj.get("spec") or {}).get("nodeName") != self.node_name and not await self._bind(rt):
            if self._pods.get((rt.namespace, rt.name)) is rt:
                self._on_deleted(rt.obj)  # seen again at the next listing, if it still exists
            return
        now = rfc3339(_dt.datetime.now(_dt.UTC))
        rt.start_time = now
        spec = rt.obj.get("spec") or {}
        for c in spec.get("containers") or []:
            name = str(c.get("name", "")) if isinstance(c, dict) else ""
            rt.containers[name] = _Container(spec=c if isinstance(c, dict) else {}, name=name)
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
            await self._write_kubeconfig(rt)
        except _StartError as exc:
            for c in rt.containers.values():
                c.state = {"waiting": {"reason": exc.reason, "message": exc.message}}
            self._report(rt)
            return
        for c in rt.containers.values():
            rt.tasks.append(asyncio.create_task(self._run_container(rt, c), name=f"container {c.name}"))
        self._report(rt)

    async def _pod_token(self, rt: _Pod) -> str:
        """The pod's ServiceAccount token: a TokenRequest bound to the pod, or the local form."""
        account = _service_account(rt.obj)
        if not self.token_requests:
            return f"sa:{rt.namespace}:{account}"
        path = f"/api/v1/namespaces/{rt.namespace}/serviceaccounts/{account}/token"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": self.token_seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": rt.name, "uid": rt.uid},
            },
        }
        while True:
            try:
                answer = await self._call("POST", path, body=body)
                return str((answer.get("status") or {})["token"])
            except ApiError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    raise _StartError(
                        "CreateContainerConfigError",
                        f"no token for ServiceAccount {rt.namespace}/{account}: {exc}",
                    ) from exc
            except (aiohttp.ClientError, TimeoutError, KeyError):
                pass
            if rt.terminating:
                raise _StartError("ContainerCreating", "the pod is being deleted")
            await asyncio.sleep(self.retry_delay)

    async def _write_kubeconfig(self, rt: _Pod) -> None:
        path = self.kubeconfig_for(rt.namespace, rt.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        cluster: dict[str, Any] = {"server": self.api_url}
        if self._credentials.ca_data:
            cluster["certificate-authority-data"] = self._credentials.ca_data
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "mabeam-local", "cluster": cluster}],
            "users": [{"name": "pod", "user": {"token": await self._pod_token(rt)}}],
            "contexts": [
                {
                    "name": "mabeam-local",
                    "context": {"cluster": "mabeam-local", "user": "pod", "namespace": rt.namespace},
                }
            ],
            "current-context": "mabeam-local",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(config, f)

    def _prepare(self, rt: _Pod, c: _Container) -> tuple[list[str], dict[str, str], str | None]:
        """The argv, environment and working directory of a container (raises ``_StartError``)."""
        declared = container_env(rt.obj, c.spec)
        env = {
            **self.env,
            "HOSTNAME": rt.name,
            **declared,
            "KUBECONFIG": str(self.kubeconfig_for(rt.namespace, rt.name)),
        }
        command, args = c.spec.get("command") or [], c.spec.get("args") or []
        if not isinstance(command, list) or not isinstance(args, list):
            raise _StartError(
                "CreateContainerConfigError", f"container {c.name}: command and args must be lists"
            )
        if not command:
            command = self.images.get(_image_repository(str(c.spec.get("image") or "")), [])
        argv = [_expand(str(a), declared) for a in [*command, *args]]
        if not command:
            raise _StartError(
                "CommandNotFound",
                f"container {c.name} has no command; the local kubelet ignores "
                f"images ({c.spec.get('image', 'no image')}), so it needs one",
            )
        if argv[0] in ("python", "python3"):
            argv[0] = self.python
        cwd = c.spec.get("workingDir") or None
        if cwd is not None and not os.path.isdir(cwd):
            raise _StartError(
                "CreateContainerError", f"container {c.name}: workingDir {cwd} does not exist here"
            )
        if os.sep in argv[0]:
            exe = argv[0] if os.path.isabs(argv[0]) else os.path.join(cwd or os.getcwd(), argv[0])
            found = exe if os.path.isfile(exe) and os.access(exe, os.X_OK) else None
        else:
            found = shutil.which(argv[0], path=env.get("PATH", os.defpath))
        if found is None:
            raise _StartError(
                "CommandNotFound",
                f"container {c.name}: executable {argv[0]!r} was not found on "
                f"this machine (the local kubelet ignores images)",
            )
        return [found, *argv[1:]], env, cwd

    async def _run_container(self, rt: _Pod, c: _Container) -> None:
        policy = (rt.obj.get("spec") or {}).get("restartPolicy") or "Always"
        loop = asyncio.get_running_loop()
        crashes = 0
        while not rt.terminating:
            try:
                argv, env, cwd = self._prepare(rt, c)
            except _StartError as exc:
                c.state = {"waiting": {"reason": exc.reason, "message": exc.message}}
                self._report(rt)
                return
            try:
                with open(self.log_path(rt.namespace, rt.name, c.name), "ab") as log:
                    proc = await asyncio.create_subprocess_exec(
                        *argv,
                        env=env,
                        cwd=cwd,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=die_with_parent,
                    )
            except OSError as exc:
                c.state = {
                    "waiting": {"reason": "RunContainerError", "message": f"container {c.name}: {exc}"}
                }
                self._report(rt)
                return
            c.process, started, started_at = proc, loop.time(), rfc3339(_dt.datetime.now(_dt.UTC))
            if rt.terminating:  # deleted while starting
                _killpg(proc.pid, signal.SIGTERM)
            probe = c.spec.get("readinessProbe")
            c.state, c.ready = {"running": {"startedAt": started_at}}, not probe
            self._report(rt)
            prober = asyncio.create_task(self._probe_loop(rt, c, probe, env, cwd, proc)) if probe else None
            try:
                code = await proc.wait()
            finally:
                if prober is not None:
                    await _cancel(prober)
                await _kill_group(proc.pid)  # what the main process left behind dies with it
            exit_code = code if code >= 0 else 128 - code
            terminated = {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": rfc3339(_dt.datetime.now(_dt.UTC)),
                "containerID": f"local://{proc.pid}",
            }
            c.ready = False
            if rt.terminating or not _should_restart(policy, exit_code):
                c.state = {"terminated": terminated}
                self._report(rt)
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
            self._report(rt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.stopping.wait(), delay)
            if rt.terminating:
                return
            c.restart_count += 1

    async def _probe_loop(
        self,
        rt: _Pod,
        c: _Container,
        probe: dict[str, Any],
        env: dict[str, str],
        cwd: str | None,
        proc: asyncio.subprocess.Process,
    ) -> None:
        """Probe until the container's process ends (the loop also stops by itself: a
        cancellation can be lost inside ``asyncio.wait_for`` on Python 3.11)."""
        period = self.probe_period if self.probe_period is not None else float(probe.get("periodSeconds", 10))
        timeout = float(probe.get("timeoutSeconds", 1))
        success_threshold = int(probe.get("successThreshold", 1))
        failure_threshold = int(probe.get("failureThreshold", 3))
        successes = failures = 0
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        while proc.returncode is None and not rt.terminating:
            ok = await self._probe_once(c, probe, env, cwd, timeout)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and not c.ready and successes >= success_threshold:
                c.ready = True
                self._report(rt)
            elif not ok and c.ready and failures >= failure_threshold:
                c.ready = False
                self._report(rt)
            await asyncio.sleep(period)

    async def _probe_once(
        self, c: _Container, probe: dict[str, Any], env: dict[str, str], cwd: str | None, timeout: float
    ) -> bool:
        if "exec" in probe:
            command = [str(a) for a in (probe["exec"] or {}).get("command") or []]
            if command and command[0] in ("python", "python3"):
                command[0] = self.python
            try:
                proc = await asyncio.create_subprocess_exec(
                    *command,
                    env=env,
                    cwd=cwd,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            except (OSError, ValueError):
                return False
            try:
                return await asyncio.wait_for(proc.wait(), timeout) == 0
            except TimeoutError:
                return False
            finally:
                _killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                await _kill_group(proc.pid)
        if "httpGet" in probe:
            get = probe["httpGet"] or {}
            port = get.get("port")
            if isinstance(port, str) and not port.isdigit():
                named = [p for p in c.spec.get("ports") or [] if p.get("name") == port]
                port = named[0].get("containerPort") if named else None
            if port is None or self._probe_session is None:
                return False
            scheme = str(get.get("scheme", "HTTP")).lower()
            url = f"{scheme}://{get.get('host') or POD_IP}:{port}{get.get('path') or '/'}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            try:
                async with self._probe_session.get(
                    url, headers=headers, ssl=False, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as resp:
                    return 200 <= resp.status < 400
            except (aiohttp.ClientError, TimeoutError):
                return False
        return False  # tcpSocket, grpc: not supported, never ready

    async def _terminate(self, rt: _Pod) -> None:
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
            _killpg(proc.pid, signal.SIGTERM)
        waits = [asyncio.create_task(proc.wait()) for proc in procs]
        if waits:
            await asyncio.wait(waits, timeout=grace)
            for proc in procs:
                if proc.returncode is None:
                    _killpg(proc.pid, signal.SIGKILL)
            await asyncio.gather(*waits)
        runners = [t for t in rt.tasks if t.get_name().startswith("container ")]
        await asyncio.gather(*runners, return_exceptions=True)

    # ----------------------------------------------------------------- status

    def _report(self, rt: _Pod) -> None:
        if self._pods.get((rt.namespace, rt.name)) is rt:  # not for pods that are gone
            rt.dirty.set()

    async def _reporter(self, rt: _Pod) -> None:
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

    async def _write_status(self, rt: _Pod) -> None:
        async with rt.write_lock:
            status = self._status(rt, _dt.datetime.now(_dt.UTC))
            await self._call(
                "PATCH", self._pod_path(rt.namespace, rt.name) + "/status", body={"status": status}
            )

    def _status(self, rt: _Pod, now: _dt.datetime) -> dict[str, Any]:
        policy = (rt.obj.get("spec") or {}).get("restartPolicy") or "Always"
        containers = list(rt.containers.values())
        phase = "Failed" if rt.failure else pod_phase(containers, policy)
        all_ready = bool(containers) and all(c.ready for c in containers)
        readiness = (
            ("True", "")
            if all_ready
            else ("False", "PodCompleted" if phase in _TERMINAL else "ContainersNotReady")
        )
        wanted = {
            "PodScheduled": ("True", ""),
            "Initialized": ("True", "") if containers else ("False", "NoContainers"),
            "ContainersReady": readiness,
            "Ready": readiness,
        }
        if rt.failure:
            wanted["DisruptionTarget"] = ("True", "TerminationByKubelet")
        for ctype, (cstatus, reason) in wanted.items():
            old = rt.conditions.get(ctype, {})
            since = old["lastTransitionTime"] if old.get("status") == cstatus else rfc3339(now)
            rt.conditions[ctype] = {
                "type": ctype,
                "status": cstatus,
                "lastTransitionTime": since,
                **({"reason": reason} if reason else {}),
            }
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": list(rt.conditions.values()),
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": rt.start_time,
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": c.spec.get("image", ""),
                    "imageID": "",
                    **({"containerID": f"local://{c.process.pid}"} if c.process else {}),
                    "ready": c.ready,
                    "restartCount": c.restart_count,
                    "started": "running" in c.state,
                    "state": c.state,
                    "lastState": c.last_state,
                }
                for c in containers
            ],
        }
        if rt.failure:
            status["reason"], status["message"] = rt.failure
        return status


@dataclass
class _Credentials:
    """What the kubelet's kubeconfig says about the server and about itself."""

    token: str | None = None
    ca_data: str | None = None  # base64, as in a kubeconfig
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    insecure: bool = False

    @classmethod
    def read(cls, path: Path) -> _Credentials:
        config = yaml.safe_load(path.read_text()) or {}
        context_name = config.get("current-context")
        context: dict[str, Any] = next(
            (c["context"] for c in config.get("contexts", []) if c["name"] == context_name), {}
        )
        user: dict[str, Any] = next(
            (u["user"] for u in config.get("users", []) if u["name"] == context.get("user")), {}
        )
        cluster: dict[str, Any] = next(
            (c["cluster"] for c in config.get("clusters", []) if c["name"] == context.get("cluster")), {}
        )
        ca_data = cluster.get("certificate-authority-data")
        if not ca_data and cluster.get("certificate-authority"):
            ca_data = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()

        def pem(key: str) -> bytes | None:
            if user.get(key):
                return Path(user[key]).read_bytes()
            data = user.get(f"{key}-data")
            return base64.b64decode(data) if data else None

        token = user.get("token")
        return cls(
            token=str(token) if token else None,
            ca_data=str(ca_data) if ca_data else None,
            cert_pem=pem("client-certificate"),
            key_pem=pem("client-key"),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.ca_data or self.cert_pem or self.insecure):
            return None
        context = ssl.create_default_context()
        if self.ca_data:
            context.load_verify_locations(cadata=base64.b64decode(self.ca_data).decode())
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_pem and self.key_pem:
            # ssl loads a client certificate only from files: written privately, removed at once.
            with tempfile.TemporaryDirectory(prefix="mabeam-kubelet-") as tmp:
                cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
                cert.write_bytes(self.cert_pem)
                key.write_bytes(self.key_pem)
                context.load_cert_chain(cert, key)
        return context
