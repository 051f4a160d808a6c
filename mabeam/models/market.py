"""The Market kind (one call market for a good) and the Order kind (one agent's order).

Mechanisms:

- ``equilibrium``: a Walrasian call market. Each agent answers with its net demand
  ``schedule``: at each price on the Market's ``priceGrid`` how much it wants to buy (positive)
  or sell (negative); a schedule must not rise with the price. The market clears at the lowest
  grid price where the total net demand is no longer positive; everyone trades at that price,
  the long side rationed in proportion to its demand.
- ``double-auction``: a call double auction with McAfee's trade-reduction rule. Each agent
  answers with a limit order (``side`` buy or sell, a unit ``price``, ``quantity`` units).
  Truthful for unit orders, individually rational, and it never pays out more than it takes in.

An Order is named ``<market>-<agent>`` (:func:`order_name`): one per agent per market; it may
change until the market closes. Orders are sealed: ``spec.sealed`` carries the order (its
:class:`OrderContent`) encrypted to the operator's public key in the Market's ``status.sealing``,
bound to the Market's uid and the agent, as Bids are (see docs/security.md). Only the operator
reads an order, and it publishes none before the market closes.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from ._amount import Amount, AnyAmount, PositiveAmount
from ._base import Condition, KindInfo, MabeamModel, PrinterColumn, answer_kind
from ._sealed import SealedEnvelope, SealingInfo
from .account import PaymentMode, Settlement
from .coordination import (
    NAME_PATTERN,
    PARTICIPANTS_VALIDATIONS,
    AnswerStatus,
    ParticipantRecord,
    ParticipantsSpec,
    Refusal,
    VariableRef,
)

__all__ = [
    "MARKET",
    "ORDER",
    "MarketMechanism",
    "MarketPhase",
    "MarketResult",
    "MarketSpec",
    "MarketStatus",
    "OrderContent",
    "OrderRecord",
    "OrderSpec",
    "OrderStatus",
    "PriceGrid",
    "SchedulePoint",
    "Trade",
    "order_name",
]

MarketMechanism = Literal["equilibrium", "double-auction"]
MarketPhase = Literal["Pending", "Collecting", "Cleared", "NoTrade", "Failed", "Cancelled"]
Side = Literal["buy", "sell"]
MAX_GRID_POINTS = 10_000


def order_name(market: str, agent: str) -> str:
    """The deterministic name of ``agent``'s Order in ``market``."""
    return f"{market}-{agent}"


class PriceGrid(MabeamModel):
    """equilibrium: the prices the market may clear at: min, min+step, ..., up to max."""

    min: Amount = Field(description="The lowest price.")
    max: PositiveAmount = Field(description="The highest price.")
    step: PositiveAmount = Field(description="The tick between two prices.")

    @model_validator(mode="after")
    def _ordered(self) -> PriceGrid:
        if self.min >= self.max:
            raise ValueError("priceGrid.min must be below priceGrid.max")
        if (self.max - self.min) / self.step > MAX_GRID_POINTS:
            raise ValueError(f"priceGrid has more than {MAX_GRID_POINTS} prices; use a larger step")
        return self

    def prices(self) -> list[Decimal]:
        """The grid's prices, lowest first (exact decimals, computed by index)."""
        count = int((self.max - self.min) // self.step) + 1
        return [self.min + i * self.step for i in range(count)]


class MarketSpec(MabeamModel):
    mechanism: MarketMechanism = Field(description="equilibrium or double-auction.")
    participants: ParticipantsSpec = Field(description="Who may trade (agents or selector).")
    good: str = Field(min_length=1, max_length=253, description="What is traded (for humans and agents).")
    price_grid: PriceGrid | None = Field(
        default=None, description="equilibrium: the prices it may clear at (required)."
    )
    order_seconds: float = Field(
        default=60.0, gt=0, le=7 * 86400, description="How long orders are taken after the start."
    )
    price_variable_ref: VariableRef | None = Field(
        default=None, description="A Variable set to the clearing price once the market has cleared."
    )
    cancel: bool = Field(default=False, description="True ends an open market as Cancelled.")
    payment: PaymentMode = Field(
        default="Auto",
        description="Whether outcomes are paid from Accounts: Ledger (every bidder needs an Account "
        "that covers its bid), None (prices are recorded only), or Auto (Ledger when the namespace "
        "has an Account when the session starts). See docs/economics.md, Money.",
    )

    @model_validator(mode="after")
    def _fits_mechanism(self) -> MarketSpec:
        if self.mechanism == "equilibrium" and self.price_grid is None:
            raise ValueError("an equilibrium market needs spec.priceGrid")
        return self


class SchedulePoint(MabeamModel):
    price: Amount = Field(description="A price on the market's grid.")
    quantity: float = Field(
        ge=-1e12,
        le=1e12,
        description="Net demand at this price: positive buys, negative sells.",
        allow_inf_nan=False,
    )


class OrderContent(MabeamModel):
    """One agent's order, as it travels inside ``spec.sealed`` (never in clear): the fields the
    market's mechanism asks for."""

    side: Side | None = Field(default=None, description="double-auction: buy or sell.")
    price: Amount | None = Field(
        default=None,
        description="double-auction: the limit price per unit (the most a buyer pays, the least a "
        "seller takes).",
    )
    quantity: int = Field(default=1, ge=1, le=10000, description="double-auction: how many units.")
    schedule: list[SchedulePoint] | None = Field(
        default=None,
        min_length=1,
        max_length=10001,
        description="equilibrium: net demand at each grid price (a step function, prices rising; "
        "between two points the lower point holds). Must not rise with the price.",
    )

    @model_validator(mode="after")
    def _something(self) -> OrderContent:
        if self.schedule is None and (self.side is None or self.price is None):
            raise ValueError("an Order sets side and price (double-auction) or schedule (equilibrium)")
        return self


class OrderSpec(MabeamModel):
    """One agent's order, sealed."""

    market: str = Field(pattern=NAME_PATTERN, max_length=253, description="The Market's name.")
    agent: str = Field(pattern=NAME_PATTERN, max_length=253, description="The trading Agent.")
    sealed: SealedEnvelope = Field(
        description="The order (side, price, quantity or schedule) encrypted to the Market's "
        "status.sealing.publicKey."
    )


class OrderStatus(AnswerStatus):
    """The verdict on an Order."""


class OrderRecord(MabeamModel):
    """A counted order (the newest accepted version of the agent's Order)."""

    agent: str = Field(description="Who ordered.")
    sealed: SealedEnvelope | None = Field(
        default=None, description="The counted sealed order (binding once the market has closed)."
    )
    side: Side | None = Field(default=None, description="Once closed, double-auction: buy or sell.")
    price: AnyAmount | None = Field(default=None, description="Once closed, double-auction: the limit price.")
    quantity: int | None = Field(default=None, description="Once closed, double-auction: the units.")
    schedule: list[SchedulePoint] | None = Field(
        default=None, description="Once closed, equilibrium: the schedule (snapped to the grid)."
    )
    received_at: _dt.datetime = Field(description="When this version was received.")


class Trade(MabeamModel):
    """What one agent trades at the clearing."""

    agent: str = Field(description="The trader.")
    side: Side = Field(description="buy or sell.")
    quantity: float = Field(description="How much (units or an amount of the good).")
    price: AnyAmount = Field(description="The price per unit it pays (buy) or receives (sell).")
    total: AnyAmount = Field(description="quantity times price (rounded to 18 decimals if need be).")


class MarketResult(MabeamModel):
    price: AnyAmount | None = Field(
        default=None, description="The clearing price (double-auction: the buyers' price)."
    )
    seller_price: AnyAmount | None = Field(
        default=None, description="double-auction: the sellers' price (below price after a trade reduction)."
    )
    volume: float = Field(default=0.0, description="How much was traded.")
    trades: list[Trade] = Field(default_factory=list, description="Every agent's trade.")
    surplus: AnyAmount = Field(
        default=Decimal(0),
        json_schema_extra={"default": 0},
        description="What buyers paid minus what sellers received (never negative).",
    )
    reason: str = Field(
        description="Cleared: Equilibrium, AllEfficientTrades, TradeReduction. NoTrade: NoOrders, "
        "NoCrossing, NoEquilibrium, TradeReduction (the only efficient pair was cut). Cancelled, Invalid."
    )
    message: str = Field(default="", description="The outcome in a sentence.")
    decided_at: _dt.datetime = Field(description="When the market cleared or closed.")


class MarketStatus(MabeamModel):
    phase: MarketPhase | None = Field(default=None, description="Where the market is.")
    sealing: SealingInfo | None = Field(
        default=None, description="The public key to seal orders to (set when collection opens)."
    )
    participants: list[ParticipantRecord] = Field(
        default_factory=list, description="The traders resolved at the start, with snapshots."
    )
    started_at: _dt.datetime | None = Field(default=None, description="When orders were first taken.")
    deadline: _dt.datetime | None = Field(default=None, description="When order collection closes.")
    orders: list[OrderRecord] = Field(
        default_factory=list, description="The counted orders (their content only once closed)."
    )
    refusals: list[Refusal] = Field(
        default_factory=list, description="Each agent's newest order that was not counted, and why."
    )
    result: MarketResult | None = Field(default=None, description="The outcome, once cleared.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    payment: Literal["Ledger", "None"] | None = Field(
        default=None, description="Whether this session pays from Accounts (decided when it starts)."
    )
    settlement: Settlement | None = Field(
        default=None,
        description="Payment mode Ledger, once ended: the payments, the Accounts and the checks.",
    )
    outcome_applied: bool | None = Field(
        default=None, description="True once the clearing price is in spec.priceVariableRef."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Complete, Invalid.")


MARKET = KindInfo(
    kind="Market",
    plural="markets",
    singular="market",
    short_names=("mkt", "mbmarket"),
    spec=MarketSpec,
    status=MarketStatus,
    description="A call market (Walrasian equilibrium or double auction) among Agents.",
    printer_columns=(
        PrinterColumn("Mechanism", ".spec.mechanism", description="The market mechanism."),
        PrinterColumn("Good", ".spec.good", description="What is traded."),
        PrinterColumn("Phase", ".status.phase", description="Where the market is."),
        PrinterColumn("Price", ".status.result.price", description="The clearing price."),
        PrinterColumn("Volume", ".status.result.volume", type="number", description="How much traded."),
        PrinterColumn("Deadline", ".status.deadline", type="date", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    spec_validations=(
        *PARTICIPANTS_VALIDATIONS,
        (
            "self.mechanism != 'equilibrium' || has(self.priceGrid)",
            "spec.priceGrid is required for an equilibrium market",
        ),
    ),
)

ORDER = answer_kind(
    kind="Order", session_kind="Market", session_field="market", spec=OrderSpec, status=OrderStatus
)
