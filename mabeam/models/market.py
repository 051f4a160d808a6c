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
- ``fisher``: a Fisher market of several divisible ``goods`` with supplies. Each agent answers
  with a ``budget`` (money, whole cents) and its ``utilities``: the
  value of one unit of each good it wants (linear utilities; with ``rho``, the weights of CES
  utilities). The market finds the equilibrium
  prices and allocations (the Eisenberg-Gale program) to the relative ``gap``: every budget is
  spent, every priced good is allocated in full, each buyer buys only goods of its best utility
  per unit of money. Each good's price may go into its own Variable.

An Order is named ``<market>-<agent>`` (:func:`order_name`): one per agent per market; it may
change until the market closes. Orders are sealed: ``spec.sealed`` carries the order (its
:class:`OrderContent`) encrypted to the operator's public key in the Market's ``status.sealing``,
bound to the Market's uid and the agent, as Bids are (see docs/security.md). Only the operator
reads an order, and it publishes none before the market closes.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._amount import Amount, AnyAmount, PositiveAmount
from ._base import Condition, KindInfo, MabeamModel, PrinterColumn, answer_kind
from ._sealed import SealedEnvelope, SealingInfo
from .account import PaymentMode, Settlement
from .coordination import (
    NAME_PATTERN,
    PARTICIPANTS_VALIDATIONS,
    AnswerStatus,
    CountedVersion,
    ParticipantRecord,
    ParticipantsSpec,
    Refusal,
    VariableRef,
)

__all__ = [
    "MARKET",
    "MAX_GOODS",
    "ORDER",
    "EquilibriumCheck",
    "EquilibriumReport",
    "GoodOutcome",
    "MarketAllocation",
    "MarketGood",
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

MarketMechanism = Literal["equilibrium", "double-auction", "fisher"]
MarketPhase = Literal["Pending", "Collecting", "Cleared", "NoTrade", "Failed", "Cancelled"]
Side = Literal["buy", "sell"]
MAX_GRID_POINTS = 10_000
MAX_GOODS = 1000
QUANTITY_DECIMALS = 9  # the places of a fisher market's supplies and allocated quantities
Utility = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


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


class MarketGood(MabeamModel):
    """fisher: one good on sale, its supply and where its price goes."""

    name: str = Field(
        pattern=NAME_PATTERN, max_length=63, description="The good's name (what utilities refer to)."
    )
    supply: PositiveAmount = Field(
        description=f"How much of it there is (divisible; at most {QUANTITY_DECIMALS} decimal places)."
    )
    price_variable_ref: VariableRef | None = Field(
        default=None, description="A Variable set to the good's unit price once the market has cleared."
    )

    @model_validator(mode="after")
    def _places(self) -> MarketGood:
        if self.supply != self.supply.quantize(Decimal(10) ** -QUANTITY_DECIMALS):
            raise ValueError(f"supply has more than {QUANTITY_DECIMALS} decimal places")
        return self


class MarketSpec(MabeamModel):
    mechanism: MarketMechanism = Field(description="equilibrium, double-auction or fisher.")
    participants: ParticipantsSpec = Field(description="Who may trade (agents or selector).")
    good: str = Field(min_length=1, max_length=253, description="What is traded (for humans and agents).")
    price_grid: PriceGrid | None = Field(
        default=None, description="equilibrium: the prices it may clear at (required)."
    )
    order_seconds: float = Field(
        default=60.0, gt=0, le=7 * 86400, description="How long orders are taken after the start."
    )
    price_variable_ref: VariableRef | None = Field(
        default=None,
        description="A Variable set to the clearing price once the market has cleared (fisher: "
        "use goods[].priceVariableRef).",
    )
    goods: list[MarketGood] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_GOODS,
        description="fisher: the goods on sale, each once (required).",
    )
    gap: float = Field(
        default=1e-6,
        gt=0,
        le=0.01,
        description="fisher: the relative Eisenberg-Gale duality gap to reach (also the tolerance of "
        "the bang-per-buck check).",
    )
    rho: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="fisher: CES utilities (sum_j u_j x_j^rho)^(1/rho) with this rho (goods are "
        "substitutes, 0 < rho < 1); unset: linear utilities sum_j u_j x_j.",
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
        if self.mechanism == "fisher":
            if not self.goods:
                raise ValueError("a fisher market needs spec.goods")
            names = [g.name for g in self.goods]
            if len(set(names)) != len(names):
                raise ValueError("spec.goods names each good once")
            if self.price_variable_ref is not None:
                raise ValueError("a fisher market sets a price Variable per good: goods[].priceVariableRef")
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
    budget: PositiveAmount | None = Field(
        default=None, description="fisher: the money to spend (whole units of the market's money)."
    )
    utilities: dict[str, Utility] | None = Field(
        default=None,
        max_length=MAX_GOODS,
        description="fisher: the utility of one unit of each good wanted, by good name (others: 0).",
    )

    @model_validator(mode="after")
    def _something(self) -> OrderContent:
        if (
            self.schedule is None
            and (self.side is None or self.price is None)
            and (self.budget is None or self.utilities is None)
        ):
            raise ValueError(
                "an Order sets side and price (double-auction), schedule (equilibrium) or budget and "
                "utilities (fisher)"
            )
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
    budget: AnyAmount | None = Field(default=None, description="Once closed, fisher: the budget.")
    utilities: dict[str, float] | None = Field(
        default=None, description="Once closed, fisher: the utilities by good."
    )
    received_at: _dt.datetime = Field(description="When this version was received.")


class Trade(MabeamModel):
    """What one agent trades at the clearing."""

    agent: str = Field(description="The trader.")
    side: Side = Field(description="buy or sell.")
    quantity: float = Field(description="How much (units or an amount of the good).")
    price: AnyAmount = Field(description="The price per unit it pays (buy) or receives (sell).")
    total: AnyAmount = Field(description="quantity times price (rounded to 18 decimals if need be).")


class GoodOutcome(MabeamModel):
    """fisher: one good at the equilibrium."""

    good: str = Field(description="The good.")
    price: AnyAmount = Field(
        description="Its unit price: revenue / supply, rounded to the money unit (half to even)."
    )
    supply: AnyAmount = Field(description="Its supply.")
    sold: AnyAmount = Field(description="How much is allocated (the supply if priced, else 0).")
    revenue: AnyAmount = Field(description="What the buyers pay for it in all (exact).")


class MarketAllocation(MabeamModel):
    """fisher: what one buyer gets of one good and pays for it."""

    agent: str = Field(description="The buyer.")
    good: str = Field(description="The good.")
    quantity: AnyAmount = Field(description="How much of it (exact decimal, 9 places at most).")
    payment: AnyAmount = Field(description="What the buyer pays for it (whole money units).")


class EquilibriumCheck(MabeamModel):
    """fisher: one equilibrium condition checked on the outcome."""

    name: str = Field(
        description="GoodsClear, BudgetsSpent, PricesSumToBudgets, and MaximalBangPerBuck (linear) or "
        "OptimalDemand (CES)."
    )
    passed: bool = Field(description="Whether it holds (within the gap for MaximalBangPerBuck).")
    worst: float = Field(description="Its largest relative violation.")
    message: str = Field(default="", description="The check in a sentence.")


class EquilibriumReport(MabeamModel):
    """fisher: how close the outcome is to the equilibrium."""

    target_gap: float = Field(description="spec.gap.")
    gap: float = Field(description="The relative Eisenberg-Gale gap reached (0: exact).")
    steps: int = Field(description="The solver's Newton steps.")
    checks: list[EquilibriumCheck] = Field(default_factory=list, description="The conditions checked.")


class MarketResult(MabeamModel):
    price: AnyAmount | None = Field(
        default=None, description="The clearing price (double-auction: the buyers' price)."
    )
    seller_price: AnyAmount | None = Field(
        default=None, description="double-auction: the sellers' price (below price after a trade reduction)."
    )
    volume: float = Field(default=0.0, description="How much was traded.")
    trades: list[Trade] = Field(default_factory=list, description="Every agent's trade.")
    goods: list[GoodOutcome] = Field(
        default_factory=list, description="fisher: each good's price, sales and revenue."
    )
    allocations: list[MarketAllocation] = Field(
        default_factory=list, description="fisher: what each buyer gets of each good (sorted)."
    )
    equilibrium: EquilibriumReport | None = Field(
        default=None, description="fisher: the gap reached and the equilibrium checks."
    )
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
    counted: list[CountedVersion] = Field(
        default_factory=list,
        description="The verdict Counted, by agent: the newest version of its Order that was counted.",
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
        default=None,
        description="True once the clearing price is in spec.priceVariableRef (fisher: each good's "
        "price in its Variable).",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Complete, Invalid.")


MARKET = KindInfo(
    name_max_length=63,  # a label value (mabeam.io/session)
    kind="Market",
    plural="markets",
    singular="market",
    short_names=("mkt", "mbmarket"),
    spec=MarketSpec,
    status=MarketStatus,
    description="A call market (Walrasian equilibrium, double auction or Fisher market) among Agents.",
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
        (
            "self.mechanism != 'fisher' || has(self.goods)",
            "spec.goods is required for a fisher market",
        ),
    ),
)

ORDER = answer_kind(
    kind="Order", session_kind="Market", session_field="market", spec=OrderSpec, status=OrderStatus
)
