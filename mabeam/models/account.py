"""The Account kind: one Agent's money in its namespace (balance, escrow, ledger).

An administrator grants budgets declaratively: ``spec.budget`` is the total granted once (raise it
to grant more), ``spec.topUp`` adds an amount every period. The operator keeps the rest in
``status``: the balance, what open sessions hold in escrow, a bounded ledger whose entries each
name their session, counterparty and amount, and the sessions already settled. Agents cannot
write Accounts (RBAC); each Agent may read its own (the operator grants ``get`` on that one
name). The Account of the namespace's house (:data:`HOUSE_ACCOUNT`) is created by the operator:
it is paid for resources nobody owned and keeps a double auction's surplus.

Money is exact: integers of a minor unit, :data:`MINOR_UNITS` per unit (two decimals), written
on the wire as decimal strings (``"12.50"``). See docs/economics.md, "Money".
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
    "HOUSE_ACCOUNT",
    "MINOR_UNITS",
    "AccountSpec",
    "AccountStatus",
    "Held",
    "Hold",
    "LedgerEntry",
    "Money",
    "PaymentMode",
    "Settlement",
    "SettlementCheck",
    "TopUp",
    "Transfer",
    "format_money",
    "parse_money",
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


class Settlement(MabeamModel):
    """How a session's outcome moves money, decided once when it ends and then applied once."""

    session: str = Field(description="The session's ledger id (<kind>/<name>:<uid>).")
    valid: bool = Field(description="Whether every check passed; if not, nothing moves.")
    transfers: list[Transfer] = Field(default_factory=list, description="The payments.")
    accounts: list[str] = Field(
        default_factory=list, description="Every Account it settles on (escrow released on each)."
    )
    held: list[Held] = Field(default_factory=list, description="Escrow held when the session ended.")
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
