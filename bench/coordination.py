"""Coordination: time from the last answer to Decided, sessions per second, API requests per session.

Each figure is printed beside a baseline measured in the same run against the same local API
server (the operator runs as its own process, as in a cluster):

- latency (from writing the last answer to a watching client seeing ``Decided``): one PATCH of
  a Coordination's status — the least the operator must do after the last answer arrives;
- sessions/s: the floor of a session done by hand at the same concurrency — N Vote creates
  (one per participant, with its own credentials) plus one status PATCH;
- requests per session: that same floor, N + 1 (one write per participant plus a constant).

Run with ``python bench/coordination.py [--participants 50] [--sessions 10] [--quick]`` (not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, COORDINATION, ROLE_BINDING, VOTE
from mabeam.local.cluster import OPERATOR_IDENTITY, LocalCluster
from mabeam.models.coordination import vote_name

NS = "default"
IN_FLIGHT = 32
OPERATOR_USER = OPERATOR_IDENTITY
#: Operator requests that belong to the Agent loops, not to sessions.
AGENT_LOOP = {("agents", "get"), ("agents", "patch")}


class Voters:
    def __init__(self, cluster: LocalCluster, names: list[str]) -> None:
        self.clients: dict[str, Kube] = {}
        for name in names:
            path = cluster.api.kubeconfig(
                cluster.workdir / f"{name}.kubeconfig", user=f"system:serviceaccount:{NS}:mabeam-agent-{name}"
            )
            self.clients[name] = Kube.connect(path, namespace=NS)
        self.limit = asyncio.Semaphore(IN_FLIGHT)

    async def vote(self, session: str, agent: str, choice: str) -> None:
        async with self.limit:
            await self.clients[agent].create(VOTE, {
                "metadata": {"name": vote_name(session, agent), "namespace": NS,
                             "labels": {"mabeam.io/session": session, "mabeam.io/agent": agent}},
                "spec": {"session": session, "agent": agent, "choice": choice},
            })  # fmt: skip

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


def choice(i: int) -> str:
    return "x" if i % 2 == 0 else "y"


async def wait_for(kube: Kube, name: str, phases: set[str]) -> dict[str, Any]:
    while True:
        status = ((await kube.get(COORDINATION, name, NS)) or {}).get("status") or {}
        if status.get("phase") in phases:
            return status
        await asyncio.sleep(0.002)


async def verdicts_written(kube: Kube, session: str, n: int) -> None:
    while True:
        votes = await kube.list(VOTE, NS, labels={"mabeam.io/session": session})
        if sum(1 for v in votes if (v.get("status") or {}).get("reason")) >= n:
            return
        await asyncio.sleep(0.01)


async def one_session(kube: Kube, voters: Voters, name: str, names: list[str]) -> tuple[float, float]:
    """Run a session whose last answer decides it; return (last answer -> Decided seen, wall time).

    All but the last participant vote alternately, so that the outcome stays open (the leader is
    one vote ahead and the last voter could still tie); once those answers are counted, the last
    vote is written and the clock runs until the operator records the decision.
    """
    start = time.monotonic()
    await kube.create(COORDINATION, {
        "metadata": {"name": name, "namespace": NS},
        "spec": {"protocol": "majority", "participants": {"agents": names}, "options": ["x", "y"],
                 "answerSeconds": 120},
    })  # fmt: skip
    await wait_for(kube, name, {"Collecting"})
    *early, last = names
    await asyncio.gather(*(voters.vote(name, a, choice(i)) for i, a in enumerate(early)))
    await verdicts_written(kube, name, len(early))
    seen = asyncio.ensure_future(decided_seen(kube, name))
    await asyncio.sleep(0.05)  # the watch is established
    last_answer = time.monotonic()
    await voters.vote(name, last, "x")
    decided = await seen
    return decided - last_answer, time.monotonic() - start


async def decided_seen(kube: Kube, name: str) -> float:
    """When a watching client sees the session ended (what a user or an agent waits for)."""
    async for _, obj in kube.watch(COORDINATION, NS):
        if obj["metadata"]["name"] == name and (obj.get("status") or {}).get("phase") in (
            "Decided",
            "NoDecision",
        ):
            return time.monotonic()
    raise RuntimeError("the watch ended")


def session_requests(records: list[Any], users: set[str]) -> collections.Counter[tuple[str, str]]:
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for r in records:
        if r.user not in users or r.verb == "watch":
            continue
        plural = r.resource.rsplit("/", 1)[-1] + (f"/{r.subresource}" if r.subresource else "")
        if r.user == OPERATOR_USER and (plural, r.verb) in AGENT_LOOP:
            continue
        if plural.split("/")[0] in ("pods", "serviceaccounts", "rolebindings", "leases", "configmaps"):
            continue
        counts[(plural, r.verb)] += 1
    return counts


async def suspended_agents(kube: Kube, n: int) -> list[str]:
    """``n`` Agents without Pods (nothing to schedule), bound to the agents' ClusterRole so that
    each can answer with its own ServiceAccount token."""
    names = [f"p{i:04d}" for i in range(n)]
    await asyncio.gather(*(kube.create(AGENT, {
        "metadata": {"name": a, "namespace": NS},
        "spec": {"suspend": True, "template": {"spec": {"containers": [
            {"name": "a", "image": "x", "command": ["sleep", "1"]}]}}},
    }) for a in names))  # fmt: skip
    await kube.create(ROLE_BINDING, {
        "metadata": {"name": "bench-agents", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mabeam-agent"},
        "subjects": [{"kind": "ServiceAccount", "name": f"mabeam-agent-{a}", "namespace": NS} for a in names],
    })  # fmt: skip
    return names


async def main(n: int, sessions: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalCluster(Path(tmp)) as cluster:
            kube = cluster.client()
            names = await suspended_agents(kube, n)
            voters = Voters(cluster, names)
            await cluster.start_operator_process()
            await asyncio.sleep(2.0)  # let the Agent loops settle (they are not what is measured)
            users = {OPERATOR_USER, *(f"system:serviceaccount:{NS}:mabeam-agent-{a}" for a in names)}
            print(f"Coordination benchmark: majority, {n} participants, {sessions} sessions; "
                  "operator in its own process\n")  # fmt: skip

            # --- baselines -------------------------------------------------------------------
            await kube.create(COORDINATION, {"metadata": {"name": "baseline", "namespace": NS}, "spec": {
                "protocol": "majority", "participants": {"agents": names[:1]}, "options": ["x"],
                "cancel": True}})  # fmt: skip
            await wait_for(kube, "baseline", {"Cancelled", "Failed"})
            patch_times = []
            for i in range(50):
                t = time.perf_counter()
                await kube.patch(COORDINATION, "baseline", {"status": {"tally": {"x": float(i)}}},
                                 namespace=NS, status=True)  # fmt: skip
                patch_times.append(time.perf_counter() - t)
            base_latency = statistics.median(patch_times)
            t = time.perf_counter()
            for s in range(sessions):
                await asyncio.gather(
                    *(voters.vote(f"floor{s}", a, choice(i)) for i, a in enumerate(names[:-1]))
                )
                await voters.vote(f"floor{s}", names[-1], "x")
                await kube.patch(COORDINATION, "baseline", {"status": {"tally": {"x": float(s)}}},
                                 namespace=NS, status=True)  # fmt: skip
            floor_rate = sessions / (time.perf_counter() - t)

            # --- sessions, one after the other ----------------------------------------------
            latencies, requests = [], []
            t = time.perf_counter()
            for s in range(sessions):
                cluster.api.emulator.audit.clear()
                latency, _ = await one_session(kube, voters, f"s{s}", names)
                await verdicts_written(kube, f"s{s}", n)
                await asyncio.sleep(0.2)  # the operator's last writes and events
                latencies.append(latency)
                requests.append(session_requests(cluster.api.audit, users))
            rate = sessions / (time.perf_counter() - t)
            await voters.close()
            await kube.close()

    lat = statistics.median(latencies)
    per_session = statistics.median(sum(c.values()) for c in requests)
    floor = n + 1
    print(
        f"{'last answer -> Decided (p50)':<34} {lat * 1e3:8.1f} ms   baseline status PATCH "
        f"{base_latency * 1e3:6.1f} ms   ratio {lat / base_latency:6.1f}x"
    )
    print(
        f"{'sessions per second':<34} {rate:8.2f}      baseline floor by hand "
        f"{floor_rate:6.2f}/s   ratio {rate / floor_rate:6.2f}x"
    )
    print(
        f"{'API requests per session (p50)':<34} {per_session:8.0f}      baseline floor N+1 "
        f"{floor:6d}     ratio {per_session / floor:6.2f}x"
    )
    merged: collections.Counter[tuple[str, str]] = collections.Counter()
    for c in requests:
        merged.update(c)
    print("\nRequests per session by resource and verb (mean):")
    for (plural, verb), count in sorted(merged.items(), key=lambda kv: -kv[1]):
        print(f"  {plural:<28} {verb:<7} {count / len(requests):8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="5 participants, 2 sessions: that it runs")
    args = parser.parse_args()
    if args.quick:
        args.participants, args.sessions = 5, 2
    asyncio.run(main(args.participants, args.sessions))
