"""Combinatorial auctions: winner determination (an integer program solved exactly by CP-SAT) and
VCG payments.

Bids are XOR bids: an agent names bundles of items with an amount each, and at most one of its
bundles wins. Winning bundles are disjoint.

Welfare. The seller keeps every item that is not sold and values it at the reserve price ``r``
(the reserve is the seller's own value), so the welfare of an allocation is::

    W = sum of the winning bundles' amounts + r * (number of unsold items)

Winner determination maximizes ``W``; equivalently the *surplus* ``sum(amount - r * |bundle|)``
over the winning bundles. A bundle whose amount is below ``r * |bundle|`` is never in an optimal
allocation and is left out.

Exact integers. Every surplus is a fraction (amounts are exact decimals); they are scaled by the
least common multiple of their denominators (``10**d`` for amounts with ``d`` decimals) into
integers, and CP-SAT (OR-Tools) solves the integer program in 64-bit integer arithmetic: no
tolerance, so amounts of 1e13 that differ by 0.001 are told apart. The model: a Boolean per
bundle, at most one per agent and per item, maximize the scaled surplus. An instance whose
scaled surpluses add up to 2**62 or more cannot be solved exactly and is ``Unsolved``, with a
message saying so.

Tie-break (deterministic, and fixed by the bids, not by the solver's path): order every bundle
by its bidder's place in ``bids`` (the engine orders them by when the sealed bid arrived, then
name) and then by its place in that bidder's list, and number the ``n`` bundles worth at least their
reserve in that order from ``k = 0``. Bundle ``k`` gets the weight ``2 ** (n - 1 - k)`` when
``n <= 40``, else ``n - k``. Among the optimal allocations the one chosen has the greatest total
weight of winning bundles. Up to 40 bundles this is exactly the lexicographic rule (the first
bundle wins if some optimal allocation has it win, then the next compatible one, and so on; a
bundle worth exactly its reserve, zero surplus, sells); beyond, earlier bids are still preferred
but two optimal allocations of equal total weight (rare) are told apart by CP-SAT's search, which
is deterministic (one worker, a fixed seed, a deterministic work limit): the same bids give the
same allocation every time. This is one solve: the objective is ``surplus * T + sum(weight_k *
x_k)`` with ``T`` above the weights' sum, so the surplus comes first, exactly (integers). When
that objective would not fit in 62 bits, the surplus is maximized first and the weight in one
extra solve with the surplus fixed at its optimum.

Payments are VCG with the Clarke pivot, with the same welfare (seller included): a winner ``i``
of bundle ``b`` pays ``p_i = W*(without i) - (W* - amount_i(b))``, so ``r * |b| <= p_i <=
amount_i(b)`` and bidding one's true values is a dominant strategy. Each ``W*(without i)`` lies
between ``W* - surplus_i`` (the chosen allocation less ``i``'s bundle) and ``W*``. They are proven
several at a time (``_without_each``): one solve finds the best allocation that leaves out *at
least one* of the winners not yet priced, worth ``V``; every allocation without one of them is a
candidate there, so each of their ``W*(without i)`` is at most ``V``, and it is exactly ``V`` for
each winner that allocation (or any allocation found so far worth ``V``) leaves out. Those are
priced; the next solve, over the winners left, finds the next value down. Winners one alternative
allocation replaces together are priced by one solve. Every allocation a solve reaches (checked
feasible, its value computed exactly here) is kept and is where the next solve starts.
Where the LP relaxation is weak (a winner determination of at least ``_GAIN_FROM_WORK`` in the
default search: CATS "arbitrary"), each proof is a search as long as the winner determination,
and the prices are proven by *gain* instead: one solve proves the greatest gain ``G`` of an
allocation without an open winner ``i`` over ``lower_i``, the best value found without ``i``
(``_Model.gain``), so every ``W*(without i) <= lower_i + G``: ``G <= 0`` closes every open
winner at once, else at least the winner that allocation leaves out. The values in between need
not be proven one by one (arbitrary 100 x 500: 7 proofs instead of 20, 0.6x the work). CP-SAT
runs with a light presolve (no probing, no symmetry detection, one pass): on CATS instances the
full presolve was most of a re-solve's work.

Smaller models, by exact reasoning only. GLOP (OR-Tools' LP solver) solves the LP relaxation
once; its duals, rounded up, are turned into an upper bound checked in exact integers (weak
duality holds for any multipliers ``>= 0``, whatever the LP solver got wrong: ``_Model._dual``).
A bundle whose reduced cost puts every allocation containing it at or below a value already
reached is left out of a solve (the allocation that reached it stays in, so the optimum is the
same): the winner determination starts from the LP's solution rounded to a feasible allocation
and leaves out the bundles in no allocation worth as much (so in no optimal one), and each VCG
solve the bundles in no allocation above its starting point.

Work limit, never a clock. CP-SAT runs on one worker with a *deterministic* time limit
(``work_limit``, in CP-SAT's deterministic seconds, about one second of one core each, shared by
every solve of a clearing): the same instance gives the same answer, and stops at the same
point, on a busy machine and an idle one. When the limit is hit before every solve is proven,
``on_timeout`` decides: ``NoSale`` (the default) sells nothing (``Unsolved``); ``BestFound``
sells the best allocation found (``BestFound``), not necessarily optimal nor canonically
tie-broken, each winner paying ``W(without i) - (W - amount)`` with the best ``W(without i)``
found (never above its bid). Either way the proven relative ``gap`` (``(bound - W) / bound``
over the welfare) is reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

from ...errors import InvalidSpecError
from ...models._amount import to_decimal

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "DEFAULT_WORK_LIMIT",
    "BundleBid",
    "CombinatorialOutcome",
    "OnTimeout",
    "Win",
    "XorBid",
    "clear_combinatorial",
    "is_feasible",
    "welfare",
    "winner_determination",
]

Allocation = Mapping[int, int]
"""bid index -> index of its winning bundle (bidders that win nothing are absent)."""

OnTimeout = Literal["NoSale", "BestFound"]
DEFAULT_WORK_LIMIT = 60.0
DEFAULT_TIME_LIMIT = DEFAULT_WORK_LIMIT  # the engine's name for the same bound
_INT_LIMIT = 2**62
_FIRST_STAGE = 3.0  # deterministic seconds of CP-SAT's default search before the LP-heavy one
_LEX_COLUMNS = 40  # up to this many bundles the tie-break weights are powers of two: exactly lexicographic
# A light presolve: the full one probes and merges cliques twice, most of a VCG re-solve's work on
# CATS instances (a fifth of it at "regions" 100 x 500, half at "arbitrary"), for no gain in search.
_PRESOLVE = {"symmetry_level": 0, "cp_model_probing_level": 0, "max_presolve_iterations": 1}
# Winner determinations that took at least this much work (CATS "arbitrary": a 5 % LP gap) price by
# gain (_without_each): 0.6x the prices' work at arbitrary 100 x 500, 2x at regions 100 x 500.
_GAIN_FROM_WORK = 1.0
_DUAL_SCALE = 64  # the LP's duals, rounded up to multiples of 1/64 of a unit (exact integers)


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
    """The clearing: the wins (sorted by agent), the welfare, and the reason.

    reason: ``Optimal`` (something sold, every solve proven), ``BestFound`` (the work limit was
    hit and ``on_timeout`` is BestFound: see ``gap``), ``NoBids`` (no bundle bid at all),
    ``BelowReserve`` (no bundle reaches its reserve), ``Unsolved`` (the work limit was hit with
    ``on_timeout`` NoSale, or the amounts are too large to solve exactly; nothing is sold).
    ``gap``: the proven relative welfare gap when the limit was hit (None when proven optimal).
    ``work``: the deterministic solver time used.
    """

    wins: tuple[Win, ...]
    welfare: Fraction
    reason: str
    message: str
    gap: float | None = None
    work: float = 0.0


class _Unsolved(Exception):
    """The instance cannot be solved exactly (integers too large)."""


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
class _Solved:
    chosen: frozenset[int]
    value: int  # the scaled surplus of ``chosen``
    bound: int  # a proven upper bound on the scaled surplus
    proven: bool


_Built = tuple[cp_model.CpModel, list[cp_model.IntVar]]


@dataclass
class _Model:
    """The columns (bundles worth at least their reserve) in exact integers, and a work budget."""

    bids: Sequence[XorBid]
    reserve: Fraction
    budget: float
    columns: list[tuple[int, int]] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    scale: int = 1
    used: float = 0.0
    level: int | None = None  # CP-SAT's linearization level once the first solve chose it (_run)
    # Every allocation any solve reached (each checked feasible) -> its exact scaled surplus.
    pool: dict[frozenset[int], int] = field(default_factory=dict)
    _templates: dict[str, _Built] = field(default_factory=dict, init=False)
    _duals: tuple[int, list[int]] | None = field(default=None, init=False)
    _lp: list[float] = field(default_factory=list, init=False)  # the LP relaxation's solution

    def __post_init__(self) -> None:
        surplus: list[Fraction] = []
        for i, bid in enumerate(self.bids):
            for j, bundle in enumerate(bid.bundles):
                gain = bundle.amount - self.reserve * len(bundle.items)
                if gain >= 0:
                    self.columns.append((i, j))
                    surplus.append(gain)
        self.scale = math.lcm(*(s.denominator for s in surplus)) if surplus else 1
        self.units = [int(s * self.scale) for s in surplus]
        if sum(self.units) >= _INT_LIMIT:
            raise _Unsolved(
                f"the surpluses add up to {sum(self.units)} units of 1/{self.scale}, more than 2**62: "
                "use fewer decimals or smaller amounts"
            )
        groups: dict[tuple[str, object], list[int]] = {}
        for k, (i, j) in enumerate(self.columns):
            groups.setdefault(("agent", i), []).append(k)
            # sorted, not in hash order (a frozenset of strings): the same model in every process
            for item in sorted(self.bids[i].bundles[j].items):
                groups.setdefault(("item", item), []).append(k)
        self.groups = [ks for ks in groups.values() if len(ks) > 1]
        n = len(self.columns)
        exact_lex = n <= _LEX_COLUMNS
        self.tie_weights = [2 ** (n - 1 - k) if exact_lex else n - k for k in range(n)]
        self.tie_scale = sum(self.tie_weights) + 1
        self.weighted = (sum(self.units) + 1) * self.tie_scale < _INT_LIMIT

    def value(self, chosen: frozenset[int]) -> int:
        return sum(self.units[k] for k in chosen)

    def fixable(self, floor: int, hint: frozenset[int], *, strict: bool = False) -> frozenset[int]:
        """Columns outside ``hint`` that no allocation worth more than ``floor`` (``strict``: at
        least ``floor``) contains (reduced-cost fixing, checked in exact integers): see
        :meth:`_dual`."""
        top, reduced = self._dual()
        limit = floor * _DUAL_SCALE - (1 if strict else 0)
        return frozenset(k for k, rc in enumerate(reduced) if top - rc <= limit and k not in hint)

    def rounded(self) -> frozenset[int]:
        """A feasible allocation from the LP relaxation's solution: the columns by decreasing LP
        value (then surplus, then order), each taken when it fits (checked and pooled)."""
        self._dual()
        order = sorted(range(len(self.columns)), key=lambda k: (-self._lp[k], -self.units[k], k))
        taken: set[object] = set()
        chosen = []
        for k in order:
            i, j = self.columns[k]
            needs = {("agent", i), *(("item", item) for item in self.bids[i].bundles[j].items)}
            if self.units[k] > 0 and not needs & taken:
                taken |= needs
                chosen.append(k)
        allocation = frozenset(chosen)
        self._keep(allocation)
        return allocation

    def _dual(self) -> tuple[int, list[int]]:
        """An upper bound ``B`` (in 1/_DUAL_SCALE units) on every allocation and each column's
        reduced cost ``rc``: an allocation containing the columns ``C`` is worth at most ``B -
        sum(rc[k] for k in C)``.

        Proof (weak duality, checked here in integers whatever the LP solver returned): take any
        ``y >= 0`` per constraint (an item or a bidder: at most one of its columns) and let ``a_k``
        be the sum of ``y`` over column ``k``'s constraints; ``u_k = a_k + d_k - rc_k`` with ``d_k
        = max(0, u_k - a_k)`` and ``rc_k = max(0, a_k - u_k)``. For an allocation ``x``, ``sum(u_k
        x_k) <= sum(y) + sum(d) - sum(rc_k x_k)`` because each constraint has at most one chosen
        column. ``B = sum(y) + sum(d)``. GLOP's optimal duals of the LP relaxation, rounded up,
        make ``B`` about the LP bound; rounding only loosens it.
        """
        if self._duals is None:
            lp = pywraplp.Solver.CreateSolver("GLOP")
            x = [lp.NumVar(0.0, 1.0, "") for _ in self.columns]
            rows = []
            for ks in self.groups:
                row = lp.Constraint(-lp.infinity(), 1.0)
                for k in ks:
                    row.SetCoefficient(x[k], 1.0)
                rows.append(row)
            objective = lp.Objective()
            for k, u in enumerate(self.units):
                objective.SetCoefficient(x[k], float(u))
            objective.SetMaximization()
            solved = lp.Solve() == pywraplp.Solver.OPTIMAL
            duals = [row.dual_value() if solved else 0.0 for row in rows]
            self._lp = [var.solution_value() if solved else 0.0 for var in x]
            y = [max(0, math.ceil(d * _DUAL_SCALE)) if math.isfinite(d) else 0 for d in duals]
            self._duals = self.certificate(y)
        return self._duals

    def certificate(self, y: Sequence[int]) -> tuple[int, list[int]]:
        """``B`` and every ``rc`` (see :meth:`_dual`) from any ``y >= 0`` per constraint (in
        1/_DUAL_SCALE units), in exact integers."""
        if len(y) != len(self.groups) or min(y, default=0) < 0:
            raise ValueError("one multiplier >= 0 per constraint")
        covered = [0] * len(self.columns)
        for r, ks in enumerate(self.groups):
            for k in ks:
                covered[k] += y[r]
        scaled = [u * _DUAL_SCALE for u in self.units]
        top = sum(y) + sum(max(0, u - a) for u, a in zip(scaled, covered, strict=True))
        return top, [max(0, a - u) for u, a in zip(scaled, covered, strict=True)]

    def allocation(self, chosen: frozenset[int]) -> dict[int, int]:
        return dict(self.columns[k] for k in chosen)

    def surplus(self, units: int) -> Fraction:
        return Fraction(units, self.scale)

    def _template(self, objective: str) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
        """The model with its variables, constraints and ``objective`` ("surplus", "weighted" or
        "weight"), built once: each solve clones it (building it in Python costs more than a
        small re-solve)."""
        if objective not in self._templates:
            model = cp_model.CpModel()
            x = [model.new_bool_var(f"x{k}") for k in range(len(self.columns))]
            for ks in self.groups:
                model.add_at_most_one(x[k] for k in ks)
            if objective == "weighted":
                coefficients = [
                    u * self.tie_scale + w for u, w in zip(self.units, self.tie_weights, strict=True)
                ]
                model.maximize(cp_model.LinearExpr.weighted_sum(x, coefficients))
            else:
                weights = self.tie_weights if objective == "weight" else self.units
                model.maximize(cp_model.LinearExpr.weighted_sum(x, weights))
            self._templates[objective] = (model, x)
        return self._templates[objective]

    def _base(
        self,
        objective: str,
        excluded: frozenset[int],
        hint: frozenset[int],
        one_of: Sequence[frozenset[int]] = (),
    ) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
        template, x = self._template(objective)
        model = template.clone()
        variables = model.proto.variables
        for k in sorted(excluded):
            variables[x[k].index].domain[1] = 0  # x_k in [0, 0]: cheaper than a constraint each
        if one_of:  # at least one of these sets of columns is all 0
            literals = []
            for ks in one_of:
                if len(ks) == 1:
                    literals.append(x[next(iter(ks))].Not())
                    continue
                off = model.new_bool_var("")
                for k in sorted(ks):
                    model.add_implication(off, x[k].Not())
                literals.append(off)
            model.add_bool_or(literals)
        _hint(model, len(x), hint)
        return model, x

    def _keep(self, chosen: frozenset[int]) -> None:
        """Check ``chosen`` (at most one bundle per bidder, no item twice) and pool it."""
        if not is_feasible(self.bids, self.allocation(chosen)) or len(
            {self.columns[k][0] for k in chosen}
        ) != len(chosen):
            raise RuntimeError("CP-SAT returned an allocation that breaks a constraint")
        if chosen not in self.pool:
            self.pool[chosen] = self.value(chosen)

    def _run(
        self, model: cp_model.CpModel, x: list[cp_model.IntVar]
    ) -> tuple[int, frozenset[int] | None, float]:
        """Solve in two deterministic stages: CP-SAT's default search for up to
        :data:`_FIRST_STAGE` of work (it proves most instances, CATS "arbitrary" ones fastest),
        then, from the best allocation found, with the full LP relaxation and its cuts
        (``linearization_level`` 2: five times less work on CATS "regions" 256 x 1000). The first
        solve of a clearing (the winner determination) sets :attr:`level` to the stage that
        proved it; the VCG re-solves (the same instance less a winner) run in that one stage."""
        if self.level is not None:
            return self._stage(model, x, self.level, self.budget - self.used)
        status, chosen, bound = self._stage(model, x, 1, min(_FIRST_STAGE, self.budget - self.used))
        if status in (cp_model.OPTIMAL, cp_model.INFEASIBLE) or self.budget - self.used <= 0:
            self.level = 1
            return status, chosen, bound
        if chosen is not None:
            _hint(model, len(x), chosen)
            # Every objective here puts the surplus first: no optimal allocation is worth less than
            # the one found, so the columns only such allocations contain are left out.
            variables = model.proto.variables
            for k in self.fixable(self.value(chosen), chosen, strict=True):
                variables[x[k].index].domain[1] = 0
        self.level = 2
        later, found, bound = self._stage(model, x, 2, self.budget - self.used)
        return later, found if found is not None else chosen, bound

    def _stage(
        self, model: cp_model.CpModel, x: list[cp_model.IntVar], level: int, budget: float
    ) -> tuple[int, frozenset[int] | None, float]:
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = 0
        solver.parameters.linearization_level = level
        solver.parameters.max_deterministic_time = max(budget, 0.0)
        for name, value in _PRESOLVE.items():
            setattr(solver.parameters, name, value)
        collect = _Collect([var.index for var in x])
        status = solver.solve(model, collect)
        self.used += solver.deterministic_time
        for found in collect.found:
            self._keep(found)
        chosen = None
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            chosen = frozenset(k for k, var in enumerate(x) if solver.boolean_value(var))
            self._keep(chosen)
        bound = solver.best_objective_bound if status != cp_model.INFEASIBLE else 0.0
        return int(status), chosen, bound

    def maximize(
        self,
        *,
        excluded: frozenset[int] = frozenset(),
        hint: frozenset[int] = frozenset(),
        ceiling: int | None = None,
        weighted: bool = False,
        by_weight: bool = False,
        fixed: int | None = None,
        one_of: Sequence[frozenset[int]] = (),
    ) -> _Solved:
        """The best allocation without ``excluded`` and without at least one of the column sets
        ``one_of``, from the feasible ``hint``; its value is known to be at most ``ceiling`` (used
        for the bound, not given to the solver: a constraint on the objective slows CP-SAT down).
        ``fixed``: the surplus is constrained to that value (the second stage of the tie-break when
        the weighted objective would not fit in 62 bits)."""
        objective = "weighted" if weighted else "weight" if by_weight else "surplus"
        model, x = self._base(objective, excluded, hint, one_of)
        if fixed is not None:
            model.add(cp_model.LinearExpr.weighted_sum(x, self.units) == fixed)
        status, chosen, bound = self._run(model, x)
        limit = sum(self.units) if ceiling is None else ceiling
        if chosen is None:  # the limit came before any solution: the hint is feasible
            chosen = frozenset(hint)
            top = limit
        else:
            top = min(limit, int(bound) // self.tie_scale if weighted else math.floor(bound + 1e-9))
            if by_weight:
                top = limit
        proven = status == cp_model.OPTIMAL
        if not proven and fixed is None and self.value(frozenset(hint)) > self.value(chosen):
            chosen = frozenset(hint)  # never worse than the hint (CP-SAT starts from it anyway)
        value = self.value(chosen)
        if value > limit:
            raise RuntimeError("CP-SAT found an allocation above a proven bound")
        if one_of and all(ks & chosen for ks in one_of):
            raise RuntimeError("CP-SAT returned an allocation that breaks a constraint")
        return _Solved(chosen, value, value if proven else max(top, value), proven)

    def gain(
        self, lower: Mapping[int, int], own: Mapping[int, frozenset[int]], hint: frozenset[int], start: int
    ) -> tuple[int, bool]:
        """A proven upper bound on the greatest gain ``W(x) - lower[k]`` over the open winners
        ``k`` (``lower``'s keys) and the allocations ``x`` without ``k``'s bidder (``own[k]``): a
        Boolean per winner, exactly one true, which leaves that bidder out, and the objective
        ``surplus(x) - sum(lower[k] * z_k)``. ``hint`` (feasible, without ``start``'s bidder) is
        where the search starts; allocations worth at most every ``lower`` are left out. With
        whether it is the optimum (else the work limit came first)."""
        excluded = self.fixable(min(lower.values()), hint)
        model, x = self._base("surplus", excluded, hint)
        z = {k: model.new_bool_var("") for k in sorted(lower)}
        for k, chooses in z.items():
            for c in sorted(own[k]):
                model.add_implication(chooses, x[c].Not())
        model.add_exactly_one(z.values())
        winners, weighted = list(z.values()), cp_model.LinearExpr.weighted_sum
        model.maximize(weighted(x, self.units) - weighted(winners, [lower[k] for k in z]))
        model.proto.solution_hint.vars.extend(var.index for var in winners)
        model.proto.solution_hint.values.extend(int(k == start) for k in z)
        status, chosen, bound = self._run(model, x)
        if status == cp_model.OPTIMAL and chosen is not None:
            # The optimum, in exact integers: the best gain of the allocation found (the solver's
            # float objective is not read).
            gains = [self.value(chosen) - lower[k] for k in z if not chosen & own[k]]
            if not gains:
                raise RuntimeError("CP-SAT returned an allocation that breaks a constraint")
            return max(gains), True
        if status == cp_model.FEASIBLE:  # cut by the work limit: its float bound, loosened
            return math.floor(bound) + 1 + int(abs(bound) / 2**50), False
        return sum(self.units), False


class _Collect(cp_model.CpSolverSolutionCallback):
    """Every allocation the search reaches (CP-SAT's solution callback), kept for the pool."""

    def __init__(self, indices: list[int]) -> None:
        super().__init__()
        self.indices = indices
        self.found: list[frozenset[int]] = []

    def on_solution_callback(self) -> None:
        value = self.SolutionBooleanValue
        self.found.append(frozenset(k for k, index in enumerate(self.indices) if value(index)))


def _hint(model: cp_model.CpModel, n: int, chosen: frozenset[int]) -> None:
    """Hint the allocation ``chosen`` (complete: every variable, in one write to the proto)."""
    getattr(model, "clear_hints")()  # noqa: B009  # untyped in ortools: mypy would refuse the call
    hint = model.proto.solution_hint
    hint.vars.extend(range(n))
    hint.values.extend(int(k in chosen) for k in range(n))


@dataclass
class _Choice:
    chosen: frozenset[int]
    value: int
    bound: int
    proven: bool


def _canonical(model: _Model) -> _Choice:
    """The optimal allocation with the greatest weight (see the module docstring)."""
    # Columns in no allocation worth at least the LP's rounded solution are in no optimal one.
    # That solution is not the solver's hint: on CATS "arbitrary" it is far from the optimum and
    # the search from it took five times the work.
    start = model.rounded()
    fixed = model.fixable(model.value(start), start, strict=True)
    found = model.maximize(weighted=model.weighted, excluded=fixed)
    if not found.proven and model.value(start) > found.value:
        found = _Solved(start, model.value(start), found.bound, False)
    if not found.proven or model.weighted:
        return _Choice(found.chosen, found.value, found.bound, found.proven)
    tied = model.maximize(
        excluded=fixed, hint=found.chosen, ceiling=found.value, by_weight=True, fixed=found.value
    )
    return _Choice(tied.chosen, found.value, found.value, tied.proven)


def _without_each(model: _Model, choice: _Choice) -> dict[int, tuple[int, int]]:
    """For every winning column ``k``: the best scaled surplus found without its bidder, and a
    proven upper bound on it (equal when proven).

    One solve can prove several of them: the best allocation that leaves out *at least one* of the
    open winners' bidders is worth ``V``; every allocation without one of them is feasible there,
    so each ``W*(without i) <= V``, with equality for every winner that allocation (or any pooled
    allocation of value ``V``) leaves out. Those are closed; the next solve, over the winners still
    open, finds the next value down. Each solve closes at least one winner, and winners whose
    exclusions reach the same value (common: one alternative allocation replaces several of them)
    are closed together. Lower values come from the pool of allocations every solve reached (each
    checked feasible and valued exactly here), never from the solver's word; bounds only from
    proven optima (or the proven bound of a solve cut by the work limit). By gain instead (see
    the module docstring) when :func:`_by_gain`.
    """
    own = {
        k: frozenset(c for c, (ci, _) in enumerate(model.columns) if ci == model.columns[k][0])
        for k in choice.chosen
    }
    model.pool.setdefault(choice.chosen, choice.value)
    lower = {k: choice.value - model.units[k] for k in choice.chosen}  # the chosen allocation less k
    upper = {k: max(choice.bound, lower[k]) for k in choice.chosen}  # W*(without i) <= W*
    gain = _by_gain(model, len(own))
    seen = 0
    while True:
        pooled = list(model.pool.items())
        for chosen, value in pooled[seen:]:
            for k in choice.chosen:
                if value > lower[k] and not chosen & own[k]:
                    lower[k] = value
        seen = len(pooled)
        open_ = sorted(k for k in choice.chosen if lower[k] < upper[k])
        if not open_ or model.used >= model.budget:
            break
        if any(lower[k] > upper[k] for k in choice.chosen):
            raise RuntimeError("CP-SAT found an allocation above a proven bound")
        # The hint: the best allocation known that leaves out one of the open winners.
        start = max(open_, key=lambda k: lower[k])
        hint = next(
            (c for c, v in pooled if v == lower[start] and not c & own[start]), choice.chosen - {start}
        )
        if gain:
            before = {k: lower[k] for k in open_}
            best, proven = model.gain(before, own, hint, start)
            for k in open_:
                upper[k] = min(upper[k], max(before[k] + best, lower[k]))
            if not proven:
                break
            continue
        # Only allocations worth more than the hint matter: the columns none of them can contain
        # are left out (the hint stays feasible, so the optimum is the same).
        solved = model.maximize(
            excluded=model.fixable(lower[start], hint),
            one_of=[own[k] for k in open_],
            hint=hint,
            ceiling=max(upper[k] for k in open_),
        )
        model.pool.setdefault(solved.chosen, solved.value)
        for k in open_:
            upper[k] = min(upper[k], max(solved.bound, lower[k]))
        if not solved.proven:
            break
    return {k: (lower[k], upper[k]) for k in choice.chosen}


def _by_gain(model: _Model, winners: int) -> bool:
    """Whether the prices are proven by gain: the winner determination took at least
    ``_GAIN_FROM_WORK`` in the default search (measured on CATS "arbitrary"; the LP-heavy stage's
    instances keep one proof per value) and the gain objective fits in 62 bits."""
    fits = (sum(model.units) + 1) * (winners + 1) < _INT_LIMIT
    return model.level == 1 and model.used >= _GAIN_FROM_WORK and fits


def _gap(model: _Model, value: int, bound: int, base: Fraction) -> float:
    top = model.surplus(bound) + base
    if top <= 0:
        return 0.0
    return float((model.surplus(bound) - model.surplus(value)) / top)


def winner_determination(
    bids: Sequence[XorBid],
    items: Sequence[str],
    reserve: Fraction,
    *,
    work_limit: float = DEFAULT_WORK_LIMIT,
) -> tuple[dict[int, int], Fraction]:
    """The tie-broken welfare-maximizing allocation (bid index -> bundle index) and its welfare.

    Raises RuntimeError if the optimum is not proven within ``work_limit``.
    """
    _check(bids, items)
    try:
        model = _Model(bids, reserve, work_limit)
    except _Unsolved as error:
        raise RuntimeError(str(error)) from error
    choice = _canonical(model)
    if not choice.proven:
        raise RuntimeError(f"the work limit of {work_limit:g} was reached before the optimum was proven")
    allocation = model.allocation(choice.chosen)
    return allocation, welfare(bids, allocation, items, reserve)


def clear_combinatorial(
    bids: Sequence[XorBid],
    items: Sequence[str],
    reserve: Fraction,
    *,
    work_limit: float = DEFAULT_WORK_LIMIT,
    on_timeout: OnTimeout = "NoSale",
) -> CombinatorialOutcome:
    """Winner determination and VCG prices. ``bids`` are in tie-break order (earliest first).

    ``work_limit`` bounds the deterministic solver time of the whole clearing (every solve);
    ``on_timeout`` says what happens when it is reached (see the module docstring).
    Raises InvalidSpecError for a bundle with an unknown item or an agent that bids twice.
    """
    _check(bids, items)
    base = reserve * len(set(items))
    if not any(bid.bundles for bid in bids):
        return CombinatorialOutcome((), base, "NoBids", "no bundle bid was counted")
    try:
        model = _Model(bids, reserve, work_limit)
    except _Unsolved as error:
        return CombinatorialOutcome(
            (), base, "Unsolved", f"winner determination failed ({error}); nothing is sold"
        )
    choice = _canonical(model)
    gap = None if choice.proven else _gap(model, choice.value, choice.bound, base)
    if gap is not None and on_timeout == "NoSale":
        return _unsolved(model, base, gap, "the allocation")
    allocation = model.allocation(choice.chosen)
    best = welfare(bids, allocation, items, reserve)
    without = _without_each(model, choice)
    wins: list[Win] = []
    for k in sorted(choice.chosen, key=lambda k: bids[model.columns[k][0]].agent):
        i, j = model.columns[k]
        bundle = bids[i].bundles[j]
        value, bound = without[k]
        if value < bound:
            gap = max(gap or 0.0, _gap(model, value, bound, base))
            if on_timeout == "NoSale":
                return _unsolved(model, base, gap, f"{bids[i].agent}'s VCG price")
        price = model.surplus(value) - model.surplus(choice.value) + bundle.amount
        # Only when the limit was hit can an allocation without i beat the chosen one: never charge
        # more than the bid (BestFound).
        wins.append(Win(bids[i].agent, tuple(sorted(bundle.items)), bundle.amount, min(price, bundle.amount)))
    if not wins and gap is not None:
        return _unsolved(model, base, gap, "any allocation")
    if not wins:
        return CombinatorialOutcome(
            (), best, "BelowReserve", f"no bundle reaches the reserve price of {_show(reserve)} per item",
            work=model.used,
        )  # fmt: skip
    sold = sum(len(w.items) for w in wins)
    revenue = sum((w.price for w in wins), Fraction(0))
    summary = (
        f"{len(wins)} winners take {sold} of {len(set(items))} items (welfare {_show(best)}); "
        f"VCG prices total {_show(revenue)}"
    )
    if gap is not None:
        return CombinatorialOutcome(
            tuple(wins), best, "BestFound",
            f"the work limit of {work_limit:g} was reached: best allocation found, within {gap:.3g} of "
            f"the optimum (onTimeout: BestFound); {summary}",
            gap=gap, work=model.used,
        )  # fmt: skip
    return CombinatorialOutcome(tuple(wins), best, "Optimal", summary, work=model.used)


def _unsolved(model: _Model, base: Fraction, gap: float, what: str) -> CombinatorialOutcome:
    return CombinatorialOutcome(
        (), base, "Unsolved",
        f"the work limit of {model.budget:g} was reached before {what} was proven optimal "
        f"(proven gap {gap:.3g}); nothing is sold (onTimeout: NoSale)",
        gap=gap, work=model.used,
    )  # fmt: skip


def _show(value: Fraction) -> str:
    """A fraction as a decimal (exact when it ends, else to 18 places)."""
    return str(to_decimal(value))
