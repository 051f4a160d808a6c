"""The auction engine: commit-reveal, verdicts, closing early, cancellation, invalid specs,
idempotence and the outcome effects, as the operator drives it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core.economics import BidAnswer, SetOwner, commitment
from mabeam.core.economics._clock import english_price
from mabeam.core.economics.auction import (
    TERMINAL_PHASES,
    next_deadline,
    outcome_effects,
    start,
    step,
)
from mabeam.core.protocols import EmitEvent, Participant
from mabeam.models.auction import AuctionSpec, AuctionStatus, BidReveal, Bundle
from tests.strategies_auctions import AGENT_POOL, NONCE, T0, at

ABC = [Participant("cy"), Participant("ada"), Participant("bob")]
BID_DEADLINE = at(60)
REVEAL_DEADLINE = at(90)


def spec_of(mechanism: str = "first-price", **fields: object) -> AuctionSpec:
    base: dict[str, object] = {
        "mechanism": mechanism,
        "participants": {"agents": ["ada", "bob", "cy"]},
        "items": ["gpu"] if mechanism != "combinatorial" else ["i1", "i2", "i3"],
        "bidSeconds": 60,
        "revealSeconds": 30,
    }
    base.update(fields)
    return AuctionSpec.model_validate(base)


def reveal_of(
    agent: str, amount: float | None = None, bundles: list[tuple[list[str], float]] | None = None
) -> BidReveal:
    return BidReveal(
        amount=amount,
        bundles=[Bundle(items=items, amount=a) for items, a in bundles] if bundles is not None else None,
        nonce=NONCE + agent,
    )


def sealed(reveal: BidReveal, seconds: float) -> BidAnswer:
    return BidAnswer(at=at(seconds), commitment=commitment(reveal))


def opened(reveal: BidReveal, seconds: float) -> BidAnswer:
    return BidAnswer(at=at(seconds), commitment=commitment(reveal), reveal=reveal)


def verdicts_of(result_verdicts: object) -> dict[str, str]:
    return {v.agent: v.reason for v in result_verdicts}  # type: ignore[attr-defined]


def test_commit_reveal_end_to_end() -> None:
    spec = spec_of()
    started = start("s", spec, [*ABC, Participant("ada", weight=3)], T0)
    status = started.status
    assert status.phase == "Bidding"
    assert [p.name for p in status.participants] == ["ada", "bob", "cy"]
    assert status.deadline == BID_DEADLINE == next_deadline(spec, status)
    assert [type(e) for e in started.effects] == [EmitEvent] and started.effects[0].reason == "Started"

    ada, bob = reveal_of("ada", amount=5), reveal_of("bob", amount=7)
    bidding = step("s", spec, status, {"ada": sealed(ada, 10), "bob": sealed(bob, 11)}, {}, at(20))
    assert bidding.status.phase == "Bidding"
    assert [(b.agent, b.commitment, b.amount) for b in bidding.status.bids] == [
        ("ada", commitment(ada), None),
        ("bob", commitment(bob), None),
    ]
    assert verdicts_of(bidding.verdicts) == {"ada": "Counted", "bob": "Counted"}

    revealing = step("s", spec, bidding.status, {"ada": sealed(ada, 10), "bob": sealed(bob, 11)}, {}, at(60))
    assert revealing.status.phase == "Revealing"
    assert revealing.status.deadline == REVEAL_DEADLINE == next_deadline(spec, revealing.status)
    assert [e.reason for e in revealing.effects] == ["Revealing"]  # type: ignore[union-attr]

    answers = {"ada": opened(ada, 65), "bob": opened(bob, 66)}
    done = step("s", spec, revealing.status, answers, {}, at(70))  # everyone revealed: no need to wait
    status = done.status
    assert status.phase == "Awarded"
    assert status.result is not None
    assert status.result.reason == "HighestBid"
    assert [(a.agent, a.items, a.price, a.bid) for a in status.result.allocations] == [
        ("bob", ["gpu"], 7.0, 7.0)
    ]
    assert (status.result.winners, status.result.revenue, status.result.decided_at) == ("bob", 7.0, at(70))
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [("Complete", "True", "HighestBid")]
    assert [(b.agent, b.amount, b.revealed) for b in status.bids] == [("ada", 5.0, True), ("bob", 7.0, True)]
    assert done.effects == (
        SetOwner("gpu", "bob", "s"),
        EmitEvent("HighestBid", status.result.message),
    )
    assert outcome_effects("s", spec, status) == (SetOwner("gpu", "bob", "s"),)
    assert next_deadline(spec, status) is None
    again = step("s", spec, status, {**answers, "cy": sealed(reveal_of("cy", amount=9), 80)}, {}, at(100))
    assert again.status == status and again.effects == ()
    assert verdicts_of(again.verdicts) == {"ada": "Counted", "bob": "Counted", "cy": "Closed"}


def test_refusals_while_bidding() -> None:
    spec = spec_of()
    status = start("s", spec, ABC, T0).status
    ada, bob = reveal_of("ada", amount=5), reveal_of("bob", amount=6)
    status = step("s", spec, status, {"bob": sealed(bob, 5)}, {}, at(5)).status
    answers = {
        "ada": opened(ada, 10),  # a reveal while bidding
        "bob": opened(bob, 11),  # the same, after a counted commitment
        "cy": BidAnswer(at=at(12), round=1, accept=True),  # a clock answer
        "mallory": sealed(reveal_of("mallory", amount=1), 13),
    }
    result = step("s", spec, status, answers, {}, at(20))
    assert verdicts_of(result.verdicts) == {
        "ada": "RevealTooEarly",
        "bob": "RevealTooEarly",
        "cy": "WrongAnswerKind",
        "mallory": "NotParticipant",
    }
    assert [(r.agent, r.reason) for r in result.status.refusals] == [
        ("ada", "RevealTooEarly"),
        ("bob", "RevealTooEarly"),
        ("cy", "WrongAnswerKind"),
        ("mallory", "NotParticipant"),
    ]
    assert "stays counted" in next(r.message for r in result.status.refusals if r.agent == "bob")
    assert [b.agent for b in result.status.bids] == ["bob"]  # bob's commitment stays counted


def test_a_commitment_changes_until_the_deadline_then_is_late() -> None:
    spec = spec_of()
    status = start("s", spec, ABC, T0).status
    first, second, third = (reveal_of("ada", amount=a) for a in (1, 2, 3))
    status = step("s", spec, status, {"ada": sealed(first, 5)}, {}, at(5)).status
    status = step("s", spec, status, {"ada": sealed(second, 30)}, {}, at(30)).status
    assert [(b.commitment, b.received_at) for b in status.bids] == [(commitment(second), at(30))]
    withdrawn = step("s", spec, status, {}, {}, at(40)).status
    assert withdrawn.bids == []
    late = step("s", spec, status, {"ada": sealed(third, 61)}, {}, at(61))
    assert late.status.phase == "Revealing"
    assert verdicts_of(late.verdicts) == {"ada": "Late"}
    assert [b.commitment for b in late.status.bids] == [commitment(second)]


def test_reveals_are_checked_against_the_commitment() -> None:
    spec = spec_of("second-price", reservePrice=2)
    status = start("s", spec, ABC, T0).status
    ada, bob = reveal_of("ada", amount=5), reveal_of("bob", amount=8)
    status = step("s", spec, status, {"ada": sealed(ada, 1), "bob": sealed(bob, 2)}, {}, at(60)).status
    assert status.phase == "Revealing"
    lie = BidReveal(amount=9, nonce=bob.nonce)
    answers = {
        "ada": opened(ada, 61),
        "bob": BidAnswer(at=at(62), commitment=commitment(bob), reveal=lie),
        "cy": opened(reveal_of("cy", amount=20), 63),
    }
    result = step("s", spec, status, answers, {}, at(70))
    assert verdicts_of(result.verdicts) == {"ada": "Counted", "bob": "BadCommitment", "cy": "NoCommitment"}
    assert result.status.phase == "Revealing"
    done = step("s", spec, result.status, answers, {}, REVEAL_DEADLINE)
    assert done.status.result is not None
    assert done.status.result.reason == "SecondPrice"
    assert [(a.agent, a.price) for a in done.status.result.allocations] == [("ada", 2.0)]  # the reserve
    assert "unrevealed commitments (bob) were not counted" in done.status.result.message
    assert [(b.agent, b.revealed) for b in done.status.bids] == [("ada", True), ("bob", False)]


def test_nobody_commits_no_sale_and_no_participants_no_bidders() -> None:
    spec = spec_of()
    status = start("s", spec, ABC, T0).status
    done = step("s", spec, status, {}, {}, at(60))
    assert (done.status.phase, done.status.result.reason if done.status.result else None) == (
        "NoSale",
        "NoBids",
    )
    empty = start("s", spec, [], T0)
    assert empty.status.phase == "NoSale"
    assert empty.status.result is not None and empty.status.result.reason == "NoBidders"
    assert [c.type for c in empty.status.conditions] == ["Complete"]


@pytest.mark.parametrize(
    ("bundles", "reason"),
    [
        ([(["i1", "i9"], 4.0)], "UnknownItem"),
        ([(["i1", "i1"], 4.0)], "DuplicateItem"),
        (None, "WrongAnswerKind"),
    ],
    ids=["unknown-item", "item-twice", "amount-instead-of-bundles"],
)
def test_a_combinatorial_reveal_must_fit_the_items(
    bundles: list[tuple[list[str], float]] | None, reason: str
) -> None:
    spec = spec_of("combinatorial")
    status = start("s", spec, ABC, T0).status
    bid = reveal_of("ada", amount=4.0 if bundles is None else None, bundles=bundles)
    status = step("s", spec, status, {"ada": sealed(bid, 1)}, {}, at(60)).status
    result = step("s", spec, status, {"ada": opened(bid, 61)}, {}, at(61))
    assert verdicts_of(result.verdicts) == {"ada": reason}


def test_combinatorial_awards_every_winner_and_outcome_effects_match_the_transition() -> None:
    spec = spec_of("combinatorial", reservePrice=1)
    status = start("s", spec, ABC, T0).status
    bids = {
        "ada": reveal_of("ada", bundles=[(["i2", "i1"], 10), (["i3"], 2)]),
        "bob": reveal_of("bob", bundles=[(["i3"], 6)]),
        "cy": reveal_of("cy", bundles=[(["i1", "i2", "i3"], 12)]),
    }
    status = step("s", spec, status, {a: sealed(r, 1) for a, r in bids.items()}, {}, at(1)).status
    assert status.phase == "Revealing" and status.deadline == at(31)  # closed early at `now`
    done = step("s", spec, status, {a: opened(r, 2) for a, r in bids.items()}, {}, at(2))
    result = done.status.result
    assert result is not None and result.reason == "Optimal"
    # welfare 16 (ada 10 + bob 6); without ada: 12 (cy) -> 12 - 6 = 6; without bob: 12 -> 12 - 10 = 2
    assert [(a.agent, a.items, a.price, a.bid) for a in result.allocations] == [
        ("ada", ["i1", "i2"], 6.0, 10.0),
        ("bob", ["i3"], 2.0, 6.0),
    ]
    assert (result.winners, result.revenue) == ("ada,bob", 8.0)
    owners = tuple(e for e in done.effects if isinstance(e, SetOwner))
    assert owners == (SetOwner("i1", "ada", "s"), SetOwner("i2", "ada", "s"), SetOwner("i3", "bob", "s"))
    assert outcome_effects("s", spec, done.status) == owners
    assert done.effects[-1] == EmitEvent("Optimal", result.message)


def test_cancel_ends_an_open_auction() -> None:
    spec = spec_of()
    status = start("s", spec, ABC, T0).status
    ada = reveal_of("ada", amount=3)
    status = step("s", spec, status, {"ada": sealed(ada, 1)}, {}, at(1)).status
    cancelled = spec_of(cancel=True)
    done = step("s", cancelled, status, {"ada": sealed(ada, 1)}, {}, at(5))
    assert done.status.phase == "Cancelled"
    assert done.status.result is not None and done.status.result.reason == "Cancelled"
    assert [(c.type, c.reason) for c in done.status.conditions] == [("Complete", "Cancelled")]
    assert done.effects == (EmitEvent("Cancelled", "spec.cancel is true"),)
    assert outcome_effects("s", cancelled, done.status) == ()
    assert next_deadline(cancelled, done.status) is None
    again = step("s", cancelled, done.status, {}, {}, at(200))
    assert again.status == done.status and again.effects == ()


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"mechanism": "english", "increment": 1, "startPrice": 1, "reservePrice": 5}, "spec.startPrice"),
        ({"mechanism": "dutch", "startPrice": 1000, "decrement": 0.001}, "spec.decrement"),
    ],
    ids=["english-opening-below-reserve", "dutch-too-many-rounds"],
)
def test_a_parseable_spec_that_cannot_work_fails(fields: dict[str, object], path: str) -> None:
    spec = spec_of(**fields)
    result = start("s", spec, ABC, T0)
    assert result.status.phase == "Failed"
    assert result.status.result is not None
    assert result.status.result.reason == "Invalid"
    assert result.status.result.message.startswith(path + ":")
    assert [c.type for c in result.status.conditions] == ["Invalid"]
    assert result.effects == (EmitEvent("Invalid", result.status.result.message, "Warning"),)
    assert next_deadline(spec, result.status) is None


def test_a_fine_increment_at_a_huge_price_gives_exact_clock_prices() -> None:
    spec = spec_of(mechanism="english", increment="0.001", startPrice="10000000000000")
    result = start("s", spec, ABC, T0)
    assert result.status.phase == "Bidding"
    assert result.status.clock_price == Decimal("10000000000000")
    assert result.status.to_wire()["clockPrice"] == 10000000000000
    assert english_price(spec.start_price or 0, spec.increment or 1, 2) == Fraction("10000000000000.001")


def test_a_spec_edited_into_an_invalid_one_fails_the_open_auction() -> None:
    spec = spec_of("english", increment=1)
    status = start("s", spec, ABC, T0).status
    broken = spec_of("english", increment=1, startPrice=1, reservePrice=3)
    done = step("s", broken, status, {}, {}, at(1))
    assert done.status.phase == "Failed"
    assert done.status.result is not None and done.status.result.message.startswith("spec.startPrice:")


def test_clock_answers_are_judged_against_the_current_round() -> None:
    spec = spec_of("english", increment=1, roundSeconds=10)
    status = start("s", spec, ABC, T0).status
    answers = {
        "ada": BidAnswer(at=at(1), round=1, accept=True),
        "bob": BidAnswer(at=at(1), round=1, accept=False),
        "cy": BidAnswer(at=at(1), round=1, accept=True),
    }
    status = step("s", spec, status, answers, {}, at(1)).status  # everyone answered: round 2 at once
    assert (status.round, status.clock_price, status.active, status.deadline) == (
        2,
        1.0,
        ["ada", "cy"],
        at(11),
    )
    answers = {
        "ada": BidAnswer(at=at(2), round=3, accept=True),
        "bob": BidAnswer(at=at(2), round=2, accept=True),
        "cy": BidAnswer(at=at(1), round=1, accept=True),
        "eve": BidAnswer(at=at(2), round=2, accept=True),
        "dee": BidAnswer(at=at(2), commitment="0" * 64),
    }
    result = step("s", spec, status, answers, {}, at(2))
    assert verdicts_of(result.verdicts) == {
        "ada": "WrongRound",
        "bob": "NotActive",
        "cy": "Counted",  # counted in round 1, where it was sent
        "dee": "NotParticipant",
        "eve": "NotParticipant",
    }
    late = step("s", spec, status, {"ada": BidAnswer(at=at(12), round=2, accept=True)}, {}, at(12))
    assert verdicts_of(late.verdicts) == {"ada": "Late"}
    assert late.status.result is not None and late.status.result.reason == "ClockWinner"
    assert [(a.agent, a.price) for a in late.status.result.allocations] == [("ada", 0.0)]  # both dropped


def test_a_sealed_answer_to_a_dutch_auction_is_the_wrong_kind() -> None:
    spec = spec_of("dutch", startPrice=10, decrement=1)
    status = start("s", spec, ABC, T0).status
    result = step("s", spec, status, {"ada": sealed(reveal_of("ada", amount=5), 1)}, {}, at(1))
    assert verdicts_of(result.verdicts) == {"ada": "WrongAnswerKind"}
    assert result.status.round == 1


# ---------------------------------------------------------------------------------------------
# Properties over generated sealed auctions


@st.composite
def sealed_scenarios(draw: st.DrawFn) -> tuple[AuctionSpec, dict[str, tuple[BidReveal, int, int | None]]]:
    """A sealed auction and, per bidder, its bid, when it commits, and when it reveals (or never)."""
    mechanism = draw(st.sampled_from(["first-price", "second-price", "combinatorial"]))
    agents = draw(st.lists(st.sampled_from(AGENT_POOL), min_size=1, max_size=4, unique=True))
    items = ["i1", "i2", "i3"]
    spec = spec_of(
        mechanism,
        participants={"agents": agents},
        reservePrice=draw(st.sampled_from([0, 1, 3])),
        items=items if mechanism == "combinatorial" else ["gpu"],
    )
    plan = {}
    for agent in agents:
        if mechanism == "combinatorial":
            bundles = draw(
                st.lists(
                    st.tuples(
                        st.lists(st.sampled_from(items), min_size=1, max_size=3, unique=True),
                        st.integers(min_value=0, max_value=10).map(float),
                    ),
                    max_size=2,
                )
            )
            bid = reveal_of(agent, bundles=bundles)
        else:
            bid = reveal_of(agent, amount=float(draw(st.integers(min_value=0, max_value=10))))
        committed = draw(st.integers(min_value=0, max_value=70))
        revealed = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=100)))
        plan[agent] = (bid, committed, revealed)
    return spec, plan


def answers_at(plan: Mapping[str, tuple[BidReveal, int, int | None]], now: int) -> dict[str, BidAnswer]:
    """Every Bid as it stands at ``now``: committed, then (later) revealed."""
    out = {}
    for agent, (bid, committed, revealed) in plan.items():
        if revealed is not None and revealed <= now and revealed >= committed:
            out[agent] = opened(bid, revealed)
        elif committed <= now:
            out[agent] = sealed(bid, committed)
    return out


@settings(max_examples=200, deadline=None)
@given(sealed_scenarios(), st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=6))
def test_a_repeated_step_returns_the_same_status_and_no_effects(
    scenario: tuple[AuctionSpec, dict[str, tuple[BidReveal, int, int | None]]], times: list[int]
) -> None:
    spec, plan = scenario
    status: AuctionStatus = start("s", spec, [Participant(a) for a in plan], T0).status
    for now in [*sorted(times), 100]:
        answers = answers_at(plan, now)
        first = step("s", spec, status, answers, {}, at(now))
        again = step("s", spec, first.status, answers, {}, at(now))
        assert again.status == first.status
        assert again.effects == ()
        if first.status.phase in TERMINAL_PHASES:  # what was counted stays counted, the rest is Closed
            for before, after in zip(first.verdicts, again.verdicts, strict=True):
                assert after.reason == ("Counted" if before.accepted else "Closed"), (before, after)
        else:
            assert again.verdicts == first.verdicts
        if first.status.phase in TERMINAL_PHASES and first.status.phase != status.phase:
            owners = tuple(e for e in first.effects if isinstance(e, SetOwner))
            assert outcome_effects("s", spec, first.status) == owners
        status = first.status
    assert status.phase in TERMINAL_PHASES  # every deadline has passed at 100


@settings(max_examples=150, deadline=None)
@given(sealed_scenarios())
def test_closing_early_gives_the_same_outcome_as_waiting_for_the_deadlines(
    scenario: tuple[AuctionSpec, dict[str, tuple[BidReveal, int, int | None]]],
) -> None:
    spec, plan = scenario
    participants = [Participant(a) for a in plan]
    commits = {a: sealed(bid, 1) for a, (bid, _, _) in plan.items()}
    reveals = {a: opened(bid, 2) for a, (bid, _, _) in plan.items()}

    early = start("s", spec, participants, T0).status
    early = step("s", spec, early, commits, {}, at(1)).status  # everyone committed
    assert early.phase == "Revealing"
    early = step("s", spec, early, reveals, {}, at(2)).status  # everyone revealed
    assert early.phase in TERMINAL_PHASES

    waited = start("s", spec, participants, T0).status
    waited = step("s", spec, waited, commits, {}, at(60)).status
    assert waited.phase == "Revealing"
    waited = step(
        "s", spec, waited, {a: opened(bid, 61) for a, (bid, _, _) in plan.items()}, {}, at(90)
    ).status

    assert early.result is not None and waited.result is not None
    assert (early.phase, early.result.reason) == (waited.phase, waited.result.reason)
    assert early.result.allocations == waited.result.allocations


@st.composite
def clock_scenarios(draw: st.DrawFn) -> tuple[AuctionSpec, dict[str, list[tuple[int, int, bool]]]]:
    """A clock auction and, per bidder, the versions of its Bid: (second, round, accept)."""
    mechanism = draw(st.sampled_from(["english", "dutch"]))
    agents = draw(st.lists(st.sampled_from(AGENT_POOL), min_size=1, max_size=4, unique=True))
    fields: dict[str, object] = {"participants": {"agents": agents}, "roundSeconds": 10, "maxRounds": 4}
    if mechanism == "english":
        fields["increment"] = 1
    else:
        fields.update(startPrice=5, decrement=1, reservePrice=1)
    versions = {
        agent: sorted(
            draw(
                st.lists(
                    st.tuples(
                        st.integers(min_value=0, max_value=60),
                        st.integers(min_value=1, max_value=5),
                        st.booleans(),
                    ),
                    max_size=3,
                )
            )
        )
        for agent in agents
    }
    return spec_of(mechanism, **fields), versions


@settings(max_examples=200, deadline=None)
@given(clock_scenarios(), st.lists(st.integers(min_value=0, max_value=80), min_size=1, max_size=8))
def test_a_repeated_clock_step_returns_the_same_status_and_no_effects(
    scenario: tuple[AuctionSpec, dict[str, list[tuple[int, int, bool]]]], times: list[int]
) -> None:
    spec, versions = scenario
    status: AuctionStatus = start("s", spec, [Participant(a) for a in versions], T0).status
    for now in [*sorted(times), 80]:
        answers = {}
        for agent, bids in versions.items():
            sent = [b for b in bids if b[0] <= now]
            if sent:
                second, round_, accept = sent[-1]
                answers[agent] = BidAnswer(at=at(second), round=round_, accept=accept)
        first = step("s", spec, status, answers, {}, at(now))
        again = step("s", spec, first.status, answers, {}, at(now))
        assert again.status == first.status
        assert again.effects == ()
        if first.status.phase in TERMINAL_PHASES:  # what was counted stays counted, the rest is Closed
            for before, after in zip(first.verdicts, again.verdicts, strict=True):
                assert after.reason == ("Counted" if before.accepted else "Closed"), (before, after)
        else:
            assert again.verdicts == first.verdicts
        status = first.status
    assert status.phase in TERMINAL_PHASES  # english: at most 4 rounds; dutch: 5 rounds of 10 s
