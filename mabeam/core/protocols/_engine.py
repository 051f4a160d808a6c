"""The engine the operator calls: it finds the protocol, handles what every protocol shares
(invalid specs, cancellation, closed sessions) and delegates the rest.

How the operator uses it:

1. A new Coordination (``status.phase`` unset or Pending): resolve the participants (the named
   Agents, or the Agents matching the selector) and call :func:`start`.
2. Whenever a Vote of the session changes, an Agent's readiness changes, the spec changes or the
   timer from :func:`next_deadline` fires: call :func:`step` with the complete current answers.
3. After each call: write ``result.status`` (with ``observedGeneration``), write each verdict to
   its Vote's status, then carry out ``result.effects``. If the operator dies between writing
   the status and applying the outcome, :func:`outcome_effects` gives the outcome effects of a
   decided status again; the SetVariable effect carries the session name, so the Variable
   applies it at most once.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence

from ...errors import InvalidSpecError
from ...models.coordination import CoordinationSpec, CoordinationStatus
from ._base import (
    TERMINAL_PHASES,
    Answer,
    Award,
    Effect,
    Participant,
    SetVariable,
    StepResult,
    Verdict,
    finish,
)
from ._registry import Registry, default_registry

__all__ = ["next_deadline", "outcome_effects", "start", "step"]


def _fail(
    session: str,
    spec: CoordinationSpec,
    status: CoordinationStatus,
    error: InvalidSpecError,
    now: _dt.datetime,
) -> StepResult:
    return finish(
        status, spec, session, phase="Failed", value=None, reason="Invalid", message=str(error), now=now
    )


def start(
    session: str,
    spec: CoordinationSpec,
    participants: Sequence[Participant],
    now: _dt.datetime,
    *,
    registry: Registry | None = None,
) -> StepResult:
    """Open the session: check the spec against its protocol, record the eligible participants.

    An unknown protocol or a spec that does not fit it ends the session as Failed (reason
    Invalid, with the field path in the message). A participant listed twice counts once.
    """
    registry = registry if registry is not None else default_registry()
    pending = CoordinationStatus(phase="Pending")
    try:
        protocol = registry.get(spec.protocol)
        protocol.validate(spec)
    except InvalidSpecError as error:
        return _fail(session, spec, pending, error, now)
    unique: dict[str, Participant] = {}
    for p in participants:
        unique.setdefault(p.name, p)
    eligible = [p for p in unique.values() if protocol.eligible(spec, p)]
    return protocol.start(session, spec, eligible, now)


def _closed_verdicts(status: CoordinationStatus, answers: Mapping[str, Answer]) -> tuple[Verdict, ...]:
    """Verdicts for the answers to a session that has ended: only what was counted stays counted."""
    counted = {r.agent: r for r in status.answers}
    out = []
    for agent in sorted(answers):
        answer = answers[agent]
        record = counted.get(agent)
        same = record is not None and all(
            getattr(record, key) is None or getattr(record, key) == getattr(answer, key)
            for key in ("choice", "cost", "claim")
        )
        if same:
            out.append(Verdict(agent, True, "Counted", "the answer was counted"))
        else:
            out.append(Verdict(agent, False, "Closed", f"the session has ended ({status.phase})"))
    return tuple(out)


def step(
    session: str,
    spec: CoordinationSpec,
    status: CoordinationStatus,
    answers: Mapping[str, Answer],
    alive: Mapping[str, bool],
    now: _dt.datetime,
    *,
    registry: Registry | None = None,
) -> StepResult:
    """Advance a started session. An ended session is returned unchanged, without effects."""
    if status.phase in TERMINAL_PHASES:
        return StepResult(status=status, verdicts=_closed_verdicts(status, answers))
    if status.phase in (None, "Pending"):
        return StepResult(status=status)
    if spec.cancel:
        return finish(
            status,
            spec,
            session,
            phase="Cancelled",
            value=None,
            reason="Cancelled",
            message="spec.cancel is true",
            now=now,
            verdicts=_closed_verdicts(status, answers),
        )
    registry = registry if registry is not None else default_registry()
    try:
        protocol = registry.get(spec.protocol)
        protocol.validate(spec)
    except InvalidSpecError as error:
        return _fail(session, spec, status, error, now)
    return protocol.step(session, spec, status, answers, alive, now)


def next_deadline(
    spec: CoordinationSpec, status: CoordinationStatus, *, registry: Registry | None = None
) -> _dt.datetime | None:
    """When the operator must call :func:`step` again if nothing else happens (None: never)."""
    if status.phase in TERMINAL_PHASES or status.phase in (None, "Pending"):
        return None
    registry = registry if registry is not None else default_registry()
    try:
        protocol = registry.get(spec.protocol)
    except InvalidSpecError:
        return None
    return protocol.next_deadline(status)


def outcome_effects(session: str, spec: CoordinationSpec, status: CoordinationStatus) -> tuple[Effect, ...]:
    """The effects that carry out a decided session's outcome, derived from its status alone.

    For re-applying after a crash: the SetVariable effect names the session, so a Variable that
    already applied it ignores it; the Award effect tells the winner of a contract net again.
    """
    if status.phase != "Decided" or status.result is None or status.result.value is None:
        return ()
    effects: list[Effect] = []
    if status.award is not None and status.award.agent == status.result.value:
        effects.append(Award(session, status.award.agent, status.award.cost, status.award.deadline))
    if spec.variable_ref is not None:
        effects.append(SetVariable(name=spec.variable_ref.name, value=status.result.value, session=session))
    return tuple(effects)
