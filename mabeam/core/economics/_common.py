"""What the auction and market engines share: the answers they read, the steps they return,
the allocation effect, and the commitment that seals a bid.

Pure: no clock, no I/O. The effects and verdicts are the ones of :mod:`mabeam.core.protocols`
(``EmitEvent``, ``SetVariable``, ``Verdict``), plus :class:`SetOwner`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal

from ...models.auction import AuctionStatus, BidReveal, BidSpec
from ...models.market import MarketStatus, OrderSpec, SchedulePoint
from ..protocols import EmitEvent, SetVariable, Verdict

__all__ = [
    "AuctionStep",
    "BidAnswer",
    "EconomicEffect",
    "MarketStep",
    "OrderAnswer",
    "SetOwner",
    "commitment",
]


@dataclass(frozen=True)
class SetOwner:
    """Make ``agent`` the owner of the resource Variable ``variable`` (at most once per session)."""

    variable: str
    agent: str
    session: str


EconomicEffect = SetOwner | SetVariable | EmitEvent


def _canonical(reveal: BidReveal) -> str:
    """The bid part of a reveal as canonical JSON (the nonce excluded, bundle items sorted)."""
    bid: dict[str, object] = {}
    if reveal.amount is not None:
        bid["amount"] = float(reveal.amount)
    if reveal.bundles is not None:
        bid["bundles"] = [{"amount": float(b.amount), "items": sorted(b.items)} for b in reveal.bundles]
    return json.dumps(bid, sort_keys=True, separators=(",", ":"))


def commitment(reveal: BidReveal) -> str:
    """SHA-256 (hex) of the canonical bid, a newline and the nonce: what a sealed Bid commits to."""
    return hashlib.sha256(f"{_canonical(reveal)}\n{reveal.nonce}".encode()).hexdigest()


@dataclass(frozen=True)
class BidAnswer:
    """One agent's current Bid (its content) and when this version arrived."""

    at: _dt.datetime
    commitment: str | None = None
    reveal: BidReveal | None = None
    round: int | None = None
    accept: bool | None = None

    @classmethod
    def from_bid(cls, spec: BidSpec, at: _dt.datetime) -> BidAnswer:
        return cls(
            at=at, commitment=spec.commitment, reveal=spec.reveal, round=spec.round, accept=spec.accept
        )


@dataclass(frozen=True)
class OrderAnswer:
    """One agent's current Order (its content) and when this version arrived."""

    at: _dt.datetime
    side: str | None = None
    price: Decimal | None = None
    quantity: int = 1
    schedule: tuple[SchedulePoint, ...] | None = None

    @classmethod
    def from_order(cls, spec: OrderSpec, at: _dt.datetime) -> OrderAnswer:
        schedule = tuple(spec.schedule) if spec.schedule is not None else None
        return cls(at=at, side=spec.side, price=spec.price, quantity=spec.quantity, schedule=schedule)


@dataclass(frozen=True)
class AuctionStep:
    status: AuctionStatus
    effects: tuple[EconomicEffect, ...] = ()
    verdicts: tuple[Verdict, ...] = ()


@dataclass(frozen=True)
class MarketStep:
    status: MarketStatus
    effects: tuple[EconomicEffect, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
