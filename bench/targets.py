"""The design's performance targets, each beside the API round trip measured in the same run.

The design MABEAM started from (``../shared/design/mabeam-architecture.txt``) promised, for an
in-process runtime: variable access < 1 ms, agent registration < 5 ms, simple consensus
< 10 ms, sealed-bid auction < 100 ms and equilibrium < 50 ms (all p95), > 10 000 coordination
requests/s sustained and < 1 MB per agent. MABEAM keeps its state in Kubernetes objects, so
each figure here is printed beside what the API server alone costs for the same step, on the
same local API server (``mabeam local``, operator in its own process):

- variable access: the SDK's cache (``ctx.variables.get``) beside a GET of the same Variable;
- agent registration: an Agent created until the operator's status for it is seen (a
  suspended Agent: the registry step, without a pod to start) beside a ConfigMap create;
- simple consensus: a majority of 5 whose last vote decides, last vote written until a
  watching client sees ``Decided``, beside one status PATCH;
- sealed-bid auction: a second-price auction of 5 sealed bids, last bid until ``Awarded``
  is seen, beside the same PATCH;
- equilibrium: ``clear_equilibrium`` on 1 000 unit orders (pure), beside ``sorted``;
- coordination requests/s: answers the API server accepts as one Vote each (32 in flight),
  beside a batched path measured here and not implemented in MABEAM: one object carrying
  100 answers per write, and the protocol core tallying 10 000 answers in one step;
- memory per agent: an agent process with the SDK imported beside a bare Python process.

    python bench/targets.py [--sessions 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from coordination import NS, Voters, one_session, suspended_agents
from economics import one_auction
from variables import latencies as timed

from mabeam.core.economics._equilibrium import NetDemand, clear_equilibrium
from mabeam.core.protocols import Answer, Participant, start, step
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, CONFIG_MAP, VARIABLE, VOTE
from mabeam.local.cluster import LocalCluster
from mabeam.models.coordination import CoordinationSpec, vote_name
from mabeam.sdk import Variables

IN_FLIGHT = 32
BATCH = 100


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(len(ordered) * 0.95) - 1)]


def row(what: str, target: str, figure: str, floor_what: str, floor: str) -> None:
    print(f"  {what:<28} {target:<14} {figure:<22} {floor_what:<34} {floor}")


async def rate(kube: Kube, res: Any, bodies: list[dict[str, Any]]) -> float:
    """Objects created per second, IN_FLIGHT at a time."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(body: dict[str, Any]) -> None:
        async with limit:
            await kube.create(res, body)

    start = time.perf_counter()
    await asyncio.gather(*(one(b) for b in bodies))
    return len(bodies) / (time.perf_counter() - start)


def core_tally(n: int) -> float:
    """Seconds for the protocol core to take ``n`` answers of a majority in one step."""
    names = [f"a{i:05d}" for i in range(n)]
    spec = CoordinationSpec.model_validate(
        {
            "protocol": "majority",
            "participants": {"selector": {"matchLabels": {"team": "all"}}},
            "options": ["x", "y"],
            "answerSeconds": 60,
        }
    )
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    opened = start("s", spec, [Participant(a) for a in names], t0).status
    answers = {a: Answer(at=t0, choice="x" if i % 3 else "y") for i, a in enumerate(names)}
    alive = dict.fromkeys(names, True)
    begin = time.perf_counter()
    result = step("s", spec, opened, answers, alive, t0 + dt.timedelta(seconds=1))
    spent = time.perf_counter() - begin
    if result.status.phase != "Decided":
        raise SystemExit(f"the tally did not decide: {result.status.phase}")
    return spent


async def phase_of(kube: Kube, name: str) -> str | None:
    agent = await kube.get(AGENT, name, NS)
    return ((agent or {}).get("status") or {}).get("phase")


def rss_mb(code: str) -> float:
    """The resident memory of a Python process that ran ``code``, in MB."""
    script = code + "\nprint(open('/proc/self/status').read())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def main(sessions: int, agents: int, votes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalCluster(Path(tmp)) as cluster:
            kube = cluster.client()
            names = await suspended_agents(kube, 5)
            for s in range(sessions):  # the auctions' items, made before anything is measured
                await kube.create(VARIABLE, {"metadata": {"name": f"a{s}", "namespace": NS},
                                             "spec": {"type": "string", "value": "slot"}})  # fmt: skip
            await kube.create(VARIABLE, {"metadata": {"name": "x", "namespace": NS},
                                         "spec": {"type": "integer", "value": 1}})  # fmt: skip

            # Throughput first, before the operator runs (the API server's rates alone).
            ballots = [(f"t{i // 5}", names[i % 5]) for i in range(votes)]
            vote_rate = await rate(kube, VOTE, [
                {"metadata": {"name": vote_name(s, a), "namespace": NS, "labels": {"mabeam.io/session": s}},
                 "spec": {"session": s, "agent": a, "choice": "x"}}
                for s, a in ballots
            ])  # fmt: skip
            batches = max(votes // BATCH, 8)
            batch_rate = await rate(kube, CONFIG_MAP, [
                {"metadata": {"name": f"b{i}", "namespace": NS},
                 "data": {f"a{j:05d}": "x" for j in range(BATCH)}}
                for i in range(batches)
            ])  # fmt: skip
            for s, a in ballots:
                await kube.delete(VOTE, vote_name(s, a), NS)

            await cluster.start_operator_process()
            voters = await Voters.local(cluster, names)
            while ((await kube.get(VARIABLE, "x", NS) or {}).get("status") or {}).get("version") != 1:
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.0)  # the first passes of every object (not measured)

            floor = {"metadata": {"name": "floor", "namespace": NS}, "data": {"v": "0"}}
            await kube.create(CONFIG_MAP, floor)
            counter = iter(range(10**9))
            patch = await timed(lambda: kube.patch(
                CONFIG_MAP, "floor", {"data": {"v": str(next(counter))}}, namespace=NS), 100)  # fmt: skip
            get_var = await timed(lambda: kube.get(VARIABLE, "x", NS), 200)
            sdk = Variables(voters.clients[names[0]], NS, names[0])
            await sdk.start()
            cache = await timed(lambda: sdk.get("x"), 2000)
            await sdk.close()

            creates = await timed(lambda: kube.create(CONFIG_MAP, {
                "metadata": {"name": f"c{next(counter)}", "namespace": NS}, "data": {}}), agents)  # fmt: skip
            registered = []
            for i in range(agents):
                name = f"r{i:04d}"
                begin = time.perf_counter()
                await kube.create(AGENT, {"metadata": {"name": name, "namespace": NS}, "spec": {
                    "suspend": True, "template": {"spec": {"containers": [
                        {"name": "a", "image": "x", "command": ["sleep", "1"]}]}}}})  # fmt: skip
                while (await phase_of(kube, name)) != "Suspended":
                    await asyncio.sleep(0.001)
                registered.append(time.perf_counter() - begin)

            consensus, auction = [], []
            for s in range(sessions):
                consensus.append((await one_session(kube, voters, f"c{s}", names))[0])
                auction.append(await one_auction(kube, voters, f"a{s}", names))
            await voters.close()
            await kube.close()

    rng = random.Random(1)
    tick = Fraction(1, 10)
    prices = [rng.randint(1, 1000) * tick for _ in range(1000)]
    grid = [k * tick for k in range(1001)]
    schedules = [
        NetDemand(f"a{i:06d}", ((Fraction(0), Fraction(1)), (p + tick, Fraction(0))))
        if i % 2 == 0
        else NetDemand(f"a{i:06d}", ((Fraction(0), Fraction(0)), (p, Fraction(-1))))
        for i, p in enumerate(prices)
    ]
    equilibrium, base = [], []
    for _ in range(20):
        begin = time.perf_counter()
        clear_equilibrium(schedules, grid)
        equilibrium.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        sorted(prices)
        base.append(time.perf_counter() - begin)
    tally_n = 10_000
    tally = min(core_tally(tally_n) for _ in range(3))
    bare, with_sdk = rss_mb("pass"), rss_mb("import mabeam.sdk")

    ms = 1e3
    print(f"Design targets (p95 unless said; local API server, operator in its own process; "
          f"{sessions} sessions, {agents} registrations)\n")  # fmt: skip
    row("What", "Target", "MABEAM", "API alone (same run)", "")
    row("variable access (SDK cache)", "< 1 ms", f"{p95(cache) * 1e6:.1f} us",
        "GET of the Variable", f"{p95(get_var) * ms:.2f} ms")  # fmt: skip
    row("agent registration", "< 5 ms", f"{p95(registered) * ms:.1f} ms",
        "one ConfigMap create", f"{p95(creates) * ms:.2f} ms")  # fmt: skip
    for what, target, samples in (("simple consensus (5)", "< 10 ms", consensus),
                                  ("sealed-bid auction (5)", "< 100 ms", auction)):  # fmt: skip
        figure = f"{p95(samples) * ms:.1f} ms (p50 {statistics.median(samples) * ms:.1f})"
        row(what, target, figure, "one PATCH", f"{p95(patch) * ms:.2f} ms")
    row("equilibrium (1 000 orders)", "< 50 ms", f"{p95(equilibrium) * ms:.2f} ms",
        "sorted(1 000 Fractions)", f"{p95(base) * ms:.2f} ms")  # fmt: skip
    batched = f"{batch_rate * BATCH:.0f}/s ({batch_rate:.0f} writes/s)"
    row("coordination answers/s", "> 10 000/s", f"{vote_rate:.0f}/s (a Vote each)",
        f"batched: {BATCH} answers per write", batched)  # fmt: skip
    row("", "", "", f"core tally of {tally_n} answers", f"{tally * ms:.1f} ms = {tally_n / tally:.0f}/s")
    row("memory per agent (process)", "< 1 MB", f"{with_sdk:.0f} MB (SDK imported)",
        "bare Python process", f"{bare:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--agents", type=int, default=50, help="registrations timed")
    parser.add_argument("--votes", type=int, default=2000, help="Votes created for the answer rate")
    parser.add_argument("--quick", action="store_true", help="3 sessions, 5 registrations: that it runs")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.agents, args.votes = 3, 5, 200
    asyncio.run(main(args.sessions, args.agents, args.votes))
