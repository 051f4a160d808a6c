"""McAfee's trade-reduction double auction, against references written here: a unit-by-unit
replay of the rule, brute force over subsets of units for the gains from trade, every misreport
on a price grid for truthfulness, and textbook cases computed by hand."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence
from fractions import Fraction as F

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mabeam.core.economics._double import DoubleAuctionOutcome, LimitOrder, clear_double_auction
from tests.strategies_markets import at, limit_orders, prices, times

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- references ---------------------------------------------------------------------------------


def units(orders: Sequence[LimitOrder], side: str) -> list[LimitOrder]:
    """One entry per unit, best first: buyers by price down, sellers up; ties by time, name."""
    out = [o for o in orders if o.side == side for _ in range(o.quantity)]
    sign = -1 if side == "buy" else 1
    return sorted(out, key=lambda o: (sign * o.price, o.at, o.agent))


def best_gains(buy: list[F], sell: list[F], pairs: int) -> F | None:
    """The most gains from trading exactly ``pairs`` units: brute force over subsets of units."""
    if pairs > min(len(buy), len(sell)):
        return None
    most = max(sum(c, F(0)) for c in itertools.combinations(buy, pairs))
    least = min(sum(c, F(0)) for c in itertools.combinations(sell, pairs))
    return most - least


def efficient_size(orders: Sequence[LimitOrder]) -> tuple[int, F]:
    """(the largest number of units among the trades with the most gains, those gains)."""
    buy = [o.price for o in orders if o.side == "buy" for _ in range(o.quantity)]
    sell = [o.price for o in orders if o.side == "sell" for _ in range(o.quantity)]
    gains = {m: best_gains(buy, sell, m) for m in range(min(len(buy), len(sell)) + 1)}
    top = max(g for g in gains.values() if g is not None)
    return max(m for m, g in gains.items() if g == top), top


def replay(orders: Sequence[LimitOrder]) -> tuple[str, F | None, F | None, dict[str, int]]:
    """McAfee's rule unit by unit: (reason, buyers' price, sellers' price, units per agent)."""
    b, s = units(orders, "buy"), units(orders, "sell")
    k = 0
    while k < min(len(b), len(s)) and b[k].price >= s[k].price:
        k += 1
    if k == 0:
        return "NoCrossing", None, None, {}
    if len(b) > k and len(s) > k:
        p0 = (b[k].price + s[k].price) / 2
        if s[k - 1].price <= p0 <= b[k - 1].price:
            traded = [u.agent for u in b[:k] + s[:k]]
            return "AllEfficientTrades", p0, p0, {a: traded.count(a) for a in set(traded)}
    if k == 1:
        return "TradeReduction", None, None, {}
    traded = [u.agent for u in b[: k - 1] + s[: k - 1]]
    return "TradeReduction", b[k - 1].price, s[k - 1].price, {a: traded.count(a) for a in set(traded)}


def utility(outcome: DoubleAuctionOutcome, agent: str, side: str, value: F) -> F:
    for fill in outcome.fills:
        if fill.agent == agent:
            per_unit = value - fill.price if side == "buy" else fill.price - value
            return per_unit * fill.quantity
    return F(0)


# --- properties ---------------------------------------------------------------------------------


@SETTINGS
@given(limit_orders())
def test_no_trader_is_worse_off_and_the_market_never_pays_out(orders: list[LimitOrder]) -> None:
    outcome = clear_double_auction(orders)
    by_agent = {o.agent: o for o in orders}
    paid = received = F(0)
    bought = sold = F(0)
    for fill in outcome.fills:
        order = by_agent[fill.agent]
        assert fill.side == order.side
        assert 0 < fill.quantity <= order.quantity
        assert fill.total == fill.quantity * fill.price
        if fill.side == "buy":
            assert fill.price <= order.price  # per unit, never above the buyer's limit
            paid += fill.total
            bought += fill.quantity
        else:
            assert fill.price >= order.price  # per unit, never below the seller's limit
            received += fill.total
            sold += fill.quantity
    assert bought == sold == outcome.volume
    assert paid - received == outcome.surplus >= 0
    if outcome.reason == "AllEfficientTrades":
        assert outcome.surplus == 0 and outcome.buyer_price == outcome.seller_price


@SETTINGS
@given(limit_orders())
def test_the_trade_is_all_efficient_pairs_or_all_but_the_last(orders: list[LimitOrder]) -> None:
    outcome = clear_double_auction(orders)
    k, most = efficient_size(orders)
    assert outcome.efficient_pairs == k
    if k == 0:
        assert outcome.reason == "NoCrossing" and outcome.volume == 0
        return
    expected = k if outcome.reason == "AllEfficientTrades" else k - 1
    assert outcome.reason in ("AllEfficientTrades", "TradeReduction")
    assert outcome.volume == expected
    # the units that trade are the most valuable ones: their gains are the best for that volume
    limit = {o.agent: o.price for o in orders}
    realised = sum(
        ((limit[f.agent] if f.side == "buy" else -limit[f.agent]) * f.quantity for f in outcome.fills), F(0)
    )
    buy = [o.price for o in orders if o.side == "buy" for _ in range(o.quantity)]
    sell = [o.price for o in orders if o.side == "sell" for _ in range(o.quantity)]
    assert realised == best_gains(buy, sell, outcome.volume)
    if outcome.volume == k:
        assert realised == most


@SETTINGS
@given(limit_orders())
def test_prices_and_traders_follow_the_rule_unit_by_unit(orders: list[LimitOrder]) -> None:
    outcome = clear_double_auction(orders)
    reason, buyer_price, seller_price, traded = replay(orders)
    assert (outcome.reason, outcome.buyer_price, outcome.seller_price) == (reason, buyer_price, seller_price)
    assert {f.agent: int(f.quantity) for f in outcome.fills} == traded
    assert [f.agent for f in outcome.fills] == sorted(f.agent for f in outcome.fills)


@SETTINGS
@given(limit_orders(), st.randoms(use_true_random=False))
def test_the_order_of_the_input_does_not_matter(orders: list[LimitOrder], rnd: random.Random) -> None:
    shuffled = list(orders)
    rnd.shuffle(shuffled)
    assert clear_double_auction(shuffled) == clear_double_auction(orders)


@SETTINGS
@given(
    others=limit_orders(max_orders=6, max_quantity=1, names=("ada", "bob", "cy", "dee", "eve", "fay", "gus")),
    name=st.sampled_from(["aa", "dd", "zz"]),
    side=st.sampled_from(["buy", "sell"]),
    value=prices,
    when=times,
)
def test_a_unit_trader_cannot_gain_by_misreporting_its_price(
    others: list[LimitOrder], name: str, side: str, value: F, when: dt.datetime
) -> None:
    def outcome_with(price: F) -> DoubleAuctionOutcome:
        me = LimitOrder(name, "buy" if side == "buy" else "sell", price, 1, at=when)
        return clear_double_auction([*others, me])

    truthful = utility(outcome_with(value), name, side, value)
    assert truthful >= 0
    for report in (F(n, 4) for n in range(0, 45)):  # every quarter from 0 to 11
        lie = utility(outcome_with(report), name, side, value)
        assert lie <= truthful, f"reporting {report} instead of {value} pays {lie} > {truthful}"


# --- textbook cases -----------------------------------------------------------------------------


def book(buys: Sequence[float], sells: Sequence[float]) -> list[LimitOrder]:
    orders = [LimitOrder(f"b{i}", "buy", F(p)) for i, p in enumerate(buys, 1)]
    return orders + [LimitOrder(f"s{i}", "sell", F(p)) for i, p in enumerate(sells, 1)]


@pytest.mark.parametrize(
    ("buys", "sells", "reason", "buyer_price", "seller_price", "volume"),
    [
        # k = 3 (6 >= 5, 4 < 7); p0 = (4 + 7) / 2 = 5.5 lies in [5, 6]: all three trade at 5.5
        ([10, 8, 6, 4], [2, 3, 5, 7], "AllEfficientTrades", F(11, 2), F(11, 2), 3),
        # k = 3; p0 = (1 + 9) / 2 = 5 = s_3: all three trade at 5 (the interval is closed)
        ([10, 8, 6, 1], [2, 3, 5, 9], "AllEfficientTrades", F(5), F(5), 3),
        # k = 3; p0 = (1 + 20) / 2 = 10.5 > b_3 = 6: two trade, buyers pay 6, sellers get 5
        ([10, 8, 6, 1], [2, 3, 5, 20], "TradeReduction", F(6), F(5), 2),
        # k = 3 and no fourth unit on either side: two trade at b_3 = 6 and s_3 = 5
        ([10, 8, 6], [2, 3, 5], "TradeReduction", F(6), F(5), 2),
        # one efficient pair and nobody to set a price: the reduction leaves nothing
        ([10], [5], "TradeReduction", None, None, 0),
        ([3], [5], "NoCrossing", None, None, 0),
        ([3, 2], [], "NoCrossing", None, None, 0),
        # equal limits cross (b >= s): k = 1, p0 = (4 + 6) / 2 = 5 = b_1 = s_1
        ([5, 4], [5, 6], "AllEfficientTrades", F(5), F(5), 1),
    ],
    ids=[
        "midpoint",
        "midpoint-on-limit",
        "reduction",
        "reduction-no-next",
        "one-pair",
        "no-crossing",
        "no-seller",
        "equal-limits",
    ],
)
def test_textbook_cases(
    buys: list[float],
    sells: list[float],
    reason: str,
    buyer_price: F | None,
    seller_price: F | None,
    volume: int,
) -> None:
    outcome = clear_double_auction(book(buys, sells))
    assert (outcome.reason, outcome.buyer_price, outcome.seller_price, outcome.volume) == (
        reason,
        buyer_price,
        seller_price,
        volume,
    )
    if buyer_price is not None and seller_price is not None:
        assert outcome.surplus == volume * (buyer_price - seller_price)


def test_multi_unit_orders_trade_as_units() -> None:
    # buyer units 10, 10, 7; seller units 4, 4, 6, 6: k = 3 (7 >= 6), no fourth buyer unit,
    # so two units trade: ada buys both of hers at 7, cy sells two at 6; the market keeps 2.
    orders = [
        LimitOrder("ada", "buy", F(10), 2),
        LimitOrder("bob", "buy", F(7), 1),
        LimitOrder("cy", "sell", F(4), 2),
        LimitOrder("dee", "sell", F(6), 2),
    ]
    outcome = clear_double_auction(orders)
    assert outcome.reason == "TradeReduction"
    assert [(f.agent, f.side, f.quantity, f.price, f.total) for f in outcome.fills] == [
        ("ada", "buy", 2, 7, 14),
        ("cy", "sell", 2, 6, 12),
    ]
    assert outcome.surplus == 2


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [(at(1), at(2), "bea"), (at(2), at(1), "abe"), (at(1), at(1), "abe")],
    ids=["earlier-order-wins", "earlier-order-wins-over-name", "same-time-name-wins"],
)
def test_ties_go_to_the_earlier_order_then_the_name(
    first: dt.datetime, second: dt.datetime, winner: str
) -> None:
    # two buyers at 8 and sellers at 2 and 3: k = 2, no third unit, so one pair trades at
    # (b_2, s_2) = (8, 3); which of the two buyers at 8 is cut is decided by the tie-break
    orders = [
        LimitOrder("bea", "buy", F(8), 1, at=first),
        LimitOrder("abe", "buy", F(8), 1, at=second),
        LimitOrder("s1", "sell", F(2)),
        LimitOrder("s2", "sell", F(3)),
    ]
    outcome = clear_double_auction(orders)
    assert [f.agent for f in outcome.fills if f.side == "buy"] == [winner]
    assert (outcome.buyer_price, outcome.seller_price) == (8, 3)


def test_the_fast_fill_is_a_fill() -> None:
    from mabeam.core.economics._double import Fill, _fill

    made = _fill("ada", "buy", F(2), F(3, 2), F(3))
    fill = Fill("ada", "buy", F(2), F(3, 2), F(3))
    assert type(made) is Fill and made == fill and hash(made) == hash(fill) and repr(made) == repr(fill)
    with pytest.raises(AttributeError):
        made.price = F(1)  # type: ignore[misc]
