"""Leader election: one active operator among replicas, and a takeover when the leader dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from mabeam.controller._leader import LEASE_NAME, LeaderElector
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, LEASE
from mabeam.local.cluster import LocalCluster
from tests.integration._util import eventually
from tests.integration.test_agent_lifecycle import agent_manifest, ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def lease(kube: Kube) -> dict[str, Any]:
    obj = await kube.get(LEASE, LEASE_NAME, "default")
    return (obj or {}).get("spec") or {}


async def test_electors_take_turns_and_never_overlap(cluster: LocalCluster, kube: Kube) -> None:
    """In-process electors with fake operators: exactly one runs; a graceful stop hands over at once."""
    active: set[str] = set()
    overlaps: list[set[str]] = []

    def fake_operator(name: str) -> Any:
        async def run(stop: asyncio.Event) -> None:
            active.add(name)
            if len(active) > 1:
                overlaps.append(set(active))
            try:
                await stop.wait()
            finally:
                active.discard(name)

        return run

    clients = [cluster.client() for _ in range(2)]
    electors = [
        LeaderElector(c, namespace="default", identity=name, lease_seconds=3, renew_seconds=0.3)
        for c, name in zip(clients, ("a", "b"), strict=True)
    ]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(e.run(fake_operator(e.identity), s)) for e, s in zip(electors, stops, strict=True)
    ]
    try:
        await eventually(lambda: asyncio.sleep(0, len(active) == 1), timeout=15, what="one leader")
        first = next(iter(active))
        spec = await lease(kube)
        assert spec["holderIdentity"] == first and spec["leaseDurationSeconds"] == 3
        await asyncio.sleep(4)  # more than a lease: the leader renews, the other keeps waiting
        assert active == {first} and (await lease(kube))["holderIdentity"] == first

        index = [e.identity for e in electors].index(first)
        stops[index].set()
        await tasks[index]
        second = "b" if first == "a" else "a"
        # Released on a graceful stop, so the other takes over well before the lease would expire.
        await eventually(lambda: asyncio.sleep(0, active == {second}), timeout=2.5, what="handover")
        spec = await lease(kube)
        assert spec["holderIdentity"] == second and spec["leaseTransitions"] == 1
        assert overlaps == []
    finally:
        for s in stops:
            s.set()
        await asyncio.gather(*tasks)
        for c in clients:
            await c.close()
    assert (await lease(kube))["holderIdentity"] == ""  # the last one released it too


async def start_replica(cluster: LocalCluster, name: str) -> tuple[asyncio.subprocess.Process, str]:
    health = f"http://127.0.0.1:{free_port()}/healthz"
    log = open(Path(cluster.workdir) / f"operator-{name}.log", "ab")  # noqa: SIM115 - owned by the child
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mabeam.cli",
        "run",
        "--leader-elect",
        "--lease-seconds",
        "2",
        "--kubeconfig",
        str(cluster.operator_kubeconfig),
        "--liveness",
        health,
        "--log-format",
        "json",
        env={**os.environ, "POD_NAME": name, "POD_NAMESPACE": "default"},
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    log.close()
    return process, health


async def health_of(url: str) -> dict[str, Any] | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return json.loads(await response.text()) if response.status == 200 else None
    except aiohttp.ClientError:
        return None


async def test_a_standby_replica_takes_over_when_the_leader_is_killed(
    cluster: LocalCluster, kube: Kube
) -> None:
    replicas = dict(
        [("op-a", await start_replica(cluster, "op-a")), ("op-b", await start_replica(cluster, "op-b"))]
    )
    try:

        async def leaders() -> list[str]:
            states = {n: await health_of(h) for n, (_, h) in replicas.items()}
            if any(s is None for s in states.values()):
                return []  # not all up yet
            return [n for n, s in states.items() if s and s["leader"]]

        [leader] = await eventually(leaders, timeout=40, what="one leader among two replicas")
        standby = "op-b" if leader == "op-a" else "op-a"
        spec = await lease(kube)
        assert spec["holderIdentity"].startswith(f"{leader}-")
        await kube.create(AGENT, agent_manifest("x1"))
        await eventually(lambda: ready(kube, "x1"), timeout=30, what="x1 Ready under the first leader")
        assert await leaders() == [leader]

        process = replicas[leader][0]
        process.send_signal(signal.SIGKILL)
        await process.wait()
        del replicas[leader]
        # The lease is not released by a killed leader: the standby waits for it to expire (2 s).
        await eventually(leaders, timeout=30, what="the standby becomes leader")
        taken = await lease(kube)
        assert taken["holderIdentity"].startswith(f"{standby}-")
        assert taken["leaseTransitions"] == spec["leaseTransitions"] + 1
        await kube.create(AGENT, agent_manifest("x2"))
        await eventually(lambda: ready(kube, "x2"), timeout=30, what="x2 Ready under the new leader")
    finally:
        for process, _ in replicas.values():
            if process.returncode is None:
                process.terminate()
            await process.wait()
