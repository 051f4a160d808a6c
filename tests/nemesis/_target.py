"""Where the nemesis runs: the local control plane (``mabeam local``'s) or a real one.

A :class:`Target` gives the nemesis what differs between the two: an admin client, a client per
agent (its own ServiceAccount credentials), the operator's kubeconfig to send through the fault
proxy, how to run and kill the operator (always a child process of the nemesis, so that it can
be SIGKILLed at any request), and every stored version of an object (the local API server keeps
them all; on a real API server a watch started before the sessions records them).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import socket
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from mabeam.kube.client import Kube
from mabeam.kube.resources import AUCTION, COORDINATION, MARKET, VARIABLE, Res

__all__ = ["LocalTarget", "OperatorProcess", "Recorder", "Target"]

#: The kinds whose every version the invariants read.
RECORDED: tuple[Res, ...] = (COORDINATION, AUCTION, MARKET, VARIABLE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """The operator as a child process, started on a kubeconfig, SIGKILLed and started again."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, *argv: str) -> None:
        self.workdir = workdir
        self.env = {**os.environ, **(env or {})}
        self.argv = argv
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, kubeconfig: Path, timeout: float = 60.0) -> None:
        port = free_port()
        health = f"http://127.0.0.1:{port}/healthz"
        with open(self.workdir / "operator.log", "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mabeam.cli", "run", *self.argv,
                "--kubeconfig", str(kubeconfig), "--liveness", health,
                env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        self.starts += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.process.returncode is not None or loop.time() > deadline:
                    raise RuntimeError(f"the operator did not start; see {self.workdir / 'operator.log'}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(health) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)

    def kill(self) -> bool:
        """SIGKILL, at once (no await before the signal): True if it was running."""
        if not self.running:
            return False
        assert self.process is not None
        self.process.kill()
        return True

    async def stop(self) -> None:
        if self.process is not None:
            if self.process.returncode is None:
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class Recorder:
    """Every version of the recorded kinds that a watch delivered (for a real API server)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.versions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for res in RECORDED:
            self._tasks.append(asyncio.create_task(self._watch(res)))

    async def _watch(self, res: Res) -> None:
        version: str | None = None
        while True:
            try:
                async for _event, obj in self.kube.watch(res, self.namespace, resource_version=version):
                    version = obj["metadata"].get("resourceVersion") or version
                    seen = self.versions[(res.plural, obj["metadata"]["name"])]
                    if not seen or seen[-1]["metadata"].get("resourceVersion") != version:
                        seen.append(obj)
            except Exception:  # a watch that ended is started again
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Target(abc.ABC):
    """What the nemesis needs from a control plane (see the module docstring)."""

    namespace: str
    admin: Kube
    workdir: Path
    #: The operator's own kubeconfig (the proxy's copy points at the proxy instead).
    operator_kubeconfig: Path
    #: The API server's URL, and the SSL context to reach it (None: plain http).
    upstream: str
    ssl: Any = None
    #: Environment of the operator process (e.g. POD_NAMESPACE for its sealing key).
    operator_env: dict[str, str]
    #: The operator's namespace (its sealing key's Secret).
    operator_namespace: str

    @abc.abstractmethod
    async def agent_client(self, name: str) -> Kube:
        """An API client with agent ``name``'s own credentials (closed by the nemesis)."""

    @abc.abstractmethod
    def history(self, res: Res, name: str) -> list[dict[str, Any]]:
        """Every stored (or recorded) version of an object, oldest first."""

    @abc.abstractmethod
    async def prepare_agents(self, names: list[str]) -> None:
        """Whatever the agents need before they answer (RBAC, ServiceAccounts)."""


class LocalTarget(Target):
    """The local control plane of ``mabeam local`` (mabeam.local.cluster.LocalCluster)."""

    def __init__(self, cluster: Any, namespace: str = "default") -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.admin = cluster.client()
        self.workdir = Path(cluster.workdir)
        self.operator_kubeconfig = Path(cluster.operator_kubeconfig)
        self.upstream = cluster.url
        self.operator_env = {}
        self.operator_namespace = "mabeam-system"

    async def agent_client(self, name: str) -> Kube:
        path = self.workdir / f"agent-{name}.kubeconfig"
        self.cluster.api.kubeconfig(path, user=f"system:serviceaccount:{self.namespace}:mabeam-agent-{name}")
        return Kube.connect(path, namespace=self.namespace)

    def history(self, res: Res, name: str) -> list[dict[str, Any]]:
        versions = self.cluster.api.history(f"{res.group}/{res.version}/{res.plural}", name, self.namespace)
        return [v for v in versions if v]

    async def prepare_agents(self, names: list[str]) -> None:
        from tests.integration._coordination import grant_agents

        await grant_agents(self.admin, names)
