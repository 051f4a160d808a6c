"""Writes to a Variable: history, conflict policies, fencing, sessions, and spec reconciliation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.core.variables import acquire, apply_write, parse_spec, parse_status, reconcile_spec
from mabeam.errors import ConflictError, LockError
from mabeam.models.variable import APPLIED_SESSIONS_LIMIT, VariableSpec, VariableStatus, VariableWrite

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def spec(**fields: Any) -> VariableSpec:
    base: dict[str, Any] = {"type": "integer", "constraints": {"minimum": 0, "maximum": 10}}
    base.update(fields)
    return parse_spec(base)


def write(
    value: Any,
    *,
    name: str = "a1",
    kind: str = "Agent",
    priority: int = 0,
    based_on: int | None = None,
    token: int | None = None,
    session: str | None = None,
) -> VariableWrite:
    return VariableWrite.model_validate(
        {
            "value": value,
            "basedOnVersion": based_on,
            "writer": {"kind": kind, "name": name, "priority": priority},
            "fencingToken": token,
            "session": session,
            "reason": "test",
        }
    )


def condition(status: VariableStatus, type: str) -> tuple[str, str]:
    found = [c for c in status.conditions if c.type == type]
    assert len(found) == 1
    return found[0].status, found[0].reason


def written(values: list[Any], s: VariableSpec | None = None) -> VariableStatus:
    status = parse_status(None)
    for i, v in enumerate(values):
        status, _ = apply_write(s or spec(), status, write(v), T0 + dt.timedelta(seconds=i))
    return status


# --- history -----------------------------------------------------------------------------------

steps = st.lists(st.one_of(st.integers(-3, 13), st.booleans(), st.text(max_size=2)), max_size=30)


@given(steps, st.integers(0, 6))
def test_history_is_bounded_and_keeps_the_newest_without_gaps(values: list[Any], limit: int) -> None:
    s = spec(historyLimit=limit)
    status = parse_status(None)
    applied: list[Any] = []  # the reference: valid values, in order
    for i, v in enumerate(values):
        valid = type(v) is int and 0 <= v <= 10
        status, outcome = apply_write(s, status, write(v), T0 + dt.timedelta(seconds=i))
        if valid:
            applied.append(v)
        assert outcome.applied == valid
        assert status.version == len(applied)
        assert len(status.history) == min(limit, len(applied))
        assert [h.value for h in status.history] == applied[len(applied) - len(status.history) :]
        versions = [h.version for h in status.history]
        assert versions == list(range(status.version - len(versions) + 1, status.version + 1))
        if applied:
            assert status.value == applied[-1]


def test_invalid_write_keeps_the_value_and_says_why() -> None:
    status = written([4])
    new, outcome = apply_write(spec(), status, write(42, name="a2"), T0)
    assert not outcome.applied and outcome.reason == "InvalidValue"
    assert "between 0 and 10" in outcome.message and "a2" in outcome.message
    assert (new.value, new.version, new.history) == (4, 1, status.history)
    assert condition(new, "Valid") == ("False", "InvalidValue")
    fixed, outcome = apply_write(spec(), new, write(5), T0)
    assert outcome.applied and fixed.version == 2
    assert condition(fixed, "Valid") == ("True", "ValueApplied")


def test_no_write_is_applied_under_an_incoherent_spec() -> None:
    bad = parse_spec({"type": "integer", "constraints": {"minimum": 5, "maximum": 1}})
    new, outcome = apply_write(bad, parse_status(None), write(3), T0)
    assert (outcome.applied, outcome.reason, new.version) == (False, "InvalidSpec", 0)


# --- conflict policies -------------------------------------------------------------------------


def test_reject_refuses_a_stale_write_and_reports_the_current_value() -> None:
    status = written([1, 2])
    with pytest.raises(ConflictError) as info:
        apply_write(spec(), status, write(7, based_on=1), T0)
    assert (info.value.current_value, info.value.current_version) == (2, 2)
    new, outcome = apply_write(spec(), status, write(7, based_on=2), T0)
    assert outcome.applied and (new.value, new.version) == (7, 3)


def test_last_writer_wins_applies_a_stale_write() -> None:
    s = spec(conflictPolicy="LastWriterWins")
    new, outcome = apply_write(s, written([1, 2], s), write(7, based_on=0), T0)
    assert outcome.applied and (new.value, new.version) == (7, 3)


@pytest.mark.parametrize(
    ("priority", "wins"), [(3, False), (5, True), (7, True)], ids=["lower", "equal", "higher"]
)
def test_highest_priority_lets_a_stale_write_win_only_from_equal_or_higher(priority: int, wins: bool) -> None:
    s = spec(conflictPolicy="HighestPriority")
    status, _ = apply_write(s, parse_status(None), write(1, name="boss", priority=5), T0)
    assert status.last_writer_priority == 5
    stale = write(9, name="a2", priority=priority, based_on=0)
    if wins:
        new, _ = apply_write(s, status, stale, T0)
        assert (new.value, new.last_writer_priority) == (9, priority)
    else:
        with pytest.raises(ConflictError, match="priority 5"):
            apply_write(s, status, stale, T0)
        fresh, _ = apply_write(s, status, write(9, name="a2", priority=priority, based_on=1), T0)
        assert fresh.value == 9


def test_highest_priority_never_outranks_a_user() -> None:
    s = spec(conflictPolicy="HighestPriority", value=3)
    status, _ = reconcile_spec(s, parse_status(None), 1, T0)
    assert status.last_writer_priority is None
    with pytest.raises(ConflictError, match="user"):
        apply_write(s, status, write(9, priority=1_000_000, based_on=0), T0)


@given(st.lists(st.tuples(st.booleans(), st.integers(-2, 2)), max_size=20))
def test_highest_priority_against_a_reference(moves: list[tuple[bool, int]]) -> None:
    s = spec(conflictPolicy="HighestPriority")
    status = parse_status(None)
    last: int | None = None  # the reference: priority of the last applied write
    for i, (stale, priority) in enumerate(moves):
        based_on = status.version - 1 if stale and status.version > 0 else status.version
        w = write(i % 11, priority=priority, based_on=based_on)
        should = based_on == status.version or last is None or priority >= last
        try:
            status, _ = apply_write(s, status, w, T0)
        except ConflictError:
            assert not should
        else:
            assert should
            last = priority
    assert status.last_writer_priority == last


# --- fencing and locks -------------------------------------------------------------------------


def test_a_write_with_an_older_fencing_token_is_refused() -> None:
    status, t1 = acquire(written([1]), "a1", T0, ttl=10)
    status, _ = apply_write(spec(), status, write(2, token=t1), T0 + dt.timedelta(seconds=1))
    later = T0 + dt.timedelta(seconds=11)  # a1's lease ran out; a2 takes the lock
    status, t2 = acquire(status, "a2", later, ttl=10)
    assert t2 > t1
    with pytest.raises(ConflictError) as info:
        apply_write(spec(), status, write(3, token=t1), later)
    assert (info.value.current_value, info.value.current_version) == (2, 2)
    status, outcome = apply_write(spec(), status, write(4, name="a2", token=t2), later)
    assert outcome.applied and status.value == 4
    with pytest.raises(LockError, match="never issued"):
        apply_write(spec(), status, write(5, token=t2 + 1), later)


def test_a_live_lock_binds_agents_but_not_users_or_sessions() -> None:
    status, _ = acquire(written([1]), "a2", T0, ttl=10)
    with pytest.raises(LockError, match="locked by a2"):
        apply_write(spec(), status, write(3), T0)
    status, outcome = apply_write(spec(), status, write(3, kind="User", name="admin"), T0)
    assert outcome.applied
    status, outcome = apply_write(spec(), status, write(4, kind="Session", name="vote-1", session="s1"), T0)
    assert outcome.applied
    after = T0 + dt.timedelta(seconds=10)  # the lease has run out: no token needed
    status, outcome = apply_write(spec(), status, write(5), after)
    assert outcome.applied and status.value == 5


def test_the_current_token_is_no_key_for_another_agent() -> None:
    # The token is public (status.lock): only the holder's writes may carry it.
    status, token = acquire(written([1]), "a2", T0, ttl=10)
    with pytest.raises(LockError, match=r"locked by a2 .*not by a1"):
        apply_write(spec(), status, write(3, name="a1", token=token), T0 + dt.timedelta(seconds=1))
    status, outcome = apply_write(
        spec(), status, write(3, name="a2", token=token), T0 + dt.timedelta(seconds=1)
    )
    assert outcome.applied and status.value == 3


# --- sessions ----------------------------------------------------------------------------------


def test_a_session_outcome_is_applied_at_most_once() -> None:
    status, outcome = apply_write(spec(), written([1]), write(6, kind="Session", name="v", session="s1"), T0)
    assert outcome.applied and status.applied_sessions == ["s1"]
    again, outcome = apply_write(spec(), status, write(7, kind="Session", name="v", session="s1"), T0)
    assert again is status
    assert (outcome.applied, outcome.reason, again.value, again.version) == (False, "AlreadyApplied", 6, 2)


@given(st.lists(st.sampled_from(["s1", "s2", "s3", "s4"]), max_size=20))
def test_each_session_is_applied_once_whatever_the_replays(sessions: list[str]) -> None:
    s = spec(historyLimit=1000)
    status = parse_status(None)
    for i, sid in enumerate(sessions):
        status, _ = apply_write(s, status, write(i % 11, kind="Session", name=sid, session=sid), T0)
    distinct = list(dict.fromkeys(sessions))
    assert status.version == len(distinct)
    assert [h.session for h in status.history] == distinct
    assert status.applied_sessions == distinct


def test_applied_sessions_is_bounded_oldest_dropped() -> None:
    s = spec(historyLimit=0)
    status = parse_status(None)
    total = APPLIED_SESSIONS_LIMIT + 5
    for i in range(total):
        status, _ = apply_write(s, status, write(1, kind="Session", name="v", session=f"s{i}"), T0)
    assert status.applied_sessions == [f"s{i}" for i in range(5, total)]
    assert status.history == []
    VariableStatus.model_validate(status.to_wire())  # still fits the schema's maxItems


# --- spec reconciliation -----------------------------------------------------------------------


def test_reconcile_applies_a_new_spec_value_once() -> None:
    s = spec(value=3)
    status, outcome = reconcile_spec(s, parse_status(None), 1, T0, user="alice")
    assert outcome is not None and outcome.applied
    assert (status.value, status.version, status.observed_generation) == (3, 1, 1)
    assert status.changed_by is not None and (status.changed_by.kind, status.changed_by.name) == (
        "User",
        "alice",
    )
    assert condition(status, "Valid") == ("True", "ValueApplied")
    again, outcome = reconcile_spec(s, status, 1, T0 + dt.timedelta(seconds=5))
    assert outcome is None and again == status


def test_reconcile_does_not_undo_agent_writes_when_other_spec_fields_change() -> None:
    status, _ = reconcile_spec(spec(value=3), parse_status(None), 1, T0)
    status, _ = apply_write(spec(value=3), status, write(8), T0)
    status, outcome = reconcile_spec(spec(value=3, description="new words"), status, 2, T0)
    assert outcome is None and (status.value, status.version, status.observed_generation) == (8, 2, 2)


def test_reconcile_applies_a_user_change_regardless_of_locks_and_versions() -> None:
    status, _ = reconcile_spec(spec(value=3), parse_status(None), 1, T0)
    status, _ = acquire(status, "a1", T0, ttl=60)
    status, outcome = reconcile_spec(spec(value=4), status, 2, T0)
    assert outcome is not None and outcome.applied and (status.value, status.version) == (4, 2)


def test_reconcile_reports_an_invalid_spec_value_and_applies_it_once_the_constraints_allow() -> None:
    status, _ = reconcile_spec(spec(value=3), parse_status(None), 1, T0)
    status, outcome = reconcile_spec(spec(value=30), status, 2, T0)
    assert outcome is not None and not outcome.applied
    assert (status.value, status.version) == (3, 1)
    assert condition(status, "Valid") == ("False", "InvalidValue")
    wider = spec(value=30, constraints={"minimum": 0, "maximum": 100})
    status, outcome = reconcile_spec(wider, status, 3, T0)
    assert outcome is not None and outcome.applied and status.value == 30
    assert condition(status, "Valid") == ("True", "ValueApplied")


def test_reconcile_reports_an_applied_value_that_new_constraints_exclude() -> None:
    status, _ = reconcile_spec(spec(value=8), parse_status(None), 1, T0)
    narrower = spec(value=8, constraints={"minimum": 0, "maximum": 5})
    status, outcome = reconcile_spec(narrower, status, 2, T0)
    assert outcome is None and status.value == 8
    assert condition(status, "Valid") == ("False", "AppliedValueInvalid")


def test_reconcile_reports_an_incoherent_spec() -> None:
    bad = parse_spec({"type": "enum", "value": "a"})
    status, outcome = reconcile_spec(bad, parse_status(None), 1, T0)
    assert outcome is None and status.version == 0
    assert condition(status, "Valid") == ("False", "InvalidSpec")
    assert "allowedValues" in next(c.message for c in status.conditions if c.type == "Valid")


def test_reconcile_trims_history_when_the_limit_is_lowered() -> None:
    status = written(list(range(8)), spec(historyLimit=10))
    status, _ = reconcile_spec(spec(historyLimit=3), status, 2, T0)
    assert [h.version for h in status.history] == [6, 7, 8]


def test_phase_and_value_summary_for_kubectl_get() -> None:
    s = parse_spec({"type": "json"})
    status, _ = reconcile_spec(s, parse_status(None), 1, T0)
    assert (status.phase, status.value_summary) == ("Pending", None)
    status, _ = apply_write(s, status, write({"b": 1, "a": "x"}), T0)
    assert (status.phase, status.value_summary) == ("Ready", '{"a":"x","b":1}')
    status, _ = apply_write(s, status, write(["y" * 100]), T0)
    assert status.value_summary is not None and len(status.value_summary) == 64
    assert status.value_summary.startswith('["yyy') and status.value_summary.endswith("...")
    status, _ = reconcile_spec(parse_spec({"type": "boolean"}), status, 2, T0)
    assert status.phase == "Invalid"
    VariableStatus.model_validate(status.to_wire())


# --- ownership (an auction's allocation) ---------------------------------------------------------


def test_ownership_moves_once_per_session_and_leaves_the_value_alone() -> None:
    from mabeam.core.variables import transfer_ownership
    from mabeam.models.variable import Actor

    s = spec()
    status, _ = apply_write(s, VariableStatus(), write(3), T0)
    owned, outcome = transfer_ownership(status, Actor(kind="Agent", name="bob"), "auction-1:uid", T0)
    assert outcome.applied and owned.owner == Actor(kind="Agent", name="bob")
    assert (owned.value, owned.version, owned.history) == (status.value, status.version, status.history)
    assert owned.applied_sessions[-1] == "auction-1:uid"
    again, outcome = transfer_ownership(owned, Actor(kind="Agent", name="carol"), "auction-1:uid", T0)
    assert not outcome.applied and outcome.reason == "AlreadyApplied" and again.owner == owned.owner
    moved, outcome = transfer_ownership(owned, Actor(kind="Agent", name="carol"), "auction-2:uid", T0)
    assert outcome.applied and moved.owner is not None and moved.owner.name == "carol"
    assert "was bob" in outcome.message
