"""Clock auctions driven through the engine by simulated bidders with private values."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core.economics import BidAnswer
from mabeam.core.economics.auction import start, step
from mabeam.core.protocols import Participant
from mabeam.models.auction import AuctionSpec, AuctionStatus
from tests.strategies_auctions import T0, clock_values

ROUND = 10.0
CLOCK = settings(max_examples=120, deadline=None)


def clock_spec(mechanism: str, agents: list[str], **fields: object) -> AuctionSpec:
    return AuctionSpec.model_validate(
        {
            "mechanism": mechanism,
            "participants": {"agents": agents},
            "items": ["gpu"],
            "roundSeconds": ROUND,
            **fields,
        }
    )


@dataclass
class Run:
    status: AuctionStatus
    rounds: int


def run_english(spec: AuctionSpec, values: dict[str, int], *, silent_drop: bool = False) -> Run:
    """Truthful bidders: stay in while the clock price is at most their value. With
    ``silent_drop`` a bidder that drops just stops answering; the round then ends at its deadline."""
    result = start("s", spec, [Participant(a) for a in values], T0)
    status = result.status
    bids: dict[str, BidAnswer] = {}
    rounds = 0
    while status.phase == "Bidding":
        rounds += 1
        assert rounds < 500
        assert status.deadline is not None and status.round is not None and status.clock_price is not None
        when = status.deadline - dt.timedelta(seconds=ROUND / 2)
        for agent in status.active:
            stay = status.clock_price <= values[agent]
            if stay or not silent_drop:
                bids[agent] = BidAnswer(at=when, round=status.round, accept=stay)
        now = status.deadline if silent_drop else when
        result = step("s", spec, status, dict(bids), {}, now)
        assert all(v.reason in ("Counted", "NotActive") for v in result.verdicts), result.verdicts
        status = result.status
    return Run(status, rounds)


@CLOCK
@given(clock_values, st.integers(min_value=0, max_value=20), st.integers(min_value=1, max_value=5))
def test_english_truthful_bidders_the_highest_value_wins_near_the_second_value(
    values: dict[str, int], opening: int, increment: int
) -> None:
    spec = clock_spec("english", sorted(values), startPrice=opening, increment=increment, maxRounds=1000)
    status = run_english(spec, values).status
    ranked = sorted(values.values(), reverse=True)
    if ranked[0] < opening:
        assert status.phase == "NoSale"
        assert status.result is not None and status.result.reason == "NoAcceptance"
        return
    assert status.phase == "Awarded"
    assert status.result is not None and status.result.reason == "ClockWinner"
    [allocation] = status.result.allocations
    price = Fraction(allocation.price)
    winner_value = values[allocation.agent]
    assert (price - opening) % increment == 0  # a clock price
    assert price <= winner_value  # nobody pays more than its value
    assert winner_value > ranked[0] - increment  # the highest value, up to an increment
    if ranked[0] - (ranked[1] if len(ranked) > 1 else -increment) >= increment:
        assert winner_value == ranked[0]
    if len(ranked) > 1 and ranked[1] >= opening:
        # Either the top bidder stays alone: the first clock price above the second value, or
        # the top two drop together: the last clock price at or below the second value.
        assert ranked[1] - increment < price <= ranked[1] + increment
        if price > ranked[1]:
            assert [a for a, v in values.items() if v >= price] == [allocation.agent]
    else:
        assert price == opening  # alone above the opening price: it pays the opening price
    assert status.result.revenue == allocation.price


@settings(max_examples=40, deadline=None)
@given(clock_values, st.integers(min_value=0, max_value=20), st.integers(min_value=1, max_value=5))
def test_english_silence_drops_a_bidder_like_a_refusal(
    values: dict[str, int], opening: int, increment: int
) -> None:
    spec = clock_spec("english", sorted(values), startPrice=opening, increment=increment)
    answered = run_english(spec, values).status
    silent = run_english(spec, values, silent_drop=True).status
    assert silent.phase == answered.phase
    assert silent.result is not None and answered.result is not None
    assert silent.result.allocations == answered.result.allocations
    assert [r.model_dump() for r in silent.rounds] == [r.model_dump() for r in answered.rounds]


def test_english_max_rounds_stops_the_clock_and_picks_the_first_stayer_by_name() -> None:
    spec = clock_spec("english", ["bob", "ada", "cy"], increment=2, maxRounds=3)
    status = run_english(spec, {"bob": 50, "ada": 50, "cy": 1}).status
    assert status.phase == "Awarded"
    assert status.result is not None and status.result.reason == "MaxRounds"
    assert [(a.agent, a.price) for a in status.result.allocations] == [("ada", 4.0)]
    assert [(r.round, r.price, r.accepted) for r in status.rounds] == [
        (1, 0.0, ["ada", "bob", "cy"]),
        (2, 2.0, ["ada", "bob"]),
        (3, 4.0, ["ada", "bob"]),
    ]


def test_english_everyone_dropping_at_once_sells_at_the_previous_price() -> None:
    spec = clock_spec("english", ["eve", "dee"], startPrice=10, increment=5)
    status = run_english(spec, {"eve": 17, "dee": 16}).status
    assert status.result is not None
    assert status.result.reason == "ClockWinner"
    assert [(a.agent, a.price) for a in status.result.allocations] == [("dee", 15.0)]
    assert "dropped out" in status.result.message


def run_dutch(spec: AuctionSpec, values: dict[str, int], offsets: dict[str, int]) -> AuctionStatus:
    """Bidders accept as soon as the price is at most their value, ``offsets`` seconds into the
    round; the others answer accept=false. With no accept the round runs to its deadline."""
    result = start("s", spec, [Participant(a) for a in values], T0)
    status = result.status
    rounds = 0
    while status.phase == "Bidding":
        rounds += 1
        assert rounds < 1000
        assert status.deadline is not None and status.round is not None and status.clock_price is not None
        opened = status.deadline - dt.timedelta(seconds=ROUND)
        bids = {
            agent: BidAnswer(
                at=opened + dt.timedelta(seconds=offsets[agent]),
                round=status.round,
                accept=status.clock_price <= value,
            )
            for agent, value in values.items()
        }
        result = step("s", spec, status, bids, {}, opened + dt.timedelta(seconds=ROUND - 1))
        assert all(v.accepted for v in result.verdicts)
        if result.status.phase == "Bidding":
            assert result.status == status.model_copy(update={"refusals": []})  # accept=false changes nothing
            result = step("s", spec, status, bids, {}, status.deadline)
        status = result.status
    return status


@CLOCK
@given(
    clock_values,
    st.integers(min_value=30, max_value=70),
    st.integers(min_value=1, max_value=7),
    st.integers(min_value=0, max_value=30),
    st.data(),
)
def test_dutch_the_highest_threshold_wins_within_a_decrement(
    values: dict[str, int], start_price: int, decrement: int, reserve: int, data: st.DataObject
) -> None:
    offsets = {a: data.draw(st.integers(min_value=0, max_value=8), label=a) for a in values}
    spec = clock_spec(
        "dutch", sorted(values), startPrice=start_price, decrement=decrement, reservePrice=reserve
    )
    status = run_dutch(spec, values, offsets)
    prices = list(range(start_price, reserve - 1, -decrement))  # every clock price >= the reserve
    top = max(values.values())
    reachable = [p for p in prices if p <= top]
    if not reachable:
        assert status.phase == "NoSale"
        assert status.result is not None and status.result.reason == "NoAcceptance"
        assert [r.price for r in status.rounds] == prices
        return
    assert status.phase == "Awarded"
    assert status.result is not None and status.result.reason == "FirstAccept"
    [allocation] = status.result.allocations
    assert allocation.price == reachable[0]
    if top < start_price:
        assert top - decrement < allocation.price <= top
    accepters = sorted(a for a, v in values.items() if v >= allocation.price)
    assert allocation.agent == min(accepters, key=lambda a: (offsets[a], a))
    assert status.rounds[-1].accepted == accepters


def test_dutch_prices_are_exact_decimals_and_the_reserve_is_reached() -> None:
    spec = clock_spec("dutch", ["ada"], startPrice=1.0, decrement=0.1, reservePrice=0.7)
    status = run_dutch(spec, {"ada": 0}, {"ada": 0})
    assert status.phase == "NoSale"
    assert [r.price for r in status.rounds] == [Decimal(p) for p in ("1", "0.9", "0.8", "0.7")]
