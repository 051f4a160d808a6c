"""A Fisher market with linear utilities, a pure function: equilibrium prices and allocations.

Goods ``j`` with supplies ``s_j``; buyers ``i`` with budgets ``B_i`` (money, no use of their own)
and linear utilities ``u_i(x) = sum_j u_ij x_ij``. Prices ``p_j`` and allocations ``x_ij`` are an
equilibrium when

- every buyer spends its whole budget: ``sum_j p_j x_ij = B_i``;
- every good with a positive price clears: ``sum_i x_ij = s_j``;
- every buyer buys only goods of maximal utility per unit of money (bang per buck
  ``u_ij / p_j``);
- hence the prices sum to the budgets: ``sum_j p_j s_j = sum_i B_i``.

The equilibrium is the optimum of the Eisenberg-Gale convex program, ``max sum_i B_i log u_i(x)``
subject to ``sum_i x_ij <= s_j``, whose dual in the prices is
``g(p) = sum_j s_j p_j + sum_i (B_i log B_i - B_i - B_i log min_j (p_j / u_ij))``. For any prices
and any feasible allocation, ``g(p) - f(x) >= 0``, and it is 0 exactly at the equilibrium: the
**relative gap** ``(g(p) - f(x)) / sum_i B_i`` is the certificate this module reports (it does not
depend on the scale of money or of utilities).

Solving (:func:`solve_fisher`, floats): the dual in log prices ``q_j = log p_j``, with the minimum
smoothed to ``-tau log sum_j exp(-(q_j - log u_ij) / tau)``, is smooth and convex; its gradient is
the money value of the supply minus the money spent on each good, when each buyer spends its
budget in the shares ``softmax_j((log u_ij - q_j) / tau)``. Newton's method solves it for
``tau = 1, 0.1, 0.01, ...`` (at most :data:`_STAGE_STEPS` steps each), each from the last one's
prices, with a backtracking line search (Armijo; at the noise floor of the objective, a step that
halves the clearing residual without raising the objective). After each ``tau`` the spending is
purified (shares below :data:`NEGLIGIBLE_SHARE` or ``gap / 1000`` dropped), the clearing prices of
that spending are taken (so that goods clear and budgets are spent exactly) and two measures of
that pair are taken: the relative gap and the bang-per-buck shortfall (:func:`bang_shortfall`);
the solve stops when both are within the target gap. Once the gap is below ``1e-4`` it also tries
the exact equilibrium on the spanning forest of the main spending edges (:func:`_forest`: prices
fixed by the utilities along each tree, spending by peeling leaves), kept if verified; generic
markets end there, degenerate ones (alike buyers: the equilibrium spending is not a forest)
follow the smoothing down. Newton's system is ``m x m`` (``m`` goods): 1 000 buyers x 100 goods
take 60 to 100 steps. The number of steps is bounded (``max_steps``), never the time, so an
outcome never depends on machine load.

Exact money (:func:`clear_fisher`): budgets are integers of a money unit (``10**-decimals``).
Each buyer's spending is rounded to whole units by largest remainders, so that its payments add
up to its budget exactly (ties to the lower good index); a good's revenue is the sum of its
payments, so the revenues add up to the budgets exactly. A good's unit price is its revenue over
its supply (a fraction; the caller writes it rounded to the money unit). A buyer's quantity of a
good is its share of the good's revenue times the supply, rounded to :data:`QUANTITY_DECIMALS`
places by largest remainders so that a good's quantities add up to its supply exactly. The
equilibrium checks are made on that outcome; the bang-per-buck check on the solver's prices
(the rounding to money units moves a price by at most one unit per buyer of the good).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_GAP",
    "MAX_STEPS",
    "QUANTITY_DECIMALS",
    "FisherAllocation",
    "FisherBuyer",
    "FisherCheck",
    "FisherGood",
    "FisherOutcome",
    "FisherSolution",
    "bang_shortfall",
    "ces_shortfall",
    "ces_spending",
    "clear_fisher",
    "relative_gap",
    "solve_fisher",
]

DEFAULT_GAP = 1e-6
MAX_STEPS = 400  # Newton steps over every tau; 1 000 x 100 markets take about 50
QUANTITY_DECIMALS = 9
FOREST_THRESHOLD = 1e-4  # spending edges the exact forest is built from (share of the budget)
NEGLIGIBLE_SHARE = 1e-9  # shares of a budget below this (or gap / 1000) are dropped when purifying
_TAU_STEP = 0.1
_TAU_MIN = 1e-12
_STAGE_STEPS = 40  # Newton steps at most per tau
_NOISE = 1e-14  # relative changes of the objective below this are rounding noise
_RESOLUTION = 1e-12  # a clearing residual (money; budgets sum to 1) small enough for any gap >= 1e-9
_FOREST_FROM = 1e-4  # the relative gap from which the exact forest is tried

Array = npt.NDArray[np.float64]
CheckName = Literal["GoodsClear", "BudgetsSpent", "PricesSumToBudgets", "MaximalBangPerBuck", "OptimalDemand"]


@dataclass(frozen=True)
class FisherSolution:
    """What the float solver found: ``spending[i, j]`` (money of buyer i on good j), the prices
    of the whole supply of each good (``revenue``: the column sums), the relative gap of that
    pair, the Newton steps used and whether the gap is within the target."""

    spending: Array
    revenue: Array
    gap: float
    steps: int
    converged: bool


def relative_gap(budgets: Array, utilities: Array, supplies: Array, spending: Array) -> float:
    """The Eisenberg-Gale relative gap of ``spending`` with its clearing prices (see the module
    docstring). Goods nobody spends on have price 0; a buyer then wanting one makes it infinite."""
    revenue = spending.sum(axis=0)
    prices = revenue / supplies
    priced = prices > 0
    safe = np.where(priced, prices, 1.0)
    quantities = np.where(priced[None, :], spending / safe[None, :], 0.0)
    utility = (utilities * quantities).sum(axis=1)
    if (utility <= 0).any():
        return math.inf
    wanted = utilities > 0
    if (wanted & ~priced[None, :]).any():
        return math.inf
    ratio = np.where(wanted, safe[None, :] / np.where(wanted, utilities, 1.0), np.inf)
    beta = ratio.min(axis=1)
    primal = float((budgets * np.log(utility)).sum())
    dual = float((prices * supplies).sum() + (budgets * (np.log(budgets) - 1.0 - np.log(beta))).sum())
    return max(dual - primal, 0.0) / float(budgets.sum())


def _shares(logu: Array, q: Array, tau: float) -> tuple[Array, Array]:
    """Each buyer's spending shares at log prices ``q`` (softmax of its log bang per buck over
    ``tau``) and the log-sum-exp of each row."""
    a = (logu - q[None, :]) / tau
    top = a.max(axis=1)
    e = np.exp(a - top[:, None])
    total = e.sum(axis=1)
    return e / total[:, None], top + np.log(total)


def _residual(q: Array, budgets: Array, shares: Array) -> float:
    """The largest gap between a good's price and the money spent on it (budgets sum to 1)."""
    return float(np.abs(np.exp(q) - (budgets[:, None] * shares).sum(axis=0)).max())


def _purified(budgets: Array, shares: Array, negligible: float) -> Array:
    """Spending from shares, without the negligible ones, each row summing to its budget."""
    kept: Array = np.where(shares >= negligible, shares, 0.0)
    scaled: Array = kept * (budgets / kept.sum(axis=1))[:, None]
    return scaled


def bang_shortfall(budgets: Array, utilities: Array, supplies: Array, spending: Array, gap: float) -> float:
    """The largest share of a budget spent on goods whose utility per unit of money (at the
    clearing prices of ``spending``) is more than ``gap`` below the buyer's best; infinite if a
    buyer wants a good nobody pays for."""
    prices = spending.sum(axis=0) / supplies
    wanted = utilities > 0
    priced = prices > 0
    if (wanted & ~priced[None, :]).any():
        return math.inf
    bang = np.where(wanted, utilities / np.where(priced, prices, 1.0)[None, :], 0.0)
    best = bang.max(axis=1)
    short = np.where(bang < (best * (1.0 - gap))[:, None], spending, 0.0).sum(axis=1)
    return float((short / budgets).max())


def _forest(budgets: Array, utilities: Array, spending: Array, threshold: float) -> Array | None:
    """The exact equilibrium spending on the spanning forest of the heaviest spending edges
    (those above ``threshold`` of their buyer's budget), if there is one (else None).

    Along a forest edge a buyer's bang per buck is its best, so the prices of a tree are fixed
    up to a factor by the utilities (``p_j = beta_i u_ij``), and the factor by the tree's money
    (its buyers' budgets pay for its goods); the spending on a tree is then unique (leaves first).
    Verified: every spending not negative and no buyer with a better bang per buck elsewhere.
    Supplies are 1 here (the scale-free form of :func:`solve_fisher`).
    """
    n, m = utilities.shape
    rows, cols = np.nonzero(spending > threshold * budgets[:, None])
    order = np.argsort(-spending[rows, cols], kind="stable")
    parent = list(range(n + m))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    links: list[list[int]] = [[] for _ in range(n + m)]
    for k in order:
        i, j = int(rows[k]), int(cols[k]) + n
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[ri] = rj
            links[i].append(j)
            links[j].append(i)
    if any(not links[i] for i in range(n)) or any(not links[n + j] for j in range(m)):
        return None
    value = np.zeros(n + m)  # buyers: beta_i (price per utility), goods: price
    seen = np.zeros(n + m, dtype=bool)
    for start in range(n + m):
        if seen[start]:
            continue
        seen[start] = True
        tree, value[start], k = [start], 1.0, 0
        while k < len(tree):
            a = tree[k]
            k += 1
            for c in links[a]:
                if not seen[c]:
                    seen[c] = True
                    tree.append(c)
                    value[c] = value[a] * utilities[a, c - n] if a < n else value[a] / utilities[c, a - n]
        nodes = np.array(tree)
        money = budgets[nodes[nodes < n]].sum()
        worth = value[nodes[nodes >= n]].sum()
        value[nodes] *= money / worth
    beta, prices = value[:n], value[n:]
    if (beta[:, None] * utilities > prices[None, :] * (1.0 + 1e-12)).any():
        return None  # a buyer has a better bang per buck off its tree
    left = np.concatenate([budgets, prices])
    degree = [len(x) for x in links]
    out = np.zeros((n, m))
    leaves = [a for a in range(n + m) if degree[a] == 1]
    done = np.zeros(n + m, dtype=bool)
    while leaves:
        a = leaves.pop()
        if done[a]:
            continue
        done[a] = True
        others = [c for c in links[a] if not done[c]]
        if not others:
            continue
        (c,) = others
        amount = left[a]
        i, j = (a, c - n) if a < n else (c, a - n)
        out[i, j] = amount
        left[c] -= amount
        degree[c] -= 1
        if degree[c] == 1:
            leaves.append(c)
    if (out < -1e-12).any():
        return None
    out = np.maximum(out, 0.0)
    scaled: Array = out * (budgets / out.sum(axis=1))[:, None]
    return scaled


def solve_fisher(
    budgets: Sequence[float],
    utilities: Sequence[Sequence[float]],
    supplies: Sequence[float],
    *,
    gap: float = DEFAULT_GAP,
    max_steps: int = MAX_STEPS,
    rho: float | None = None,
) -> FisherSolution:
    """An equilibrium within the relative ``gap`` (floats; see the module docstring): its
    relative gap and its bang-per-buck shortfall (:func:`bang_shortfall`) are both at most ``gap``.
    With ``rho`` (CES utilities, 0 < rho < 1) the gap reported is :func:`ces_shortfall`.

    Every budget and supply must be positive and every buyer must want some good (a positive
    utility); ValueError otherwise. Goods nobody wants get no spending (price 0).
    """
    b = np.asarray(budgets, dtype=np.float64)
    s = np.asarray(supplies, dtype=np.float64)
    u = np.asarray(utilities, dtype=np.float64).reshape(len(b), len(s))
    if len(b) == 0 or len(s) == 0:
        raise ValueError("a Fisher market needs buyers and goods")
    if not (np.isfinite(b).all() and np.isfinite(u).all() and np.isfinite(s).all()):
        raise ValueError("budgets, utilities and supplies must be finite")
    if (b <= 0).any() or (s <= 0).any() or (u < 0).any():
        raise ValueError("budgets and supplies must be positive, utilities not negative")
    if not (u > 0).any(axis=1).all():
        raise ValueError("every buyer must want some good")
    if rho is not None:
        if not 0 < rho < 1:
            raise ValueError("CES utilities need 0 < rho < 1")
        return _solve_ces(b, u, s, rho, gap, max_steps)
    # Scale-free form: budgets summing to 1, goods of supply 1 (the utility of the whole supply),
    # each buyer's best good of utility 1; only the goods someone wants.
    wanted = np.flatnonzero((u > 0).any(axis=0))
    scale = float(b.sum())
    bn = b / scale
    un = u[:, wanted] * s[wanted][None, :]
    un = un / un.max(axis=1)[:, None]
    with np.errstate(divide="ignore"):
        logu = np.where(un > 0, np.log(np.where(un > 0, un, 1.0)), -np.inf)
    ones = np.ones(len(wanted))
    negligible = min(NEGLIGIBLE_SHARE, gap * 1e-3)
    q = np.zeros(len(wanted))  # a price of 1 for each whole supply: the right total
    tau = 1.0
    steps = 0
    spending = _purified(bn, _shares(logu, q, tau)[0], negligible)
    found = relative_gap(bn, un, ones, spending)
    converged = False
    while steps < max_steps:
        shares, lse = _shares(logu, q, tau)
        for _ in range(_STAGE_STEPS):
            if steps >= max_steps:
                break
            bought = (bn[:, None] * shares).sum(axis=0)
            prices = np.exp(q)
            grad = prices - bought
            hess = np.diag(prices + bought / tau) - (shares.T * (bn / tau)) @ shares
            step = -np.linalg.solve(hess, grad)
            decrement = float(-(grad @ step))
            steps += 1
            residual = float(np.abs(grad).max())
            if not residual > _RESOLUTION:  # the goods clear to float precision (also stops on NaN)
                break
            current = float(prices.sum() + tau * (bn * lse).sum())
            alpha, taken = 1.0, False
            while alpha >= 1e-12:  # backtracking: Armijo, or a halved residual at the noise floor
                trial = q + alpha * step
                trial_shares, trial_lse = _shares(logu, trial, tau)
                value = float(np.exp(trial).sum() + tau * (bn * trial_lse).sum())
                if value <= current - 0.25 * alpha * decrement or (
                    value <= current + _NOISE * abs(current)  # at the noise floor of the objective:
                    and _residual(trial, bn, trial_shares) <= 0.5 * residual  # the clearing decides
                ):
                    q, shares, lse, taken = trial, trial_shares, trial_lse, True
                    break
                alpha *= 0.5
            if not taken:  # no progress within the precision of floats: this tau is done
                break
        spending = _purified(bn, shares, negligible)
        found = relative_gap(bn, un, ones, spending)
        if found <= gap and bang_shortfall(bn, un, ones, spending, gap) <= gap:
            converged = True
            break
        if found <= _FOREST_FROM:  # near: try the exact equilibrium on the forest of the main spending
            exact = _forest(bn, un, spending, FOREST_THRESHOLD)
            if exact is not None:
                exact_gap = relative_gap(bn, un, ones, exact)
                if exact_gap <= gap and bang_shortfall(bn, un, ones, exact, gap) <= gap:
                    spending, found, converged = exact, exact_gap, True
                    break
        if tau <= _TAU_MIN:
            break
        tau *= _TAU_STEP
    full = np.zeros((len(b), len(s)))
    full[:, wanted] = spending * scale
    return FisherSolution(
        spending=full, revenue=full.sum(axis=0), gap=found, steps=steps, converged=converged
    )


# --- CES utilities ----------------------------------------------------------------------------


def ces_spending(budgets: Array, utilities: Array, prices: Array, rho: float) -> Array:
    """What each buyer spends on each good at unit ``prices`` with CES utilities
    ``(sum_j u_ij x_ij^rho)^(1/rho)``: its budget in the shares ``u_ij^s p_j^(1-s)`` (normalised),
    ``s = 1 / (1 - rho)``; goods of price 0 it wants make the shares undefined (NaN)."""
    sigma = 1.0 / (1.0 - rho)
    wanted = utilities > 0
    with np.errstate(divide="ignore"):
        a = np.where(
            wanted,
            sigma * np.log(np.where(wanted, utilities, 1.0)) + (1 - sigma) * np.log(prices)[None, :],
            -np.inf,
        )
    top = a.max(axis=1)
    e = np.exp(a - top[:, None])
    out: Array = e / e.sum(axis=1)[:, None] * budgets[:, None]
    return out


def ces_shortfall(budgets: Array, utilities: Array, supplies: Array, spending: Array, rho: float) -> float:
    """How far ``spending`` is from every buyer's optimal CES spending at its own clearing prices:
    the largest share of a budget spent otherwise (0 at the equilibrium)."""
    prices = spending.sum(axis=0) / supplies
    if ((utilities > 0) & (prices <= 0)[None, :]).any():
        return math.inf
    best = ces_spending(budgets, utilities, np.where(prices > 0, prices, 1.0), rho)
    return float((np.abs(spending - best).sum(axis=1) / budgets).max() / 2)


def _solve_ces(b: Array, u: Array, s: Array, rho: float, gap: float, max_steps: int) -> FisherSolution:
    """CES (0 < rho < 1): a buyer's spending shares are exactly the smoothed shares of the linear
    case at the temperature ``tau = (1 - rho) / rho`` with log utilities ``log u_ij / rho`` (of
    the whole supply): one Newton solve at that fixed ``tau`` is the equilibrium."""
    wanted = np.flatnonzero((u > 0).any(axis=0))
    scale = float(b.sum())
    bn = b / scale
    with np.errstate(divide="ignore"):
        logu = np.where(
            u[:, wanted] > 0, np.log(np.where(u[:, wanted] > 0, u[:, wanted], 1.0)) / rho, -np.inf
        )
    logu = logu + np.log(s[wanted])[None, :]
    logu = logu - logu.max(axis=1)[:, None]  # each buyer's scale is free
    tau = (1.0 - rho) / rho
    q = np.zeros(len(wanted))
    steps = 0
    shares, lse = _shares(logu, q, tau)
    while steps < max_steps:
        bought = (bn[:, None] * shares).sum(axis=0)
        prices = np.exp(q)
        grad = prices - bought
        residual = float(np.abs(grad).max())
        if not residual > _RESOLUTION:
            break
        hess = np.diag(prices + bought / tau) - (shares.T * (bn / tau)) @ shares
        step = -np.linalg.solve(hess, grad)
        decrement = float(-(grad @ step))
        steps += 1
        current = float(prices.sum() + tau * (bn * lse).sum())
        alpha, taken = 1.0, False
        while alpha >= 1e-12:
            trial = q + alpha * step
            trial_shares, trial_lse = _shares(logu, trial, tau)
            value = float(np.exp(trial).sum() + tau * (bn * trial_lse).sum())
            if value <= current - 0.25 * alpha * decrement or (
                value <= current + _NOISE * abs(current)
                and _residual(trial, bn, trial_shares) <= 0.5 * residual
            ):
                q, shares, lse, taken = trial, trial_shares, trial_lse, True
                break
            alpha *= 0.5
        if not taken:
            break
    full = np.zeros((len(b), len(s)))
    full[:, wanted] = bn[:, None] * shares * scale
    found = ces_shortfall(b, u, s, full, rho)
    return FisherSolution(
        spending=full, revenue=full.sum(axis=0), gap=found, steps=steps, converged=found <= gap
    )


# --- exact outcome -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FisherBuyer:
    """A buyer: its ``budget`` in whole money units and its utility per unit of each good (one
    per good, in the goods' order)."""

    agent: str
    budget: int
    utilities: tuple[float, ...]


@dataclass(frozen=True)
class FisherGood:
    """A good and its ``supply`` (exact, at most :data:`QUANTITY_DECIMALS` places)."""

    name: str
    supply: Fraction


@dataclass(frozen=True)
class FisherAllocation:
    """What ``agent`` gets of ``good``: ``quantity`` (exact decimal) for ``payment`` money units."""

    agent: str
    good: str
    quantity: Decimal
    payment: int


@dataclass(frozen=True)
class FisherCheck:
    """One equilibrium condition: ``worst`` is its largest relative violation, ``passed`` whether
    that is within the tolerance (0 for the exact money conditions, the gap for bang per buck)."""

    name: CheckName
    passed: bool
    worst: float
    message: str


@dataclass(frozen=True)
class FisherOutcome:
    """The market's outcome. ``revenues[j]`` in money units (their sum is the budgets' sum);
    ``prices[j]`` the exact unit price ``revenue / supply``; ``allocations`` sorted by agent then
    good, zero quantities left out. NotConverged (the gap not reached within the steps, or a check
    not met): no prices and no allocations; the gap and the checks say how far it got."""

    reason: Literal["Equilibrium", "NotConverged"]
    prices: tuple[Fraction, ...]
    revenues: tuple[int, ...]
    sold: tuple[Decimal, ...]
    allocations: tuple[FisherAllocation, ...]
    gap: float
    steps: int
    checks: tuple[FisherCheck, ...]
    message: str

    @property
    def traded(self) -> bool:
        return self.reason == "Equilibrium" and bool(self.allocations)


def _largest_remainder(target: int, weights: Sequence[float]) -> list[int]:
    """Integers proportional to ``weights`` (not negative, some positive) adding up to
    ``target``: floors, then one more to the largest remainders (ties to the lower index)."""
    ratios = [float(w).as_integer_ratio() for w in weights]  # exact: floats are dyadic
    common = max(den for _, den in ratios)
    whole = [num * (common // den) for num, den in ratios]  # the weights times one common factor
    total = sum(whole)
    floors = [w * target // total for w in whole]
    remainders = [w * target % total for w in whole]
    rest = target - sum(floors)
    order = sorted(range(len(whole)), key=lambda k: (-remainders[k], k))
    for k in order[:rest]:
        floors[k] += 1
    return floors


def _quantities(payments: dict[str, int], revenue: int, supply: Fraction) -> dict[str, Decimal]:
    """Each payer's exact share of ``supply`` (``payment / revenue``), rounded to
    QUANTITY_DECIMALS places so that they add up to ``supply`` exactly (largest remainders,
    ties to the first agent by name)."""
    unit = 10**QUANTITY_DECIMALS
    total = supply * unit
    if total.denominator != 1:
        raise ValueError(f"a supply has more than {QUANTITY_DECIMALS} decimal places")
    agents = sorted(payments)
    scaled = [payments[a] * total.numerator for a in agents]  # exact integers
    floors = [x // revenue for x in scaled]
    remainders = [x % revenue for x in scaled]
    rest = total.numerator - sum(floors)
    order = sorted(range(len(agents)), key=lambda k: (-remainders[k], k))
    for k in order[:rest]:
        floors[k] += 1
    return {a: Decimal(f) / unit for a, f in zip(agents, floors, strict=True)}


def _checks(
    buyers: Sequence[FisherBuyer],
    goods: Sequence[FisherGood],
    paid: Sequence[dict[int, int]],
    revenues: Sequence[int],
    sold: Sequence[Decimal],
    solution: FisherSolution,
    gap: float,
    rho: float | None = None,
) -> tuple[FisherCheck, ...]:
    clear_worst = 0.0
    for good, revenue, quantity in zip(goods, revenues, sold, strict=True):
        if revenue > 0:
            clear_worst = max(clear_worst, float(abs(Fraction(quantity) - good.supply) / good.supply))
    spent_worst = max(
        (abs(sum(p.values()) - buyer.budget) / buyer.budget for buyer, p in zip(buyers, paid, strict=True)),
        default=0,
    )
    total = sum(b.budget for b in buyers)
    sum_worst = abs(sum(revenues) - total) / total if total else 0
    # The buyers' choice, on the solver's prices (before the rounding to money units).
    arrays = (
        np.array([float(b.budget) for b in buyers]),
        np.array([b.utilities for b in buyers], dtype=np.float64).reshape(len(buyers), len(goods)),
        np.array([float(g.supply) for g in goods]),
        solution.spending,
    )
    if rho is None:
        bang_worst = bang_shortfall(*arrays, gap)
        choice = FisherCheck(
            "MaximalBangPerBuck",
            bang_worst <= gap,
            bang_worst,
            f"every buyer spends all but at most {bang_worst:.3g} of its budget on goods within "
            f"{gap:g} of its best utility per unit of money",
        )
    else:
        demand_worst = ces_shortfall(*arrays, rho)
        choice = FisherCheck(
            "OptimalDemand",
            demand_worst <= gap,
            demand_worst,
            f"every buyer spends all but at most {demand_worst:.3g} of its budget as its CES "
            "utilities would at these prices",
        )
    return (
        FisherCheck(
            "GoodsClear",
            clear_worst == 0,
            clear_worst,
            "every good with a positive price is allocated in full"
            if clear_worst == 0
            else f"a priced good is allocated {clear_worst:.3g} away from its supply",
        ),
        FisherCheck(
            "BudgetsSpent",
            spent_worst == 0,
            float(spent_worst),
            "every buyer pays exactly its budget"
            if spent_worst == 0
            else f"a buyer pays {float(spent_worst):.3g} away from its budget",
        ),
        FisherCheck(
            "PricesSumToBudgets",
            sum_worst == 0,
            float(sum_worst),
            "the goods' revenues add up to the budgets exactly"
            if sum_worst == 0
            else f"the revenues are {float(sum_worst):.3g} away from the budgets",
        ),
        choice,
    )


def clear_fisher(
    buyers: Sequence[FisherBuyer],
    goods: Sequence[FisherGood],
    *,
    gap: float = DEFAULT_GAP,
    max_steps: int = MAX_STEPS,
    rho: float | None = None,
) -> FisherOutcome:
    """The equilibrium of the market in exact money units and quantities (module docstring);
    ``rho``: CES utilities (0 < rho < 1), checked by OptimalDemand instead of bang per buck.

    Raises ValueError for no buyers or goods, a budget or supply not positive, a buyer without a
    positive utility, utilities of the wrong length or agents named twice.
    """
    if len({b.agent for b in buyers}) != len(buyers):
        raise ValueError("an agent is named twice")
    if any(len(b.utilities) != len(goods) for b in buyers):
        raise ValueError("each buyer needs one utility per good")
    if any(g.supply <= 0 for g in goods) or any(b.budget <= 0 for b in buyers):
        raise ValueError("budgets and supplies must be positive")
    solution = solve_fisher(
        [float(b.budget) for b in buyers],
        [b.utilities for b in buyers],
        [float(g.supply) for g in goods],
        gap=gap,
        max_steps=max_steps,
        rho=rho,
    )
    zeros = tuple(Decimal(0) for _ in goods)
    if not solution.converged:
        message = (
            f"no equilibrium within the relative gap {gap:g} in {solution.steps} steps (reached "
            f"{solution.gap:.3g})"
        )
        return FisherOutcome("NotConverged", (), (), zeros, (), solution.gap, solution.steps, (), message)
    paid: list[dict[int, int]] = []
    for i, buyer in enumerate(buyers):
        row = solution.spending[i]
        spent = np.flatnonzero(row > 0)
        units = _largest_remainder(buyer.budget, [float(row[j]) for j in spent])
        paid.append({int(j): c for j, c in zip(spent, units, strict=True) if c > 0})
    revenues = [0] * len(goods)
    payers: list[dict[str, int]] = [{} for _ in goods]
    for buyer, payments in zip(buyers, paid, strict=True):
        for j, c in payments.items():
            revenues[j] += c
            payers[j][buyer.agent] = c
    allocations: list[FisherAllocation] = []
    sold: list[Decimal] = []
    for j, good in enumerate(goods):
        if revenues[j] == 0:
            sold.append(Decimal(0))
            continue
        quantities = _quantities(payers[j], revenues[j], good.supply)
        sold.append(sum(quantities.values(), Decimal(0)))
        allocations.extend(
            FisherAllocation(agent, good.name, quantity, payers[j][agent])
            for agent, quantity in quantities.items()
            if quantity > 0 or payers[j][agent] > 0
        )
    allocations.sort(key=lambda a: (a.agent, a.good))
    prices = tuple(Fraction(r) / g.supply for r, g in zip(revenues, goods, strict=True))
    checks = _checks(buyers, goods, paid, revenues, sold, solution, gap, rho)
    priced = sum(1 for r in revenues if r > 0)
    message = (
        f"equilibrium of {len(buyers)} buyers over {len(goods)} goods ({priced} priced) within the "
        f"relative gap {solution.gap:.3g} in {solution.steps} steps"
    )
    if not all(c.passed for c in checks):  # not an equilibrium within the gap: nothing is allocated
        failed = ", ".join(c.name for c in checks if not c.passed)
        message = f"{message}, but these checks are not met: {failed}"
        return FisherOutcome("NotConverged", (), (), zeros, (), solution.gap, solution.steps, checks, message)
    return FisherOutcome(
        "Equilibrium",
        prices,
        tuple(revenues),
        tuple(sold),
        tuple(allocations),
        solution.gap,
        solution.steps,
        checks,
        message,
    )
