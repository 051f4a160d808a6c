"""The Auction kind (one sale of one or more resources) and the Bid kind (one agent's bid).

An Auction sells ``items``: each is the name of a Variable in the Auction's namespace that
stands for a resource (a GPU slot, a quota). When the auction is Awarded, every sold item's
Variable gets ``status.owner`` = the winning Agent (exactly once, even across operator
restarts), and the prices are recorded in ``status.result``.

Mechanisms:

- ``first-price`` and ``second-price`` (Vickrey): sealed bids on one item. A Bid carries only
  ``sealed``: the bid (its :class:`BidContent`) encrypted to the operator's public key, which the
  Auction publishes in ``status.sealing`` when bidding opens (see
  :mod:`mabeam.core.economics.sealing`). The sealed payload names the Auction's uid and the
  bidder, so a copy of another's ciphertext is refused. Only the operator can open a bid, and it
  does so when bidding closes; there is no reveal to withhold. Nobody, not even a reader of every
  Bid, learns an amount before bidding has closed.
- ``combinatorial``: sealed XOR bids on bundles of items (``bundles`` in the sealed content); the
  winners are the value-maximizing set of disjoint bundles (a MILP), and each pays its VCG price.
- ``english``: an ascending clock. Each round the clock price rises by ``increment``; an active
  bidder stays in by answering ``round`` = the current round with ``accept: true``. The last one
  in wins at the clock price.
- ``dutch``: a descending clock from ``startPrice`` by ``decrement`` per round, down to the
  reserve; the first bidder to accept (``round``, ``accept: true``) wins at that price.

A Bid is named ``<auction>-<agent>`` (:func:`bid_name`): one per agent per auction.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any, Literal

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
)

__all__ = [
    "AUCTION",
    "BID",
    "SEALED_MECHANISMS",
    "Allocation",
    "AuctionMechanism",
    "AuctionPhase",
    "AuctionResult",
    "AuctionSpec",
    "AuctionStatus",
    "BidContent",
    "BidRecord",
    "BidSpec",
    "BidStatus",
    "Bundle",
    "RoundRecord",
    "bid_name",
]

AuctionMechanism = Literal["first-price", "second-price", "english", "dutch", "combinatorial"]
AuctionPhase = Literal["Pending", "Bidding", "Awarded", "NoSale", "Failed", "Cancelled"]
SEALED_MECHANISMS = frozenset({"first-price", "second-price", "combinatorial"})
_ITEM_NAMES: dict[str, Any] = {"items": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 253}}


def bid_name(auction: str, agent: str) -> str:
    """The deterministic name of ``agent``'s Bid in ``auction``."""
    return f"{auction}-{agent}"


class AuctionSpec(MabeamModel):
    mechanism: AuctionMechanism = Field(
        description="first-price, second-price, english, dutch or combinatorial."
    )
    participants: ParticipantsSpec = Field(description="Who may bid (agents or selector).")
    items: list[str] = Field(
        min_length=1,
        max_length=64,
        description="The resources for sale: names of Variables in this namespace; the winner "
        "becomes their status.owner. Exactly one, except for combinatorial.",
        json_schema_extra=_ITEM_NAMES,
    )
    reserve_price: Amount = Field(
        default=Decimal(0),
        json_schema_extra={"default": 0},
        description="Nothing sells below this price (a combinatorial bundle: below this per item).",
    )
    bid_seconds: float = Field(
        default=60.0, gt=0, le=7 * 86400, description="Sealed mechanisms: how long bids are taken."
    )
    start_price: Amount | None = Field(
        default=None,
        description="english: the opening clock price (default: the reserve); dutch: the opening "
        "(highest) price, required.",
    )
    increment: PositiveAmount | None = Field(
        default=None, description="english: the clock's rise per round (required)."
    )
    decrement: PositiveAmount | None = Field(
        default=None, description="dutch: the clock's fall per round (required)."
    )
    round_seconds: float = Field(
        default=10.0, gt=0, le=86400, description="Clock mechanisms: how long one round lasts."
    )
    max_rounds: int = Field(
        default=1000,
        ge=1,
        le=100000,
        description="english: after this many rounds the clock stops and the tie-break picks among "
        "the bidders still in.",
    )
    work_limit: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="combinatorial: the solver's deterministic work limit for the whole clearing "
        "(CP-SAT deterministic seconds, about one second of one core each). Deterministic: the same "
        "bids give the same result on a busy or an idle machine.",
    )
    on_timeout: Literal["NoSale", "BestFound"] = Field(
        default="NoSale",
        description="combinatorial, when the work limit is reached before the optimum is proven: "
        "NoSale sells nothing (reason Unsolved); BestFound sells the best allocation found (reason "
        "BestFound). Either way status.result.gap records the proven gap.",
    )
    cancel: bool = Field(default=False, description="True ends an open auction as Cancelled.")
    payment: PaymentMode = Field(
        default="Auto",
        description="Whether outcomes are paid from Accounts: Ledger (every bidder needs an Account "
        "that covers its bid), None (prices are recorded only), or Auto (Ledger when the namespace "
        "has an Account when the session starts). See docs/economics.md, Money.",
    )

    @model_validator(mode="after")
    def _fits_mechanism(self) -> AuctionSpec:
        if self.mechanism != "combinatorial" and len(self.items) != 1:
            raise ValueError(f"a {self.mechanism} auction sells exactly one item (spec.items)")
        if len(set(self.items)) != len(self.items):
            raise ValueError("spec.items must not name an item twice")
        if self.mechanism == "english" and self.increment is None:
            raise ValueError("an english auction needs spec.increment")
        if self.mechanism == "dutch" and (self.start_price is None or self.decrement is None):
            raise ValueError("a dutch auction needs spec.startPrice and spec.decrement")
        if (
            self.mechanism == "dutch"
            and self.start_price is not None
            and self.start_price < self.reserve_price
        ):
            raise ValueError("a dutch auction's spec.startPrice must not be below spec.reservePrice")
        return self


class Bundle(MabeamModel):
    """combinatorial: a set of items and what the bidder offers for all of them together."""

    items: list[str] = Field(
        min_length=1, max_length=64, description="The items (from the Auction's spec.items).",
        json_schema_extra=_ITEM_NAMES,
    )  # fmt: skip
    amount: Amount = Field(description="The offer for the whole bundle.")


class BidContent(MabeamModel):
    """Sealed mechanisms: the bid itself, as it travels inside ``spec.sealed`` (never in clear)."""

    amount: Amount | None = Field(default=None, description="first-price, second-price: the offer.")
    bundles: list[Bundle] | None = Field(
        default=None,
        max_length=64,
        description="combinatorial: XOR bids; at most one of them wins.",
    )


class BidSpec(MabeamModel):
    """One agent's bid. Set the fields the auction's mechanism and phase ask for."""

    auction: str = Field(pattern=NAME_PATTERN, max_length=253, description="The Auction's name.")
    agent: str = Field(pattern=NAME_PATTERN, max_length=253, description="The bidding Agent.")
    sealed: SealedEnvelope | None = Field(
        default=None,
        description="Sealed mechanisms: the bid encrypted to the Auction's status.sealing.publicKey.",
    )
    round: int | None = Field(
        default=None, ge=1, le=100000, description="Clock mechanisms: the round this answer is for."
    )
    accept: bool | None = Field(
        default=None,
        description="Clock mechanisms: true to stay in (english) or to buy (dutch) at that round's price.",
    )

    @model_validator(mode="after")
    def _something(self) -> BidSpec:
        if self.sealed is None and self.accept is None:
            raise ValueError("a Bid must set sealed, or round and accept")
        if (self.round is None) != (self.accept is None):
            raise ValueError("a clock Bid sets both round and accept")
        return self


class BidStatus(AnswerStatus):
    """The verdict on a Bid."""


class BidRecord(MabeamModel):
    """A counted bid (the newest accepted version of the agent's Bid)."""

    agent: str = Field(description="Who bid.")
    sealed: SealedEnvelope | None = Field(
        default=None, description="The counted sealed bid (binding once bidding has closed)."
    )
    amount: AnyAmount | None = Field(default=None, description="Once bidding has closed: the offer.")
    bundles: list[Bundle] | None = Field(
        default=None, description="combinatorial, once bidding has closed: the bundles."
    )
    received_at: _dt.datetime = Field(description="When this version was received.")


class RoundRecord(MabeamModel):
    """Clock mechanisms: one closed round."""

    round: int = Field(description="The round number (from 1).")
    price: AnyAmount = Field(description="The clock price of the round.")
    accepted: list[str] = Field(default_factory=list, description="Who accepted the price.")


class Allocation(MabeamModel):
    """What one winner gets and pays."""

    agent: str = Field(description="The winner.")
    items: list[str] = Field(description="The items it now owns.")
    price: AnyAmount = Field(description="What it pays.")
    bid: AnyAmount | None = Field(
        default=None, description="What it bid for these items (sealed mechanisms)."
    )


class AuctionResult(MabeamModel):
    allocations: list[Allocation] = Field(default_factory=list, description="The winners.")
    winners: str | None = Field(
        default=None, description="The winners' names, comma-separated (for printing)."
    )
    revenue: AnyAmount = Field(
        default=Decimal(0), json_schema_extra={"default": 0}, description="The sum of the prices."
    )
    reason: str = Field(
        description="Awarded: HighestBid, SecondPrice, ClockWinner, MaxRounds, FirstAccept, Optimal, "
        "BestFound. "
        "NoSale: NoBidders, NoBids, BelowReserve, NoAcceptance, Unsolved. Cancelled, Invalid."
    )
    message: str = Field(default="", description="The outcome in a sentence.")
    gap: float | None = Field(
        default=None,
        description="combinatorial, when the work limit was reached: the proven relative gap "
        "between the welfare of the allocation found and the best possible.",
    )
    work: float | None = Field(
        default=None, description="combinatorial: the deterministic solver work the clearing used."
    )
    decided_at: _dt.datetime = Field(description="When the auction ended.")


class AuctionStatus(MabeamModel):
    phase: AuctionPhase | None = Field(default=None, description="Where the auction is.")
    sealing: SealingInfo | None = Field(
        default=None,
        description="Sealed mechanisms: the public key to seal bids to (set when bidding opens).",
    )
    participants: list[ParticipantRecord] = Field(
        default_factory=list, description="The bidders resolved at the start, with snapshots."
    )
    started_at: _dt.datetime | None = Field(default=None, description="When bidding opened.")
    deadline: _dt.datetime | None = Field(
        default=None,
        description="When bidding (sealed) or the current round (clock) closes.",
    )
    round: int | None = Field(default=None, description="Clock mechanisms: the current round.")
    clock_price: AnyAmount | None = Field(
        default=None, description="Clock mechanisms: the current round's price."
    )
    active: list[str] = Field(default_factory=list, description="english: the bidders still in, sorted.")
    rounds: list[RoundRecord] = Field(
        default_factory=list, description="Clock mechanisms: the last 100 closed rounds, oldest first."
    )
    bids: list[BidRecord] = Field(
        default_factory=list,
        description="Sealed mechanisms: the counted bids (amounts only once bidding has closed).",
    )
    refusals: list[Refusal] = Field(
        default_factory=list, description="Each agent's newest bid that was not counted, and why."
    )
    counted: list[CountedVersion] = Field(
        default_factory=list,
        description="The verdict Counted, by agent: the newest version of its Bid that was counted.",
    )
    result: AuctionResult | None = Field(default=None, description="The outcome, once decided.")
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
        description="True once every won item's Variable names its winner as status.owner.",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Complete, Invalid.")


AUCTION = KindInfo(
    name_max_length=63,  # a label value (mabeam.io/session)
    kind="Auction",
    plural="auctions",
    singular="auction",
    short_names=("auc", "mbauction"),
    spec=AuctionSpec,
    status=AuctionStatus,
    description="An auction of resources (Variables) among Agents.",
    printer_columns=(
        PrinterColumn("Mechanism", ".spec.mechanism", description="The auction mechanism."),
        PrinterColumn("Phase", ".status.phase", description="Where the auction is."),
        PrinterColumn("Price", ".status.clockPrice", description="The clock price."),
        PrinterColumn("Winners", ".status.result.winners", description="Who won."),
        PrinterColumn("Revenue", ".status.result.revenue", priority=1),
        PrinterColumn("Deadline", ".status.deadline", type="date", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    spec_validations=(
        *PARTICIPANTS_VALIDATIONS,
        (
            "self.mechanism == 'combinatorial' || size(self.items) == 1",
            "spec.items: only a combinatorial auction sells more than one item",
        ),
        # The clock fields (increment, startPrice, decrement) are amounts, which CEL cannot see
        # (see mabeam.models._amount): the model checks them, and the operator reports Invalid.
    ),
)

BID = answer_kind(
    kind="Bid",
    session_kind="Auction",
    session_field="auction",
    spec=BidSpec,
    status=BidStatus,
    columns=(PrinterColumn("Round", ".spec.round", type="integer"),),
    spec_validations=(
        ("has(self.sealed) || has(self.accept)", "a Bid must set spec.sealed, or spec.round and spec.accept"),
        ("has(self.round) == has(self.accept)", "a clock Bid sets both spec.round and spec.accept"),
    ),
)
