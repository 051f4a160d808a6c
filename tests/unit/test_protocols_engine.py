"""What every session shares: spec checks, answers' lifecycle, cancellation, timers, outcome
effects, the models, and the purity of the core."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

import mabeam.core.protocols
from mabeam.core.protocols import (
    Answer,
    EmitEvent,
    Participant,
    RequestAnswers,
    SetVariable,
    next_deadline,
    outcome_effects,
    quorum_required,
    start,
    step,
)
from mabeam.models.coordination import CoordinationSpec, VoteSpec, vote_name
from tests.strategies import DEADLINE, T0, at

ABC = [Participant("a"), Participant("b"), Participant("c")]


def make_spec(**fields: object) -> CoordinationSpec:
    base: dict[str, object] = {
        "protocol": "majority",
        "participants": {"agents": ["a", "b", "c"]},
        "options": ["yes", "no"],
        "variableRef": {"name": "answer"},
    }
    base.update(fields)
    return CoordinationSpec.model_validate(base)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"protocol": "raft"}, "spec.protocol"),
        ({"options": []}, "spec.options"),
        ({"options": ["yes", "yes"]}, "spec.options[1]"),
        ({"protocol": "contract-net"}, "spec.task"),
        ({"protocol": "priority"}, "spec.resource"),
    ],
    ids=[
        "unknown-protocol",
        "no-options",
        "duplicate-option",
        "contract-net-without-task",
        "priority-without-resource",
    ],
)
def test_a_spec_that_does_not_fit_fails_the_session(fields: dict[str, object], path: str) -> None:
    result = start("s1", make_spec(**fields), ABC, T0)
    assert result.status.phase == "Failed"
    assert result.status.result is not None
    assert result.status.result.reason == "Invalid"
    assert result.status.result.message.startswith(path + ":")
    assert [c.type for c in result.status.conditions] == ["Failed", "Stalled", "Invalid"]
    assert result.effects == (EmitEvent("Invalid", result.status.result.message, "Warning"),)
    assert next_deadline(make_spec(**fields), result.status) is None


def test_start_asks_the_participants_and_sets_the_deadline() -> None:
    result = start("s1", make_spec(), [*ABC, Participant("a", weight=9)], T0)
    assert result.status.phase == "Collecting"
    assert [p.name for p in result.status.participants] == ["a", "b", "c"]  # a listed twice counts once
    assert result.status.participants[0].weight == 1.0
    assert result.status.deadline == DEADLINE
    assert result.effects[0] == RequestAnswers("s1", "vote", ("a", "b", "c"), DEADLINE)
    assert next_deadline(make_spec(), result.status) == DEADLINE


def test_contract_net_calls_only_capable_agents() -> None:
    spec = make_spec(protocol="contract-net", task={"description": "weld", "capability": "weld"})
    agents = [Participant("a", capabilities=frozenset({"weld"})), Participant("b"), Participant("c")]
    result = start("s1", spec, agents, T0)
    assert [p.name for p in result.status.participants] == ["a"]
    assert result.effects[0] == RequestAnswers("s1", "proposal", ("a",), DEADLINE)


def test_no_participants_is_no_decision() -> None:
    result = start("s1", make_spec(), [], T0)
    assert result.status.phase == "NoDecision"
    assert result.status.result is not None and result.status.result.reason == "NoParticipants"


def test_withdrawn_vote_is_not_counted() -> None:
    spec = make_spec()
    opened = start("s1", spec, ABC, T0)
    one = step("s1", spec, opened.status, {"a": Answer(at=at(1), choice="yes")}, {}, at(1))
    assert [r.agent for r in one.status.answers] == ["a"]
    gone = step("s1", spec, one.status, {}, {}, at(2))  # the Vote was deleted
    assert gone.status.answers == []
    assert gone.status.tally == {"yes": 0.0, "no": 0.0}


def test_late_change_is_refused_and_the_earlier_vote_stays() -> None:
    spec = make_spec()
    opened = start("s1", spec, ABC, T0)
    early = {"a": Answer(at=at(1), choice="yes"), "b": Answer(at=at(1), choice="no")}
    mid = step("s1", spec, opened.status, early, {}, at(1))
    late = {**early, "b": Answer(at=DEADLINE + dt.timedelta(seconds=1), choice="yes")}
    final = step("s1", spec, mid.status, late, {}, DEADLINE + dt.timedelta(seconds=2))
    verdicts = {v.agent: (v.accepted, v.reason) for v in final.verdicts}
    assert verdicts["b"] == (False, "Late")
    assert {r.agent: r.choice for r in final.status.answers} == {"a": "yes", "b": "no"}
    assert [(r.agent, r.reason) for r in final.status.refusals] == [("b", "Late")]
    assert final.status.result is not None and final.status.result.reason == "Tie"


def test_cancel_ends_an_open_session_without_an_outcome() -> None:
    spec = make_spec()
    opened = start("s1", spec, ABC, T0)
    answers = {"a": Answer(at=at(1), choice="yes")}
    counted = step("s1", spec, opened.status, answers, {}, at(1))
    cancelled = step("s1", make_spec(cancel=True), counted.status, answers, {}, at(2))
    assert cancelled.status.phase == "Cancelled"
    assert not any(isinstance(e, SetVariable) for e in cancelled.effects)
    again = step("s1", spec, cancelled.status, {**answers, "b": Answer(at=at(3), choice="no")}, {}, at(3))
    assert again.status == cancelled.status
    assert again.effects == ()
    assert {v.agent: v.reason for v in again.verdicts} == {"a": "Counted", "b": "Closed"}
    assert outcome_effects("s1", spec, cancelled.status) == ()


def test_outcome_effects_repeat_the_variable_write_of_a_decided_session() -> None:
    spec = make_spec()
    opened = start("s1", spec, ABC, T0)
    answers = {n: Answer(at=at(1), choice="no") for n in "ab"}
    decided = step("s1", spec, opened.status, answers, {}, at(1))
    assert decided.status.phase == "Decided"
    write = SetVariable(name="answer", value="no", session="s1")
    assert [e for e in decided.effects if isinstance(e, SetVariable)] == [write]
    assert outcome_effects("s1", spec, decided.status) == (write,)
    assert next_deadline(spec, decided.status) is None


def test_status_survives_the_round_trip_through_the_api() -> None:
    spec = make_spec()
    opened = start("s1", spec, ABC, T0)
    result = step("s1", spec, opened.status, {"a": Answer(at=at(1.5), choice="yes")}, {}, at(2))
    wire = result.status.to_wire()
    assert wire["deadline"] == "2026-01-01T00:01:00Z"
    again = type(result.status).model_validate(wire)
    assert again == result.status


@pytest.mark.parametrize(
    ("quorum", "base", "needed"),
    [("50%", 5, 3), ("66.67%", 3, 3), ("66.66%", 3, 2), (3, 10, 3), ("0%", 4, 1), ("100%", 0, 1)],
    ids=[
        "half-of-5",
        "two-thirds-rounded-up",
        "just-under-two-thirds",
        "count",
        "zero-means-one",
        "empty-base",
    ],
)
def test_quorum_required(quorum: int | str, base: int, needed: int) -> None:
    assert quorum_required(make_spec(quorum=quorum), base, "50%") == needed


@pytest.mark.parametrize(
    "bad",
    [
        {"participants": {}},
        {"participants": {"agents": ["a"], "selector": {}}},
        {"quorum": "150%"},
        {"quorum": "half"},
        {"quorum": 0},
        {"quorum": True},
        {"threshold": 1.5},
        {"absentPolicy": "ignore"},
        {"answerSeconds": 0},
        {"surprise": 1},
    ],
    ids=[
        "no-participants",
        "agents-and-selector",
        "quorum-over-100",
        "quorum-word",
        "quorum-zero",
        "quorum-bool",
        "threshold-over-1",
        "unknown-absent-policy",
        "zero-deadline",
        "unknown-field",
    ],
)
def test_invalid_specs_are_rejected_by_the_model(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make_spec(**bad)


def test_vote_model() -> None:
    assert vote_name("pick-color", "ada") == "pick-color-ada"
    with pytest.raises(ValidationError):
        VoteSpec.model_validate({"session": "s1", "agent": "ada"})
    with pytest.raises(ValidationError):
        VoteSpec.model_validate({"session": "s1", "agent": "ada", "proposal": {"cost": -1}})
    vote = VoteSpec.model_validate(
        {"session": "s1", "agent": "ada", "proposal": {"cost": 2.5}, "accept": True}
    )
    assert Answer.from_vote(vote, T0) == Answer(at=T0, cost=2.5, accept=True)


FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "random", "urandom"}
FORBIDDEN_IMPORTS = {"random", "time", "os", "socket", "kopf", "lightkube", "aiohttp", "subprocess"}


@pytest.mark.parametrize(
    "path", sorted(Path(mabeam.core.protocols.__file__).parent.glob("*.py")), ids=lambda p: p.name
)
def test_protocols_read_no_clock_and_do_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not {m.split(".")[0] for m in modules} & FORBIDDEN_IMPORTS, (
                f"{path.name} imports {modules}"
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, f"{path.name} calls .{node.func.attr}()"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "input", "print"}, f"{path.name} calls {node.func.id}()"
