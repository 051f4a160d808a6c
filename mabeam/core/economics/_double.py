"""McAfee's trade-reduction double auction (McAfee 1992), a pure function over limit orders.

Every order is expanded into unit orders (an order for ``q`` units at price ``p`` is ``q`` unit
orders at ``p``; the expansion is done on runs, never unit by unit). Buyers' units are sorted by
price descending, sellers' units by price ascending; ties (equal prices) go to the earlier order
(``at``), then to the agent name, then to the buy/sell side. With ``b_1 >= b_2 >= ...`` and
``s_1 <= s_2 <= ...``:

- ``k`` is the number of efficient pairs, the number of ``i`` with ``b_i >= s_i`` (a prefix,
  since ``b`` falls and ``s`` rises). ``k = 0``: nothing trades (``NoCrossing``).
- If the ``(k+1)``-th buyer unit and the ``(k+1)``-th seller unit both exist, the candidate price
  is ``p0 = (b_{k+1} + s_{k+1}) / 2``. If ``s_k <= p0 <= b_k``, all ``k`` pairs trade at ``p0``
  (``AllEfficientTrades``; buyers pay what sellers receive, surplus 0).
- Otherwise the ``k``-th pair is cut (``TradeReduction``): the first ``k-1`` buyer units trade at
  ``b_k`` and the first ``k-1`` seller units at ``s_k``; the market keeps the surplus
  ``(k-1)(b_k - s_k) >= 0``. With ``k = 1`` nothing trades (reason still ``TradeReduction``).

Properties (checked by the tests against brute force): no buyer pays more than its limit and no
seller receives less than its limit, per unit; buyers pay at least what sellers receive; for unit
orders no agent gains by misreporting its price; the trade is the ``k`` efficient pairs or all
but the least valuable of them. All arithmetic is exact (:class:`fractions.Fraction`).
"""

from __future__ import annotations

import bisect
import datetime as _dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = ["DoubleAuctionOutcome", "Fill", "LimitOrder", "clear_double_auction"]

Side = Literal["buy", "sell"]
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


@dataclass(frozen=True)
class LimitOrder:
    """``quantity`` units bought (at most ``price`` each) or sold (at least ``price`` each).

    ``at`` is when the order was received (the first tie-break); give every order of one call
    an aware datetime (the default, the Unix epoch, is aware).
    """

    agent: str
    side: Side
    price: Fraction
    quantity: int = 1
    at: _dt.datetime = EPOCH


@dataclass(frozen=True)
class Fill:
    """What one agent trades: ``quantity`` at ``price`` each, ``total`` in all."""

    agent: str
    side: Side
    quantity: Fraction
    price: Fraction
    total: Fraction


@dataclass(frozen=True)
class DoubleAuctionOutcome:
    """The clearing of a double auction.

    ``buyer_price`` and ``seller_price`` are None when nothing trades. ``fills`` holds one entry
    per (agent, side) that trades, sorted by agent then side.
    """

    reason: Literal["AllEfficientTrades", "TradeReduction", "NoCrossing"]
    efficient_pairs: int
    buyer_price: Fraction | None
    seller_price: Fraction | None
    volume: int
    fills: tuple[Fill, ...]
    surplus: Fraction
    message: str

    @property
    def traded(self) -> bool:
        return self.volume > 0


def _integer_prices(orders: Sequence[LimitOrder]) -> list[int]:
    """Each price times the common denominator of all of them: exact integers, which order as the
    prices do and compare many times faster than fractions."""
    common = math.lcm(*{o.price.denominator for o in orders}) if orders else 1
    return [o.price.numerator * (common // o.price.denominator) for o in orders]


class _Units:
    """One side's unit orders as runs (best first), with O(log n) access to the i-th unit.

    The runs are sorted by price alone (integers); the tie-break (``at``, then the agent) matters
    only for the orders at the price where a count of units ends, and is applied there
    (:meth:`first`).
    """

    def __init__(self, orders: Sequence[LimitOrder], descending: bool) -> None:
        orders = [o for o in orders if o.quantity > 0]
        keys = _integer_prices(orders)
        if descending:
            keys = [-k for k in keys]
        order = sorted(range(len(orders)), key=keys.__getitem__)
        self.runs = [orders[i] for i in order]
        self.keys = [keys[i] for i in order]
        self.ends = list(itertools.accumulate(o.quantity for o in self.runs))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def price(self, i: int) -> Fraction:
        """The price of the i-th unit (1-based)."""
        return self.runs[bisect.bisect_left(self.ends, i)].price

    def first(self, count: int) -> dict[str, int]:
        """How many of the first ``count`` units (in the full tie-break order) each agent has."""
        taken: dict[str, int] = {}
        if count <= 0:
            return taken
        last = bisect.bisect_left(self.ends, count)  # the run holding unit ``count``
        low = bisect.bisect_left(self.keys, self.keys[last])  # the runs at that price: [low, high)
        high = bisect.bisect_right(self.keys, self.keys[last])
        for order in itertools.islice(self.runs, low):
            taken[order.agent] = taken.get(order.agent, 0) + order.quantity
        left = count - (self.ends[low - 1] if low else 0)
        for order in sorted(self.runs[low:high], key=lambda o: (o.at, o.agent)):
            if left <= 0:
                break
            units = min(order.quantity, left)
            taken[order.agent] = taken.get(order.agent, 0) + units
            left -= units
        return taken


def _efficient_pairs(buyers: _Units, sellers: _Units) -> int:
    """The largest k with b_k >= s_k (binary search: the condition holds on a prefix)."""
    low, high = 0, min(len(buyers), len(sellers))
    while low < high:
        mid = (low + high + 1) // 2
        if buyers.price(mid) >= sellers.price(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _fill(agent: str, side: Side, quantity: Fraction, price: Fraction, total: Fraction) -> Fill:
    """``Fill(agent, side, quantity, price, total)`` at half the cost: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``; a market of 100 000 orders makes
    up to 100 000 fills. Equal (and hashing equal) to the one ``Fill(...)`` makes."""
    fill = object.__new__(Fill)
    fill.__dict__.update(agent=agent, side=side, quantity=quantity, price=price, total=total)
    return fill


def _fills(bought: dict[str, int], sold: dict[str, int], buy: Fraction, sell: Fraction) -> list[Fill]:
    """The fills sorted by agent then side (buy before sell); one quantity and total per distinct
    number of units."""
    made = {u: (Fraction(u), u * buy) for u in set(bought.values())}
    buys = {a: _fill(a, "buy", q, buy, t) for a, u in bought.items() for q, t in (made[u],)}
    made = {u: (Fraction(u), u * sell) for u in set(sold.values())}
    sells = {a: _fill(a, "sell", q, sell, t) for a, u in sold.items() for q, t in (made[u],)}
    if buys.keys().isdisjoint(sells):  # the usual case: each agent on one side
        both = buys | sells
        return [both[agent] for agent in sorted(both)]
    out: list[Fill] = []
    for agent in sorted(buys.keys() | sells.keys()):
        out.extend(side[agent] for side in (buys, sells) if agent in side)
    return out


def _num(value: Fraction) -> str:
    return f"{float(value):.12g}"


def clear_double_auction(orders: Sequence[LimitOrder]) -> DoubleAuctionOutcome:
    """Clear ``orders`` with McAfee's trade-reduction rule (see the module docstring)."""
    buyers = _Units([o for o in orders if o.side == "buy"], descending=True)
    sellers = _Units([o for o in orders if o.side == "sell"], descending=False)
    k = _efficient_pairs(buyers, sellers)
    if k == 0:
        if not len(buyers) or not len(sellers):
            missing = "buy" if not len(buyers) else "sell"
            message = f"there is no {missing} order"
        else:
            message = (
                f"the highest buy price {_num(buyers.price(1))} is below the lowest sell price "
                f"{_num(sellers.price(1))}"
            )
        return DoubleAuctionOutcome("NoCrossing", 0, None, None, 0, (), Fraction(0), message)
    b_k, s_k = buyers.price(k), sellers.price(k)
    if len(buyers) > k and len(sellers) > k:
        p0 = (buyers.price(k + 1) + sellers.price(k + 1)) / 2
        if s_k <= p0 <= b_k:
            fills = _fills(buyers.first(k), sellers.first(k), p0, p0)
            message = f"all {k} efficient unit{'s' if k > 1 else ''} trade at {_num(p0)}"
            return DoubleAuctionOutcome(
                "AllEfficientTrades", k, p0, p0, k, tuple(fills), Fraction(0), message
            )
        why = f"the price {_num(p0)} from the first excluded pair is outside [{_num(s_k)}, {_num(b_k)}]"
    else:
        why = f"there is no excluded {'buyer' if len(buyers) <= k else 'seller'} unit to set a price"
    if k == 1:
        message = (
            f"one efficient pair (buy {_num(b_k)}, sell {_num(s_k)}); {why}, so the trade reduction "
            "cuts it and nothing trades"
        )
        return DoubleAuctionOutcome("TradeReduction", 1, None, None, 0, (), Fraction(0), message)
    volume = k - 1
    fills = _fills(buyers.first(volume), sellers.first(volume), b_k, s_k)
    surplus = volume * (b_k - s_k)
    message = (
        f"{why}: {volume} of the {k} efficient units trade, buyers pay {_num(b_k)}, sellers receive "
        f"{_num(s_k)}"
    )
    return DoubleAuctionOutcome("TradeReduction", k, b_k, s_k, volume, tuple(fills), surplus, message)
