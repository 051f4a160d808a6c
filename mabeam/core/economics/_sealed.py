"""Sealed-bid clearing of one item: first-price and second-price (Vickrey).

Pure functions over the opened bids; the sealed bidding around them is in
:mod:`mabeam.core.economics.auction`.

Ranking (both mechanisms): the highest amount first; equal amounts are ordered by the earliest
``at`` (when the agent's sealed bid was received), then by agent name. Amounts are exact
decimals (no arithmetic is done on them, so the comparisons are exact).

Deciding needs only the top bid and the second-highest amount, not a full ranking: one pass
finds the highest amount, a second counts the bids that tie at it (the tie-break runs on those
only), and a third finds the highest amount among the others when nobody ties. Each pass is a
C-level loop, so the decision over n bids costs O(n), less than Python's ``sorted`` of the bare
amounts (bench/clearing.py).

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
import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["SealedBid", "SealedOutcome", "first_price", "rank", "second_price"]


@dataclass(frozen=True)
class SealedBid:
    """An opened bid on the one item: who, how much, and when its sealed bid arrived."""

    agent: str
    amount: Decimal
    at: _dt.datetime


@dataclass(frozen=True)
class SealedOutcome:
    """The clearing: the winner (None: no sale), what it pays and what it bid, and why."""

    winner: str | None
    price: Decimal | None
    bid: Decimal | None
    reason: str
    message: str


def rank(bids: Sequence[SealedBid]) -> list[SealedBid]:
    """The bids best first: highest amount, then earliest ``at``, then agent name."""
    return sorted(bids, key=lambda b: (-b.amount, b.at, b.agent))


_AMOUNT = operator.attrgetter("amount")


@dataclass(frozen=True)
class _Top:
    best: SealedBid
    second: Decimal | None  # the second-highest amount (equal to best's when two tie), if any


def _top_two(bids: Sequence[SealedBid]) -> _Top | None:
    """The best bid (by :func:`rank`'s order) and the second-highest amount, in O(n)."""
    if not bids:
        return None
    amounts = list(map(_AMOUNT, bids))
    top = max(amounts)
    if amounts.count(top) > 1:
        tied = [bids[i] for i, a in enumerate(amounts) if a == top]
        return _Top(min(tied, key=lambda b: (b.at, b.agent)), top)
    index = amounts.index(top)
    rest = itertools.chain(itertools.islice(amounts, index), itertools.islice(amounts, index + 1, None))
    return _Top(bids[index], max(rest, default=None))


def _no_sale(top: _Top | None, reserve: Decimal) -> SealedOutcome | None:
    if top is None:
        return SealedOutcome(None, None, None, "NoBids", "no sealed bid was counted")
    if top.best.amount < reserve:
        return SealedOutcome(
            None,
            None,
            None,
            "BelowReserve",
            f"the highest bid ({top.best.amount} by {top.best.agent}) is below the reserve "
            f"price {reserve}",
        )
    return None


def first_price(bids: Sequence[SealedBid], reserve: Decimal) -> SealedOutcome:
    """The highest bid at or above ``reserve`` wins and pays its own amount."""
    top = _top_two(bids)
    none = _no_sale(top, reserve)
    if none is not None or top is None:
        return none or SealedOutcome(None, None, None, "NoBids", "no sealed bid was counted")
    best = top.best
    return SealedOutcome(
        best.agent,
        best.amount,
        best.amount,
        "HighestBid",
        f"{best.agent} wins with the highest bid of {len(bids)} and pays it: {best.amount}",
    )


def second_price(bids: Sequence[SealedBid], reserve: Decimal) -> SealedOutcome:
    """The highest bid at or above ``reserve`` wins and pays max(second-highest amount, reserve)."""
    top = _top_two(bids)
    none = _no_sale(top, reserve)
    if none is not None or top is None:
        return none or SealedOutcome(None, None, None, "NoBids", "no sealed bid was counted")
    best, second = top.best, top.second
    price = reserve if second is None else max(second, reserve)
    basis = "the reserve price" if second is None or second < reserve else "the second-highest bid"
    return SealedOutcome(
        best.agent,
        price,
        best.amount,
        "SecondPrice",
        f"{best.agent} wins with the highest bid of {len(bids)} ({best.amount}) and pays "
        f"{basis}: {price}",
    )
