"""pydantic models of every MABEAM kind: the one source of truth for the CRD schemas."""

from ._base import API_VERSION, GROUP, VERSION, Condition, KindInfo, MabeamModel, PrinterColumn
from .account import ACCOUNT, AccountSpec, AccountStatus
from .agent import AGENT, AgentSpec, AgentStatus
from .auction import AUCTION, BID, AuctionSpec, AuctionStatus, BidSpec, BidStatus, bid_name
from .coordination import (
    COORDINATION,
    VOTE,
    CoordinationSpec,
    CoordinationStatus,
    VoteSpec,
    VoteStatus,
    vote_name,
)
from .market import MARKET, ORDER, MarketSpec, MarketStatus, OrderSpec, OrderStatus, order_name
from .variable import VARIABLE, VariableSpec, VariableStatus, VariableWrite

#: Every kind, in the order the CRDs are written.
KINDS: tuple[KindInfo, ...] = (AGENT, VARIABLE, COORDINATION, VOTE, AUCTION, BID, MARKET, ORDER, ACCOUNT)

__all__ = [
    "ACCOUNT",
    "AGENT",
    "API_VERSION",
    "AUCTION",
    "BID",
    "COORDINATION",
    "GROUP",
    "KINDS",
    "MARKET",
    "ORDER",
    "VARIABLE",
    "VERSION",
    "VOTE",
    "AccountSpec",
    "AccountStatus",
    "AgentSpec",
    "AgentStatus",
    "AuctionSpec",
    "AuctionStatus",
    "BidSpec",
    "BidStatus",
    "Condition",
    "CoordinationSpec",
    "CoordinationStatus",
    "KindInfo",
    "MabeamModel",
    "MarketSpec",
    "MarketStatus",
    "OrderSpec",
    "OrderStatus",
    "PrinterColumn",
    "VariableSpec",
    "VariableStatus",
    "VariableWrite",
    "VoteSpec",
    "VoteStatus",
    "bid_name",
    "order_name",
    "vote_name",
]
