"""The Account kind: one Agent's money in its namespace (balance, escrow, ledger).

An administrator grants budgets declaratively: ``spec.budget`` is the total granted once (raise it
to grant more), ``spec.topUp`` adds an amount every period; ``spec.goods`` grants goods the same
way (what a market seller may sell, by the Market's ``spec.good``). The operator keeps the rest in
``status``: the balance, what open sessions hold in escrow, a bounded ledger whose entries each
name their session, counterparty and amount, each good's holding (held, escrow, free) with its
own bounded ledger, and the sessions already settled. Agents cannot
write Accounts (RBAC); each Agent may read its own (the operator grants ``get`` on that one
name). The Account of the namespace's house (:data:`HOUSE_ACCOUNT`) is created by the operator:
it is paid for resources nobody owned and keeps a double auction's surplus.

Money is exact: integers of a minor unit, :data:`MINOR_UNITS` per unit (two decimals), written
on the wire as decimal strings (``"12.50"``). Goods are exact too: integers of thousandths,
:data:`GOODS_UNITS` per unit, written as decimals (``"2"``, ``"0.125"``). See docs/economics.md,
"Money" and "Goods".
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, PlainValidator, WithJsonSchema

from ._amount import parse_amount
from ._base import Condition, KindInfo, MabeamModel, PrinterColumn

__all__ = [
    "ACCOUNT",
    "GOODS_UNITS",
    "HOUSE_ACCOUNT",
    "MINOR_UNITS",
    "AccountSpec",
    "AccountStatus",
    "GoodsEntry",
    "GoodsHold",
    "GoodsTransfer",
    "Held",
    "HeldGoods",
    "Hold",
    "LedgerEntry",
    "Money",
    "PaymentMode",
    "Quantity",
    "Settlement",
    "SettlementCheck",
    "Stock",
    "TopUp",
    "Transfer",
    "format_money",
    "format_quantity",
    "parse_money",
    "parse_quantity",
]

#: Minor units per unit of money: every balance and payment is a whole number of hundredths.
MINOR_UNITS = 100
#: The most money one field holds, in units (far beyond any budget; keeps sums exact and small).
MAX_MONEY_UNITS = 10**15
#: The Account the house of a namespace is paid into (created by the operator when needed).
HOUSE_ACCOUNT = "mabeam-house"
#: How many ledger entries ``status.entries`` keeps (the oldest are folded into the opening
#: balance) and how many settled session ids ``status.settled`` keeps.
ENTRIES_LIMIT = 50
SETTLED_LIMIT = 256
#: Goods are counted in thousandths: a quantity is a whole number of 1/GOODS_UNITS of a unit.
GOODS_UNITS = 1000
GOODS_DECIMALS = 3
#: The most of one good one field holds, in units.
MAX_GOODS_UNITS = 10**12
#: How many goods one Account may be granted (spec.goods).
MAX_ACCOUNT_GOODS = 100


def parse_money(value: object, *, signed: bool = False) -> int:
    """An amount of money in minor units: an integer or a decimal with at most two decimals."""
    amount = parse_amount(value)
    minor = amount * MINOR_UNITS
    if minor != minor.to_integral_value():
        raise ValueError(f"{value!r} has more than two decimals: money is counted in hundredths")
    if not signed and amount < 0:
        raise ValueError("must not be negative")
    if abs(amount) > MAX_MONEY_UNITS:
        raise ValueError(f"must be at most {MAX_MONEY_UNITS}")
    return int(minor)


def format_money(minor: int) -> str:
    """Minor units as the decimal string the status shows (``1250`` -> ``"12.50"``)."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), MINOR_UNITS)
    return f"{sign}{whole}.{cents:02d}"


def parse_quantity(value: object, *, signed: bool = False) -> int:
    """A quantity of a good in thousandths: an integer or a decimal with at most three decimals."""
    amount = parse_amount(value)
    minor = amount * GOODS_UNITS
    if minor != minor.to_integral_value():
        raise ValueError(
            f"{value!r} has more than {GOODS_DECIMALS} decimals: goods are counted in thousandths"
        )
    if not signed and amount < 0:
        raise ValueError("must not be negative")
    if abs(amount) > MAX_GOODS_UNITS:
        raise ValueError(f"must be at most {MAX_GOODS_UNITS}")
    return int(minor)


def format_quantity(minor: int) -> str:
    """Thousandths as the shortest decimal string (``2000`` -> ``"2"``, ``125`` -> ``"0.125"``)."""
    sign = "-" if minor < 0 else ""
    whole, part = divmod(abs(minor), GOODS_UNITS)
    if not part:
        return f"{sign}{whole}"
    return f"{sign}{whole}." + f"{part:0{GOODS_DECIMALS}d}".rstrip("0")


_QUANTITY_SCHEMA: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "description": "A quantity of a good: an integer or a decimal string with at most three decimals "
    '("2.5").',
}

Quantity = Annotated[
    int,
    PlainValidator(parse_quantity),
    PlainSerializer(format_quantity),
    WithJsonSchema(_QUANTITY_SCHEMA),
]
"""A quantity of a good (not negative): thousandths in Python, a decimal string on the wire."""

SignedQuantity = Annotated[
    int,
    PlainValidator(lambda v: parse_quantity(v, signed=True)),
    PlainSerializer(format_quantity),
    WithJsonSchema(_QUANTITY_SCHEMA),
]
"""A change of a holding (a goods entry's quantity), in thousandths."""


_MONEY_SCHEMA: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "description": 'Money: an integer or a decimal string with at most two decimals ("12.50").',
}

Money = Annotated[
    int,
    PlainValidator(parse_money),
    PlainSerializer(format_money),
    WithJsonSchema(_MONEY_SCHEMA),
]
"""Money (not negative): minor units in Python, a decimal string such as ``"12.50"`` on the wire.

Validation reads the wire form only (an int there is whole units): build these models from wire
dicts (as :mod:`mabeam.core.ledger` does), never from Python ints of minor units."""

SignedMoney = Annotated[
    int,
    PlainValidator(lambda v: parse_money(v, signed=True)),
    PlainSerializer(format_money),
    WithJsonSchema(_MONEY_SCHEMA),
]
"""Money that may be negative (a ledger entry's amount), in minor units."""


class TopUp(MabeamModel):
    """A periodic grant: ``amount`` every ``everySeconds``, counted from the Account's creation."""

    amount: Money = Field(description="What each period adds to the balance.")
    every_seconds: int = Field(ge=60, le=366 * 86400, description="The period, in seconds (at least 60).")


class AccountSpec(MabeamModel):
    budget: Money = Field(
        default=0,
        description="The total granted once. Raising it grants the difference; lowering it takes "
        "back the difference from the free balance (what escrow does not hold).",
    )
    top_up: TopUp | None = Field(default=None, description="A grant every period, on top of the budget.")
    goods: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=MAX_ACCOUNT_GOODS,
        description="Goods granted once, by good (a Market's spec.good, exactly): what the Agent may "
        "sell. Raising a quantity grants the difference; lowering it takes back the difference from "
        "the free holding (what escrow does not hold).",
    )


class Hold(MabeamModel):
    """Money an open session holds in escrow: the most its bidder may have to pay."""

    session: str = Field(description="The session (<kind>/<name>:<uid>).")
    amount: Money = Field(description="The amount held.")


LedgerReason = Literal["Grant", "TopUp", "Revoke", "Payment", "Receipt"]


class LedgerEntry(MabeamModel):
    """One change of the balance."""

    session: str = Field(description="The session that caused it (<kind>/<name>:<uid>), or the grant.")
    counterparty: str = Field(description="Who paid or was paid: an Account's name, or the administrator.")
    amount: SignedMoney = Field(description="The change: positive when paid in, negative when paid out.")
    balance: Money = Field(description="The balance after the change.")
    reason: LedgerReason = Field(description="Grant, TopUp, Revoke, Payment or Receipt.")
    at: _dt.datetime = Field(description="When the operator applied it.")


class GoodsHold(MabeamModel):
    """Goods an open market holds in escrow: the most its seller may have to deliver."""

    session: str = Field(description="The session (<kind>/<name>:<uid>).")
    quantity: Quantity = Field(description="The quantity held.")


class Stock(MabeamModel):
    """One good's holding on an Account."""

    good: str = Field(description="The good (a Market's spec.good).")
    held: Quantity = Field(default=0, description="How much of it the Agent has (escrow included).")
    escrow: Quantity = Field(default=0, description="What open markets hold of it.")
    free: Quantity = Field(default=0, description="held - escrow: what the Agent may still sell.")
    granted: Quantity = Field(default=0, description="How much of spec.goods[good] has been granted.")
    opening: Quantity = Field(
        default=0, description="The holding before the oldest of its entries in goodsEntries."
    )
    holds: list[GoodsHold] = Field(default_factory=list, description="Escrow, per open market.")


GoodsReason = Literal["Grant", "Revoke", "Sale", "Purchase"]


class GoodsEntry(MabeamModel):
    """One change of a holding."""

    session: str = Field(description="The session that caused it (<kind>/<name>:<uid>), or the grant.")
    counterparty: str = Field(
        description="Who delivered or received: an Account's name, or the administrator."
    )
    good: str = Field(description="The good.")
    quantity: SignedQuantity = Field(
        description="The change: positive when received, negative when delivered."
    )
    held: Quantity = Field(description="The holding of that good after the change.")
    reason: GoodsReason = Field(description="Grant, Revoke, Sale or Purchase.")
    at: _dt.datetime = Field(description="When the operator applied it.")


class AccountStatus(MabeamModel):
    balance: Money = Field(default=0, description="The money the Agent has (escrow included).")
    escrow: Money = Field(default=0, description="What open sessions hold of the balance.")
    free: Money = Field(default=0, description="balance - escrow: what the Agent may still commit.")
    granted: Money = Field(default=0, description="How much of spec.budget has been granted.")
    top_ups: int = Field(default=0, ge=0, description="How many periodic top-ups have been granted.")
    opening_balance: Money = Field(
        default=0, description="The balance before the oldest entry in entries (older ones are dropped)."
    )
    holds: list[Hold] = Field(default_factory=list, description="Escrow, per open session.")
    entries: list[LedgerEntry] = Field(
        default_factory=list, description=f"The last {ENTRIES_LIMIT} changes of the balance, oldest first."
    )
    goods: list[Stock] = Field(default_factory=list, description="Each good's holding, by good.")
    goods_entries: list[GoodsEntry] = Field(
        default_factory=list,
        description=f"The last {ENTRIES_LIMIT} changes of the goods holdings, oldest first.",
    )
    settled: list[str] = Field(
        default_factory=list,
        description=f"The last {SETTLED_LIMIT} sessions settled on this Account (each is settled once).",
    )
    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready.")


class Transfer(MabeamModel):
    """Money one settlement moves from one Account to another."""

    payer: str = Field(description="The paying Account.")
    payee: str = Field(description="The Account paid.")
    amount: Money = Field(description="How much.")
    reason: str = Field(description="What for (the items bought, or the trade).")


class SettlementCheck(MabeamModel):
    """One check of an outcome before it is applied."""

    name: str = Field(description="What is checked.")
    passed: bool = Field(description="Whether it holds.")
    message: str = Field(default="", description="The figures behind the verdict.")


class Held(MabeamModel):
    """What escrow held for one Account when the session ended."""

    account: str = Field(description="The Account.")
    amount: Money = Field(description="The amount held.")


class GoodsTransfer(MabeamModel):
    """Goods one settlement moves from one Account to another."""

    sender: str = Field(description="The delivering Account.")
    receiver: str = Field(description="The Account that receives.")
    good: str = Field(description="The good.")
    quantity: Quantity = Field(description="How much.")


class HeldGoods(MabeamModel):
    """What escrow held of a good for one Account when the session ended."""

    account: str = Field(description="The Account.")
    good: str = Field(description="The good.")
    quantity: Quantity = Field(description="The quantity held.")


class Settlement(MabeamModel):
    """How a session's outcome moves money, decided once when it ends and then applied once."""

    session: str = Field(description="The session's ledger id (<kind>/<name>:<uid>).")
    valid: bool = Field(description="Whether every check passed; if not, nothing moves.")
    transfers: list[Transfer] = Field(default_factory=list, description="The payments.")
    accounts: list[str] = Field(
        default_factory=list, description="Every Account it settles on (escrow released on each)."
    )
    held: list[Held] = Field(default_factory=list, description="Escrow held when the session ended.")
    goods: list[GoodsTransfer] = Field(
        default_factory=list, description="The goods delivered (markets: sellers to the house to buyers)."
    )
    held_goods: list[HeldGoods] = Field(
        default_factory=list, description="Goods escrow held when the session ended."
    )
    checks: list[SettlementCheck] = Field(default_factory=list, description="The validation report.")


PaymentMode = Literal["Auto", "Ledger", "None"]


ACCOUNT = KindInfo(
    kind="Account",
    plural="accounts",
    singular="account",
    short_names=("acct",),
    spec=AccountSpec,
    status=AccountStatus,
    description="One Agent's money: the budget granted to it, its balance, escrow and ledger. "
    "Named after its Agent.",
    printer_columns=(
        PrinterColumn("Balance", ".status.balance", description="The money the Agent has."),
        PrinterColumn("Escrow", ".status.escrow", description="What open sessions hold."),
        PrinterColumn("Free", ".status.free", description="What the Agent may still commit."),
        PrinterColumn("Budget", ".spec.budget", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)


def money_of(value: Decimal) -> int:
    """An exact amount (a Decimal) as whole minor units, rounded down (payments never round up)."""
    scaled = value * MINOR_UNITS
    return int(scaled.to_integral_value(rounding="ROUND_FLOOR"))
