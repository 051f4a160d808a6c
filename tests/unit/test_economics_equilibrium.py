"""Walrasian clearing on a price grid, against a brute-force scan of every grid price written here
from the rules, and cases computed by hand."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction as F

import pytest
from hypothesis import HealthCheck, given, settings

from mabeam.core.economics._equilibrium import NetDemand, clear_equilibrium
from tests.strategies_markets import markets

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Market = tuple[list[NetDemand], list[F]]


# --- the reference ------------------------------------------------------------------------------


def demand(schedule: NetDemand, price: F) -> F:
    """z_i(price) by a linear walk: the last point at or below the price, else the first point."""
    quantity = schedule.points[0][1]
    for point_price, point_quantity in schedule.points:
        if point_price <= price:
            quantity = point_quantity
    return quantity


def scan(schedules: Sequence[NetDemand], grid: Sequence[F]) -> tuple[int | None, list[F]]:
    """(index of the lowest grid price with Z <= 0 or None, Z at every grid price)."""
    excess = [sum((demand(s, p) for s in schedules), F(0)) for p in grid]
    return next((i for i, z in enumerate(excess) if z <= 0), None), excess


# --- properties ---------------------------------------------------------------------------------


@SETTINGS
@given(markets())
def test_the_price_is_the_lowest_grid_price_without_excess_demand(market: Market) -> None:
    schedules, grid = market
    outcome = clear_equilibrium(schedules, grid)
    index, excess = scan(schedules, grid)
    if index is None:
        assert outcome.reason == "NoEquilibrium"
        assert outcome.price is None and outcome.excess == excess[-1] > 0
        assert not outcome.fills and outcome.volume == 0
        return
    price = grid[index]
    bought = sum((max(demand(s, price), F(0)) for s in schedules), F(0))
    sold = sum((max(-demand(s, price), F(0)) for s in schedules), F(0))
    if min(bought, sold) == 0:
        assert outcome.reason == "NoCrossing"
        assert outcome.price is None and not outcome.fills and outcome.volume == 0
        return
    assert outcome.reason == "Equilibrium"
    assert outcome.price == price
    assert outcome.volume == min(bought, sold)
    assert excess[index] <= 0
    if index > 0:
        assert excess[index - 1] > 0  # minimality: one tick lower, demand still exceeds supply


@SETTINGS
@given(markets())
def test_what_is_bought_is_sold_and_paid_for_exactly(market: Market) -> None:
    schedules, grid = market
    outcome = clear_equilibrium(schedules, grid)
    bought = sum((f.quantity for f in outcome.fills if f.side == "buy"), F(0))
    sold = sum((f.quantity for f in outcome.fills if f.side == "sell"), F(0))
    paid = sum((f.total for f in outcome.fills if f.side == "buy"), F(0))
    received = sum((f.total for f in outcome.fills if f.side == "sell"), F(0))
    assert bought == sold == outcome.volume
    assert paid == received
    for fill in outcome.fills:
        assert fill.price == outcome.price
        assert fill.total == fill.quantity * fill.price


@SETTINGS
@given(markets())
def test_each_agent_trades_its_way_and_at_most_its_demand(market: Market) -> None:
    schedules, grid = market
    outcome = clear_equilibrium(schedules, grid)
    if outcome.price is None:
        return
    fills = {f.agent: f for f in outcome.fills}
    assert list(fills) == sorted(fills)
    for schedule in schedules:
        wanted = demand(schedule, outcome.price)
        fill = fills.get(schedule.agent)
        if wanted == 0:
            assert fill is None
            continue
        assert fill is not None
        assert fill.side == ("buy" if wanted > 0 else "sell")
        assert 0 < fill.quantity <= abs(wanted)
        # the short side (here always the buyers, as Z(p*) <= 0) gets all it asks for
        if wanted > 0:
            assert fill.quantity == wanted


# --- cases by hand ------------------------------------------------------------------------------

GRID = [F(p) for p in range(11)]


def sched(agent: str, *points: tuple[float, float]) -> NetDemand:
    return NetDemand(agent, tuple((F(p), F(q)) for p, q in points))


def test_a_hand_computed_market_clears_where_supply_catches_up() -> None:
    # Z(3) = 5 - 2 - 1 = 2 > 0; Z(4) = 3 - 2 - 1 = 0: p* = 4, everyone is served in full
    schedules = [
        sched("ada", (0, 5), (4, 3), (6, 0)),
        sched("bob", (0, 0), (3, -2), (5, -4)),
        sched("cy", (2, -1)),
    ]
    outcome = clear_equilibrium(schedules, GRID)
    assert (outcome.reason, outcome.price, outcome.volume) == ("Equilibrium", 4, 3)
    assert [(f.agent, f.side, f.quantity, f.total) for f in outcome.fills] == [
        ("ada", "buy", 3, 12),
        ("bob", "sell", 2, 8),
        ("cy", "sell", 1, 4),
    ]


def test_the_long_side_is_rationed_in_proportion() -> None:
    # Z(3) = 5 - 2 - 2 = 1 > 0; Z(4) = 3 - 2 - 2 = -1: p* = 4, sellers offer 4 for 3 bought,
    # so each seller sells 3/4 of its offer
    schedules = [
        sched("ada", (0, 5), (4, 3), (6, 0)),
        sched("bob", (0, 0), (3, -2), (5, -4)),
        sched("cy", (2, -2)),
    ]
    outcome = clear_equilibrium(schedules, GRID)
    assert (outcome.price, outcome.volume, outcome.excess) == (4, 3, -1)
    assert {f.agent: f.quantity for f in outcome.fills} == {"ada": 3, "bob": F(3, 2), "cy": F(3, 2)}


def test_demand_above_supply_everywhere_is_no_equilibrium() -> None:
    outcome = clear_equilibrium([sched("ada", (0, 5), (10, 2)), sched("bob", (5, -1))], GRID)
    assert (outcome.reason, outcome.price, outcome.excess) == ("NoEquilibrium", None, 1)
    assert "top price 10" in outcome.message and "is 1" in outcome.message


@pytest.mark.parametrize(
    "schedules",
    [
        [sched("bob", (0, -3))],
        [sched("ada", (0, 0)), sched("bob", (0, 0))],
        [sched("ada", (0, 2), (5, 0)), sched("bob", (0, 0), (6, -2))],
    ],
    ids=["only-sellers", "nobody-wants-anything", "buyers-leave-before-sellers-come"],
)
def test_no_one_on_one_side_at_the_price_is_no_crossing(schedules: list[NetDemand]) -> None:
    outcome = clear_equilibrium(schedules, GRID)
    assert (outcome.reason, outcome.volume, outcome.fills) == ("NoCrossing", 0, ())


def test_a_single_price_grid_clears_at_that_price() -> None:
    outcome = clear_equilibrium([sched("ada", (3, 1)), sched("bob", (3, -1))], [F(3)])
    assert (outcome.reason, outcome.price, outcome.volume) == ("Equilibrium", 3, 1)


@pytest.mark.parametrize(
    ("schedules", "grid", "words"),
    [
        ([sched("ada", (0, 1), (2, 3))], GRID, "rises"),
        ([sched("ada", (2, 1), (2, 0))], GRID, "rise strictly"),
        ([sched("ada", (0, 1)), sched("ada", (0, -1))], GRID, "more than one"),
        ([sched("ada", (0, 1))], [F(2), F(1)], "grid must rise"),
        ([sched("ada", (0, 1))], [], "empty"),
    ],
    ids=["rising-demand", "unsorted", "agent-twice", "unsorted-grid", "empty-grid"],
)
def test_input_the_rule_does_not_cover_is_an_error(
    schedules: list[NetDemand], grid: list[F], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        clear_equilibrium(schedules, grid)
