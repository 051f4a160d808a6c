"""The Coordination kind (one voting, negotiation or arbitration session) and the Vote kind
(one agent's answer in one session).

A Coordination names a protocol (``consensus``, ``majority``, ``weighted``, ``contract-net``,
``priority`` or one installed under the entry point group ``mabeam.protocols``), its
participants (a list of Agent names or a label selector, resolved once when the session starts
and recorded with a weight/priority snapshot in ``status.participants``), the question
(``options`` for votes, ``task`` for contract net, ``resource`` for priority resolution), the
deadlines and the rules (quorum, threshold, tie and absence policies). The operator feeds the
session's Votes to the pure engine in ``mabeam.core.protocols``; the engine writes the status.

A Vote is named ``<session>-<agent>`` (see :func:`vote_name`): one per agent per session, so an
agent that answers again updates its Vote, and the newest version replaces the old one until
the session closes. Its status says whether the answer was counted and, if not, why.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ._base import Condition, KindInfo, MabeamModel, PrinterColumn, answer_kind
from .variable import LabelSelector, selector_cel_rule

__all__ = [
    "COORDINATION",
    "PARTICIPANTS_VALIDATIONS",
    "VOTE",
    "AnswerRecord",
    "AnswerStatus",
    "AwardRecord",
    "CoordinationPhase",
    "CoordinationResult",
    "CoordinationSpec",
    "CoordinationStatus",
    "CountedVersion",
    "DeclineRecord",
    "ParticipantRecord",
    "ParticipantsSpec",
    "Proposal",
    "RankEntry",
    "Refusal",
    "TaskSpec",
    "VariableRef",
    "VoteSpec",
    "VoteStatus",
    "answer_verdict",
    "vote_name",
]

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
PROTOCOL_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
QUORUM_PERCENT_PATTERN = r"^[0-9]{1,3}(\.[0-9]+)?%$"
_NAME_ITEMS: dict[str, Any] = {"items": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 253}}

CoordinationPhase = Literal[
    "Pending", "Collecting", "Deciding", "Decided", "NoDecision", "Failed", "Cancelled"
]
AbsentPolicy = Literal["exclude", "abstain"]
TiePolicy = Literal["NoDecision", "FirstListed"]
ThresholdComparison = Literal["GreaterThan", "AtLeast"]


def vote_name(session: str, agent: str) -> str:
    """The deterministic name of ``agent``'s Vote in ``session``."""
    return f"{session}-{agent}"


class ParticipantsSpec(MabeamModel):
    """Who takes part: exactly one of ``agents`` and ``selector``."""

    agents: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Agent names (in the Coordination's namespace).",
        json_schema_extra=_NAME_ITEMS,
    )
    selector: LabelSelector | None = Field(
        default=None, description="A label selector over the namespace's Agents."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ParticipantsSpec:
        if (self.agents is None) == (self.selector is None):
            raise ValueError("set exactly one of participants.agents and participants.selector")
        return self


class TaskSpec(MabeamModel):
    """The task a contract-net session calls for proposals on."""

    description: str = Field(max_length=4096, description="What is to be done, for the bidders.")
    capability: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Only participants with this capability are called for proposals.",
    )


class VariableRef(MabeamModel):
    name: str = Field(
        pattern=NAME_PATTERN, max_length=253, description="The Variable that receives the outcome."
    )


class CoordinationSpec(MabeamModel):
    protocol: str = Field(
        pattern=PROTOCOL_PATTERN,
        max_length=63,
        description="consensus, majority, weighted, contract-net, priority, or an installed one.",
    )
    participants: ParticipantsSpec = Field(description="Who takes part (agents or selector).")
    options: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="consensus/majority/weighted: the choices a Vote may name, in order "
        "(the order breaks ties under tiePolicy FirstListed).",
        json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 256}},
    )
    task: TaskSpec | None = Field(default=None, description="contract-net: the task to award.")
    resource: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="priority: the one resource the participants contend for.",
    )
    answer_seconds: float = Field(
        default=60.0, gt=0, le=7 * 86400, description="How long answers are collected after the start."
    )
    award_seconds: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description="contract-net: how long an awarded agent has to confirm before the award moves on.",
    )
    quorum: int | str | None = Field(
        default=None,
        description="How many participants must answer: a count (3) or a percentage ('60%'). "
        "Default: '100%' for consensus, '50%' for majority and weighted (always at least one).",
        json_schema_extra={
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": QUORUM_PERCENT_PATTERN},
            ],
            "x-kubernetes-int-or-string": True,
        },
    )
    threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="majority/weighted: the share of the votes (weight) cast the winner needs.",
    )
    threshold_comparison: ThresholdComparison = Field(
        default="GreaterThan",
        description="GreaterThan: the winner's share must exceed the threshold (default: more than "
        "half); AtLeast: it may equal it.",
    )
    tie_policy: TiePolicy = Field(
        default="NoDecision",
        description="majority/weighted, when options tie for the most votes: NoDecision (reason Tie) "
        "or FirstListed (the tied option listed first in options wins, if it meets the threshold).",
    )
    absent_policy: AbsentPolicy = Field(
        default="exclude",
        description="Participants that are not Ready and have not answered: exclude (they leave the "
        "electorate and the quorum base) or abstain (they stay in it without a vote).",
    )
    variable_ref: VariableRef | None = Field(
        default=None, description="A Variable set to the outcome once the session is Decided."
    )
    cancel: bool = Field(default=False, description="True ends an open session as Cancelled.")

    @field_validator("quorum", mode="before")
    @classmethod
    def _no_boolean_quorum(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("quorum must be a count (3) or a percentage ('60%'), not a boolean")
        return value

    @model_validator(mode="after")
    def _check_quorum(self) -> CoordinationSpec:
        q = self.quorum
        if isinstance(q, int) and q < 1:
            raise ValueError("quorum as a count must be at least 1")
        if isinstance(q, str) and (not re.fullmatch(QUORUM_PERCENT_PATTERN, q) or float(q[:-1]) > 100):
            raise ValueError(f"quorum {q!r} must be a percentage between 0% and 100%, e.g. '60%'")
        return self


class ParticipantRecord(MabeamModel):
    """A participant as resolved at the start, with the snapshot the protocols use."""

    name: str = Field(description="The Agent's name.")
    weight: float = Field(default=1.0, description="The Agent's spec.weight at the start.")
    priority: int = Field(default=0, description="The Agent's spec.priority at the start.")


class AnswerRecord(MabeamModel):
    """An answer that is counted (the newest accepted version of the agent's Vote)."""

    agent: str = Field(description="Who answered.")
    choice: str | None = Field(default=None, description="The option voted for.")
    cost: float | None = Field(default=None, description="contract-net: the proposal's cost.")
    accept: bool | None = Field(default=None, description="contract-net: the award confirmation.")
    claim: bool | None = Field(default=None, description="priority: whether the agent claims.")
    received_at: _dt.datetime = Field(description="When this version of the answer was received.")


class Refusal(MabeamModel):
    """The newest answer of an agent that was not counted, and why."""

    agent: str = Field(description="Who answered.")
    reason: str = Field(
        description="Why it was not counted. Votes: NotParticipant, Late, Closed, WrongAnswerKind, "
        "UnknownOption, NotEligible. Bids also: RevealTooEarly, NoCommitment, BadCommitment, "
        "UnknownItem, DuplicateItem, WrongRound, NotActive. Orders also: OffGrid, Unsorted, NotMonotone."
    )
    message: str = Field(default="", description="What was wrong, for humans.")


class CountedVersion(MabeamModel):
    """The verdict Counted on one version of an agent's answer, kept in the session's status.

    A counted answer gets its verdict here, in the session's own status write, not in a write
    of the answer: the answer's ``metadata.generation`` names the version. A refused version
    gets its verdict in the answer's own status (see :func:`answer_verdict`).
    """

    agent: str = Field(description="Who answered.")
    generation: int = Field(description="The metadata.generation of the counted version of the answer.")
    received_at: _dt.datetime = Field(
        description="When the operator first received this version: its time against the deadlines, "
        "kept across operator restarts."
    )


class RankEntry(MabeamModel):
    """contract-net and priority: one contender, best first."""

    agent: str = Field(description="The contender.")
    cost: float | None = Field(default=None, description="contract-net: the proposal's cost.")
    priority: int | None = Field(default=None, description="priority: the agent's priority.")
    received_at: _dt.datetime | None = Field(default=None, description="When the claim was received.")


class AwardRecord(MabeamModel):
    """contract-net: the current award, waiting for confirmation."""

    agent: str = Field(description="The awarded agent.")
    cost: float = Field(description="Its proposal's cost.")
    awarded_at: _dt.datetime = Field(description="When the award was made.")
    deadline: _dt.datetime = Field(description="When the award moves on without a confirmation.")


class DeclineRecord(MabeamModel):
    """contract-net: an award that did not hold."""

    agent: str = Field(description="The agent that had the award.")
    reason: str = Field(description="Declined, NoConfirmation or Absent.")


class CoordinationResult(MabeamModel):
    value: str | None = Field(
        default=None,
        description="The outcome: the winning option (votes) or the winning agent "
        "(contract-net, priority); unset when there is no decision.",
    )
    reason: str = Field(
        description="Decided: Unanimous, Majority, WeightedMajority, Awarded, HighestPriority. "
        "NoDecision: QuorumNotMet, NoConsensus, Tie, ThresholdNotMet, NoProposals, "
        "NoConfirmation, NoClaims, NoParticipants. Cancelled, Invalid."
    )
    message: str = Field(default="", description="The outcome in a sentence.")
    decided_at: _dt.datetime = Field(description="When the session ended.")


class CoordinationStatus(MabeamModel):
    phase: CoordinationPhase | None = Field(default=None, description="Where the session is.")
    participants: list[ParticipantRecord] = Field(
        default_factory=list, description="The participants resolved at the start, with snapshots."
    )
    started_at: _dt.datetime | None = Field(default=None, description="When answers were first requested.")
    deadline: _dt.datetime | None = Field(default=None, description="When answer collection closes.")
    tally: dict[str, float] = Field(
        default_factory=dict, description="votes: the count (or weight) counted for each option."
    )
    answers: list[AnswerRecord] = Field(default_factory=list, description="The counted answers.")
    refusals: list[Refusal] = Field(
        default_factory=list, description="Each agent's newest answer that was not counted, and why."
    )
    counted: list[CountedVersion] = Field(
        default_factory=list,
        description="The verdict Counted, by agent: the newest version of its Vote that was counted.",
    )
    ranking: list[RankEntry] = Field(
        default_factory=list, description="contract-net and priority: the contenders, best first."
    )
    award: AwardRecord | None = Field(default=None, description="contract-net: the current award.")
    declined: list[DeclineRecord] = Field(
        default_factory=list, description="contract-net: the awards that did not hold, in order."
    )
    result: CoordinationResult | None = Field(default=None, description="The outcome, once decided.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    outcome_applied: bool | None = Field(
        default=None,
        description=(
            "True once the decided value was written to spec.variableRef (or was already there): "
            "the operator does not apply it again after a restart."
        ),
    )
    conditions: list[Condition] = Field(default_factory=list, description="Complete, Invalid.")


class Proposal(MabeamModel):
    cost: float = Field(ge=0, allow_inf_nan=False, description="The bidder's cost; the lowest wins.")
    note: str = Field(default="", max_length=4096, description="Anything the bidder wants to say.")


class VoteSpec(MabeamModel):
    """One agent's answer. Set the field the session's protocol asks for."""

    session: str = Field(pattern=NAME_PATTERN, max_length=253, description="The Coordination's name.")
    agent: str = Field(pattern=NAME_PATTERN, max_length=253, description="The answering Agent.")
    choice: str | None = Field(
        default=None, max_length=256, description="consensus/majority/weighted: the option."
    )
    proposal: Proposal | None = Field(default=None, description="contract-net: the bid.")
    accept: bool | None = Field(
        default=None, description="contract-net: the awarded agent's confirmation (true) or refusal."
    )
    claim: bool | None = Field(default=None, description="priority: true to claim the resource.")

    @model_validator(mode="after")
    def _something(self) -> VoteSpec:
        if self.choice is None and self.proposal is None and self.accept is None and self.claim is None:
            raise ValueError("a Vote must set one of choice, proposal, accept or claim")
        return self


class AnswerStatus(MabeamModel):
    """The operator's verdict on an answer (a Vote, Bid or Order), once per version of it."""

    accepted: bool | None = Field(default=None, description="True if the answer is counted.")
    reason: str = Field(
        default="", description="Counted, or why the answer was refused (see the session's refusals)."
    )
    message: str = Field(default="", description="The verdict in a sentence.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    received_at: _dt.datetime | None = Field(
        default=None,
        description="When the operator first received this version (observedGeneration): its time "
        "against the deadlines, kept across operator restarts.",
    )


class VoteStatus(AnswerStatus):
    """The verdict on a Vote."""


#: The message of the verdict Counted (the engines' word for it).
COUNTED_MESSAGE = "the answer is counted"


def answer_verdict(answer: Mapping[str, Any], session: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The operator's verdict on the current version of ``answer`` (a Vote, Bid or Order), in the
    wire form of :class:`AnswerStatus`, or None while it has none.

    A refused version has its verdict in the answer's own status; a counted one is listed in
    its session's ``status.counted`` (one write of the session for all the answers of a pass).
    """
    meta = answer.get("metadata") or {}
    generation = meta.get("generation") or 1
    own = answer.get("status") or {}
    if own.get("reason") and own.get("observedGeneration") == generation:
        return dict(own)
    agent = (answer.get("spec") or {}).get("agent")
    for record in ((session or {}).get("status") or {}).get("counted") or ():
        if (
            isinstance(record, dict)
            and record.get("agent") == agent
            and record.get("generation") == generation
        ):
            return {
                "accepted": True,
                "reason": "Counted",
                "message": COUNTED_MESSAGE,
                "observedGeneration": generation,
                "receivedAt": record.get("receivedAt"),
            }
    return None


#: The CEL rules on a session's spec.participants (Coordination, Auction, Market).
PARTICIPANTS_VALIDATIONS: tuple[tuple[str, str], ...] = (
    (
        "has(self.participants.agents) != has(self.participants.selector)",
        "spec.participants must set exactly one of agents and selector",
    ),
    (
        selector_cel_rule("participants.selector"),
        "spec.participants.selector: In and NotIn need values, Exists and DoesNotExist take none",
    ),
)


COORDINATION = KindInfo(
    name_max_length=63,  # a label value (mabeam.io/session)
    kind="Coordination",
    plural="coordinations",
    singular="coordination",
    short_names=("coord", "mbc"),
    spec=CoordinationSpec,
    status=CoordinationStatus,
    description="A voting, negotiation or arbitration session among Agents.",
    printer_columns=(
        PrinterColumn("Protocol", ".spec.protocol", description="The protocol."),
        PrinterColumn("Phase", ".status.phase", description="Where the session is."),
        PrinterColumn("Result", ".status.result.value", description="The outcome."),
        PrinterColumn("Reason", ".status.result.reason", description="Why.", priority=1),
        PrinterColumn("Deadline", ".status.deadline", type="date", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    spec_validations=PARTICIPANTS_VALIDATIONS,
)

VOTE = answer_kind(
    kind="Vote",
    session_kind="Coordination",
    session_field="session",
    spec=VoteSpec,
    status=VoteStatus,
    columns=(PrinterColumn("Choice", ".spec.choice"),),
    spec_validations=(
        (
            "has(self.choice) || has(self.proposal) || has(self.accept) || has(self.claim)",
            "a Vote must set one of spec.choice, spec.proposal, spec.accept or spec.claim",
        ),
    ),
)
