"""pydantic models of every MABEAM kind: the one source of truth for the CRD schemas."""

from ._base import API_VERSION, GROUP, VERSION, Condition, KindInfo, MabeamModel, PrinterColumn
from .agent import AGENT, AgentSpec, AgentStatus
from .coordination import (
    COORDINATION,
    VOTE,
    CoordinationSpec,
    CoordinationStatus,
    VoteSpec,
    VoteStatus,
    vote_name,
)
from .variable import VARIABLE, VariableSpec, VariableStatus, VariableWrite

#: Every kind, in the order the CRDs are written.
KINDS: tuple[KindInfo, ...] = (AGENT, VARIABLE, COORDINATION, VOTE)

__all__ = [
    "AGENT",
    "API_VERSION",
    "COORDINATION",
    "GROUP",
    "KINDS",
    "VARIABLE",
    "VERSION",
    "VOTE",
    "AgentSpec",
    "AgentStatus",
    "Condition",
    "CoordinationSpec",
    "CoordinationStatus",
    "KindInfo",
    "MabeamModel",
    "PrinterColumn",
    "VariableSpec",
    "VariableStatus",
    "VariableWrite",
    "VoteSpec",
    "VoteStatus",
    "vote_name",
]
