"""Walrasian clearing of net-demand schedules on a price grid, a pure function.

Each agent states a net-demand schedule: points ``(price, quantity)`` with prices strictly rising
and quantities never rising (positive buys, negative sells). Its net demand ``z_i(p)`` at a price
``p`` is the quantity of its point with the highest price ``<= p``; below its first point, the
first point's quantity (a step function, constant to the left of the first point). The market's
excess demand is ``Z(p) = sum_i z_i(p)``, which never rises with ``p``.

With the grid ``p_0 < p_1 < ... < p_n``:

- The clearing price ``p*`` is the lowest grid price with ``Z(p*) <= 0``. If ``Z > 0`` at every
  grid price: no trade (``NoEquilibrium``; the message gives the excess demand at ``p_n``).
- At ``p*``: ``B`` = the sum of the positive ``z_i``, ``S`` = the sum of ``-z_i`` over the
  negative ones, ``V = min(B, S)``. ``V = 0``: no trade (``NoCrossing``).
- Otherwise everyone trades at ``p*`` and the long side is rationed in proportion: a buyer gets
  ``z_i * V / B``, a seller sells ``-z_j * V / S`` (since ``Z(p*) <= 0``, buyers are served in
  full). Reason ``Equilibrium``; bought = sold = ``V`` and paid = received, exactly.

All arithmetic is exact (:class:`fractions.Fraction`); ties cannot arise (the rationing is
proportional, no one is picked). ``p*`` is found by binary search, which is valid because ``Z``
never rises; :func:`clear_equilibrium` checks the schedules and the grid first.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from ._double import Fill, _fill

__all__ = ["EquilibriumOutcome", "NetDemand", "clear_equilibrium", "excess_demand"]


@dataclass(frozen=True)
class NetDemand:
    """One agent's schedule: ``points`` as (price, quantity), prices strictly rising."""

    agent: str
    points: tuple[tuple[Fraction, Fraction], ...]
    _prices: tuple[Fraction, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prices", tuple(p for p, _ in self.points))

    def at(self, price: Fraction) -> Fraction:
        """``z_i(price)``: the quantity of the last point at or below ``price`` (else the first)."""
        index = bisect.bisect_right(self._prices, price)
        return self.points[max(index - 1, 0)][1]


@dataclass(frozen=True)
class EquilibriumOutcome:
    """The clearing. ``price`` is None unless it is ``Equilibrium``; ``excess`` is ``Z`` at the
    clearing price (``NoEquilibrium``: at the top grid price). ``fills`` sorted by agent."""

    reason: Literal["Equilibrium", "NoEquilibrium", "NoCrossing"]
    price: Fraction | None
    volume: Fraction
    fills: tuple[Fill, ...]
    excess: Fraction
    message: str

    @property
    def traded(self) -> bool:
        return self.volume > 0


def excess_demand(schedules: Sequence[NetDemand], price: Fraction) -> Fraction:
    """``Z(price)``: the sum of every agent's net demand at ``price``."""
    return sum((s.at(price) for s in schedules), Fraction(0))


def _check(schedules: Sequence[NetDemand], grid: Sequence[Fraction]) -> None:
    if not grid:
        raise ValueError("the price grid is empty")
    if any(a >= b for a, b in itertools.pairwise(grid)):
        raise ValueError("the price grid must rise strictly")
    agents = [s.agent for s in schedules]
    if len(set(agents)) != len(agents):
        raise ValueError("an agent has more than one schedule")
    for s in schedules:
        if not s.points:
            raise ValueError(f"{s.agent}: the schedule is empty")
        for (p1, q1), (p2, q2) in itertools.pairwise(s.points):
            if p2 <= p1:
                raise ValueError(f"{s.agent}: the schedule's prices must rise strictly")
            if q2 > q1:
                raise ValueError(f"{s.agent}: the net demand rises from {q1} to {q2} at {p2}")


def _num(value: Fraction) -> str:
    return f"{float(value):.12g}"


def _integers(values: Sequence[Fraction]) -> tuple[list[int], int]:
    """``values`` times their common denominator: exact integers (which add and compare many
    times faster than fractions), and that denominator."""
    common = math.lcm(*{v.denominator for v in values}) if values else 1
    if common == 1:
        return [v.numerator for v in values], 1
    return [v.numerator * (common // v.denominator) for v in values], common


def clear_equilibrium(schedules: Sequence[NetDemand], grid: Sequence[Fraction]) -> EquilibriumOutcome:
    """Clear ``schedules`` on the rising ``grid`` (see the module docstring).

    Raises ValueError for an empty or unsorted grid, an agent named twice, or a schedule that is
    empty, unsorted or rising (the market engine refuses such orders before they get here).

    The arithmetic runs on integers: every price (grid included) times the prices' common
    denominator, every quantity times the quantities'. ``Z`` is the sum of the first points'
    quantities plus, at each later point's price, the step to that point's quantity: the steps are
    added up once per distinct price, and each probe of the binary search is a bisect.
    """
    points = [s.points for s in schedules]
    keys, _ = _integers([p for ps in points for p, _ in ps] + list(grid))
    quantities, unit = _integers([q for ps in points for _, q in ps])
    grid_keys = keys[len(quantities) :]
    del keys[len(quantities) :]
    sizes = [len(ps) for ps in points]
    starts = list(itertools.accumulate(sizes, initial=0))  # schedule j's points: [starts[j], starts[j+1])
    later = bytearray(b"\x01") * len(quantities)  # 1 for every point but a schedule's first
    for lo in starts[:-1]:
        if lo < len(quantities):
            later[lo] = 0
    steps_at = list(itertools.compress(range(len(quantities)), later))
    if (
        not grid
        or 0 in sizes
        or len({s.agent for s in schedules}) != len(schedules)
        or any(a >= b for a, b in itertools.pairwise(grid_keys))
        or any(keys[i - 1] >= keys[i] or quantities[i - 1] < quantities[i] for i in steps_at)
    ):
        _check(schedules, grid)  # raises, with the message naming the first problem
    base = sum(quantities[i] for i in starts[:-1])
    steps: dict[int, int] = {}
    for i in steps_at:
        k = keys[i]
        steps[k] = steps.get(k, 0) + quantities[i] - quantities[i - 1]
    at = sorted(steps)
    partial = list(itertools.accumulate((steps[k] for k in at), initial=base))  # Z between the steps

    def excess(key: int) -> int:
        return partial[bisect.bisect_right(at, key)]

    top = excess(grid_keys[-1])
    if top > 0:
        message = (
            f"demand exceeds supply at every grid price: the excess demand at the top price "
            f"{_num(grid[-1])} is {_num(Fraction(top, unit))}"
        )
        return EquilibriumOutcome("NoEquilibrium", None, Fraction(0), (), Fraction(top, unit), message)
    low, high = 0, len(grid) - 1  # Z(grid[high]) <= 0; find the lowest such index
    while low < high:
        mid = (low + high) // 2
        if excess(grid_keys[mid]) <= 0:
            high = mid
        else:
            low = mid + 1
    price, key = grid[low], grid_keys[low]
    right = bisect.bisect_right  # the last point at or below the price, else the first
    demand = [quantities[right(keys, key, lo + 1, hi) - 1] for lo, hi in itertools.pairwise(starts)]
    bought = sum(q for q in demand if q > 0)
    sold = -sum(q for q in demand if q < 0)
    volume = min(bought, sold)
    excess_at = Fraction(bought - sold, unit)
    if volume == 0:
        nobody = " and ".join(side for side, amount in (("buys", bought), ("sells", sold)) if amount == 0)
        message = f"at the clearing price {_num(price)} nobody {nobody}"
        return EquilibriumOutcome("NoCrossing", None, Fraction(0), (), excess_at, message)
    made: dict[int, tuple[Fraction, Fraction]] = {}  # one amount and total per distinct quantity
    for q in set(demand):
        if q:
            amount = Fraction(q * volume, unit * bought) if q > 0 else Fraction(-q * volume, unit * sold)
            made[q] = (amount, amount * price)
    by_agent = {
        s.agent: _fill(s.agent, "buy" if q > 0 else "sell", amount, price, total)
        for s, q in zip(schedules, demand, strict=True)
        if q
        for amount, total in (made[q],)
    }
    fills = [by_agent[agent] for agent in sorted(by_agent)]
    rationed = "sellers" if sold > bought else "buyers" if bought > sold else "nobody"
    message = (
        f"cleared at {_num(price)}: {_num(Fraction(volume, unit))} traded among {len(fills)} agents "
        f"({rationed} rationed)"
    )
    return EquilibriumOutcome("Equilibrium", price, Fraction(volume, unit), tuple(fills), excess_at, message)
