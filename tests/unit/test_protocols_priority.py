"""Priority resolution: the highest priority wins, then the earliest claim, then the name."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings

from mabeam.core.protocols import Answer, Participant, SetVariable, StepResult, start, step
from mabeam.models.coordination import CoordinationSpec, CoordinationStatus
from tests.strategies import DEADLINE, T0, Claimant, at, claimants

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Outcome = tuple[str | None, str]


def prio_spec(names: list[str]) -> CoordinationSpec:
    return CoordinationSpec.model_validate(
        {
            "protocol": "priority",
            "participants": {"agents": names},
            "resource": "gpu-0",
            "variableRef": {"name": "gpu-0-holder"},
        }
    )


def reference(priority: Mapping[str, int], claims: Mapping[str, tuple[bool, float]]) -> Outcome:
    """Pairwise comparison: the claimant that beats every other claimant."""
    contenders = [a for a, (claim, _) in claims.items() if claim]
    for a in contenders:
        beats_all = True
        for b in contenders:
            if a == b:
                continue
            pa, pb = priority[a], priority[b]
            ta, tb = claims[a][1], claims[b][1]
            if pa < pb or (pa == pb and (ta > tb or (ta == tb and a > b))):
                beats_all = False
        if beats_all:
            return (a, "HighestPriority")
    return (None, "NoClaims")


def checked(
    spec: CoordinationSpec, status: CoordinationStatus, answers: dict[str, Answer], now: object
) -> StepResult:
    alive: dict[str, bool] = {}
    result = step("s1", spec, status, answers, alive, now)  # type: ignore[arg-type]
    assert step("s1", spec, status, answers, alive, now) == result  # type: ignore[arg-type]
    repeat = step("s1", spec, result.status, answers, alive, now)  # type: ignore[arg-type]
    assert repeat.status == result.status and repeat.effects == ()
    return result


def outcome(result: StepResult) -> Outcome:
    assert result.status.result is not None
    return (result.status.result.value, result.status.result.reason)


@SETTINGS
@given(claimants())
def test_early_decision_is_sound_and_equals_the_deadline(cs: list[Claimant]) -> None:
    names = [c.participant.name for c in cs]
    spec = prio_spec(names)
    priority = {c.participant.name: c.participant.priority for c in cs}
    given_claims = {c.participant.name: (c.claim, c.second) for c in cs if c.claim is not None}
    expected = reference(priority, given_claims)

    def answers_until(second: float) -> dict[str, Answer]:
        return {n: Answer(at=at(s), claim=claim) for n, (claim, s) in given_claims.items() if s <= second}

    opened = start("s1", spec, [c.participant for c in cs], T0)
    one_shot = checked(spec, opened.status, answers_until(1e9), DEADLINE)
    assert outcome(one_shot) == expected

    status = opened.status
    sets = 0
    for second in sorted({s for _, s in given_claims.values()}):
        answers = answers_until(second)
        result = checked(spec, status, answers, at(second))
        sets += sum(isinstance(e, SetVariable) for e in result.effects)
        status = result.status
        if status.result is not None:
            # sound: whatever the open participants still do (claims arriving from now on)
            open_agents = [n for n in names if n not in answers]
            for picks in itertools.product([None, False, True], repeat=len(open_agents)):
                claims = {n: (c, t) for n, (c, t) in given_claims.items() if t <= second}
                claims.update(
                    {n: (p, second) for n, p in zip(open_agents, picks, strict=True) if p is not None}
                )
                assert reference(priority, claims) == outcome(result)
            break
    final = checked(spec, status, answers_until(1e9), DEADLINE)
    sets += sum(isinstance(e, SetVariable) for e in final.effects)
    assert outcome(final) == expected
    assert sets == (1 if expected[0] else 0)
    if expected[0] is not None:
        ranked = [e.agent for e in one_shot.status.ranking]
        assert ranked[0] == expected[0]
        assert sorted(ranked) == sorted(n for n, (c, _) in given_claims.items() if c)


@SETTINGS
@given(claimants())
def test_wrong_kind_and_outsiders_are_refused(cs: list[Claimant]) -> None:
    spec = prio_spec([c.participant.name for c in cs])
    opened = start("s1", spec, [c.participant for c in cs], T0)
    answers = {
        c.participant.name: Answer(at=at(1), choice="me")
        if c.claim is None
        else Answer(at=at(1), claim=c.claim)
        for c in cs
    }
    answers["mallory"] = Answer(at=at(1), claim=True)
    result = step("s1", spec, opened.status, answers, {}, DEADLINE)
    verdicts = {v.agent: v.reason for v in result.verdicts}
    assert verdicts["mallory"] == "NotParticipant"
    for c in cs:
        assert verdicts[c.participant.name] == ("WrongAnswerKind" if c.claim is None else "Counted")
    assert result.status.result is not None and result.status.result.value != "mallory"


# --- examples computed by hand ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "claims", "expected"),
    [
        ({"a": 1, "b": 5, "c": 3}, {"a": 1, "b": 2, "c": 3}, "b"),
        ({"a": 5, "b": 5}, {"a": 2, "b": 1}, "b"),
        ({"a": 5, "b": 5}, {"a": 1, "b": 1}, "a"),
        ({"a": 9, "b": 1}, {"b": 1}, "b"),
        ({"a": 9, "b": 1}, {}, None),
    ],
    ids=[
        "highest-priority-wins",
        "equal-priority-earliest-claim-wins",
        "equal-priority-same-time-first-name-wins",
        "a-higher-priority-that-does-not-claim-does-not-count",
        "no-claims",
    ],
)
def test_hand_computed_priority(
    agents: dict[str, int], claims: dict[str, float], expected: str | None
) -> None:
    spec = prio_spec(list(agents))
    opened = start("s1", spec, [Participant(n, priority=p) for n, p in agents.items()], T0)
    answers = {n: Answer(at=at(t), claim=True) for n, t in claims.items()}
    result = step("s1", spec, opened.status, answers, {}, DEADLINE)
    assert outcome(result) == ((expected, "HighestPriority") if expected else (None, "NoClaims"))


def test_waits_for_an_open_participant_of_equal_priority() -> None:
    spec = prio_spec(["a", "b", "c"])
    agents = [Participant("a", priority=5), Participant("b", priority=5), Participant("c", priority=1)]
    opened = start("s1", spec, agents, T0)
    first = step("s1", spec, opened.status, {"b": Answer(at=at(1), claim=True)}, {}, at(1))
    assert first.status.phase == "Collecting"  # a (priority 5) could still claim
    both = {"b": Answer(at=at(1), claim=True), "a": Answer(at=at(2), claim=False)}
    second = step("s1", spec, first.status, both, {}, at(2))
    assert outcome(second) == ("b", "HighestPriority")  # only c (priority 1) is open
