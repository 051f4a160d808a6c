"""The local control plane in one piece: API server + CRDs + kubelet, and the operator on demand.

Used by ``mabeam local``, ``mabeam demo`` and the integration tests::

    async with LocalCluster(workdir) as cluster:
        await cluster.start_operator()
        ...  # talk to cluster.url with cluster.admin_kubeconfig
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp

from ..core.agents import AGENT_CLUSTER_ROLE
from ..kube import admission, crdgen
from ..kube.client import Kube
from ..kube.permissions import (
    AGENT_RULES,
    OPERATOR_CLUSTER_RULES,
    OPERATOR_OWN_NAMESPACE_RULES,
    OPERATOR_RULES,
    Rule,
)
from .apiserver import LocalApiServer
from .kubelet import LocalKubelet

__all__ = ["BOUNDED_HISTORY", "KUBELET_IDENTITY", "OPERATOR_IDENTITY", "LocalCluster", "serve"]

log = logging.getLogger(__name__)

#: The user the operator authenticates as on the local API (its ServiceAccount, as in a cluster).
OPERATOR_IDENTITY = "system:serviceaccount:mabeam-system:mabeam-operator"
#: What a long-running local API server keeps: a few versions per object, nothing deleted.
BOUNDED_HISTORY: dict[str, Any] = {"history_limit": 20, "retain_deleted": False}

#: The local kubelet's user: a node, and (as the real control plane's kubelet) system:masters.
KUBELET_IDENTITY = "system:node:local"


class LocalCluster:
    def __init__(
        self,
        workdir: Path,
        *,
        port: int = 0,
        kubelet_options: dict[str, Any] | None = None,
        runtime_factory: Any = None,
        api_options: dict[str, Any] | None = None,
    ) -> None:
        """``api_options`` go to :class:`LocalApiServer`: the tests keep every version of every
        object (for their oracles); ``mabeam local`` and the benchmarks keep a bounded history."""
        self.workdir = Path(workdir)
        self.api = LocalApiServer(port=port, **(api_options or {}))
        self.kubelet_options = kubelet_options or {}
        self.runtime_factory = runtime_factory
        self.kubelet: LocalKubelet | None = None
        self._operator: _OperatorThread | None = None
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LocalCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.api.__aenter__()
        self.api.install_crds(crdgen.generate_crds())
        for obj in (*rbac_objects(), *admission.policy_objects(OPERATOR_IDENTITY)):
            self.api.create(obj)
        self.admin_kubeconfig = self.api.kubeconfig(self.workdir / "kubeconfig")
        self.operator_kubeconfig = self.api.kubeconfig(
            self.workdir / "operator.kubeconfig", user=OPERATOR_IDENTITY
        )
        kubelet_config = self.api.kubeconfig(
            self.workdir / "kubelet.kubeconfig",
            user=KUBELET_IDENTITY,
            groups=("system:nodes", "system:masters"),
        )
        self.kubelet = LocalKubelet(
            self.api.url,
            workdir=self.workdir / "pods",
            kubeconfig_path=kubelet_config,
            **self.kubelet_options,
        )
        await self.kubelet.__aenter__()
        self.api.serve_logs(self.kubelet.log_path)  # kubectl logs: the kubelet's files
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_operator()
        if self.kubelet is not None:
            await self.kubelet.__aexit__(*exc)
        await self.api.__aexit__(None, None, None)

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def operator_pid(self) -> int | None:
        """The operator's process id while it runs as a process (:meth:`start_operator_process`)."""
        return self._process.pid if self._process is not None else None

    def client(self) -> Kube:
        """An admin client (the user's kubectl), to be closed by the caller."""
        return Kube.connect(self.admin_kubeconfig)

    async def start_operator(self, runtime: Any = None, *, timeout: float = 30.0) -> None:
        """Run the operator until :meth:`stop_operator` or :meth:`kill_operator`.

        It runs in a thread with its own event loop, as kopf recommends for embedding: when
        kopf stops it cancels every task of its loop that it did not start with, and the API
        server and the kubelet must not be among them.
        """
        if self._operator is not None:
            raise RuntimeError("the operator is already running")
        if runtime is None and self.runtime_factory is not None:
            runtime = self.runtime_factory()
        self._operator = _OperatorThread(str(self.operator_kubeconfig), runtime)
        self._operator.start()
        if not await asyncio.to_thread(self._operator.ready.wait, timeout):
            error = self._operator.error
            await self.kill_operator()
            raise TimeoutError(f"the operator did not become ready: {error!r}")

    async def start_operator_process(self, *argv: str, timeout: float = 30.0) -> None:
        """Run the operator as a child process (``argv`` replaces ``-m mabeam.cli run``).

        Unlike the thread, a process can be killed for real (SIGKILL) at any line.
        """
        if self._operator is not None or self._process is not None:
            raise RuntimeError("the operator is already running")
        args = argv or ("-m", "mabeam.cli", "run")
        port = _free_port()
        with open(self.workdir / "operator.log", "ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                "--kubeconfig",
                str(self.operator_kubeconfig),
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self._process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"the operator did not start; see {self.workdir / 'operator.log'}")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass  # not listening yet
                await asyncio.sleep(0.05)

    async def stop_operator(self) -> None:
        """A graceful stop, as on SIGTERM."""
        if self._process is not None:
            process, self._process = self._process, None
            if process.returncode is None:
                process.terminate()
            await process.wait()
            return
        if self._operator is None:
            return
        operator, self._operator = self._operator, None
        operator.stop_flag.set()
        await asyncio.to_thread(operator.join, 30)
        if operator.is_alive():
            operator.cancel()
            await asyncio.to_thread(operator.join, 10)
        if operator.error is not None:
            raise operator.error

    async def kill_operator(self) -> None:
        """An abrupt stop: SIGKILL for a process; a thread is cancelled wherever it is."""
        if self._process is not None:
            process, self._process = self._process, None
            if process.returncode is None:
                process.kill()
            await process.wait()
            return
        if self._operator is None:
            return
        operator, self._operator = self._operator, None
        operator.cancel()
        await asyncio.to_thread(operator.join, 30)


_RBAC = "rbac.authorization.k8s.io/v1"


def _rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiGroups": [rule.api_group],
        "resources": list(rule.resources),
        "verbs": list(rule.verbs),
    }
    if rule.resource_names:
        out["resourceNames"] = list(rule.resource_names)
    return out


def rbac_objects() -> list[dict[str, Any]]:
    """What the Helm chart installs for RBAC: the agents' ClusterRole and the operator's rights.

    The local API server enforces RBAC for service accounts, so the operator (a service
    account) is held to its declared rules (mabeam.kube.permissions), as in a cluster. Its own
    namespace (the release namespace) holds its sealing key, with a Role for that alone.
    """
    namespace, _, name = OPERATOR_IDENTITY.removeprefix("system:serviceaccount:").partition(":")
    operator_rules = [_rule(r) for r in (*OPERATOR_RULES, *OPERATOR_CLUSTER_RULES)]
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": _RBAC,
            "kind": "Role",
            "metadata": {"name": "mabeam-operator-sealing-key", "namespace": namespace},
            "rules": [_rule(r) for r in OPERATOR_OWN_NAMESPACE_RULES],
        },
        {
            "apiVersion": _RBAC,
            "kind": "RoleBinding",
            "metadata": {"name": "mabeam-operator-sealing-key", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "mabeam-operator-sealing-key",
            },
            "subjects": [subject],
        },
        {
            "apiVersion": _RBAC,
            "kind": "ClusterRole",
            "metadata": {"name": AGENT_CLUSTER_ROLE},
            "rules": [_rule(r) for r in AGENT_RULES],
        },
        {
            "apiVersion": _RBAC,
            "kind": "ClusterRole",
            "metadata": {"name": "mabeam-operator"},
            "rules": operator_rules,
        },
        {
            "apiVersion": _RBAC,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "mabeam-operator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "mabeam-operator",
            },
            "subjects": [subject],
        },
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _OperatorThread(threading.Thread):
    def __init__(self, kubeconfig: str, runtime: Any) -> None:
        super().__init__(name="mabeam-operator", daemon=True)
        self.kubeconfig = kubeconfig
        self.runtime = runtime
        self.stop_flag = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def run(self) -> None:
        from .. import controller

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            await controller.run(
                kubeconfig=self.kubeconfig,
                stop_flag=self.stop_flag,
                ready_flag=self.ready,
                runtime=self.runtime,
            )

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass  # killed on purpose
        except BaseException as exc:  # reported to whoever stops the operator
            self.error = exc
            log.exception("The local operator stopped with an error")
        else:
            if not self.stop_flag.is_set():
                log.error("The local operator stopped although nobody asked it to")

    def cancel(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)


async def serve(*, port: int, workdir: Path, kubeconfig: Path, with_operator: bool) -> str:
    """``mabeam local``: serve until SIGTERM, SIGINT or SIGHUP, printing how to reach the API.

    Each of them stops everything in order: the operator, then every pod (SIGTERM, SIGKILL
    after its grace period), then the API server. Returns the name of the signal.
    """
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per request is noise
    loop = asyncio.get_running_loop()
    received: list[str] = []
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # SIGHUP: its terminal closed
    for sig in stop_signals:  # a signal during start-up stops everything once it has started
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        # TLS: kubectl sends the kubeconfig's token only over TLS (anonymous on plain HTTP).
        api_options = {**BOUNDED_HISTORY, "tls": True}
        async with LocalCluster(workdir, port=port, api_options=api_options) as cluster:
            kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            cluster.api.kubeconfig(kubeconfig)
            if with_operator:
                await cluster.start_operator()
            print(f"Local Kubernetes API at {cluster.url}", flush=True)
            print(f"  export KUBECONFIG={kubeconfig}")
            print("  kubectl apply -f examples/agents.yaml && kubectl get agents")
            print(f"Pod logs in {cluster.workdir / 'pods'}. Ctrl-C stops everything.", flush=True)
            await stop.wait()
            print(f"{received[0]}: stopping every local pod.", flush=True)
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
    return received[0]
