"""pydantic models of every MABEAM kind: the one source of truth for the CRD schemas."""

from ._base import API_VERSION, GROUP, VERSION, Condition, KindInfo, MabeamModel, PrinterColumn
from .agent import AGENT, AgentSpec, AgentStatus
from .variable import VARIABLE, VariableSpec, VariableStatus, VariableWrite

#: Every kind, in the order the CRDs are written.
KINDS: tuple[KindInfo, ...] = (AGENT, VARIABLE)

__all__ = [
    "AGENT",
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "AgentSpec",
    "AgentStatus",
    "Condition",
    "KindInfo",
    "MabeamModel",
    "PrinterColumn",
    "VARIABLE",
    "VariableSpec",
    "VariableStatus",
    "VariableWrite",
]
