"""The protocol framework: inputs, effects, the Protocol interface and the shared helpers.

A session is a small state machine driven by the operator::

    start(session, spec, participants, now)                  -> StepResult   (phase Collecting)
    step(session, spec, status, answers, alive, now)         -> StepResult   (any number of times)
    next_deadline(spec, status)                              -> datetime | None (the next timer)

Everything here is pure: no clock (``now`` is an argument), no I/O, no randomness. The same
inputs give the same outputs, and a step repeated with the status it returned gives that status
again and no effects (outcome effects are emitted on the transition only).

Inputs:

- ``participants``: the Agents resolved once at the start (names, or a label selector, resolved
  by the operator), each with a snapshot of its weight, priority and capabilities.
- ``answers``: the *complete* current set of the session's answers (every Vote), keyed by the
  agent named in the Vote; each carries ``at``, when that version was received. An answer may
  change until collection closes: the newest version replaces the previous one (never counted
  twice); a Vote deleted before the deadline withdraws the answer.
- ``alive``: agent -> Ready now. A participant missing from the map is treated as alive.

Answers are checked here, and each answer gets a :class:`Verdict` the operator writes to the
Vote's status: ``NotParticipant`` (the agent is not a participant), ``Late`` (received after the
deadline; an earlier counted version stays counted), ``Closed`` (the session, or the collection,
has closed), ``WrongAnswerKind`` (e.g. a proposal in a vote), ``UnknownOption``.

Absence is judged when the collection closes at the deadline: a participant that is then not
alive and has no counted answer is *absent*. With ``absentPolicy: exclude`` it leaves the quorum
base; with ``abstain`` it stays in it without a vote. Before the deadline every participant
without an answer may still answer, Ready or not, so an early decision never depends on who
happens to be Ready: it is taken only when no answer still to come (and no readiness at the
deadline) could change the outcome. A decision is final; later answers are refused (Closed).
Contract net also uses readiness to move an award on from an agent that is not Ready.

Effects are plain data the operator carries out after it has written the returned status:
:class:`RequestAnswers`, :class:`Award`, :class:`SetVariable` (carries the session name; the
Variable records applied sessions, so applying it twice is harmless), :class:`EmitEvent`.
"""

from __future__ import annotations

import abc
import datetime as _dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar, Literal

from ...errors import InvalidSpecError
from ...models._base import ending_conditions
from ...models.coordination import (
    AnswerRecord,
    CoordinationResult,
    CoordinationSpec,
    CoordinationStatus,
    ParticipantRecord,
    Refusal,
    VoteSpec,
)

__all__ = [
    "TERMINAL_PHASES",
    "Answer",
    "AnswerKind",
    "Award",
    "Collected",
    "Effect",
    "EmitEvent",
    "Participant",
    "Protocol",
    "RequestAnswers",
    "SetVariable",
    "StepResult",
    "Verdict",
    "absent_participants",
    "collect",
    "finish",
    "invalid",
    "past_deadline",
    "quorum_required",
]

AnswerKind = Literal["vote", "proposal", "confirmation", "claim"]
TERMINAL_PHASES = frozenset({"Decided", "NoDecision", "Failed", "Cancelled"})


@dataclass(frozen=True)
class Participant:
    """An Agent resolved at the start, with the snapshot the protocols use."""

    name: str
    weight: float = 1.0
    priority: int = 0
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Answer:
    """One agent's current answer (the content of its Vote) and when this version arrived."""

    at: _dt.datetime
    choice: str | None = None
    cost: float | None = None
    accept: bool | None = None
    claim: bool | None = None

    @classmethod
    def from_vote(cls, spec: VoteSpec, at: _dt.datetime) -> Answer:
        return cls(
            at=at,
            choice=spec.choice,
            cost=spec.proposal.cost if spec.proposal is not None else None,
            accept=spec.accept,
            claim=spec.claim,
        )


@dataclass(frozen=True)
class RequestAnswers:
    """Ask ``agents`` for an answer of ``kind`` before ``deadline``."""

    session: str
    kind: AnswerKind
    agents: tuple[str, ...]
    deadline: _dt.datetime


@dataclass(frozen=True)
class Award:
    """contract-net: ``agent`` is awarded the task and must confirm before ``deadline``."""

    session: str
    agent: str
    cost: float
    deadline: _dt.datetime


@dataclass(frozen=True)
class SetVariable:
    """Write the outcome ``value`` into Variable ``name``, at most once per ``session``."""

    name: str
    value: str | float
    session: str


@dataclass(frozen=True)
class EmitEvent:
    """A Kubernetes Event on the Coordination."""

    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


Effect = RequestAnswers | Award | SetVariable | EmitEvent


@dataclass(frozen=True)
class Verdict:
    """Whether an agent's current answer is counted, for its Vote's status."""

    agent: str
    accepted: bool
    reason: str
    message: str = ""


@dataclass(frozen=True)
class StepResult:
    status: CoordinationStatus
    effects: tuple[Effect, ...] = ()
    verdicts: tuple[Verdict, ...] = ()


class Protocol(abc.ABC):
    """One coordination protocol. Subclass it and register it under ``mabeam.protocols``.

    ``step`` is only called for started sessions that are neither terminal nor cancelled (the
    engine handles those); it must be pure and idempotent (see the module docstring).
    """

    name: ClassVar[str]
    answer_kind: ClassVar[AnswerKind] = "vote"

    def validate(self, spec: CoordinationSpec) -> None:  # noqa: B027 - optional hook, no-op default
        """Raise InvalidSpecError (with the field path) if ``spec`` does not fit the protocol."""

    def eligible(self, spec: CoordinationSpec, participant: Participant) -> bool:
        """Whether a resolved participant takes part (contract net asks for a capability)."""
        return True

    def start(
        self,
        session: str,
        spec: CoordinationSpec,
        participants: Sequence[Participant],
        now: _dt.datetime,
    ) -> StepResult:
        """Record the participants, open the collection and ask them for answers."""
        records = [
            ParticipantRecord(name=p.name, weight=p.weight, priority=p.priority)
            for p in sorted(participants, key=lambda p: p.name)
        ]
        status = CoordinationStatus(phase="Collecting", participants=records, started_at=now)
        if not records:
            return finish(
                status,
                spec,
                session,
                phase="NoDecision",
                value=None,
                reason="NoParticipants",
                message="no participant could take part",
                now=now,
            )
        deadline = now + _dt.timedelta(seconds=spec.answer_seconds)
        status.deadline = deadline
        names = tuple(r.name for r in records)
        effects: tuple[Effect, ...] = (
            RequestAnswers(session=session, kind=self.answer_kind, agents=names, deadline=deadline),
            EmitEvent("Started", f"{self.name} session started with {len(names)} participants"),
        )
        return StepResult(status=status, effects=effects)

    @abc.abstractmethod
    def step(
        self,
        session: str,
        spec: CoordinationSpec,
        status: CoordinationStatus,
        answers: Mapping[str, Answer],
        alive: Mapping[str, bool],
        now: _dt.datetime,
    ) -> StepResult:
        """Take the answers into account and decide if the outcome can no longer change."""

    def next_deadline(self, status: CoordinationStatus) -> _dt.datetime | None:
        """When the operator must call ``step`` again even if nothing changes."""
        if status.phase == "Collecting":
            return status.deadline
        return None


# ---------------------------------------------------------------------------------------------
# Helpers shared by the protocol families (and usable by third-party protocols).


@dataclass
class Collected:
    """The answers after a collection step: counted records, refusals, and the verdicts."""

    records: dict[str, AnswerRecord]
    refusals: dict[str, Refusal]
    verdicts: list[Verdict] = field(default_factory=list)

    def apply(self, status: CoordinationStatus) -> CoordinationStatus:
        """A copy of ``status`` with these answers and refusals (sorted by agent)."""
        return status.model_copy(
            update={
                "answers": [self.records[a] for a in sorted(self.records)],
                "refusals": [self.refusals[a] for a in sorted(self.refusals)],
            }
        )

    def unanswered(self, status: CoordinationStatus) -> list[str]:
        """The participants with no counted answer, in the order of ``status``."""
        return [p.name for p in status.participants if p.name not in self.records]


def past_deadline(status: CoordinationStatus, now: _dt.datetime) -> bool:
    """Whether the collection is over for the protocol: it has no deadline, or the deadline came."""
    return status.deadline is None or now >= status.deadline


AnswerFields = Callable[[Answer], dict[str, object]]
AnswerCheck = Callable[[Answer], tuple[str, str] | None]


def _record_fields(record: AnswerRecord, keys: Iterable[str]) -> dict[str, object]:
    return {k: getattr(record, k) for k in keys}


def collect(
    status: CoordinationStatus,
    answers: Mapping[str, Answer],
    now: _dt.datetime,
    *,
    fields: AnswerFields,
    check: AnswerCheck,
    closed: bool = False,
) -> Collected:
    """Merge ``answers`` into the counted answers of ``status``.

    ``fields`` picks the part of an answer the protocol counts (e.g. ``{"choice": ...}``);
    an answer whose fields equal the counted record is the same answer (kept, with its original
    receive time). ``check`` returns ``(reason, message)`` to refuse an answer. With ``closed``
    every change is refused as ``Closed``. Before the deadline a missing answer is a withdrawal.
    """
    participants = {p.name for p in status.participants}
    deadline = status.deadline
    records = {r.agent: r for r in status.answers}
    refusals = {r.agent: r for r in status.refusals}
    verdicts: list[Verdict] = []
    open_now = not closed and deadline is not None and now <= deadline
    for agent in [a for a in records if a not in answers]:
        if open_now:
            del records[agent]
            refusals.pop(agent, None)
    for agent in sorted(answers):
        answer = answers[agent]
        values = fields(answer)
        old = records.get(agent)
        if old is not None and _record_fields(old, values) == values:
            refusals.pop(agent, None)
            verdicts.append(Verdict(agent, True, "Counted", "the answer is counted"))
            continue
        refusal: tuple[str, str] | None
        if agent not in participants:
            refusal = ("NotParticipant", f"{agent} is not a participant of this session")
        elif closed:
            refusal = ("Closed", "the session no longer takes answers")
        elif deadline is not None and answer.at > deadline:
            refusal = ("Late", f"received after the deadline {deadline.isoformat()}")
        else:
            refusal = check(answer)
        if refusal is not None:
            reason, message = refusal
            if old is not None:
                message += "; the earlier answer stays counted"
            refusals[agent] = Refusal(agent=agent, reason=reason, message=message)
            verdicts.append(Verdict(agent, False, reason, message))
            continue
        records[agent] = AnswerRecord.model_validate({"agent": agent, "received_at": answer.at, **values})
        refusals.pop(agent, None)
        verdicts.append(Verdict(agent, True, "Counted", "the answer is counted"))
    return Collected(records=records, refusals=refusals, verdicts=verdicts)


def absent_participants(
    status: CoordinationStatus, counted: Iterable[str], alive: Mapping[str, bool]
) -> set[str]:
    """Participants that are not alive and have no counted answer."""
    answered = set(counted)
    return {p.name for p in status.participants if p.name not in answered and not alive.get(p.name, True)}


def quorum_required(spec: CoordinationSpec, base: int, default: str) -> int:
    """How many answers the quorum asks for out of ``base`` participants (at least one)."""
    quorum = spec.quorum if spec.quorum is not None else default
    if isinstance(quorum, int):
        return max(1, quorum)
    fraction = Fraction(quorum.rstrip("%")) / 100
    needed = fraction * base
    ceiling = -(-needed.numerator // needed.denominator)
    return max(1, ceiling)


def finish(
    status: CoordinationStatus,
    spec: CoordinationSpec,
    session: str,
    *,
    phase: Literal["Decided", "NoDecision", "Failed", "Cancelled"],
    value: str | None,
    reason: str,
    message: str,
    now: _dt.datetime,
    verdicts: Sequence[Verdict] = (),
    effects: Sequence[Effect] = (),
) -> StepResult:
    """End the session: record the result, set the Complete condition, emit the outcome effects."""
    conditions = ending_conditions(
        status.conditions, failed=phase == "Failed", reason=reason, message=message, now=now
    )
    new = status.model_copy(
        update={
            "phase": phase,
            "result": CoordinationResult(value=value, reason=reason, message=message, decided_at=now),
            "conditions": conditions,
        }
    )
    out: list[Effect] = list(effects)
    if phase == "Decided" and value is not None and spec.variable_ref is not None:
        out.append(SetVariable(name=spec.variable_ref.name, value=value, session=session))
    out.append(EmitEvent(reason, message, "Warning" if phase == "Failed" else "Normal"))
    return StepResult(status=new, effects=tuple(out), verdicts=tuple(verdicts))


def invalid(path: str, message: str) -> InvalidSpecError:
    """Shorthand for the protocols' spec checks."""
    return InvalidSpecError(message, path=path)
