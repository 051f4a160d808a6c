"""Sealed-bid clearing of one item: first-price and second-price (Vickrey).

Pure functions over the opened bids; the sealed bidding around them is in
:mod:`mabeam.core.economics.auction`.

Ranking (both mechanisms): the highest amount first; equal amounts are ordered by the earliest
``at`` (when the agent's sealed bid was received), then by agent name. Amounts are compared as
the floats they are (no arithmetic is done on them, so the comparisons are exact).

- No bid at all: no sale, reason ``NoBids``.
- No bid reaches ``reserve`` (``amount >= reserve``): no sale, reason ``BelowReserve``.
- first-price: the top bid wins and pays its own amount (``HighestBid``).
- second-price: the top bid wins and pays the larger of the second-highest amount (any bid,
  below the reserve or not) and the reserve (``SecondPrice``). When two bids tie at the top the
  second-highest amount equals the winner's, so the winner pays its own bid. A lone bid pays the
  reserve.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SealedBid", "SealedOutcome", "first_price", "rank", "second_price"]


@dataclass(frozen=True)
class SealedBid:
    """An opened bid on the one item: who, how much, and when its sealed bid arrived."""

    agent: str
    amount: float
    at: _dt.datetime


@dataclass(frozen=True)
class SealedOutcome:
    """The clearing: the winner (None: no sale), what it pays and what it bid, and why."""

    winner: str | None
    price: float | None
    bid: float | None
    reason: str
    message: str


def rank(bids: Sequence[SealedBid]) -> list[SealedBid]:
    """The bids best first: highest amount, then earliest ``at``, then agent name."""
    return sorted(bids, key=lambda b: (-b.amount, b.at, b.agent))


def _no_sale(ranked: Sequence[SealedBid], reserve: float) -> SealedOutcome | None:
    if not ranked:
        return SealedOutcome(None, None, None, "NoBids", "no sealed bid was counted")
    if ranked[0].amount < reserve:
        return SealedOutcome(
            None,
            None,
            None,
            "BelowReserve",
            f"the highest bid ({ranked[0].amount:g} by {ranked[0].agent}) is below the reserve "
            f"price {reserve:g}",
        )
    return None


def first_price(bids: Sequence[SealedBid], reserve: float) -> SealedOutcome:
    """The highest bid at or above ``reserve`` wins and pays its own amount."""
    ranked = rank(bids)
    none = _no_sale(ranked, reserve)
    if none is not None:
        return none
    top = ranked[0]
    return SealedOutcome(
        top.agent,
        top.amount,
        top.amount,
        "HighestBid",
        f"{top.agent} wins with the highest bid of {len(ranked)} and pays it: {top.amount:g}",
    )


def second_price(bids: Sequence[SealedBid], reserve: float) -> SealedOutcome:
    """The highest bid at or above ``reserve`` wins and pays max(second-highest amount, reserve)."""
    ranked = rank(bids)
    none = _no_sale(ranked, reserve)
    if none is not None:
        return none
    top = ranked[0]
    second = ranked[1].amount if len(ranked) > 1 else None
    price = reserve if second is None else max(second, reserve)
    basis = "the reserve price" if second is None or second < reserve else "the second-highest bid"
    return SealedOutcome(
        top.agent,
        price,
        top.amount,
        "SecondPrice",
        f"{top.agent} wins with the highest bid of {len(ranked)} ({top.amount:g}) and pays "
        f"{basis}: {price:g}",
    )
