"""HA hand-over: two operator replicas, one active by Lease, and a session that must still end
with exactly one outcome when the active one dies or is cut off from the API server mid-session.

Fencing: every write that decides or applies an outcome carries the ``resourceVersion`` its
replica read (the session's status patch, ``outcomeApplied``, the Variable's status). A deposed
leader's write, however late it arrives, names a version the new leader has since replaced, so
the API server refuses it (409); and a leader that cannot renew its Lease stops its operator
within its renew deadline, before the Lease can expire and another replica take over.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from mabeam.kube.client import Kube
from mabeam.kube.resources import COORDINATION, VARIABLE
from mabeam.local.cluster import LocalCluster
from tests.integration._coordination import NS, AsAgents, collecting, create_session, suspended, vote_status
from tests.integration._fault_proxy import FaultProxy
from tests.integration._util import eventually
from tests.integration.test_faults import history, outcome_applied, values_taken
from tests.integration.test_leader import free_port, health_of

LEASE_SECONDS = 2
#: How much later than the Lease's expiry the standby may take over: its next look at the Lease
#: (every renew period, a quarter of the lease) and the time to start its operator.
TAKEOVER_SLACK = 1.5


async def start_replica(
    cluster: LocalCluster, name: str, kubeconfig: Path
) -> tuple[asyncio.subprocess.Process, str]:
    health = f"http://127.0.0.1:{free_port()}/healthz"
    log = open(Path(cluster.workdir) / f"operator-{name}.log", "ab")  # noqa: SIM115 - owned by the child
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mabeam.cli", "run", "--leader-elect", "--lease-seconds", str(LEASE_SECONDS),
        "--kubeconfig", str(kubeconfig), "--liveness", health, "--log-format", "json",
        env={**os.environ, "POD_NAME": name, "POD_NAMESPACE": "default", "MABEAM_RETRY_SECONDS": "0.1"},
        stdout=log, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    return process, health


class Replicas:
    """The replicas by name; ``leaders()`` asks each one's health endpoint whether it leads."""

    def __init__(self) -> None:
        self.replicas: dict[str, tuple[asyncio.subprocess.Process, str]] = {}

    async def leaders(self) -> list[str]:
        states = {n: await health_of(h) for n, (p, h) in self.replicas.items() if p.returncode is None}
        return [n for n, s in states.items() if s and s["leader"]]

    async def one_leader(self, timeout: float) -> str:
        async def single() -> list[str]:
            found = await self.leaders()
            return found if len(found) == 1 else []

        [leader] = await eventually(single, timeout=timeout, interval=0.05, what="exactly one leader")
        return str(leader)

    async def stop(self) -> None:
        for process, _ in self.replicas.values():
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def channel_session(kube: Kube, name: str) -> None:
    await suspended(kube, ["ann", "ben", "cat"])
    await kube.create(VARIABLE, {"metadata": {"name": "channel", "namespace": NS},
                                 "spec": {"type": "string", "value": "nightly"}})  # fmt: skip

    async def initialised() -> bool:
        obj = await kube.get(VARIABLE, "channel", NS)
        return ((obj or {}).get("status") or {}).get("version") == 1

    await eventually(initialised, timeout=20, what="channel v1")
    await create_session(
        kube, name, "majority", participants={"agents": ["ann", "ben", "cat"]},
        options=["stable", "beta"], answerSeconds=60, variableRef={"name": "channel"},
    )  # fmt: skip
    await collecting(kube, name, timeout=20)


def one_outcome(cluster: LocalCluster, name: str) -> set[tuple[Any, Any]]:
    return {
        ((v.get("status") or {}).get("phase"), ((v.get("status") or {}).get("result") or {}).get("value"))
        for v in history(cluster, "coordinations", name)
        if (v.get("status") or {}).get("phase") in ("Decided", "NoDecision", "Failed", "Cancelled")
    }


async def test_the_standby_takes_over_a_session_when_the_leader_is_killed_mid_session(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    replicas = Replicas()
    try:
        for name in ("op-a", "op-b"):
            replicas.replicas[name] = await start_replica(cluster, name, cluster.operator_kubeconfig)
        leader = await replicas.one_leader(timeout=15)
        await channel_session(kube, "ha-kill")
        await as_agent.vote("ha-kill", "ann", choice="beta")
        assert (await vote_status(kube, "ha-kill", "ann", timeout=20))["reason"] == "Counted"

        process = replicas.replicas[leader][0]
        process.kill()  # SIGKILL mid-session: the Lease is not released
        await process.wait()
        killed_at = asyncio.get_running_loop().time()
        await as_agent.vote("ha-kill", "ben", choice="beta")  # the deciding vote, for the standby
        standby = await replicas.one_leader(timeout=LEASE_SECONDS + TAKEOVER_SLACK + 5)
        took = asyncio.get_running_loop().time() - killed_at
        assert standby != leader
        assert took <= LEASE_SECONDS + TAKEOVER_SLACK, f"the standby took over after {took:.2f} s"

        s = await outcome_applied(kube, COORDINATION, "ha-kill")
        assert (s["phase"], s["result"]["value"]) == ("Decided", "beta")
        # ann's vote, counted by the first leader, counts for the second.
        assert sorted(a["agent"] for a in s["answers"]) == ["ann", "ben"]
        assert one_outcome(cluster, "ha-kill") == {("Decided", "beta")}
        assert values_taken(cluster, "channel") == [(1, "nightly"), (2, "beta")]
        var = ((await kube.get(VARIABLE, "channel", NS)) or {})["status"]
        assert [x.split(":")[0] for x in var["appliedSessions"]] == ["ha-kill"]
    finally:
        await replicas.stop()


class CutOffAtDecision(FaultProxy):
    """Partitions its replica from the API server the moment that replica writes a decision
    (a Coordination status patch to Decided), holding that very write: the replica still
    believes it leads, and the write reaches the API server only once healed, late."""

    def __init__(self, upstream: str, cut: asyncio.Event, session: str) -> None:
        super().__init__(upstream, [], seed=0)
        self.cut = cut
        self.session = session

    async def _handle_faulty(self, request: web.Request) -> web.StreamResponse:
        if (
            not self.cut.is_set()
            and request.method == "PATCH"
            and request.path.endswith(f"/coordinations/{self.session}/status")
            and b'"Decided"' in await request.read()
        ):
            self.partition()
            self.cut.set()
        return await super()._handle_faulty(request)


async def test_a_leader_cut_off_from_the_api_server_mid_decision_cannot_decide_twice(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """The leader decides 'beta' from ann's and ben's votes, and is cut off while writing it.
    ben then changes to 'stable' and cat votes 'stable': the standby, once it has the Lease,
    decides 'stable'. When the old leader's decision finally reaches the API server it is
    refused (its resourceVersion is stale): one outcome, 'stable', applied once."""
    cut = asyncio.Event()
    proxies = {name: CutOffAtDecision(cluster.url, cut, "ha-cut") for name in ("op-a", "op-b")}
    replicas = Replicas()
    try:
        for name, proxy in proxies.items():
            await proxy.__aenter__()
            kubeconfig = proxy.kubeconfig(cluster.operator_kubeconfig, cluster.workdir / f"{name}.kubeconfig")
            replicas.replicas[name] = await start_replica(cluster, name, kubeconfig)
        leader = await replicas.one_leader(timeout=15)
        await channel_session(kube, "ha-cut")
        await as_agent.vote("ha-cut", "ann", choice="beta")
        await vote_status(kube, "ha-cut", "ann", timeout=20)
        await as_agent.vote("ha-cut", "ben", choice="beta")  # the leader decides beta...
        await asyncio.wait_for(cut.wait(), 20)  # ...and its decision is held on the way
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        assert proxies[leader].partitioned
        await as_agent.vote("ha-cut", "ben", choice="stable")
        await as_agent.vote("ha-cut", "cat", choice="stable")

        # The cut-off leader steps down by itself before its Lease can expire...
        async def stepped_down() -> bool:
            state = await health_of(replicas.replicas[leader][1])
            return state is not None and not state["leader"]

        await eventually(stepped_down, timeout=LEASE_SECONDS, interval=0.05, what="the old leader steps down")
        # ...and the standby takes over within the Lease's duration.
        standby = await replicas.one_leader(timeout=LEASE_SECONDS + TAKEOVER_SLACK + 5)
        assert standby != leader
        assert loop.time() - cut_at <= LEASE_SECONDS + TAKEOVER_SLACK
        s = await outcome_applied(kube, COORDINATION, "ha-cut")
        assert (s["phase"], s["result"]["value"]) == ("Decided", "stable")

        proxies[leader].heal()  # the held decision arrives now, late: refused as stale

        def delivered() -> list[str]:
            return [
                f
                for m, p, f in proxies[leader].log
                if p.endswith("/ha-cut/status") and f.startswith("delivered")
            ]

        late = await eventually(lambda: asyncio.sleep(0, delivered()), timeout=10, what="the late write")
        assert late[0] == "delivered-late:409", late
        assert one_outcome(cluster, "ha-cut") == {("Decided", "stable")}
        assert values_taken(cluster, "channel") == [(1, "nightly"), (2, "stable")]
        var = ((await kube.get(VARIABLE, "channel", NS)) or {})["status"]
        assert [x.split(":")[0] for x in var["appliedSessions"]] == ["ha-cut"]
        assert (await vote_status(kube, "ha-cut", "cat", timeout=20))["reason"] == "Counted"
    finally:
        await replicas.stop()
        for proxy in proxies.values():
            await proxy.__aexit__(None, None, None)
