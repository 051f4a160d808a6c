"""Contract net: call for proposals, award to the cheapest, fall back when the awardee does not
confirm. Checked against a reference that walks the ranking by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings

from mabeam.core.protocols import Answer, Award, Participant, SetVariable, StepResult, start, step
from mabeam.models.coordination import CoordinationSpec, CoordinationStatus
from tests.strategies import DEADLINE, T0, Bidder, at, bidders

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AWARD_SECONDS = 10.0


def cnet_spec(names: list[str]) -> CoordinationSpec:
    return CoordinationSpec.model_validate(
        {
            "protocol": "contract-net",
            "participants": {"agents": names},
            "task": {"description": "weld the seam", "capability": "weld"},
            "answerSeconds": 60,
            "awardSeconds": AWARD_SECONDS,
            "variableRef": {"name": "welder"},
        }
    )


def reference(bs: list[Bidder]) -> tuple[str | None, str, list[tuple[str, str]]]:
    """(winner, reason, declined) from the ranking rule and each bidder's behaviour."""
    if not any("weld" in b.participant.capabilities for b in bs):
        return (None, "NoParticipants", [])
    offers = sorted(
        (b.cost, b.participant.name, b)
        for b in bs
        if "weld" in b.participant.capabilities and b.cost is not None
    )
    if not offers:
        return (None, "NoProposals", [])
    declined = []
    for _, name, b in offers:
        if not b.alive:
            declined.append((name, "Absent"))
        elif b.behaviour == "accept":
            return (name, "Awarded", declined)
        elif b.behaviour == "decline":
            declined.append((name, "Declined"))
        else:
            declined.append((name, "NoConfirmation"))
    return (None, "NoConfirmation", declined)


class Run:
    """Drives one session the way the operator would, checking determinism and idempotence."""

    def __init__(self, bs: list[Bidder]) -> None:
        self.bs = {b.participant.name: b for b in bs}
        self.spec = cnet_spec(list(self.bs))
        self.alive = {n: b.alive for n, b in self.bs.items()}
        opened = start("s1", self.spec, [b.participant for b in bs], T0)
        self.status: CoordinationStatus = opened.status
        self.effects = list(opened.effects)
        self.answers: dict[str, Answer] = {}
        self.now = T0

    def step(self, now: dt.datetime) -> StepResult:
        self.now = now
        result = step("s1", self.spec, self.status, self.answers, self.alive, now)
        assert step("s1", self.spec, self.status, self.answers, self.alive, now) == result
        repeat = step("s1", self.spec, result.status, self.answers, self.alive, now)
        assert repeat.status == result.status
        assert repeat.effects == ()
        self.status = result.status
        self.effects.extend(result.effects)
        return result

    def collect(self, *, early: bool) -> None:
        for b in sorted(self.bs.values(), key=lambda b: b.second):
            if b.cost is None:
                continue
            self.answers[b.participant.name] = Answer(at=at(b.second), cost=b.cost)
            if early and self.status.phase == "Collecting":
                self.step(at(b.second))
        if self.status.phase == "Collecting":
            self.step(DEADLINE)

    def award(self) -> None:
        for _ in range(len(self.bs) + 1):
            if self.status.phase != "Deciding":
                return
            assert self.status.award is not None
            awardee = self.bs[self.status.award.agent]
            if awardee.behaviour == "silent":
                self.step(self.status.award.deadline)
            else:
                now = self.now + dt.timedelta(seconds=1)
                self.answers[awardee.participant.name] = dataclasses.replace(
                    self.answers[awardee.participant.name], accept=awardee.behaviour == "accept", at=now
                )
                self.step(now)
        raise AssertionError("the award went round more often than there are bidders")

    def outcome(self) -> tuple[str | None, str, list[tuple[str, str]]]:
        assert self.status.result is not None
        declined = [(d.agent, d.reason) for d in self.status.declined]
        return (self.status.result.value, self.status.result.reason, declined)


@SETTINGS
@given(bidders())
def test_award_follows_the_ranking_and_falls_back(bs: list[Bidder]) -> None:
    expected = reference(bs)
    for early in (True, False):
        run = Run(bs)
        run.collect(early=early)
        run.award()
        assert run.outcome() == expected
        sets = [e for e in run.effects if isinstance(e, SetVariable)]
        assert sets == ([SetVariable("welder", expected[0], "s1")] if expected[0] else [])
        awarded = [e.agent for e in run.effects if isinstance(e, Award)]
        # every agent that was awarded and could answer got exactly one Award, in ranking order
        reachable = [n for n, r in expected[2] if r != "Absent"] + ([expected[0]] if expected[0] else [])
        assert awarded == reachable


@SETTINGS
@given(bidders())
def test_proposals_counted_once_and_outsiders_refused(bs: list[Bidder]) -> None:
    run = Run(bs)
    for b in bs:  # each bidder proposes twice; the second proposal replaces the first
        if b.cost is not None:
            run.answers[b.participant.name] = Answer(at=at(1), cost=b.cost + 100)
    run.step(at(1))
    if run.status.phase == "Collecting":
        for b in bs:
            if b.cost is not None:
                run.answers[b.participant.name] = Answer(at=at(2), cost=b.cost)
        result = run.step(at(2))
    else:
        result = run.step(at(2))
        assert all(e.cost >= 100 for e in run.status.ranking)
        return
    if run.status.phase == "Collecting":
        result = run.step(DEADLINE)
    capable = {b.participant.name for b in bs if "weld" in b.participant.capabilities}
    expected = sorted(
        (b.cost, b.participant.name) for b in bs if b.participant.name in capable and b.cost is not None
    )
    assert [(e.cost, e.agent) for e in run.status.ranking] == expected
    verdicts = {v.agent: v.reason for v in result.verdicts}
    for b in bs:
        if b.cost is not None and b.participant.name not in capable:
            assert verdicts[b.participant.name] == "NotParticipant"


# --- examples computed by hand ------------------------------------------------------------------

WELDERS = [Participant(n, capabilities=frozenset({"weld"})) for n in ("ann", "ben", "cat")]


def session() -> tuple[CoordinationSpec, CoordinationStatus]:
    s = cnet_spec(["ann", "ben", "cat"])
    return s, start("s1", s, WELDERS, T0).status


@pytest.mark.parametrize(
    ("costs", "confirmations", "expected"),
    [
        ({"ann": 3, "ben": 1, "cat": 1}, {"ben": True}, ("ben", [])),
        ({"ann": 3, "ben": 1, "cat": 1}, {"ben": False, "cat": True}, ("cat", ["ben:Declined"])),
        (
            {"ann": 3, "ben": 1, "cat": 1},
            {"ben": False, "cat": False, "ann": True},
            ("ann", ["ben:Declined", "cat:Declined"]),
        ),
        ({"ann": 2}, {"ann": False}, (None, ["ann:Declined"])),
        ({}, {}, (None, [])),
    ],
    ids=[
        "equal-costs-go-to-the-first-name",
        "declined-moves-to-the-next-best",
        "two-declines-reach-the-dearest",
        "only-bidder-declines",
        "no-proposals",
    ],
)
def test_hand_computed_awards(
    costs: dict[str, float], confirmations: dict[str, bool], expected: tuple[str | None, list[str]]
) -> None:
    """Confirmations given up front (with the proposal) count once the agent is awarded."""
    s, status = session()
    answers = {n: Answer(at=at(1), cost=c, accept=confirmations.get(n)) for n, c in costs.items()}
    result = step("s1", s, status, answers, {}, DEADLINE)
    assert result.status.result is not None
    assert result.status.result.value == expected[0]
    assert [f"{d.agent}:{d.reason}" for d in result.status.declined] == expected[1]


def test_silent_awardee_loses_the_award_at_its_deadline() -> None:
    s, status = session()
    answers = {"ann": Answer(at=at(1), cost=5.0), "ben": Answer(at=at(2), cost=4.0)}
    result = step("s1", s, status, answers, {}, at(30))  # cat has not proposed: still collecting
    assert result.status.phase == "Collecting"
    result = step("s1", s, result.status, answers, {}, DEADLINE)
    assert result.status.phase == "Deciding"
    assert result.status.award is not None and result.status.award.agent == "ben"
    assert [type(e).__name__ for e in result.effects] == ["Award", "RequestAnswers"]
    just_before = DEADLINE + dt.timedelta(seconds=AWARD_SECONDS - 1)
    assert step("s1", s, result.status, answers, {}, just_before).status == result.status
    moved = step("s1", s, result.status, answers, {}, DEADLINE + dt.timedelta(seconds=AWARD_SECONDS))
    assert moved.status.award is not None and moved.status.award.agent == "ann"
    assert [(d.agent, d.reason) for d in moved.status.declined] == [("ben", "NoConfirmation")]
    late_yes = {**answers, "ben": Answer(at=at(75), cost=4.0, accept=True)}  # ben's award is over
    still = step("s1", s, moved.status, late_yes, {}, at(75))
    assert still.status.award is not None and still.status.award.agent == "ann"


def test_awardee_that_is_not_ready_is_passed_over() -> None:
    s, status = session()
    answers = {n: Answer(at=at(1), cost=c) for n, c in {"ann": 1.0, "ben": 2.0, "cat": 3.0}.items()}
    result = step("s1", s, status, answers, {"ann": False}, at(1))  # all proposed: closes early
    assert result.status.award is not None and result.status.award.agent == "ben"
    assert [(d.agent, d.reason) for d in result.status.declined] == [("ann", "Absent")]
    awards = [e.agent for e in result.effects if isinstance(e, Award)]
    assert awards == ["ben"]


def test_changed_proposal_after_the_collection_closed_is_refused() -> None:
    s, status = session()
    answers = {n: Answer(at=at(1), cost=c) for n, c in {"ann": 1.0, "ben": 2.0, "cat": 3.0}.items()}
    deciding = step("s1", s, status, answers, {}, at(1)).status
    cheaper = {**answers, "cat": Answer(at=at(2), cost=0.5)}
    result = step("s1", s, deciding, cheaper, {}, at(2))
    assert {v.agent: v.reason for v in result.verdicts}["cat"] == "Closed"
    assert [e.agent for e in result.status.ranking] == ["ann", "ben", "cat"]
