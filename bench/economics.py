"""Economics: combinatorial clearing, market clearing, and a whole auction through the operator.

Each figure is printed beside a baseline measured in the same run:

- combinatorial winner determination with VCG prices (``clear_combinatorial``, CP-SAT) on random
  XOR instances, against brute force on the same instances: enumerate every feasible allocation
  (each bidder gets one of its bundles or nothing, no item twice) for the tie-broken optimum,
  then once more without each winner for its VCG price; the two outcomes must agree. One larger
  instance is cleared by CP-SAT alone (brute force would have to look at up to
  (bundles + 1) ** bidders assignments);
- market clearing (``clear_double_auction``, ``clear_equilibrium``) on N orders, against the
  floor of any price-ordering mechanism: Python's ``sorted`` on the same N limit prices;
- a second-price auction through the operator (its own process) on the local API, P
  participants each sending a sealed bid with its own ServiceAccount token: the time from
  writing the last bid (which closes bidding) to a watching client seeing ``Awarded`` (the
  operator opens every bid and clears), and the API requests per
  auction, against a majority Coordination with the same participants in the same run (last
  vote to ``Decided``, requests per session).

Run with ``python bench/economics.py [--quick]`` (sizes: ``--help``; not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from coordination import (
    OPERATOR_USER,
    Voters,
    one_session,
    session_requests,
    suspended_agents,
    verdicts_written,
)

from mabeam.core.economics._combinatorial import BundleBid, CombinatorialOutcome, XorBid, clear_combinatorial
from mabeam.core.economics._double import EPOCH, LimitOrder, clear_double_auction
from mabeam.core.economics._equilibrium import NetDemand, clear_equilibrium
from mabeam.kube.client import Kube
from mabeam.kube.resources import AUCTION, BID, VARIABLE
from mabeam.local.cluster import LocalCluster
from mabeam.models._sealed import SealingInfo
from mabeam.models.auction import BidContent, bid_name
from mabeam.models.coordination import answer_verdict
from mabeam.sdk._trading import seal_bid

NS = "default"
SEED = 20261125
PARTS = ("combinatorial", "markets", "operator")


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def ratio_line(what: str, figure: float, base_what: str, base: float) -> str:
    return (
        f"{what:<40} {figure * 1e3:10.2f} ms   {base_what:<30} {base * 1e3:10.2f} ms   "
        f"ratio {figure / base:7.2f}x"
    )


# --- 1. combinatorial ------------------------------------------------------------------------


def xor_instance(
    rng: random.Random, bidders: int, bundles: int, n_items: int
) -> tuple[list[XorBid], list[str]]:
    """Random XOR bids: bundles of 1 to 3 items, each item worth 1..20 to the bidder, plus up to
    50 % complementarity for the bundle (integer amounts, so ties happen and are broken)."""
    items = [f"i{k:02d}" for k in range(n_items)]
    bids = []
    for b in range(bidders):
        offers = []
        for _ in range(bundles):
            chosen = frozenset(rng.sample(items, rng.randint(1, min(3, n_items))))
            base = sum(rng.randint(1, 20) for _ in chosen)
            offers.append(BundleBid(chosen, Fraction(base + rng.randint(0, base // 2))))
        bids.append(XorBid(f"b{b:02d}", tuple(offers)))
    return bids, items


def brute_best(
    bids: Sequence[XorBid], n_items: int, reserve: Fraction, skip: int = -1
) -> tuple[Fraction, dict[int, int]]:
    """The tie-broken optimum by enumerating every feasible allocation.

    Depth-first over bidders, each trying its bundles in order and then nothing: allocations come
    in descending lexicographic order of their bundle indicators, so the first one with the best
    welfare is the lexicographically greatest optimum (the engine's documented tie-break).
    """
    best: list[Any] = [None, {}]
    chosen: dict[int, int] = {}

    def walk(i: int, used: frozenset[str], paid: Fraction) -> None:
        if i == len(bids):
            value = paid + reserve * (n_items - len(used))
            if best[0] is None or value > best[0]:
                best[0], best[1] = value, dict(chosen)
            return
        if i != skip:
            for j, bundle in enumerate(bids[i].bundles):
                if not used & bundle.items:
                    chosen[i] = j
                    walk(i + 1, used | bundle.items, paid + bundle.amount)
                    del chosen[i]
        walk(i + 1, used, paid)

    walk(0, frozenset(), Fraction(0))
    return best[0], best[1]


def brute_vcg(bids: Sequence[XorBid], n_items: int, reserve: Fraction) -> list[tuple[str, Fraction]]:
    """(agent, VCG price) of every winner, by brute force, sorted by agent."""
    best, allocation = brute_best(bids, n_items, reserve)
    prices = []
    for i, j in allocation.items():
        without, _ = brute_best(bids, n_items, reserve, skip=i)
        prices.append((bids[i].agent, without - (best - bids[i].bundles[j].amount)))
    return sorted(prices)


def vcg_of(outcome: CombinatorialOutcome) -> list[tuple[str, Fraction]]:
    return [(w.agent, w.price) for w in outcome.wins]


def fmt(prices: list[tuple[str, Fraction]]) -> str:
    return ", ".join(f"{agent} {price}" for agent, price in prices)


def bench_combinatorial(args: argparse.Namespace) -> None:
    rng = random.Random(SEED)
    reserve = Fraction(args.reserve)
    instances = [xor_instance(rng, args.bidders, args.bundles, args.items) for _ in range(args.instances)]
    highs, brute, differ = [], [], []
    for k, (bids, items) in enumerate(instances):
        start = time.perf_counter()
        outcome = clear_combinatorial(bids, items, reserve)
        highs.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = brute_vcg(bids, len(items), reserve)
        brute.append(time.perf_counter() - start)
        if vcg_of(outcome) != reference:
            engine = fmt(vcg_of(outcome))
            differ.append(f"  instance {k}: (winner price) engine {engine}; brute force {fmt(reference)}")
    print(
        f"Combinatorial (XOR, VCG): {args.instances} random instances of {args.bidders} bidders x "
        f"{args.bundles} bundles x {args.items} items, reserve {args.reserve}, seed {SEED}; "
        f"winners and prices identical on {args.instances - len(differ)} of {args.instances}\n"
    )
    print(ratio_line("clear_combinatorial per auction (p50)", statistics.median(highs),
                     "brute force + VCG (p50)", statistics.median(brute)))  # fmt: skip
    print(f"{'  max over the instances':<40} {max(highs) * 1e3:10.2f} ms   {'':<30} "
          f"{max(brute) * 1e3:10.2f} ms")  # fmt: skip
    if differ:
        print("Outcomes that differ:", *differ, sep="\n")

    big_bids, big_items = xor_instance(rng, args.big_bidders, args.big_bundles, args.big_items)
    start = time.perf_counter()
    outcome = clear_combinatorial(big_bids, big_items, reserve)
    elapsed = time.perf_counter() - start
    candidates = (args.big_bundles + 1) ** args.big_bidders
    print(
        f"\nOne instance of {args.big_bidders} x {args.big_bundles} x {args.big_items}: CP-SAT "
        f"{elapsed * 1e3:.1f} ms ({outcome.reason}, {len(outcome.wins)} winners); brute force would "
        f"enumerate up to {args.big_bundles + 1}^{args.big_bidders} = {candidates:.2e} assignments "
        "per welfare, once plus once per winner: infeasible\n"
    )


# --- 2. markets ------------------------------------------------------------------------------


def bench_markets(sizes: Sequence[int], repeat: int) -> None:
    print(f"Market clearing: N unit orders (half buy, half sell) with random limit prices on a "
          f"0.1 grid from 0 to 100, p50 of {repeat} runs\n")  # fmt: skip
    rng = random.Random(SEED)
    step = Fraction(1, 10)
    grid = [k * step for k in range(1001)]
    for n in sizes:
        prices = [rng.randint(1, 1000) * step for _ in range(n)]
        floats = [float(p) for p in prices]
        at = [EPOCH + dt.timedelta(microseconds=i) for i in range(n)]
        sides = ["buy" if i % 2 == 0 else "sell" for i in range(n)]
        orders = [LimitOrder(f"a{i:06d}", sides[i], p, 1, at[i]) for i, p in enumerate(prices)]
        schedules = [
            NetDemand(f"a{i:06d}", ((Fraction(0), Fraction(1)), (p + step, Fraction(0))))
            if i % 2 == 0
            else NetDemand(f"a{i:06d}", ((Fraction(0), Fraction(0)), (p, Fraction(-1))))
            for i, p in enumerate(prices)
        ]
        base = median_time(lambda: sorted(prices), repeat)  # noqa: B023  (called at once)
        base_float = median_time(lambda: sorted(floats), repeat)  # noqa: B023
        double = median_time(lambda: clear_double_auction(orders), repeat)  # noqa: B023
        equilibrium = median_time(lambda: clear_equilibrium(schedules, grid), repeat)  # noqa: B023
        print(ratio_line(f"N={n}: clear_double_auction", double, "sorted(N Fractions)", base))
        print(ratio_line(f"N={n}: clear_equilibrium (1001 prices)", equilibrium, "sorted(N Fractions)", base))
        print(f"{'':<40} {'':<13}   {'(sorted(N floats))':<30} {base_float * 1e3:10.2f} ms")
    print()


# --- 3. through the operator -----------------------------------------------------------------


def sealed(auction: dict[str, Any], agent: str, amount: float) -> dict[str, Any]:
    """``agent``'s bid sealed to the key the Auction publishes, as the SDK seals it."""
    info = SealingInfo.model_validate(auction["sealing"])
    return seal_bid(info, auction["uid"], agent, BidContent(amount=amount)).to_wire()


async def bid(voters: Voters, session: str, agent: str, body: dict[str, Any], create: bool) -> int:
    """Write ``agent``'s Bid (create, or patch); its generation."""
    kube = voters.clients[agent]
    async with voters.limit:
        if create:
            obj = await kube.create(BID, {
                "metadata": {"name": bid_name(session, agent), "namespace": NS,
                             "labels": {"mabeam.io/session": session, "mabeam.io/agent": agent}},
                "spec": {"auction": session, "agent": agent, **body},
            })  # fmt: skip
        else:
            obj = await kube.patch(BID, bid_name(session, agent), {"spec": body}, namespace=NS)
    return int(obj["metadata"]["generation"])


async def auction_phase(kube: Kube, name: str, phases: set[str]) -> dict[str, Any]:
    while True:
        status = ((await kube.get(AUCTION, name, NS)) or {}).get("status") or {}
        if status.get("phase") in phases:
            return status
        await asyncio.sleep(0.002)


async def bid_verdicts(kube: Kube, session: str, generations: dict[str, int]) -> None:
    """Until every listed Bid has a verdict for (at least) that generation."""
    while True:
        done = 0
        auction = await kube.get(AUCTION, session, NS)
        for b in await kube.list(BID, NS, labels={"mabeam.io/session": session}):
            # A refusal is on the Bid; a counted version is in the Auction's status.counted.
            status = answer_verdict(b, auction) or {}
            if (status.get("observedGeneration") or 0) >= generations.get(b["spec"]["agent"], 1 << 30):
                done += status.get("reason") is not None
        if done >= len(generations):
            return
        await asyncio.sleep(0.01)


async def awarded_seen(kube: Kube, name: str) -> float:
    async for _, obj in kube.watch(AUCTION, NS):
        if obj["metadata"]["name"] == name and (obj.get("status") or {}).get("phase") in (
            "Awarded",
            "NoSale",
        ):
            return time.monotonic()
    raise RuntimeError("the watch ended")


async def one_auction(kube: Kube, voters: Voters, name: str, names: list[str]) -> float:
    """A second-price auction whose last bid ends it; return (last bid -> Awarded seen).

    All but the last bidder send sealed bids and get their verdicts, then the last bid is written
    (every participant has bid: bidding closes early, the operator opens the bids and clears) and
    the clock runs until a watching client sees the outcome.
    """
    created = await kube.create(AUCTION, {
        "metadata": {"name": name, "namespace": NS},
        "spec": {"mechanism": "second-price", "participants": {"agents": names}, "items": [name],
                 "reservePrice": 1, "bidSeconds": 120},
    })  # fmt: skip
    status = await auction_phase(kube, name, {"Bidding"})
    auction = {"uid": created["metadata"]["uid"], "sealing": status["sealing"]}
    amounts = {a: float(10 + i) for i, a in enumerate(names)}
    bids = {a: {"sealed": sealed(auction, a, amounts[a])} for a in names}
    *early, last = names
    gens = await asyncio.gather(*(bid(voters, name, a, bids[a], True) for a in early))
    await bid_verdicts(kube, name, dict(zip(early, gens, strict=True)))
    seen = asyncio.ensure_future(awarded_seen(kube, name))
    await asyncio.sleep(0.05)  # the watch is established
    last_reveal = time.monotonic()
    generation = await bid(voters, name, last, bids[last], True)
    awarded = await seen
    status = await auction_phase(kube, name, {"Awarded", "NoSale"})
    winner = status["result"]["allocations"][0]
    second = amounts[early[-1]]
    if status["phase"] != "Awarded" or (winner["agent"], winner["price"]) != (last, second):
        raise SystemExit(f"unexpected outcome of {name}: {status.get('result')}")
    await bid_verdicts(kube, name, {**dict(zip(early, gens, strict=True)), last: generation})
    while ((await kube.get(VARIABLE, name, NS) or {}).get("status") or {}).get("owner") is None:
        await asyncio.sleep(0.01)
    return awarded - last_reveal


async def bench_operator(n: int, sessions: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalCluster(Path(tmp)) as cluster:
            kube = cluster.client()
            names = await suspended_agents(kube, n)
            for s in range(sessions):  # the items for sale, created before anything is measured
                await kube.create(VARIABLE, {"metadata": {"name": f"a{s}", "namespace": NS},
                                             "spec": {"type": "string", "value": "slot"}})  # fmt: skip
            voters = await Voters.local(cluster, names)
            await cluster.start_operator_process()
            await asyncio.sleep(2.0)  # let the Agent and Variable loops settle (not measured)
            users = {OPERATOR_USER, *(f"system:serviceaccount:{NS}:mabeam-agent-{a}" for a in names)}
            print(f"Through the operator (own process): {n} participants, {sessions} second-price "
                  f"auctions and {sessions} majority coordinations, alternating\n")  # fmt: skip

            auction_lat, auction_req, vote_lat, vote_req = [], [], [], []
            for s in range(sessions):
                cluster.api.emulator.audit.clear()
                latency, _ = await one_session(kube, voters, f"c{s}", names)
                await verdicts_written(kube, f"c{s}", n)
                await asyncio.sleep(0.2)  # the operator's last writes and events
                vote_lat.append(latency)
                vote_req.append(session_requests(cluster.api.audit, users, OPERATOR_USER))

                cluster.api.emulator.audit.clear()
                auction_lat.append(await one_auction(kube, voters, f"a{s}", names))
                await asyncio.sleep(0.2)
                auction_req.append(session_requests(cluster.api.audit, users, OPERATOR_USER))
            await voters.close()
            await kube.close()

    lat, base = statistics.median(auction_lat), statistics.median(vote_lat)
    print(f"{'last bid -> Awarded seen (p50)':<40} {lat * 1e3:10.1f} ms   "
          f"{'last vote -> Decided (p50)':<30} {base * 1e3:10.1f} ms   ratio {lat / base:7.2f}x")  # fmt: skip
    req = statistics.median(sum(c.values()) for c in auction_req)
    base_req = statistics.median(sum(c.values()) for c in vote_req)
    print(f"{'API requests per auction (p50)':<40} {req:10.0f}      {'per coordination (p50)':<30} "
          f"{base_req:10.0f}      ratio {req / base_req:7.2f}x")  # fmt: skip
    print(f"{'  floor (P answers + 1 / P + 1)':<40} {n + 1:10d}      {'':<30} {n + 1:10d}")
    for title, records in (("auction", auction_req), ("coordination", vote_req)):
        merged: collections.Counter[tuple[str, str]] = collections.Counter()
        for c in records:
            merged.update(c)
        print(f"\nRequests per {title} by resource and verb (mean):")
        for (plural, verb), count in sorted(merged.items(), key=lambda kv: -kv[1]):
            print(f"  {plural:<28} {verb:<7} {count / len(records):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under ~20 s")
    parser.add_argument("--bidders", type=int, default=8)
    parser.add_argument("--bundles", type=int, default=3, help="bundles per bidder")
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--instances", type=int, default=30)
    parser.add_argument("--reserve", type=int, default=2, help="reserve price per item")
    parser.add_argument("--big-bidders", type=int, default=30)
    parser.add_argument("--big-bundles", type=int, default=5)
    parser.add_argument("--big-items", type=int, default=20)
    parser.add_argument("--orders", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=5, help="market runs per figure")
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=10, help="auctions (and coordinations)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.orders, args.repeat, args.sessions = 10, [1000], 3, 3
    if "combinatorial" in args.parts:
        bench_combinatorial(args)
    if "markets" in args.parts:
        bench_markets(args.orders, args.repeat)
    if "operator" in args.parts:
        asyncio.run(bench_operator(args.participants, args.sessions))


if __name__ == "__main__":
    main()
