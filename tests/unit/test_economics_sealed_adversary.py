"""Property: in a sealed auction, an adversary that reads everything it may read and acts after
the others gains nothing from reading.

The adversary ``eve`` is a participant. At its turn (after every honest bid) it reads every Bid
(ciphertexts included) and the Auction's whole status, then may copy any honest ciphertext as
its own bid, bid an amount computed from what it read, and withdraw (or not) depending on what
it read. The test checks, for random first- and second-price auctions:

1. what it reads, apart from the ciphertexts' bytes, is the same whatever the honest amounts
   are (run twice with different honest amounts, same times): no amount, no length, no verdict
   tells anything. (The bytes themselves are AES-GCM output under keys it does not hold; that
   they look random is the cipher's claim, not this test's; tests/unit/test_economics_sealing.py
   checks that they open for nobody but the operator.)
2. a copy is refused (``Copied``, naming its original) and never counted;
3. the outcome (phase, reason, winners, prices, revenue) equals the outcome of the same auction
   in which the adversary reads nothing: it copies nothing and makes the decisions it would
   make after reading a world with other honest amounts.

The same holds for a double-auction market, whose limit prices matter to the others (last test).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core.economics import BidAnswer
from mabeam.core.economics.auction import TERMINAL_PHASES, start, step
from mabeam.core.protocols import Participant
from mabeam.models.auction import AuctionSpec, AuctionStatus
from tests.strategies_auctions import KEY, T0, UID, at, content_of, halves, seal_as

HONEST_POOL = ("ada", "bob", "cy", "dee")
ADVERSARY = "eve"
DEADLINE = 60


@dataclass(frozen=True)
class Scenario:
    mechanism: str
    reserve: float
    times: dict[str, int]  # honest bidder -> when it bids
    amounts: dict[str, float]
    other_amounts: dict[str, float]  # the same bidders, other amounts: the world eve might be in
    copy_of: str | None  # whose ciphertext eve copies (None: no copy)
    copy_at: int
    bids_at: int | None  # when eve bids what it derives from its reading (None: never)
    withdraw_at: int | None  # when eve may withdraw, depending on its reading


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    honest = draw(st.lists(st.sampled_from(HONEST_POOL), min_size=1, max_size=4, unique=True))
    times = {a: draw(st.integers(min_value=0, max_value=40)) for a in honest}
    last = max(times.values())
    copy_at = draw(st.integers(min_value=last + 1, max_value=50))
    bids_at = draw(st.one_of(st.none(), st.integers(min_value=copy_at + 1, max_value=55)))
    withdraw_at = None
    if bids_at is not None:
        withdraw_at = draw(st.one_of(st.none(), st.integers(min_value=bids_at + 1, max_value=DEADLINE - 1)))
    return Scenario(
        mechanism=draw(st.sampled_from(["first-price", "second-price"])),
        reserve=draw(st.sampled_from([0.0, 1.0, 2.5])),
        times=times,
        amounts={a: draw(halves) for a in honest},
        other_amounts={a: draw(halves) for a in honest},
        copy_of=draw(st.one_of(st.none(), st.sampled_from(honest))),
        copy_at=copy_at,
        bids_at=bids_at,
        withdraw_at=withdraw_at,
    )


def _opaque(value: Any) -> Any:
    """What eve reads, with each ciphertext's bytes replaced by its length."""
    if isinstance(value, dict):
        return {
            k: len(v) if k == "ciphertext" and isinstance(v, str) else _opaque(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_opaque(v) for v in value]
    return value


def _read(status: AuctionStatus, bids: dict[str, BidAnswer]) -> dict[str, Any]:
    """Everything eve may read: the Auction's status and every Bid, ciphertexts included."""
    return {
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
        "bids": {
            agent: {"sealed": bid.sealed.to_wire() if bid.sealed else None, "at": bid.at.isoformat()}
            for agent, bid in sorted(bids.items())
        },
    }


def _number(reading: dict[str, Any], salt: str) -> int:
    """A decision eve derives from a reading (deterministic; ciphertext bytes left out, see above)."""
    text = json.dumps(_opaque(reading), sort_keys=True) + salt
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


@dataclass
class Run:
    status: AuctionStatus
    readings: list[dict[str, Any]]
    copy_verdict: tuple[str, str] | None = None


def run(scn: Scenario, amounts: dict[str, float], *, reads: bool, decisions: list[int] | None = None) -> Run:
    """Play the auction. ``reads``: eve reads and copies; else it copies nothing and takes its
    decisions (bid amount, whether to withdraw) from ``decisions``."""
    spec = AuctionSpec.model_validate(
        {
            "mechanism": scn.mechanism,
            "participants": {"agents": [*scn.times, ADVERSARY]},
            "items": ["gpu"],
            "reservePrice": scn.reserve,
            "bidSeconds": DEADLINE,
        }
    )
    participants = [Participant(a) for a in [*scn.times, ADVERSARY]]
    status = start("s", spec, participants, T0, sealing=KEY.info).status
    bids: dict[str, BidAnswer] = {}
    out = Run(status, [])
    moments = sorted({*scn.times.values(), scn.copy_at, scn.bids_at or 0, scn.withdraw_at or 0, DEADLINE})
    for now in moments:
        for agent, when in scn.times.items():
            if when == now:
                bids[agent] = BidAnswer(at=at(now), sealed=seal_as(agent, content_of(amount=amounts[agent])))
        acts = [t for t in (scn.copy_at, scn.bids_at, scn.withdraw_at) if t == now]
        if acts and status.phase not in TERMINAL_PHASES:
            reading = _read(status, bids)
            out.readings.append(_opaque(reading))
            choice = _number(reading, str(now)) if reads else (decisions or []).pop(0)
            if now == scn.copy_at and reads and scn.copy_of is not None:
                bids[ADVERSARY] = BidAnswer(at=at(now), sealed=bids[scn.copy_of].sealed)
            if now == scn.bids_at:
                bids[ADVERSARY] = BidAnswer(
                    at=at(now), sealed=seal_as(ADVERSARY, content_of(amount=(choice % 41) / 2))
                )
            if now == scn.withdraw_at and choice % 2 == 0:
                bids.pop(ADVERSARY, None)
        result = step("s", spec, status, bids, {}, at(now), sealing_key=KEY, session_uid=UID)
        if now == scn.copy_at and reads and scn.copy_of is not None:
            verdict = next(v for v in result.verdicts if v.agent == ADVERSARY)
            out.copy_verdict = (verdict.reason, verdict.message)
        status = result.status
        if status.phase not in TERMINAL_PHASES:
            assert all(b.amount is None for b in status.bids)  # nothing opened while bidding
    out.status = status
    return out


def _decisions(scn: Scenario, readings: list[dict[str, Any]]) -> list[int]:
    moments = sorted(t for t in {scn.copy_at, scn.bids_at, scn.withdraw_at} if t is not None)
    return [
        int.from_bytes(hashlib.sha256((json.dumps(r, sort_keys=True) + str(t)).encode()).digest()[:4], "big")
        for r, t in zip(readings, moments, strict=False)
    ]


def _outcome(status: AuctionStatus) -> tuple[Any, ...]:
    result = status.result
    assert result is not None
    return (
        status.phase,
        result.reason,
        [(a.agent, a.items, a.price, a.bid) for a in result.allocations],
        result.revenue,
    )


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_reading_every_bid_and_the_status_gives_the_adversary_nothing(scn: Scenario) -> None:
    real = run(scn, scn.amounts, reads=True)
    other = run(scn, scn.other_amounts, reads=True)
    # 1. What eve reads does not depend on the honest amounts.
    assert real.readings == other.readings
    # 2. A copy is refused, naming its original, and never counted.
    if scn.copy_of is not None:
        assert real.copy_verdict is not None
        reason, message = real.copy_verdict
        assert reason == "Copied" and f"copy of {scn.copy_of}'s sealed Bid" in message
    assert real.status.phase in TERMINAL_PHASES
    counted = {b.agent for b in real.status.bids}
    assert ADVERSARY not in counted or scn.bids_at is not None
    # 3. The outcome equals that of an eve who read nothing: no copy, and the decisions it would
    # have taken after reading the world with the other amounts.
    blind = run(scn, scn.amounts, reads=False, decisions=_decisions(scn, other.readings))
    assert _outcome(real.status) == _outcome(blind.status)
    honest = {b.agent: b.amount for b in real.status.bids if b.agent != ADVERSARY}
    assert honest == {b.agent: b.amount for b in blind.status.bids if b.agent != ADVERSARY}


# --- the same for a double-auction market ------------------------------------------------------


@dataclass(frozen=True)
class MarketScenario:
    orders: dict[str, tuple[str, int]]  # honest trader -> (side, when)
    prices: dict[str, float]
    other_prices: dict[str, float]
    copy_of: str | None
    copy_at: int
    orders_at: int | None


@st.composite
def market_scenarios(draw: st.DrawFn) -> MarketScenario:
    honest = draw(st.lists(st.sampled_from(HONEST_POOL), min_size=1, max_size=4, unique=True))
    orders = {a: (draw(st.sampled_from(["buy", "sell"])), draw(st.integers(0, 40))) for a in honest}
    copy_at = draw(st.integers(min_value=max(t for _, t in orders.values()) + 1, max_value=50))
    return MarketScenario(
        orders=orders,
        prices={a: draw(halves) for a in honest},
        other_prices={a: draw(halves) for a in honest},
        copy_of=draw(st.one_of(st.none(), st.sampled_from(honest))),
        copy_at=copy_at,
        orders_at=draw(st.one_of(st.none(), st.integers(min_value=copy_at + 1, max_value=55))),
    )


def run_market(
    scn: MarketScenario, prices: dict[str, float], *, reads: bool, decisions: list[int] | None = None
) -> Run:
    from mabeam.core.economics import OrderAnswer, market
    from mabeam.models.market import MarketSpec, OrderContent

    traders = [*scn.orders, ADVERSARY]
    spec = MarketSpec.model_validate(
        {
            "mechanism": "double-auction",
            "participants": {"agents": traders},
            "good": "slots",
            "orderSeconds": DEADLINE,
        }
    )
    status = market.start("m", spec, [Participant(a) for a in traders], T0, sealing=KEY.info).status
    answers: dict[str, OrderAnswer] = {}
    out = Run(status, [])  # type: ignore[arg-type]
    for now in sorted({*(t for _, t in scn.orders.values()), scn.copy_at, scn.orders_at or 0, DEADLINE}):
        for agent, (side, when) in scn.orders.items():
            if when == now:
                content = OrderContent(side=side, price=prices[agent])  # type: ignore[arg-type]
                answers[agent] = OrderAnswer(at=at(now), sealed=seal_as(agent, content, kind="Order"))  # type: ignore[arg-type]
        if now in (scn.copy_at, scn.orders_at) and status.phase == "Collecting":
            reading = {
                "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
                "orders": {a: o.sealed.to_wire() if o.sealed else None for a, o in sorted(answers.items())},
            }
            out.readings.append(_opaque(reading))
            choice = _number(reading, str(now)) if reads else (decisions or []).pop(0)
            if now == scn.copy_at and reads and scn.copy_of is not None:
                answers[ADVERSARY] = OrderAnswer(at=at(now), sealed=answers[scn.copy_of].sealed)
            if now == scn.orders_at:
                side = "buy" if choice % 2 else "sell"
                content = OrderContent(side=side, price=(choice % 41) / 2)  # type: ignore[arg-type]
                answers[ADVERSARY] = OrderAnswer(at=at(now), sealed=seal_as(ADVERSARY, content, kind="Order"))  # type: ignore[arg-type]
        result = market.step("m", spec, status, answers, {}, at(now), sealing_key=KEY, session_uid=UID)
        if now == scn.copy_at and reads and scn.copy_of is not None:
            verdict = next(v for v in result.verdicts if v.agent == ADVERSARY)
            out.copy_verdict = (verdict.reason, verdict.message)
        status = result.status
        if status.phase == "Collecting":
            assert all(o.price is None and o.side is None for o in status.orders)
    out.status = status  # type: ignore[assignment]
    return out


@settings(max_examples=100, deadline=None)
@given(market_scenarios())
def test_reading_every_order_and_the_status_gives_the_adversary_nothing(scn: MarketScenario) -> None:
    real = run_market(scn, scn.prices, reads=True)
    other = run_market(scn, scn.other_prices, reads=True)
    assert real.readings == other.readings
    if scn.copy_of is not None:
        assert real.copy_verdict is not None
        reason, message = real.copy_verdict
        assert reason == "Copied" and f"copy of {scn.copy_of}'s sealed Order" in message
    moments = sorted(t for t in {scn.copy_at, scn.orders_at} if t is not None)
    decisions = [
        int.from_bytes(hashlib.sha256((json.dumps(r, sort_keys=True) + str(t)).encode()).digest()[:4], "big")
        for r, t in zip(other.readings, moments, strict=False)
    ]
    blind = run_market(scn, scn.prices, reads=False, decisions=decisions)
    result, expected = real.status.result, blind.status.result
    assert result is not None and expected is not None
    assert (real.status.phase, result.reason, result.price, result.seller_price, result.trades) == (
        blind.status.phase,
        expected.reason,
        expected.price,
        expected.seller_price,
        expected.trades,
    )
