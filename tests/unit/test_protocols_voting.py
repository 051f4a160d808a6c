"""Consensus, majority and weighted voting, against a reference written here from the rules."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mabeam.core.protocols import Answer, Participant, SetVariable, StepResult, start, step
from mabeam.models.coordination import CoordinationSpec, CoordinationStatus
from tests.strategies import DEADLINE, T0, VoteScenario, at, vote_scenarios

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Outcome = tuple[str | None, str]
READY, GONE = "<silent, Ready>", "<silent, not Ready>"


# --- the reference ------------------------------------------------------------------------------


def reference(
    spec: CoordinationSpec,
    weights: Mapping[str, float],
    alive: Mapping[str, bool],
    choices: Mapping[str, str],
) -> Outcome:
    """The outcome at the deadline, from the rules as the docs state them, by brute-force counts."""
    absent = [a for a in weights if a not in choices and not alive[a]]
    base = len(weights) - (len(absent) if spec.absent_policy == "exclude" else 0)
    quorum = spec.quorum
    if quorum is None:
        quorum = "100%" if spec.protocol == "consensus" else "50%"
    needed = quorum if isinstance(quorum, int) else math.ceil(Fraction(quorum[:-1]) * base / 100)
    if len(choices) < max(needed, 1):
        return (None, "QuorumNotMet")
    if spec.protocol == "consensus":
        picked = set(choices.values())
        return (picked.pop(), "Unanimous") if len(picked) == 1 else (None, "NoConsensus")
    count: dict[str, Fraction] = {}
    for option in spec.options:
        count[option] = Fraction(0)
        for agent, choice in choices.items():
            if choice == option:
                count[option] += Fraction(weights[agent]) if spec.protocol == "weighted" else 1
    cast = sum(count.values())
    most = max(count.values())
    tied = [o for o in spec.options if count[o] == most]
    if len(tied) >= 2 and spec.tie_policy == "NoDecision":
        return (None, "Tie")
    winner = tied[0]
    share = count[winner] / cast
    limit = Fraction(str(spec.threshold))
    ok = share >= limit if spec.threshold_comparison == "AtLeast" else share > limit
    if not ok:
        return (None, "ThresholdNotMet")
    return (winner, "WeightedMajority" if spec.protocol == "weighted" else "Majority")


def completions(sc: VoteScenario, counted: Mapping[str, str], open_agents: list[str]) -> set[Outcome]:
    """Every outcome reachable if each open participant votes for any option, or stays silent and
    is Ready or not at the deadline."""
    weights = {v.participant.name: v.participant.weight for v in sc.voters}
    outcomes = set()
    for picks in itertools.product([READY, GONE, *sc.spec.options], repeat=len(open_agents)):
        choices = dict(counted)
        alive = dict(sc.alive)
        for agent, pick in zip(open_agents, picks, strict=True):
            if pick in (READY, GONE):
                alive[agent] = pick == READY
            else:
                choices[agent] = pick
        outcomes.add(reference(sc.spec, weights, alive, choices))
    return outcomes


# --- driving the engine -------------------------------------------------------------------------


def answers_until(sc: VoteScenario, second: float) -> dict[str, Answer]:
    out = {
        v.participant.name: Answer(at=at(v.second), choice=v.answer)
        for v in sc.voters
        if v.answer is not None and v.second <= second
    }
    for name, (choice, sec) in sc.outsiders.items():
        if sec <= second:
            out[name] = Answer(at=at(sec), choice=choice)
    return out


def outcome(result: StepResult) -> Outcome:
    assert result.status.result is not None
    return (result.status.result.value, result.status.result.reason)


def checked_step(
    spec: CoordinationSpec,
    status: CoordinationStatus,
    answers: Mapping[str, Answer],
    alive: Mapping[str, bool],
    now: object,
) -> StepResult:
    """A step, checked to be deterministic and idempotent."""
    first = step("s1", spec, status, answers, alive, now)  # type: ignore[arg-type]
    again = step("s1", spec, status, answers, alive, now)  # type: ignore[arg-type]
    assert again == first
    repeat = step("s1", spec, first.status, answers, alive, now)  # type: ignore[arg-type]
    assert repeat.status == first.status
    assert repeat.effects == ()
    return first


def one_shot(sc: VoteScenario, now: object = DEADLINE) -> StepResult:
    opened = start("s1", sc.spec, sc.participants, T0)
    return checked_step(sc.spec, opened.status, answers_until(sc, 1e9), sc.alive, now)


def valid_choices(sc: VoteScenario) -> dict[str, str]:
    return {
        v.participant.name: v.answer
        for v in sc.voters
        if v.answer in sc.spec.options and at(v.second) <= DEADLINE
    }


# --- properties ---------------------------------------------------------------------------------


@SETTINGS
@given(vote_scenarios(invalid=True, on_time=False))
def test_tally_is_exact_and_each_agent_counted_once(sc: VoteScenario) -> None:
    result = one_shot(sc, now=at(70))
    counted = valid_choices(sc)
    weighted = sc.spec.protocol == "weighted"
    for option in sc.spec.options:
        expected = sum(
            (
                Fraction(v.participant.weight) if weighted else Fraction(1)
                for v in sc.voters
                if counted.get(v.participant.name) == option
            ),
            Fraction(0),
        )
        assert result.status.tally[option] == float(expected)
    recorded = [r.agent for r in result.status.answers]
    assert recorded == sorted(counted)
    assert {r.agent: r.choice for r in result.status.answers} == counted


@SETTINGS
@given(vote_scenarios(invalid=True, on_time=False))
def test_refusals_name_the_reason(sc: VoteScenario) -> None:
    result = one_shot(sc, now=at(70))
    verdicts = {v.agent: v for v in result.verdicts}
    for name in sc.outsiders:
        assert not verdicts[name].accepted
        assert verdicts[name].reason == "NotParticipant"
    for v in sc.voters:
        name = v.participant.name
        if v.answer is None:
            assert name not in verdicts
        elif at(v.second) > DEADLINE:
            assert (verdicts[name].accepted, verdicts[name].reason) == (False, "Late")
        elif v.answer not in sc.spec.options:
            assert (verdicts[name].accepted, verdicts[name].reason) == (False, "UnknownOption")
        else:
            assert (verdicts[name].accepted, verdicts[name].reason) == (True, "Counted")
    refused = {r.agent: r.reason for r in result.status.refusals}
    assert refused == {a: v.reason for a, v in verdicts.items() if not v.accepted}


@SETTINGS
@given(vote_scenarios(invalid=True, on_time=False))
def test_decision_at_the_deadline_matches_the_reference(sc: VoteScenario) -> None:
    result = one_shot(sc, now=at(70))
    weights = {v.participant.name: v.participant.weight for v in sc.voters}
    expected = reference(sc.spec, weights, sc.alive, valid_choices(sc))
    assert outcome(result) == expected
    assert result.status.phase == ("Decided" if expected[0] is not None else "NoDecision")
    sets = [e for e in result.effects if isinstance(e, SetVariable)]
    if expected[0] is None:
        assert sets == []
    else:
        assert sets == [SetVariable(name="outcome", value=expected[0], session="s1")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vote_scenarios(small=True), st.randoms(use_true_random=False))
def test_early_decision_never_differs_from_waiting(sc: VoteScenario, rnd: object) -> None:
    """Answers arrive one by one in any order; the session may decide before the deadline.

    Whenever it does, every way the open participants could still have voted gives the same
    outcome (brute force), and the outcome is the one a single step at the deadline gives. When it
    does not, some continuation must still change the outcome (for the outcomes the early rules
    promise to detect).
    """
    voting = [v for v in sc.voters if v.answer is not None]
    rnd.shuffle(voting)  # type: ignore[attr-defined]
    for i, v in enumerate(voting):  # arrival order = the shuffled order
        v.second = i + 1
    final = outcome(one_shot(sc))
    opened = start("s1", sc.spec, sc.participants, T0)
    status = opened.status
    set_variables = 0
    decided_at = None
    for v in voting:
        answers = answers_until(sc, v.second)
        result = checked_step(sc.spec, status, answers, sc.alive, at(v.second))
        set_variables += sum(isinstance(e, SetVariable) for e in result.effects)
        counted = {a: str(x.choice) for a, x in answers.items()}
        open_agents = [u.participant.name for u in sc.voters if u.participant.name not in counted]
        possible = completions(sc, counted, open_agents)
        status = result.status
        if status.result is not None:
            decided_at = v.second
            assert possible == {outcome(result)}, "decided early although the outcome could change"
            break
        if len(possible) == 1:
            (value, reason) = next(iter(possible))
            assert value is None and reason not in ("QuorumNotMet", "NoConsensus"), (
                f"the outcome {value, reason} was certain but the session kept waiting"
            )
    result = checked_step(sc.spec, status, answers_until(sc, 1e9), sc.alive, DEADLINE)
    set_variables += sum(isinstance(e, SetVariable) for e in result.effects)
    assert outcome(result) == final
    if decided_at is not None:
        assert result.status.result == status.result  # nothing moves after the decision
    assert set_variables == (1 if final[0] is not None else 0)


@SETTINGS
@given(vote_scenarios(), st.data())
def test_changing_a_vote_replaces_it(sc: VoteScenario, data: st.DataObject) -> None:
    """All but one vote at t=1; at t=2 everyone votes, some differently. The later vote counts."""
    first = {v.participant.name: Answer(at=at(1), choice=sc.spec.options[0]) for v in sc.voters[:-1]}
    changed = {}
    for v in sc.voters:
        new = data.draw(st.sampled_from(sc.spec.options))
        changed[v.participant.name] = Answer(at=at(2), choice=new)
    opened = start("s1", sc.spec, sc.participants, T0)
    alive = {v.participant.name: True for v in sc.voters}
    after_first = step("s1", sc.spec, opened.status, first, alive, at(1))
    after_change = step("s1", sc.spec, after_first.status, changed, alive, at(2))
    if after_first.status.result is not None:  # decided at t=1: the changes come too late
        assert after_change.status == after_first.status
        moved = [a for a in changed if a not in first or changed[a].choice != first[a].choice]
        assert sorted(v.agent for v in after_change.verdicts if not v.accepted) == sorted(moved)
        return
    final = step("s1", sc.spec, after_change.status, changed, alive, DEADLINE)
    assert len(final.status.answers) == len(sc.voters)
    assert {r.agent: r.choice for r in final.status.answers} == {a: x.choice for a, x in changed.items()}
    assert sum(final.status.tally.values()) == pytest.approx(
        len(sc.voters) if sc.spec.protocol != "weighted" else sum(v.participant.weight for v in sc.voters)
    )


# --- examples computed by hand ------------------------------------------------------------------


def spec(protocol: str, **extra: object) -> CoordinationSpec:
    return CoordinationSpec.model_validate(
        {
            "protocol": protocol,
            "participants": {"agents": ["a", "b", "c", "d", "e"]},
            "options": ["yes", "no"],
            **extra,
        }
    )


FIVE = [Participant(n, weight=w) for n, w in zip("abcde", [1.0, 1.0, 1.0, 1.0, 4.0], strict=True)]


@pytest.mark.parametrize(
    ("protocol", "extra", "votes", "expected"),
    [
        ("majority", {}, "yes yes yes no no", ("yes", "Majority")),
        ("majority", {}, "yes yes no no -", (None, "Tie")),
        ("majority", {"tiePolicy": "FirstListed"}, "yes yes no no -", (None, "ThresholdNotMet")),
        (
            "majority",
            {"tiePolicy": "FirstListed", "thresholdComparison": "AtLeast"},
            "no no yes yes -",
            ("yes", "Majority"),
        ),
        ("majority", {"quorum": 4}, "yes yes yes - -", (None, "QuorumNotMet")),
        ("majority", {"quorum": "60%"}, "yes yes yes - -", ("yes", "Majority")),
        ("majority", {"threshold": 0.6}, "yes yes yes no no", (None, "ThresholdNotMet")),
        (
            "majority",
            {"threshold": 0.6, "thresholdComparison": "AtLeast"},
            "yes yes yes no no",
            ("yes", "Majority"),
        ),
        ("weighted", {}, "yes yes yes yes no", (None, "Tie")),  # 4 against e's 4
        ("weighted", {}, "yes yes yes no no", ("no", "WeightedMajority")),  # 3 vs 5
        ("consensus", {}, "yes yes yes yes yes", ("yes", "Unanimous")),
        ("consensus", {}, "yes yes yes yes -", (None, "QuorumNotMet")),
        ("consensus", {"quorum": "80%"}, "yes yes yes yes -", ("yes", "Unanimous")),
        ("consensus", {}, "yes yes yes yes no", (None, "NoConsensus")),
    ],
    ids=[
        "majority-3-2",
        "majority-tie",
        "majority-tie-first-listed-needs-more-than-half",
        "majority-tie-first-listed-at-least-half",
        "majority-quorum-count-missed",
        "majority-quorum-percent-met",
        "majority-60pct-threshold-exact-share-not-above",
        "majority-60pct-threshold-at-least",
        "weighted-4-vs-4-tie",
        "weighted-heavy-voter-wins",
        "consensus-all-yes",
        "consensus-one-silent",
        "consensus-80pct-quorum",
        "consensus-one-dissent",
    ],
)
def test_hand_computed_outcomes(
    protocol: str, extra: dict[str, object], votes: str, expected: Outcome
) -> None:
    s = spec(protocol, **extra)
    opened = start("s1", s, FIVE, T0)
    answers = {
        name: Answer(at=at(i + 1), choice=choice)
        for i, (name, choice) in enumerate(zip("abcde", votes.split(), strict=True))
        if choice != "-"
    }
    result = step("s1", s, opened.status, answers, {}, DEADLINE)
    assert outcome(result) == expected


@pytest.mark.parametrize(
    ("protocol", "votes", "expected"),
    [
        ("majority", "yes yes yes", ("yes", "Majority")),  # 3 of 5: the other two cannot catch up
        ("consensus", "yes no", (None, "NoConsensus")),
        ("weighted", "- - - - no", None),  # e (weight 4) alone: the 4 others could still tie
        ("weighted", "yes - - - no", None),  # yes could still reach 1+3 = 4: a tie
        ("weighted", "no - - - no", ("no", "WeightedMajority")),  # 5 against at most 3
        ("weighted/first-listed", "- - - - no", None),  # yes could tie at 4 and is listed first
        ("weighted/first-listed", "- - - - yes", ("yes", "WeightedMajority")),  # a tie goes to yes
    ],
    ids=[
        "majority-decided-at-3-of-5",
        "consensus-broken-by-one",
        "weighted-heavy-voter-alone-not-yet",
        "weighted-a-tie-still-possible",
        "weighted-certain",
        "weighted-first-listed-tie-would-go-to-the-rival",
        "weighted-first-listed-tie-would-go-to-the-leader",
    ],
)
def test_hand_computed_early_decisions(protocol: str, votes: str, expected: Outcome | None) -> None:
    if protocol.endswith("/first-listed"):
        s = spec(protocol.split("/")[0], quorum=1, tiePolicy="FirstListed", thresholdComparison="AtLeast")
    else:
        s = spec(protocol, quorum=1)
    opened = start("s1", s, FIVE, T0)
    answers = {
        name: Answer(at=at(1), choice=choice)
        for name, choice in zip("abcde", votes.split() + ["-"] * 5, strict=False)
        if choice != "-"
    }
    result = step("s1", s, opened.status, answers, {}, at(2))
    if expected is None:
        assert result.status.phase == "Collecting"
        assert result.status.result is None
    else:
        assert outcome(result) == expected


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("exclude", ("yes", "Unanimous")), ("abstain", (None, "QuorumNotMet"))],
    ids=["exclude-dead-agent-leaves-the-quorum-base", "abstain-dead-agent-stays-in-it"],
)
def test_absent_policy(policy: str, expected: Outcome) -> None:
    s = spec("consensus", absentPolicy=policy)
    opened = start("s1", s, FIVE, T0)
    answers = {n: Answer(at=at(1), choice="yes") for n in "abcd"}
    waiting = step("s1", s, opened.status, answers, {"e": False}, at(2))
    assert waiting.status.phase == "Collecting"  # e may still answer before the deadline
    result = step("s1", s, waiting.status, answers, {"e": False}, DEADLINE)
    assert outcome(result) == expected
