"""Sealed single-item clearing (first-price, second-price) against references and the economics
a bidder relies on: the winner, the price, truthfulness and individual rationality."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core.economics._sealed import SealedBid, first_price, second_price
from tests.strategies_auctions import at, halves, sealed_bids, seconds

FAST = settings(max_examples=300, deadline=None)


def reference_order(bids: list[SealedBid]) -> list[SealedBid]:
    """Best first, computed independently: repeatedly take the best remaining bid."""
    left = list(bids)
    out = []
    while left:
        top = max(b.amount for b in left)
        tied = [b for b in left if b.amount == top]
        earliest = min(b.at for b in tied)
        pick = min(b.agent for b in tied if b.at == earliest)
        chosen = next(b for b in tied if b.agent == pick)
        out.append(chosen)
        left.remove(chosen)
    return out


@FAST
@given(sealed_bids(), halves)
def test_first_price_winner_pays_its_own_bid(bids: list[SealedBid], reserve: float) -> None:
    outcome = first_price(bids, reserve)
    ranked = reference_order(bids)
    if not ranked:
        assert (outcome.winner, outcome.reason) == (None, "NoBids")
    elif ranked[0].amount < reserve:
        assert (outcome.winner, outcome.reason) == (None, "BelowReserve")
    else:
        assert outcome.reason == "HighestBid"
        assert outcome.winner == ranked[0].agent
        assert outcome.price == outcome.bid == ranked[0].amount


@FAST
@given(sealed_bids(), halves)
def test_second_price_winner_pays_the_second_highest_or_the_reserve(
    bids: list[SealedBid], reserve: float
) -> None:
    outcome = second_price(bids, reserve)
    ranked = reference_order(bids)
    if not ranked:
        assert (outcome.winner, outcome.reason) == (None, "NoBids")
        return
    if ranked[0].amount < reserve:
        assert (outcome.winner, outcome.reason) == (None, "BelowReserve")
        return
    amounts = sorted((b.amount for b in bids), reverse=True)
    expected = max(amounts[1], reserve) if len(amounts) > 1 else reserve
    assert outcome.reason == "SecondPrice"
    assert outcome.winner == ranked[0].agent
    assert outcome.bid == ranked[0].amount
    assert outcome.price == expected


def test_tie_at_the_top_goes_to_the_earliest_bid_and_costs_the_bid() -> None:
    bids = [SealedBid("bob", 10.0, at(2)), SealedBid("ada", 10.0, at(3)), SealedBid("cy", 4.0, at(0))]
    assert second_price(bids, 0.0).winner == "bob"
    assert second_price(bids, 0.0).price == 10.0
    same_time = [SealedBid("bob", 10.0, at(2)), SealedBid("ada", 10.0, at(2))]
    assert first_price(same_time, 0.0).winner == "ada"


def test_a_lone_bid_pays_the_reserve_in_second_price() -> None:
    outcome = second_price([SealedBid("ada", 9.0, at(0))], 2.5)
    assert (outcome.winner, outcome.price, outcome.bid) == ("ada", 2.5, 9.0)


def _utility(
    value: float, me: str, others: list[SealedBid], bid: float, when: dt.datetime, reserve: float
) -> float:
    outcome = second_price([*others, SealedBid(me, bid, when)], reserve)
    if outcome.winner != me:
        return 0.0
    assert outcome.price is not None
    return value - outcome.price


GRID = [n / 2 for n in range(0, 46)]  # 0 .. 22.5, beyond every value and bid


@settings(max_examples=150, deadline=None)
@given(
    sealed_bids(max_size=4).map(lambda bs: [b for b in bs if b.agent != "me"]),
    halves,
    halves,
    seconds,
)
def test_second_price_truthful_bidding_is_weakly_dominant(
    others: list[SealedBid], value: float, reserve: float, second: int
) -> None:
    when = at(second)
    truthful = _utility(value, "me", others, value, when, reserve)
    for misreport in GRID:
        assert _utility(value, "me", others, misreport, when, reserve) <= truthful, misreport


@FAST
@given(sealed_bids(max_size=4), halves, halves, seconds)
def test_second_price_is_individually_rational(
    others: list[SealedBid], value: float, reserve: float, second: int
) -> None:
    others = [b for b in others if b.agent != "me"]
    outcome = second_price([*others, SealedBid("me", value, at(second))], reserve)
    if outcome.winner == "me":
        assert outcome.price is not None
        assert reserve <= outcome.price <= value


@FAST
@given(st.lists(halves, min_size=1, max_size=5), halves)
def test_the_outcome_does_not_depend_on_the_order_bids_are_listed(
    amounts: list[float], reserve: float
) -> None:
    bids = [SealedBid(f"a{i}", amount, at(i % 2)) for i, amount in enumerate(amounts)]
    for clear in (first_price, second_price):
        assert clear(bids, reserve) == clear(list(reversed(bids)), reserve)
