"""The Fisher market at real sizes: equilibrium prices of N buyers x M goods (issue 13).

Random markets (seeded): budgets uniform in 100.00 to 1 000.00 (cents), utilities uniform in
[0, 1) with a share of zeros (``--sparsity``), supplies 1 to 10. Figures, each beside baselines
measured in the same run on the same instance, as ratios:

- ``solve_fisher``: the float solve to the relative gap 1e-6 (Newton on the smoothed
  Eisenberg-Gale dual with its exact forest finish), and ``clear_fisher``: that plus the exact
  money and quantities and the checks (what the operator runs);
- one LP of the same size solved by HiGHS (if ``highspy`` is installed): the transportation
  problem on the same N x M edges (maximise the utility of the money spent, each budget spent,
  each good's revenue at most its share of the total): what one plain linear program of that
  size costs;
- a numpy matrix product of the same size (``U.T @ U``, N x M by M x N... M x M result), the
  floor of any method that touches the matrix a few times;
- proportional response (the textbook dynamics for linear Fisher markets) given the same time as
  ``solve_fisher``: the relative gap it reaches (linear utilities only).

``--rho R`` runs CES utilities (0 < R < 1) instead, whose outcome lists every buyer x good.

Run with ``python bench/fisher.py [--quick] [--buyers N] [--goods M] [--instances K]``
(not a test). Like the operator (``mabeam/cli/_blas.py``) it uses one BLAS thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the operator's process does
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # after the BLAS setting above
import statistics
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mabeam.core.economics._fisher import (
    FisherBuyer,
    FisherGood,
    clear_fisher,
    relative_gap,
    solve_fisher,
)


def market(n: int, m: int, seed: int, sparsity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    budgets = rng.integers(10_000, 100_001, n).astype(np.float64)  # cents
    utilities = rng.random((n, m))
    utilities[rng.random((n, m)) < sparsity] = 0.0
    for i in np.flatnonzero(~(utilities > 0).any(axis=1)):
        utilities[i, rng.integers(m)] = 1.0
    supplies = rng.integers(1, 11, m).astype(np.float64)
    return budgets, utilities, supplies


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def highs_lp(budgets: np.ndarray, utilities: np.ndarray) -> float | None:
    """One transportation LP on the same N x M edges, by HiGHS (None without highspy)."""
    try:
        import highspy
    except ImportError:
        return None
    n, m = utilities.shape
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n * m, n + m
    lp.col_cost_ = -(utilities / budgets[:, None]).ravel()  # utility per unit of money, maximised
    lp.col_lower_ = np.zeros(n * m)
    lp.col_upper_ = np.full(n * m, highspy.kHighsInf)
    share = budgets.sum() / m
    lp.row_lower_ = np.concatenate([budgets, np.zeros(m)])
    lp.row_upper_ = np.concatenate([budgets, np.full(m, share * 1.5)])
    # Column k = i * m + j is in row i (its buyer) and row n + j (its good).
    starts = np.arange(0, 2 * n * m + 1, 2, dtype=np.int32)
    index = np.empty(2 * n * m, dtype=np.int32)
    index[0::2] = np.repeat(np.arange(n, dtype=np.int32), m)
    index[1::2] = n + np.tile(np.arange(m, dtype=np.int32), n)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = np.ones(2 * n * m)
    h.passModel(lp)
    start = time.perf_counter()
    h.run()
    elapsed = time.perf_counter() - start
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"the baseline LP did not solve: {h.modelStatusToString(h.getModelStatus())}")
    return elapsed


def proportional_response(
    budgets: np.ndarray, utilities: np.ndarray, supplies: np.ndarray, seconds: float
) -> tuple[float, int]:
    """Proportional response dynamics for ``seconds``: the relative gap reached, the rounds."""
    spending = utilities / utilities.sum(axis=1, keepdims=True) * budgets[:, None]
    rounds, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        prices = spending.sum(axis=0) / supplies
        gained = utilities * spending / np.where(prices > 0, prices, 1.0)[None, :]
        spending = gained * (budgets / gained.sum(axis=1))[:, None]
        rounds += 1
    return relative_gap(budgets, utilities, supplies, spending), rounds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one instance, one run each (seconds)")
    parser.add_argument("--buyers", type=int, default=1000)
    parser.add_argument("--goods", type=int, default=100)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sparsity", type=float, default=0.0, help="share of zero utilities")
    parser.add_argument("--gap", type=float, default=1e-6)
    parser.add_argument("--rho", type=float, default=None, help="CES utilities with this rho (0 < rho < 1)")
    args = parser.parse_args()
    instances, repeat = (1, 1) if args.quick else (args.instances, args.repeat)
    n, m = args.buyers, args.goods
    kind = "linear" if args.rho is None else f"CES rho {args.rho:g}"
    print(
        f"Fisher market ({kind}), {n} buyers x {m} goods, relative gap {args.gap:g}, {instances} instance(s)"
    )
    print(
        f"{'seed':>4} {'steps':>5} {'gap':>8} {'solve':>8} {'clear':>8} {'HiGHS LP':>9} {'ratio':>6} "
        f"{'U.T@U':>8} {'ratio':>6} {'PR gap, same time':>18}"
    )
    solves, clears = [], []
    for seed in range(1, instances + 1):
        budgets, utilities, supplies = market(n, m, seed, args.sparsity)
        solve_time, solution = timed(
            lambda b=budgets, u=utilities, s=supplies: solve_fisher(b, u, s, gap=args.gap, rho=args.rho),
            repeat,
        )
        buyers = [
            FisherBuyer(f"b{i}", int(budgets[i]), tuple(float(x) for x in utilities[i])) for i in range(n)
        ]
        goods = [FisherGood(f"g{j}", Fraction(int(supplies[j]))) for j in range(m)]
        clear_time, outcome = timed(
            lambda b=buyers, g=goods: clear_fisher(b, g, gap=args.gap, rho=args.rho), repeat
        )
        if outcome.reason != "Equilibrium" or not all(c.passed for c in outcome.checks):
            print(f"seed {seed}: {outcome.message}")
            return 1
        lp = highs_lp(budgets, utilities)
        product, _ = timed(lambda u=utilities: u.T @ u, max(repeat, 5))
        if args.rho is None:  # the linear dynamics and its gap
            pr_gap, pr_rounds = proportional_response(budgets, utilities, supplies, solve_time)
            pr_text = f"{pr_gap:9.1e} ({pr_rounds} rounds)"
        else:
            pr_text = f"{'-':>9}"
        lp_text = f"{lp * 1e3:7.1f}ms {solve_time / lp:5.2f}x" if lp else f"{'-':>9} {'-':>6}"
        print(
            f"{seed:>4} {solution.steps:>5} {solution.gap:8.1e} {solve_time * 1e3:6.0f}ms "
            f"{clear_time * 1e3:6.0f}ms {lp_text} {product * 1e3:6.2f}ms {solve_time / product:5.0f}x "
            f"{pr_text}"
        )
        solves.append(solve_time)
        clears.append(clear_time)
    print(
        f"median: solve {statistics.median(solves) * 1e3:.0f} ms, clear (exact money and checks) "
        f"{statistics.median(clears) * 1e3:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
