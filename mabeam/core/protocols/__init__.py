"""The pure core of coordination: voting, negotiation and arbitration protocols.

Nothing here imports kopf or a Kubernetes client, reads the clock or does I/O: the operator
passes the spec, the status, the answers, the participants' readiness and ``now``, and carries
out the returned effects. See ``_base`` for the framework, ``_engine`` for how the operator
drives a session, and one module per protocol family: ``_voting`` (consensus, majority,
weighted), ``_contract_net`` and ``_priority``. Third-party protocols are found through the
entry point group ``mabeam.protocols`` (see ``_registry``).
"""

from ._base import (
    TERMINAL_PHASES,
    Answer,
    AnswerKind,
    Award,
    Collected,
    Effect,
    EmitEvent,
    Participant,
    Protocol,
    RequestAnswers,
    SetVariable,
    StepResult,
    Verdict,
    absent_participants,
    collect,
    finish,
    past_deadline,
    quorum_required,
)
from ._contract_net import ContractNet
from ._engine import next_deadline, outcome_effects, start, step
from ._priority import Priority
from ._registry import ENTRY_POINT_GROUP, Registry, builtin_protocols, default_registry, discover
from ._voting import Consensus, Majority, Weighted

__all__ = [
    "ENTRY_POINT_GROUP",
    "TERMINAL_PHASES",
    "Answer",
    "AnswerKind",
    "Award",
    "Collected",
    "Consensus",
    "ContractNet",
    "Effect",
    "EmitEvent",
    "Majority",
    "Participant",
    "Priority",
    "Protocol",
    "Registry",
    "RequestAnswers",
    "SetVariable",
    "StepResult",
    "Verdict",
    "Weighted",
    "absent_participants",
    "builtin_protocols",
    "collect",
    "default_registry",
    "discover",
    "finish",
    "next_deadline",
    "outcome_effects",
    "past_deadline",
    "quorum_required",
    "start",
    "step",
]
