"""The auction engine: sealed bids (encrypted to the operator's key), verdicts, closing early,
cancellation, invalid specs, idempotence and the outcome effects, as the operator drives it."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core.economics import BidAnswer, SetOwner
from mabeam.core.economics._clock import english_price
from mabeam.core.economics.auction import (
    TERMINAL_PHASES,
    next_deadline,
    outcome_effects,
    start,
    step,
)
from mabeam.core.economics.sealing import SealingKey
from mabeam.core.protocols import EmitEvent, Participant
from mabeam.models._sealed import SealedEnvelope
from mabeam.models.auction import AuctionSpec, AuctionStatus, BidContent
from tests.strategies_auctions import AGENT_POOL, KEY, T0, UID, at, content_of, seal_as

ABC = [Participant("cy"), Participant("ada"), Participant("bob")]
BID_DEADLINE = at(60)


def spec_of(mechanism: str = "first-price", **fields: object) -> AuctionSpec:
    base: dict[str, object] = {
        "mechanism": mechanism,
        "participants": {"agents": ["ada", "bob", "cy"]},
        "items": ["gpu"] if mechanism != "combinatorial" else ["i1", "i2", "i3"],
        "bidSeconds": 60,
    }
    base.update(fields)
    return AuctionSpec.model_validate(base)


def sealed(agent: str, content: BidContent, seconds: float, **how: object) -> BidAnswer:
    return BidAnswer(at=at(seconds), sealed=seal_as(agent, content, **how))  # type: ignore[arg-type]


def begin(spec: AuctionSpec, participants: list[Participant] = ABC) -> AuctionStatus:
    return start("s", spec, participants, T0, sealing=KEY.info).status


def advance(
    spec: AuctionSpec, status: AuctionStatus, answers: Mapping[str, BidAnswer], seconds: float, **how: object
):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {"sealing_key": KEY, "session_uid": UID, **how}
    return step("s", spec, status, answers, {}, at(seconds), **options)  # type: ignore[arg-type]


def verdicts_of(result_verdicts: object) -> dict[str, str]:
    return {v.agent: v.reason for v in result_verdicts}  # type: ignore[attr-defined]


def test_sealed_bids_end_to_end() -> None:
    spec = spec_of()
    started = start("s", spec, [*ABC, Participant("ada", weight=3)], T0, sealing=KEY.info)
    status = started.status
    assert status.phase == "Bidding"
    assert status.sealing == KEY.info  # the public key agents seal to
    assert [p.name for p in status.participants] == ["ada", "bob", "cy"]
    assert status.deadline == BID_DEADLINE == next_deadline(spec, status)
    assert [type(e) for e in started.effects] == [EmitEvent] and started.effects[0].reason == "Started"
    assert KEY.key_id in started.effects[0].message  # type: ignore[union-attr]

    answers = {"ada": sealed("ada", content_of(amount=5), 10), "bob": sealed("bob", content_of(amount=7), 11)}
    bidding = advance(spec, status, answers, 20)
    assert bidding.status.phase == "Bidding"
    assert [(b.agent, b.sealed, b.amount) for b in bidding.status.bids] == [
        ("ada", answers["ada"].sealed, None),
        ("bob", answers["bob"].sealed, None),
    ]
    assert verdicts_of(bidding.verdicts) == {"ada": "Counted", "bob": "Counted"}
    shown = json.dumps(bidding.status.model_dump(mode="json"))
    assert '"amount": null' in shown and "5.0" not in shown and "7.0" not in shown  # no amount yet

    done = advance(spec, bidding.status, answers, 60)  # bidding closes: opened and cleared at once
    status = done.status
    assert status.phase == "Awarded"
    assert status.result is not None
    assert status.result.reason == "HighestBid"
    assert [(a.agent, a.items, a.price, a.bid) for a in status.result.allocations] == [
        ("bob", ["gpu"], 7.0, 7.0)
    ]
    assert (status.result.winners, status.result.revenue, status.result.decided_at) == ("bob", 7.0, at(60))
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [("Complete", "True", "HighestBid")]
    assert [(b.agent, b.amount) for b in status.bids] == [("ada", 5.0), ("bob", 7.0)]
    assert done.effects == (
        SetOwner("gpu", "bob", "s"),
        EmitEvent("HighestBid", status.result.message),
    )
    assert outcome_effects("s", spec, status) == (SetOwner("gpu", "bob", "s"),)
    assert next_deadline(spec, status) is None
    again = advance(spec, status, {**answers, "cy": sealed("cy", content_of(amount=9), 80)}, 100)
    assert again.status == status and again.effects == ()
    assert verdicts_of(again.verdicts) == {"ada": "Counted", "bob": "Counted", "cy": "Closed"}


def test_sealed_exact_amounts_clear_exactly() -> None:
    # 17 significant digits: binary floats would make the two bids equal
    spec = spec_of("second-price", reservePrice="10000000000000.0005")
    status = begin(spec)
    high, low = Decimal("10000000000000.002"), Decimal("10000000000000.001")
    answers = {
        "ada": sealed("ada", BidContent(amount=low), 10),
        "bob": sealed("bob", BidContent.model_validate({"amount": str(high)}), 11),
    }
    done = advance(spec, advance(spec, status, answers, 20).status, answers, 60)
    result = done.status.result
    assert result is not None and result.reason == "SecondPrice"
    assert [(a.agent, a.price, a.bid) for a in result.allocations] == [("bob", low, high)]
    assert [(b.agent, b.amount) for b in done.status.bids] == [("ada", low), ("bob", high)]
    wire = done.status.to_wire()
    assert wire["result"]["revenue"] == "10000000000000.001"
    assert [b["amount"] for b in wire["bids"]] == ["10000000000000.001", "10000000000000.002"]


def test_refusals_while_bidding() -> None:
    spec = spec_of()
    status = begin(spec)
    bob = sealed("bob", content_of(amount=6.25), 5)
    status = advance(spec, status, {"bob": bob}, 5).status
    other_key = SealingKey(bytes(range(32)))
    relabelled = SealedEnvelope(
        key_id=KEY.key_id, ciphertext=seal_as("ada", content_of(amount=1), key=other_key).ciphertext
    )
    answers = {
        "ada": BidAnswer(at=at(10), sealed=bob.sealed),  # a copy of bob's ciphertext
        "bob": sealed("bob", content_of(amount=4.75), 11, uid="another-auction"),  # after a counted bid
        "cy": BidAnswer(at=at(12), round=1, accept=True),  # a clock answer
        "mallory": sealed("mallory", content_of(amount=1), 13),
    }
    result = advance(spec, status, answers, 20)
    assert verdicts_of(result.verdicts) == {
        "ada": "Copied",
        "bob": "BadSeal",
        "cy": "WrongAnswerKind",
        "mallory": "NotParticipant",
    }
    refusals = {r.agent: r for r in result.status.refusals}
    assert list(refusals) == ["ada", "bob", "cy", "mallory"]
    assert "copy of bob's sealed Bid" in refusals["ada"].message
    assert "stays counted" in refusals["bob"].message
    assert f"uid {UID}" in refusals["bob"].message
    assert [b.agent for b in result.status.bids] == ["bob"]  # bob's earlier bid stays counted
    assert result.status.bids[0].sealed == bob.sealed
    for wrong, reason in [
        (sealed("ada", content_of(amount=1), 14, key=other_key), "WrongKey"),  # another key's id
        (BidAnswer(at=at(14), sealed=relabelled), "BadSeal"),  # another key, our key's id
        (sealed("ada", content_of(amount=1), 14, kind="Order"), "BadSeal"),  # another kind of answer
        (sealed("ada", content_of(bundles=[(["gpu"], 1)]), 14), "WrongAnswerKind"),
    ]:
        assert verdicts_of(advance(spec, status, {"ada": wrong}, 20).verdicts) == {"ada": reason}
    for message in (r.message for r in result.status.refusals):
        assert "6.25" not in message and "4.75" not in message  # refusals never tell an amount
    # Whatever was refused, bidding closes with bob's bid alone.
    done = advance(spec, result.status, answers, 60)
    assert done.status.result is not None
    assert [(a.agent, a.price) for a in done.status.result.allocations] == [("bob", 6.25)]


def test_tampering_with_a_ciphertext_is_refused() -> None:
    spec = spec_of()
    status = begin(spec)
    good = seal_as("ada", content_of(amount=3))
    raw = bytearray(base64.b64decode(good.ciphertext))
    for where in (0, 33, 50, len(raw) - 1):  # the ephemeral key, the nonce, the body, the tag
        bad = bytearray(raw)
        bad[where] ^= 1
        env = SealedEnvelope(key_id=good.key_id, ciphertext=base64.b64encode(bytes(bad)).decode())
        result = advance(spec, status, {"ada": BidAnswer(at=at(1), sealed=env)}, 1)
        assert verdicts_of(result.verdicts) == {"ada": "BadSeal"}, where
        assert result.status.bids == []


def test_a_bid_changes_until_the_deadline_then_is_binding() -> None:
    spec = spec_of()
    status = begin(spec)
    first, second, third = (sealed("ada", content_of(amount=a), t) for a, t in ((1, 5), (2, 30), (3, 61)))
    status = advance(spec, status, {"ada": first}, 5).status
    status = advance(spec, status, {"ada": second}, 30).status
    assert [(b.sealed, b.received_at) for b in status.bids] == [(second.sealed, at(30))]
    withdrawn = advance(spec, status, {}, 40).status
    assert withdrawn.bids == []
    late = advance(spec, status, {"ada": third}, 61)
    assert verdicts_of(late.verdicts) == {"ada": "Late"}
    assert late.status.result is not None
    assert [(a.agent, a.bid) for a in late.status.result.allocations] == [("ada", 2.0)]
    deleted = advance(spec, status, {}, 61)  # deleting after the close withdraws nothing
    assert deleted.status.result == late.status.result


def test_nobody_bids_no_sale_and_no_participants_no_bidders() -> None:
    spec = spec_of()
    status = begin(spec)
    done = advance(spec, status, {}, 60)
    assert (done.status.phase, done.status.result.reason if done.status.result else None) == (
        "NoSale",
        "NoBids",
    )
    empty = start("s", spec, [], T0, sealing=KEY.info)
    assert empty.status.phase == "NoSale"
    assert empty.status.result is not None and empty.status.result.reason == "NoBidders"
    assert [c.type for c in empty.status.conditions] == ["Complete"]


def test_without_the_key_a_sealed_auction_fails_with_a_reason() -> None:
    spec = spec_of()
    keyless = start("s", spec, ABC, T0)
    assert keyless.status.phase == "Failed"
    assert keyless.status.result is not None and keyless.status.result.reason == "NoSealingKey"
    status = begin(spec)
    answers = {"ada": sealed("ada", content_of(amount=1), 1)}
    replaced = advance(spec, status, answers, 2, sealing_key=SealingKey(bytes(32)))
    assert replaced.status.phase == "Failed"
    assert replaced.status.result is not None and replaced.status.result.reason == "SealingKeyChanged"
    assert KEY.key_id in replaced.status.result.message
    assert verdicts_of(replaced.verdicts) == {"ada": "Closed"}


@pytest.mark.parametrize(
    ("bundles", "reason"),
    [
        ([(["i1", "i9"], 4.0)], "UnknownItem"),
        ([(["i1", "i1"], 4.0)], "DuplicateItem"),
        (None, "WrongAnswerKind"),
    ],
    ids=["unknown-item", "item-twice", "amount-instead-of-bundles"],
)
def test_a_combinatorial_bid_must_fit_the_items(
    bundles: list[tuple[list[str], float]] | None, reason: str
) -> None:
    spec = spec_of("combinatorial")
    status = begin(spec)
    bid = content_of(amount=4.0 if bundles is None else None, bundles=bundles)
    result = advance(spec, status, {"ada": sealed("ada", bid, 1)}, 1)
    assert verdicts_of(result.verdicts) == {"ada": reason}
    assert "i9" not in result.status.refusals[0].message  # not even the items are told


def test_combinatorial_awards_every_winner_and_outcome_effects_match_the_transition() -> None:
    spec = spec_of("combinatorial", reservePrice=1)
    status = begin(spec)
    bids = {
        "ada": content_of(bundles=[(["i2", "i1"], 10), (["i3"], 2)]),
        "bob": content_of(bundles=[(["i3"], 6)]),
        "cy": content_of(bundles=[(["i1", "i2", "i3"], 12)]),
    }
    done = advance(spec, status, {a: sealed(a, c, 1) for a, c in bids.items()}, 1)  # all bid: closes now
    result = done.status.result
    assert result is not None and result.reason == "Optimal"
    # welfare 16 (ada 10 + bob 6); without ada: 12 (cy) -> 12 - 6 = 6; without bob: 12 -> 12 - 10 = 2
    assert [(a.agent, a.items, a.price, a.bid) for a in result.allocations] == [
        ("ada", ["i1", "i2"], 6.0, 10.0),
        ("bob", ["i3"], 2.0, 6.0),
    ]
    assert (result.winners, result.revenue, result.decided_at) == ("ada,bob", 8.0, at(1))
    owners = tuple(e for e in done.effects if isinstance(e, SetOwner))
    assert owners == (SetOwner("i1", "ada", "s"), SetOwner("i2", "ada", "s"), SetOwner("i3", "bob", "s"))
    assert outcome_effects("s", spec, done.status) == owners
    assert done.effects[-1] == EmitEvent("Optimal", result.message)
    assert [b.bundles for b in done.status.bids] == [
        bids["ada"].bundles,
        bids["bob"].bundles,
        bids["cy"].bundles,
    ]


def test_cancel_ends_an_open_auction() -> None:
    spec = spec_of()
    status = begin(spec)
    ada = sealed("ada", content_of(amount=3), 1)
    status = advance(spec, status, {"ada": ada}, 1).status
    cancelled = spec_of(cancel=True)
    done = advance(cancelled, status, {"ada": ada}, 5)
    assert done.status.phase == "Cancelled"
    assert done.status.result is not None and done.status.result.reason == "Cancelled"
    assert [(c.type, c.reason) for c in done.status.conditions] == [("Complete", "Cancelled")]
    assert done.effects == (EmitEvent("Cancelled", "spec.cancel is true"),)
    assert outcome_effects("s", cancelled, done.status) == ()
    assert next_deadline(cancelled, done.status) is None
    assert all(b.amount is None for b in done.status.bids)  # a cancelled auction opens nothing
    again = advance(cancelled, done.status, {}, 200)
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
    assert [c.type for c in result.status.conditions] == ["Failed", "Stalled", "Invalid"]
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
        "dee": BidAnswer(at=at(2), sealed=seal_as("dee", content_of(amount=1))),
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
    result = step("s", spec, status, {"ada": sealed("ada", content_of(amount=5), 1)}, {}, at(1))
    assert verdicts_of(result.verdicts) == {"ada": "WrongAnswerKind"}
    assert result.status.round == 1


# ---------------------------------------------------------------------------------------------
# Properties over generated sealed auctions

Plan = dict[str, tuple[BidContent, list[int]]]


@st.composite
def sealed_scenarios(draw: st.DrawFn) -> tuple[AuctionSpec, Plan]:
    """A sealed auction and, per bidder, its bid and when it sends (and re-sends) it."""
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
            bid = content_of(bundles=bundles)
        else:
            bid = content_of(amount=float(draw(st.integers(min_value=0, max_value=10))))
        times = sorted(draw(st.lists(st.integers(min_value=0, max_value=70), max_size=2)))
        plan[agent] = (bid, times)
    return spec, plan


def answers_at(
    spec: AuctionSpec, plan: Plan, now: int, envelopes: dict[tuple[str, int], BidAnswer]
) -> dict[str, BidAnswer]:
    """Every Bid as it stands at ``now``: its newest version (each version sealed once)."""
    out = {}
    for agent, (bid, times) in plan.items():
        sent = [t for t in times if t <= now]
        if sent:
            key = (agent, sent[-1])
            if key not in envelopes:
                envelopes[key] = sealed(agent, bid, sent[-1])
            out[agent] = envelopes[key]
    return out


@settings(max_examples=150, deadline=None)
@given(sealed_scenarios(), st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=6))
def test_a_repeated_step_returns_the_same_status_and_no_effects(
    scenario: tuple[AuctionSpec, Plan], times: list[int]
) -> None:
    spec, plan = scenario
    status = begin(spec, [Participant(a) for a in plan])
    envelopes: dict[tuple[str, int], BidAnswer] = {}
    for now in [*sorted(times), 100]:
        answers = answers_at(spec, plan, now, envelopes)
        first = advance(spec, status, answers, now)
        again = advance(spec, first.status, answers, now)
        assert again.status == first.status
        assert again.effects == ()
        if first.status.phase in TERMINAL_PHASES:  # what was counted stays counted, the rest is Closed
            for before, after in zip(first.verdicts, again.verdicts, strict=True):
                assert after.reason == ("Counted" if before.accepted else "Closed"), (before, after)
        else:
            assert again.verdicts == first.verdicts
            assert all(b.amount is None and b.bundles is None for b in first.status.bids)
        if first.status.phase in TERMINAL_PHASES and first.status.phase != status.phase:
            owners = tuple(e for e in first.effects if isinstance(e, SetOwner))
            assert outcome_effects("s", spec, first.status) == owners
        status = first.status
    assert status.phase in TERMINAL_PHASES  # the deadline has passed at 100


@settings(max_examples=150, deadline=None)
@given(sealed_scenarios())
def test_closing_early_gives_the_same_outcome_as_waiting_for_the_deadline(
    scenario: tuple[AuctionSpec, Plan],
) -> None:
    spec, plan = scenario
    participants = [Participant(a) for a in plan]
    bids = {a: sealed(a, bid, 1) for a, (bid, _) in plan.items()}

    early = advance(spec, begin(spec, participants), bids, 1).status  # everyone bid: closes now
    waited = advance(spec, begin(spec, participants), bids, 60).status

    assert early.phase in TERMINAL_PHASES
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
