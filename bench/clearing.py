"""Clearing at real sizes: sealed bids, and combinatorial winner determination with VCG prices.

Each figure is printed beside a baseline measured in the same run, as a ratio:

- sealed: a second-price decision over N bids (``second_price``: top-two scan), against
  Python's ``sorted`` of the same N amounts (exact decimals; and, for reference, as floats);
- combinatorial: CATS-like instances (``bench/cats.py``: "regions" and "arbitrary", goods x
  bids), cleared by the operator's core (``winner_determination``: the optimal allocation with
  its deterministic tie-break; ``clear_combinatorial``: that plus every winner's VCG price),
  against CBC (Debian's ``coinor-cbc``, one thread) solving the winner determination alone on
  the same instance written as an LP file (amounts in cents). The optima must agree.

Run with ``python bench/clearing.py [--quick]`` (not a test). Needs ``cbc`` on the PATH for the
combinatorial baseline (``apt-get install coinor-cbc``); without it that column is skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cats import generate

from mabeam.core.economics._cats import CatsInstance, to_auction
from mabeam.core.economics._combinatorial import clear_combinatorial, winner_determination
from mabeam.core.economics._sealed import SealedBid, second_price

SIZES = ((100, 500), (256, 1000))
QUICK_SIZES = ((49, 150),)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CBC_TIMEOUT = 900.0  # seconds (--cbc-timeout); a CBC run cut there is printed as ">= ..."


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sealed(n: int, repeat: int) -> None:
    rng = random.Random(13)
    bids = [
        SealedBid(f"a{i}", Decimal(rng.randrange(10**11)) / 100, T0 + dt.timedelta(microseconds=i))
        for i in range(n)
    ]
    amounts = [b.amount for b in bids]
    floats = [float(a) for a in amounts]
    ours = median_time(lambda: second_price(bids, Decimal(0)), repeat)
    base = median_time(lambda: sorted(amounts), repeat)
    base_f = median_time(lambda: sorted(floats), repeat)
    print(
        f"sealed second-price, {n} bids: {ours * 1000:.1f} ms; sorted(amounts) {base * 1000:.1f} ms "
        f"(ratio {ours / base:.2f}); sorted(floats) {base_f * 1000:.1f} ms (ratio {ours / base_f:.2f})"
    )


def write_lp(instance: CatsInstance, path: Path) -> None:
    cents = [int(b.price * 100) for b in instance.bids]
    lines = ["Maximize", " obj: " + " + ".join(f"{c} x{k}" for k, c in enumerate(cents)), "Subject To"]
    rows: dict[int, list[int]] = {}
    for k, bid in enumerate(instance.bids):
        for g in bid.goods:
            rows.setdefault(g, []).append(k)
    for g, ks in sorted(rows.items()):
        if len(ks) > 1:
            lines.append(f" g{g}: " + " + ".join(f"x{k}" for k in ks) + " <= 1")
    lines += ["Binary", *(f" x{k}" for k in range(len(cents))), "End"]
    path.write_text("\n".join(lines) + "\n")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cbc(path: Path) -> tuple[float, float, Fraction | None]:
    """CBC's wall time, its CPU time and its optimum (None when cut at CBC_TIMEOUT)."""
    start, cpu = time.perf_counter(), _children_cpu()
    try:
        out = subprocess.run(
            ["cbc", str(path), "-threads", "1", "-solve", "-quit"],
            capture_output=True,
            text=True,
            check=False,
            timeout=CBC_TIMEOUT,
        ).stdout
    except subprocess.TimeoutExpired:
        return CBC_TIMEOUT, CBC_TIMEOUT, None
    elapsed = time.perf_counter() - start
    found = re.findall(r"Objective value:\s+([-0-9.e+]+)", out)
    return elapsed, _children_cpu() - cpu, (Fraction(found[-1]) / 100 if found else None)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """fn's result, wall time and CPU time of this process (the CPU time is what a machine shared
    with other work changes least)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def combinatorial(
    sizes: tuple[tuple[int, int], ...], seed: int, work_limit: float, vcg: bool, kinds: list[str]
) -> None:
    have_cbc = shutil.which("cbc") is not None
    if not have_cbc:
        print("combinatorial: cbc not found (apt-get install coinor-cbc): no baseline")
    with tempfile.TemporaryDirectory() as tmp:
        for goods, count in sizes:
            for kind in kinds:
                instance = generate(kind, goods, count, seed)
                bids, items = to_auction(instance)
                (allocation, best), wd, wd_cpu = timed(
                    partial(winner_determination, bids, items, Fraction(0), work_limit=work_limit)
                )
                line = (
                    f"{kind} {instance.goods}x{len(instance.bids)}: {len(allocation)} winners; "
                    f"winner determination {wd:.2f} s (CPU {wd_cpu:.2f} s)"
                )
                full = full_cpu = None
                if vcg:
                    outcome, full, full_cpu = timed(
                        partial(clear_combinatorial, bids, items, Fraction(0), work_limit=work_limit)
                    )
                    if outcome.reason == "Optimal" and outcome.welfare != best:
                        raise SystemExit(f"{kind}: clearing welfare {outcome.welfare} != {best}")
                    line += (
                        f", with VCG prices {full:.2f} s (CPU {full_cpu:.2f} s; {outcome.reason}, "
                        f"work {outcome.work:.2f})"
                    )
                if have_cbc:
                    lp = Path(tmp) / f"{kind}-{goods}.lp"
                    write_lp(instance, lp)
                    base, base_cpu, optimum = cbc(lp)
                    if optimum is not None and optimum != best:
                        raise SystemExit(f"{kind}: CBC's optimum {optimum} != ours {best}")
                    cut = ">= " if optimum is None else ""
                    le = cut and "<= "
                    line += (
                        f"; CBC {cut}{base:.2f} s (CPU {base_cpu:.2f} s): ratio WD {le}{wd / base:.2f} "
                        f"(CPU {le}{wd_cpu / base_cpu:.2f})"
                    )
                    if full is not None and full_cpu is not None:
                        line += f", clearing {le}{full / base:.2f} (CPU {le}{full_cpu / base_cpu:.2f})"
                print(line, flush=True)


def main() -> None:
    global CBC_TIMEOUT  # one option for the whole run
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    parser.add_argument("--parts", default="sealed,combinatorial", help="comma-separated parts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-vcg", action="store_true", help="winner determination only")
    parser.add_argument("--sizes", default="", help="goods x bids list, e.g. 100x500,256x1000")
    parser.add_argument("--kinds", default="regions,arbitrary", help="CATS distributions, comma-separated")
    parser.add_argument("--cbc-timeout", type=float, default=CBC_TIMEOUT, help="seconds")
    parser.add_argument(
        "--work-limit", type=float, default=1000.0, help="CP-SAT deterministic work limit per clearing"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "sealed" in parts:
        sealed(20_000 if args.quick else 100_000, 3 if args.quick else 7)
    if "combinatorial" in parts:
        CBC_TIMEOUT = args.cbc_timeout
        sizes: tuple[tuple[int, int], ...] = QUICK_SIZES if args.quick else SIZES
        if args.sizes:
            pairs = [s.split("x") for s in args.sizes.split(",")]
            sizes = tuple((int(goods), int(count)) for goods, count in pairs)
        combinatorial(sizes, args.seed, args.work_limit, not args.no_vcg, args.kinds.split(","))


if __name__ == "__main__":
    main()
