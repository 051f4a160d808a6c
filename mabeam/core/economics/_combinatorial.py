"""Combinatorial auctions: winner determination (a MILP solved by HiGHS) and VCG payments.

Bids are XOR bids: an agent names bundles of items with an amount each, and at most one of its
bundles wins. Winning bundles are disjoint.

Welfare. The seller keeps every item that is not sold and values it at the reserve price ``r``
(the reserve is the seller's own value), so the welfare of an allocation is::

    W = sum of the winning bundles' amounts + r * (number of unsold items)

Winner determination maximizes ``W``. Equivalently it maximizes the *surplus*
``sum(amount - r * |bundle|)`` over the winning bundles; a bundle whose amount is below
``r * |bundle|`` can never be in an optimal allocation and is left out of the MILP.

The MILP: a binary ``x[b]`` per bundle, ``sum x <= 1`` over each agent's bundles, ``sum x <= 1``
over the bundles that contain each item, maximize ``sum (amount_b - r * |b|) x[b]``. HiGHS
solves it with a time limit and a zero optimality gap; every solution it returns is checked
(integral within 1e-6, then disjoint and one bundle per agent, recomputed in Python) and its
welfare recomputed exactly (fractions). Optimality is up to HiGHS's numerical tolerances.

Tie-break (deterministic, whatever optimal allocation the solver happens to return): order every
bundle by its bidder's place in ``bids`` (the engine orders them by earliest received
sealed bid, then name) and then by its place in that bidder's list. The allocation chosen is the
lexicographically greatest optimal one in that order: the first bundle wins if some optimal
allocation has it win, then the next bundle that is still compatible, and so on. A bundle worth
exactly its reserve (zero surplus) therefore sells, as a single-item bid equal to the reserve
does. It is computed by fixing bundles one at a time: a bundle that is in the current optimal
allocation is fixed in; one that conflicts with a fixed bundle is fixed out; otherwise an LP
bound (and, only if that bound does not rule it out, a MILP) tells whether an optimal allocation
with it exists.

Payments are VCG with the Clarke pivot, with the same welfare (seller included): a winner ``i``
of bundle ``b`` pays ``p_i = W*(without i) - (W* - amount_i(b))``. Then ``r * |b| <= p_i <=
amount_i(b)``, and bidding one's true values is a dominant strategy. ``W*(without i)`` is at
least the welfare of the chosen allocation with ``i``'s bundle left unsold; that known feasible
value is used when the solver's is lower.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from fractions import Fraction

import highspy
import numpy as np

from ...errors import InvalidSpecError

__all__ = [
    "BundleBid",
    "CombinatorialOutcome",
    "Win",
    "XorBid",
    "clear_combinatorial",
    "is_feasible",
    "welfare",
    "winner_determination",
]

Allocation = Mapping[int, int]
"""bid index -> index of its winning bundle (bidders that win nothing are absent)."""

_INTEGRAL = 1e-6
DEFAULT_TIME_LIMIT = 60.0


@dataclass(frozen=True)
class BundleBid:
    """An offer of ``amount`` for all of ``items`` together."""

    items: frozenset[str]
    amount: Fraction


@dataclass(frozen=True)
class XorBid:
    """One agent's XOR bid: at most one of ``bundles`` wins."""

    agent: str
    bundles: tuple[BundleBid, ...]


@dataclass(frozen=True)
class Win:
    """A winner, its bundle (items sorted), its bid for it and its VCG price."""

    agent: str
    items: tuple[str, ...]
    bid: Fraction
    price: Fraction


@dataclass(frozen=True)
class CombinatorialOutcome:
    """The clearing: the wins (sorted by agent), the optimal welfare, and the reason.

    reason: ``Optimal`` (something sold), ``NoBids`` (no bundle bid at all), ``BelowReserve``
    (no bundle reaches its reserve), ``Unsolved`` (HiGHS hit the time limit or returned an
    inconsistent solution; nothing is sold).
    """

    wins: tuple[Win, ...]
    welfare: Fraction
    reason: str
    message: str


class _Unsolved(Exception):
    """HiGHS did not prove an optimum within the time left, or its answer does not check out."""


def _check(bids: Sequence[XorBid], items: Sequence[str]) -> None:
    known = set(items)
    agents: set[str] = set()
    for i, bid in enumerate(bids):
        if bid.agent in agents:
            raise InvalidSpecError(f"{bid.agent} bids twice", path=f"bids[{i}].agent")
        agents.add(bid.agent)
        for j, bundle in enumerate(bid.bundles):
            unknown = sorted(bundle.items - known)
            if unknown:
                raise InvalidSpecError(
                    f"items {unknown} are not for sale (spec.items)", path=f"bids[{i}].bundles[{j}].items"
                )
            if not bundle.items:
                raise InvalidSpecError("a bundle names at least one item", path=f"bids[{i}].bundles[{j}]")
            if bundle.amount < 0:
                raise InvalidSpecError("an amount is at least 0", path=f"bids[{i}].bundles[{j}].amount")


def is_feasible(bids: Sequence[XorBid], allocation: Allocation) -> bool:
    """Whether ``allocation`` gives each bidder at most one of its bundles and no item twice."""
    seen: set[str] = set()
    for i, j in allocation.items():
        if not 0 <= i < len(bids) or not 0 <= j < len(bids[i].bundles):
            return False
        items = bids[i].bundles[j].items
        if seen & items:
            return False
        seen |= items
    return True


def welfare(
    bids: Sequence[XorBid], allocation: Allocation, items: Sequence[str], reserve: Fraction
) -> Fraction:
    """The exact welfare: the winning amounts plus ``reserve`` for every unsold item."""
    sold = sum(len(bids[i].bundles[j].items) for i, j in allocation.items())
    paid = sum((bids[i].bundles[j].amount for i, j in allocation.items()), Fraction(0))
    return paid + reserve * (len(set(items)) - sold)


@dataclass
class _Problem:
    """The MILP's columns (bundles worth at least their reserve), rows and a time budget."""

    bids: Sequence[XorBid]
    items: Sequence[str]
    reserve: Fraction
    budget: float
    columns: list[tuple[int, int]] = field(default_factory=list)
    surplus: list[Fraction] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i, bid in enumerate(self.bids):
            for j, bundle in enumerate(bid.bundles):
                gain = bundle.amount - self.reserve * len(bundle.items)
                if gain >= 0:
                    self.columns.append((i, j))
                    self.surplus.append(gain)
        rows: dict[tuple[str, object], list[int]] = {}
        for k, (i, j) in enumerate(self.columns):
            rows.setdefault(("agent", i), []).append(k)
            for item in self.bids[i].bundles[j].items:
                rows.setdefault(("item", item), []).append(k)
        self._rows = [ks for ks in rows.values() if len(ks) > 1]
        by_column: list[list[int]] = [[] for _ in self.columns]
        for r, ks in enumerate(self._rows):
            for k in ks:
                by_column[k].append(r)
        starts = [0]
        for col_rows in by_column:
            starts.append(starts[-1] + len(col_rows))
        self._starts = np.array(starts, dtype=np.int32)
        self._index = np.array([r for col_rows in by_column for r in col_rows], dtype=np.int32)
        self._cost = np.array([float(s) for s in self.surplus])

    def conflicts(self, k: int, chosen: Iterable[int]) -> bool:
        i, j = self.columns[k]
        items = self.bids[i].bundles[j].items
        for c in chosen:
            ci, cj = self.columns[c]
            if ci == i or items & self.bids[ci].bundles[cj].items:
                return True
        return False

    def value(self, chosen: Iterable[int]) -> Fraction:
        """The exact surplus of a set of columns."""
        return sum((self.surplus[k] for k in chosen), Fraction(0))

    def allocation(self, chosen: Iterable[int]) -> dict[int, int]:
        return dict(self.columns[k] for k in chosen)

    def solve(
        self,
        *,
        ones: AbstractSet[int] = frozenset(),
        zeros: AbstractSet[int] = frozenset(),
        integral: bool = True,
    ) -> tuple[frozenset[int], float] | None:
        """Maximize the surplus with ``ones`` fixed in and ``zeros`` fixed out.

        Returns (the chosen columns, the solver's objective), or None if infeasible. An LP
        (``integral=False``) returns no columns, only its bound.
        """
        n = len(self.columns)
        if n == 0:
            return frozenset(), 0.0
        if self.budget <= 0:
            raise _Unsolved("the time limit was used up")
        lower = np.zeros(n)
        upper = np.ones(n)
        for k in ones:
            lower[k] = 1.0
        for k in zeros:
            upper[k] = 0.0
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = len(self._rows)
        lp.col_cost_ = self._cost
        lp.col_lower_ = lower
        lp.col_upper_ = upper
        lp.row_lower_ = np.full(len(self._rows), -highspy.kHighsInf)
        lp.row_upper_ = np.ones(len(self._rows))
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = self._starts
        lp.a_matrix_.index_ = self._index
        lp.a_matrix_.value_ = np.ones(len(self._index))
        if integral:
            lp.integrality_ = [highspy.HighsVarType.kInteger] * n
        h = highspy.Highs()  # type: ignore[no-untyped-call]  # highspy's constructor has no annotation
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        h.setOptionValue("time_limit", float(self.budget))
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("mip_abs_gap", 0.0)
        h.passModel(lp)
        h.run()
        self.budget -= h.getRunTime()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible:
            return None
        if status != highspy.HighsModelStatus.kOptimal:
            raise _Unsolved(f"HiGHS stopped with {h.modelStatusToString(status)}")
        objective = float(h.getInfo().objective_function_value)
        if not integral:
            return frozenset(), objective
        values = list(h.getSolution().col_value)
        chosen: set[int] = set()
        for k, x in enumerate(values):
            if abs(x - round(x)) > _INTEGRAL:
                raise _Unsolved(f"HiGHS returned a fractional value {x} for bundle {self.columns[k]}")
            if round(x) == 1:
                chosen.add(k)
        if not ones <= chosen or chosen & zeros or not is_feasible(self.bids, self.allocation(chosen)):
            raise _Unsolved("HiGHS returned an allocation that breaks a constraint")
        # HiGHS has reported an optimal objective with columns that do not reach it (seen when it
        # was given a warm start): prices from such columns would be too low. Trust only columns whose exact
        # value is the objective.
        if abs(float(self.value(chosen)) - objective) > 1e-7 * max(1.0, abs(objective)):
            raise _Unsolved(
                f"HiGHS's objective {objective:g} does not match the value "
                f"{float(self.value(chosen)):g} of the allocation it returned"
            )
        return frozenset(chosen), objective


def _optimum(problem: _Problem, *, zeros: AbstractSet[int] = frozenset()) -> frozenset[int]:
    found = problem.solve(zeros=zeros)
    if found is None:  # never: selling nothing is always feasible
        raise _Unsolved("HiGHS found no allocation at all")
    return found[0]


def _canonical(problem: _Problem) -> frozenset[int]:
    """The lexicographically greatest optimal set of columns (see the module docstring)."""
    best = _optimum(problem)
    target = problem.value(best)
    ones: set[int] = set()
    zeros: set[int] = set()
    for k in range(len(problem.columns)):
        if k in best:
            ones.add(k)
            continue
        if problem.conflicts(k, ones):
            zeros.add(k)
            continue
        trial = ones | {k}
        bound = problem.solve(ones=trial, zeros=zeros, integral=False)
        slack = 1e-9 * max(1.0, abs(float(target)))
        if bound is None or bound[1] < float(target) - slack:
            zeros.add(k)
            continue
        found = problem.solve(ones=trial, zeros=zeros)
        if found is not None and problem.value(found[0]) >= target:
            best, target = found[0], problem.value(found[0])
            ones.add(k)
        else:
            zeros.add(k)
    return best


def winner_determination(
    bids: Sequence[XorBid],
    items: Sequence[str],
    reserve: Fraction,
    *,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> tuple[dict[int, int], Fraction]:
    """The tie-broken welfare-maximizing allocation (bid index -> bundle index) and its welfare.

    Raises RuntimeError if HiGHS does not prove the optima within ``time_limit`` seconds.
    """
    _check(bids, items)
    problem = _Problem(bids, items, reserve, time_limit)
    try:
        chosen = _canonical(problem)
    except _Unsolved as error:
        raise RuntimeError(str(error)) from error
    allocation = problem.allocation(chosen)
    return allocation, welfare(bids, allocation, items, reserve)


def clear_combinatorial(
    bids: Sequence[XorBid],
    items: Sequence[str],
    reserve: Fraction,
    *,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> CombinatorialOutcome:
    """Winner determination and VCG prices. ``bids`` are in tie-break order (earliest first).

    ``time_limit`` bounds the solver time of the whole clearing (all MILPs and LPs together).
    Raises InvalidSpecError for a bundle with an unknown item or an agent that bids twice.
    """
    _check(bids, items)
    everything = welfare(bids, {}, items, reserve)
    if not any(bid.bundles for bid in bids):
        return CombinatorialOutcome((), everything, "NoBids", "no bundle bid was counted")
    problem = _Problem(bids, items, reserve, time_limit)
    try:
        chosen = _canonical(problem)
        allocation = problem.allocation(chosen)
        best = welfare(bids, allocation, items, reserve)
        wins: list[Win] = []
        for i, j in sorted(allocation.items(), key=lambda ij: bids[ij[0]].agent):
            bundle = bids[i].bundles[j]
            own = {k for k, (ci, _) in enumerate(problem.columns) if ci == i}
            without = _optimum(problem, zeros=own)
            others = welfare(bids, problem.allocation(without), items, reserve)
            known = best - bundle.amount + reserve * len(bundle.items)
            others = max(others, known)
            if others > best:
                raise _Unsolved(f"the welfare without {bids[i].agent} exceeds the optimum")
            price = others - (best - bundle.amount)
            wins.append(Win(bids[i].agent, tuple(sorted(bundle.items)), bundle.amount, price))
    except _Unsolved as error:
        return CombinatorialOutcome(
            (), everything, "Unsolved", f"winner determination failed ({error}); nothing is sold"
        )
    if not wins:
        return CombinatorialOutcome(
            (),
            best,
            "BelowReserve",
            f"no bundle reaches the reserve price of {float(reserve):g} per item",
        )
    sold = sum(len(w.items) for w in wins)
    revenue = sum((w.price for w in wins), Fraction(0))
    return CombinatorialOutcome(
        tuple(wins),
        best,
        "Optimal",
        f"{len(wins)} winners take {sold} of {len(set(items))} items (welfare {float(best):g}); "
        f"VCG prices total {float(revenue):g}",
    )
