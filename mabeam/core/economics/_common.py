"""What the auction and market engines share: the answers they read, the steps they return,
the allocation effect.

Pure: no clock, no I/O. The effects and verdicts are the ones of :mod:`mabeam.core.protocols`
(``EmitEvent``, ``SetVariable``, ``Verdict``), plus :class:`SetOwner`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from ...models._sealed import SealedEnvelope
from ...models.auction import AuctionStatus, BidSpec
from ...models.market import MarketStatus, OrderContent, OrderSpec, SchedulePoint
from ..protocols import EmitEvent, SetVariable, Verdict

__all__ = [
    "AuctionStep",
    "BidAnswer",
    "EconomicEffect",
    "MarketStep",
    "OrderAnswer",
    "SetOwner",
]


@dataclass(frozen=True)
class SetOwner:
    """Make ``agent`` the owner of the resource Variable ``variable`` (at most once per session)."""

    variable: str
    agent: str
    session: str


EconomicEffect = SetOwner | SetVariable | EmitEvent


@dataclass(frozen=True)
class BidAnswer:
    """One agent's current Bid (its content) and when this version arrived."""

    at: _dt.datetime
    sealed: SealedEnvelope | None = None
    round: int | None = None
    accept: bool | None = None

    @classmethod
    def from_bid(cls, spec: BidSpec, at: _dt.datetime) -> BidAnswer:
        return cls(at=at, sealed=spec.sealed, round=spec.round, accept=spec.accept)


@dataclass(frozen=True)
class OrderAnswer:
    """One agent's current Order and when this version arrived: as sent, ``sealed``; once the
    market engine has opened it, its content (side, price, quantity, schedule, or budget and
    utilities)."""

    at: _dt.datetime
    sealed: SealedEnvelope | None = None
    side: str | None = None
    price: Decimal | None = None
    quantity: int = 1
    schedule: tuple[SchedulePoint, ...] | None = None
    budget: Decimal | None = None
    utilities: Mapping[str, float] | None = None

    @classmethod
    def from_order(cls, spec: OrderSpec, at: _dt.datetime) -> OrderAnswer:
        return cls(at=at, sealed=spec.sealed)

    @classmethod
    def opened(cls, content: OrderContent, at: _dt.datetime) -> OrderAnswer:
        """The content of a sealed order, as the engine judges it."""
        schedule = tuple(content.schedule) if content.schedule is not None else None
        return cls(
            at=at,
            side=content.side,
            price=content.price,
            quantity=content.quantity,
            schedule=schedule,
            budget=content.budget,
            utilities=dict(content.utilities) if content.utilities is not None else None,
        )


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
