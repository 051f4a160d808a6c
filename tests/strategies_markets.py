"""Hypothesis strategies for the markets: limit orders, net-demand schedules, price grids.

Sizes stay small (a handful of agents, a few units each) so that the tests can compare the
mechanisms with brute force over every subset of units or every grid price. Prices are small
integers or halves, so ties (equal prices, equal receive times) come up often.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

from hypothesis import strategies as st

from mabeam.core.economics._double import LimitOrder
from mabeam.core.economics._equilibrium import NetDemand

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ORDER_SECONDS = 60.0
DEADLINE = T0 + dt.timedelta(seconds=ORDER_SECONDS)
TRADERS = ("ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal")


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# Prices 0, 0.5, ..., 10: halves make the double auction's midpoint p0 land on or off a limit.
prices = st.integers(min_value=0, max_value=20).map(lambda n: Fraction(n, 2))
times = st.sampled_from([at(0), at(1), at(2)])


@st.composite
def limit_orders(
    draw: st.DrawFn, *, max_orders: int = 7, max_quantity: int = 3, names: tuple[str, ...] = TRADERS
) -> list[LimitOrder]:
    """Orders from distinct agents, each a buy or a sell of 1..max_quantity units."""
    agents = draw(st.lists(st.sampled_from(names), min_size=0, max_size=max_orders, unique=True))
    return [
        LimitOrder(
            agent=agent,
            side=draw(st.sampled_from(["buy", "sell"])),
            price=draw(prices),
            quantity=draw(st.integers(min_value=1, max_value=max_quantity)),
            at=draw(times),
        )
        for agent in agents
    ]


@st.composite
def price_grids(draw: st.DrawFn) -> tuple[Fraction, Fraction, Fraction]:
    """(min, max, step) of a grid of 1..12 prices, exact in binary floating point."""
    low = Fraction(draw(st.integers(min_value=0, max_value=8)))
    step = draw(st.sampled_from([Fraction(1, 2), Fraction(1), Fraction(2)]))
    count = draw(st.integers(min_value=1, max_value=12))
    return low, low + step * max(count - 1, 1), step


def grid_prices(low: Fraction, high: Fraction, step: Fraction) -> list[Fraction]:
    out = []
    price = low
    while price <= high:
        out.append(price)
        price += step
    return out


@st.composite
def schedule_points(draw: st.DrawFn, grid: list[Fraction]) -> tuple[tuple[Fraction, Fraction], ...]:
    """A net-demand schedule on ``grid``: prices rising, quantities never rising.

    Quantities are multiples of 1/2 in [-6, 6]; one in three schedules is a pure buyer or seller.
    """
    chosen = sorted(draw(st.lists(st.sampled_from(grid), min_size=1, max_size=4, unique=True)))
    kind = draw(st.sampled_from(["buyer", "seller", "both"]))
    low, high = {"buyer": (0, 12), "seller": (-12, 0), "both": (-12, 12)}[kind]
    halves = draw(
        st.lists(st.integers(min_value=low, max_value=high), min_size=len(chosen), max_size=len(chosen))
    )
    quantities = [Fraction(h, 2) for h in sorted(halves, reverse=True)]
    return tuple(zip(chosen, quantities, strict=True))


@st.composite
def markets(draw: st.DrawFn, *, max_agents: int = 6) -> tuple[list[NetDemand], list[Fraction]]:
    """A grid and the schedules of 0..max_agents distinct agents on it."""
    low, high, step = draw(price_grids())
    grid = grid_prices(low, high, step)
    agents = draw(st.lists(st.sampled_from(TRADERS), min_size=0, max_size=max_agents, unique=True))
    return [NetDemand(agent, draw(schedule_points(grid))) for agent in agents], grid
