"""Clock auctions of one item: the english (ascending) and dutch (descending) round logic.

Prices are computed exactly from the round number, never by adding floats round after round.
Spec numbers are read as the decimals they are written as (``0.1`` is one tenth): see
:func:`exact`.

english, round ``k`` (from 1) has the price ``opening + (k - 1) * increment``, where ``opening``
is ``startPrice`` or, if unset, ``reservePrice``. When a round closes, the *stayers* are the active
bidders that accepted it (see :func:`english_close` for what happens next).

dutch, round ``k`` has the price ``startPrice - (k - 1) * decrement``; the clock never goes below
``reservePrice`` (the last round is :func:`dutch_rounds`). The first accept ends it (see
:func:`dutch_winner`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

__all__ = [
    "ClockDecision",
    "dutch_price",
    "dutch_rounds",
    "dutch_winner",
    "english_close",
    "english_price",
    "exact",
]


def exact(number: Decimal | float | int) -> Fraction:
    """An amount as a Fraction, exactly. A Decimal or int is taken as it is; a float as the
    decimal it is written as (its shortest repr): ``exact(0.1) == 1/10``."""
    if isinstance(number, Decimal | int):
        return Fraction(number)
    return Fraction(repr(float(number)))


def english_price(opening: Decimal | float, increment: Decimal | float, round: int) -> Fraction:
    """The clock price of english round ``round`` (from 1)."""
    return exact(opening) + (round - 1) * exact(increment)


def dutch_price(start: Decimal | float, decrement: Decimal | float, round: int) -> Fraction:
    """The clock price of dutch round ``round`` (from 1)."""
    return exact(start) - (round - 1) * exact(decrement)


def dutch_rounds(start: Decimal | float, decrement: Decimal | float, reserve: Decimal | float) -> int:
    """How many dutch rounds have a price at or above the reserve (at least 1 when start >= reserve)."""
    span = exact(start) - exact(reserve)
    if span < 0:
        return 0
    return int(span // exact(decrement)) + 1


@dataclass(frozen=True)
class ClockDecision:
    """What a closed english round leads to.

    ``next``: another round with ``active`` (the stayers); ``awarded``: ``winner`` buys at
    ``price``; ``nosale``: nobody buys.
    """

    kind: Literal["next", "awarded", "nosale"]
    reason: str
    message: str
    winner: str | None = None
    price: Fraction | None = None
    active: tuple[str, ...] = ()


def english_close(
    round: int,
    active: Sequence[str],
    stayers: Sequence[str],
    price: Fraction,
    previous_price: Fraction | None,
    max_rounds: int,
) -> ClockDecision:
    """Decide a closed english round.

    ``active`` are the bidders in the round, ``stayers`` those that accepted ``price``.

    - no stayer in round 1: no sale (``NoAcceptance``);
    - exactly one stayer: it wins at ``price`` (``ClockWinner``);
    - no stayer in a later round (everyone still in dropped at once): the round before was the
      last one two bidders accepted, so the first of ``active`` by name wins at
      ``previous_price`` (``ClockWinner``);
    - two or more stayers in round ``max_rounds``: the clock stops and the first stayer by name
      wins at ``price`` (``MaxRounds``);
    - otherwise: the next round, with the stayers.
    """
    stay = tuple(sorted(stayers))
    if not stay:
        if round == 1 or previous_price is None or not active:
            return ClockDecision(
                "nosale", "NoAcceptance", f"nobody accepted the opening price {float(price):g}"
            )
        winner = sorted(active)[0]
        return ClockDecision(
            "awarded",
            "ClockWinner",
            f"all {len(active)} remaining bidders dropped out at {float(price):g} in round {round}; "
            f"{winner} (first by name) wins at the previous round's price {float(previous_price):g}",
            winner=winner,
            price=previous_price,
        )
    if len(stay) == 1:
        return ClockDecision(
            "awarded",
            "ClockWinner",
            f"{stay[0]} is the last bidder in after round {round} and wins at {float(price):g}",
            winner=stay[0],
            price=price,
        )
    if round >= max_rounds:
        return ClockDecision(
            "awarded",
            "MaxRounds",
            f"{len(stay)} bidders were still in after the last round ({max_rounds}); {stay[0]} "
            f"(first by name) wins at {float(price):g}",
            winner=stay[0],
            price=price,
        )
    return ClockDecision("next", "NextRound", f"{len(stay)} bidders stay in", active=stay)


def dutch_winner(accepts: Mapping[str, _dt.datetime]) -> str:
    """Among the agents that accepted the current price (agent -> when), the earliest, then by name."""
    return min(accepts, key=lambda agent: (accepts[agent], agent))
