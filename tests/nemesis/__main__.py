"""``python -m tests.nemesis``: the nemesis on the local control plane, one fresh one per seed.

Prints, per seed, how many faults of each kind were injected and survived, and every invariant
violation; exits 1 on a violation or when fewer than ``--min-faults`` faults were injected in all.
``make nemesis`` runs it with three seeds. The real control plane's entry point is
tests/e2e/test_nemesis.py (``make e2e``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from ._run import Options, Report, run_seed
from ._target import LocalTarget


async def run_local(seed: int, options: Options, workdir: Path) -> Report:
    from mabeam.local.cluster import LocalCluster
    from tests.integration.conftest import FAST_KUBELET

    async with LocalCluster(workdir, kubelet_options=FAST_KUBELET) as cluster:
        target = LocalTarget(cluster)
        try:
            return await run_seed(target, seed, options)
        finally:
            await target.admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nemesis", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sessions", type=int, default=Options.sessions, help="sessions per seed")
    parser.add_argument("--rate", type=float, default=Options.rate)
    parser.add_argument("--watch-rate", type=float, default=Options.watch_rate)
    parser.add_argument("--concurrency", type=int, default=Options.concurrency)
    parser.add_argument("--money", action="store_true", help="Accounts for the agents: sessions pay")
    parser.add_argument("--kinds", nargs="*", default=[], help="only these protocols/mechanisms")
    parser.add_argument("--min-faults", type=int, default=0, help="fail below this many faults in all")
    args = parser.parse_args(argv)
    options = Options(
        sessions=args.sessions,
        rate=args.rate,
        watch_rate=args.watch_rate,
        concurrency=args.concurrency,
        kinds=tuple(args.kinds),
        money=args.money,
    )
    total, failed = 0, False
    for seed in args.seeds:
        workdir = Path(tempfile.mkdtemp(prefix=f"mabeam-nemesis-{seed}-"))
        report = asyncio.run(run_local(seed, options, workdir))
        if report.violations:
            print(f"nemesis: seed {seed}'s folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(report.table(), flush=True)
        total += report.faults
        failed = failed or bool(report.violations)
    print(f"nemesis: {len(args.seeds)} seeds, {total} faults injected, "
          f"{'VIOLATIONS' if failed else 'no invariant violated'}")  # fmt: skip
    if total < args.min_faults:
        print(f"nemesis: fewer than {args.min_faults} faults injected", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
