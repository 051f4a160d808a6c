"""The ledger of one Account: grants, escrow holds and settlements, exact and idempotent.

An Account holds money and goods: each good's holding (a :class:`Stock`, in thousandths of a
unit, :data:`mabeam.models.account.GOODS_UNITS`) is kept like the balance: grants, holds by open
markets, and settlements that deliver or receive it, with its own bounded entries.

Pure: no client, no clock (``now`` is passed in). Every amount is an int of minor units
(:data:`mabeam.models.account.MINOR_UNITS` per unit). The operator reads an Account's status into
a :class:`Ledger`, applies one operation, and writes the result back with the resourceVersion it
read as a precondition, so two sessions touching one Account serialise on the API server.

The invariants every operation keeps (property-tested in tests/unit/test_ledger.py):

- the balance is never negative, and never below what escrow holds; likewise each holding;
- a session is settled on an Account at most once (``settled``), money and goods in the same
  write; a grant period granted once;
- the entries replay to the balance: ``opening + sum(entry amounts) == balance``, and each
  good's entries to its holding;
- money and goods move only between Accounts (a settlement's postings sum to zero over its
  Accounts); only grants, top-ups and revocations change the totals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..models.account import (
    ENTRIES_LIMIT,
    SETTLED_LIMIT,
    AccountSpec,
    AccountStatus,
    format_money,
    format_quantity,
)

__all__ = [
    "Entry",
    "GoodsLine",
    "GoodsPosting",
    "Ledger",
    "LedgerError",
    "Posting",
    "Stock",
    "due_grants",
    "hold",
    "hold_goods",
    "settle",
]

#: The counterparty of grants, top-ups and revocations.
ADMINISTRATOR = "administrator"


class LedgerError(ValueError):
    """An operation the Account cannot carry (not enough free money): nothing was changed."""


@dataclass(frozen=True)
class Entry:
    session: str
    counterparty: str
    amount: int
    balance: int
    reason: str
    at: dt.datetime


@dataclass(frozen=True)
class Posting:
    """One line of a settlement on one Account: ``amount`` in (positive) or out (negative)."""

    counterparty: str
    amount: int
    reason: str  # Payment or Receipt


@dataclass(frozen=True)
class GoodsPosting:
    """One line of a settlement on one Account's holding of ``good``: ``quantity`` received
    (positive) or delivered (negative)."""

    good: str
    counterparty: str
    quantity: int
    reason: str  # Sale or Purchase


@dataclass(frozen=True)
class GoodsLine:
    """One change of a holding, as kept in ``goods_entries``."""

    session: str
    counterparty: str
    good: str
    quantity: int
    held: int
    reason: str
    at: dt.datetime


@dataclass(frozen=True)
class Stock:
    """One good's holding: ``held`` (escrow included), what each open session holds of it, how
    much of ``spec.goods`` is granted, and the holding before its oldest kept entry."""

    held: int = 0
    holds: Mapping[str, int] = field(default_factory=dict)
    granted: int = 0
    opening: int = 0

    @property
    def escrow(self) -> int:
        return sum(self.holds.values())

    @property
    def free(self) -> int:
        return self.held - self.escrow

    def free_for(self, session: str) -> int:
        """What ``session`` may hold: the free holding plus what it already holds."""
        return self.free + self.holds.get(session, 0)


@dataclass(frozen=True)
class Ledger:
    balance: int = 0
    holds: Mapping[str, int] = field(default_factory=dict)
    granted: int = 0
    top_ups: int = 0
    opening: int = 0
    entries: tuple[Entry, ...] = ()
    settled: tuple[str, ...] = ()
    goods: Mapping[str, Stock] = field(default_factory=dict)
    goods_entries: tuple[GoodsLine, ...] = ()

    def stock(self, good: str) -> Stock:
        """The holding of ``good`` (an empty one if the Account never had any)."""
        return self.goods.get(good) or Stock()

    @property
    def escrow(self) -> int:
        return sum(self.holds.values())

    @property
    def free(self) -> int:
        return self.balance - self.escrow

    def free_for(self, session: str) -> int:
        """What ``session`` may hold: the free balance plus what it already holds."""
        return self.free + self.holds.get(session, 0)

    # --- wire ------------------------------------------------------------------------------

    @classmethod
    def from_status(cls, status: AccountStatus) -> Ledger:
        return cls(
            balance=status.balance,
            holds={h.session: h.amount for h in status.holds},
            granted=status.granted,
            top_ups=status.top_ups,
            opening=status.opening_balance,
            entries=tuple(
                Entry(e.session, e.counterparty, e.amount, e.balance, e.reason, e.at) for e in status.entries
            ),
            settled=tuple(status.settled),
            goods={
                s.good: Stock(
                    held=s.held,
                    holds={h.session: h.quantity for h in s.holds},
                    granted=s.granted,
                    opening=s.opening,
                )
                for s in status.goods
            },
            goods_entries=tuple(
                GoodsLine(e.session, e.counterparty, e.good, e.quantity, e.held, e.reason, e.at)
                for e in status.goods_entries
            ),
        )

    def to_wire(self) -> dict[str, Any]:
        """The status fields this ledger sets, in their wire form."""
        return {
            "balance": format_money(self.balance),
            "escrow": format_money(self.escrow),
            "free": format_money(self.free),
            "granted": format_money(self.granted),
            "topUps": self.top_ups,
            "openingBalance": format_money(self.opening),
            "holds": [{"session": s, "amount": format_money(a)} for s, a in sorted(self.holds.items())],
            "entries": [
                {
                    "session": e.session,
                    "counterparty": e.counterparty,
                    "amount": format_money(e.amount),
                    "balance": format_money(e.balance),
                    "reason": e.reason,
                    "at": e.at.isoformat(),
                }
                for e in self.entries
            ],
            "goods": [
                {
                    "good": good,
                    "held": format_quantity(s.held),
                    "escrow": format_quantity(s.escrow),
                    "free": format_quantity(s.free),
                    "granted": format_quantity(s.granted),
                    "opening": format_quantity(s.opening),
                    "holds": [
                        {"session": h, "quantity": format_quantity(q)} for h, q in sorted(s.holds.items())
                    ],
                }
                for good, s in sorted(self.goods.items())
            ],
            "goodsEntries": [
                {
                    "session": e.session,
                    "counterparty": e.counterparty,
                    "good": e.good,
                    "quantity": format_quantity(e.quantity),
                    "held": format_quantity(e.held),
                    "reason": e.reason,
                    "at": e.at.isoformat(),
                }
                for e in self.goods_entries
            ],
            "settled": list(self.settled),
        }

    def replays(self) -> bool:
        """Whether the kept entries lead from the opening balance to the balance, and each good's
        entries from its opening to its holding."""
        running = self.opening
        for entry in self.entries:
            running += entry.amount
            if running != entry.balance:
                return False
        if running != self.balance:
            return False
        held = {good: s.opening for good, s in self.goods.items()}
        for line in self.goods_entries:
            if line.good not in held:
                return False
            held[line.good] += line.quantity
            if held[line.good] != line.held:
                return False
        return all(held[good] == s.held for good, s in self.goods.items())

    # --- changes ---------------------------------------------------------------------------

    def _post(self, entries: Sequence[tuple[str, str, int, str]], now: dt.datetime) -> Ledger:
        balance = self.balance
        new: list[Entry] = []
        for session, counterparty, amount, reason in entries:
            balance += amount
            new.append(Entry(session, counterparty, amount, balance, reason, now))
        kept = (*self.entries, *new)
        dropped, kept = kept[: max(len(kept) - ENTRIES_LIMIT, 0)], kept[-ENTRIES_LIMIT:]
        opening = self.opening + sum(e.amount for e in dropped)
        return replace(self, balance=balance, entries=kept, opening=opening)

    def _post_goods(self, lines: Sequence[tuple[str, str, str, int, str]], now: dt.datetime) -> Ledger:
        """Apply (session, counterparty, good, quantity, reason) lines; the oldest entries beyond
        the limit are folded into their good's opening."""
        goods = dict(self.goods)
        new: list[GoodsLine] = []
        for session, counterparty, good, quantity, reason in lines:
            stock = goods.get(good) or Stock()
            stock = replace(stock, held=stock.held + quantity)
            goods[good] = stock
            new.append(GoodsLine(session, counterparty, good, quantity, stock.held, reason, now))
        kept = (*self.goods_entries, *new)
        dropped, kept = kept[: max(len(kept) - ENTRIES_LIMIT, 0)], kept[-ENTRIES_LIMIT:]
        for line in dropped:
            goods[line.good] = replace(goods[line.good], opening=goods[line.good].opening + line.quantity)
        return replace(self, goods=goods, goods_entries=kept)


def hold(ledger: Ledger, session: str, amount: int) -> Ledger:
    """Hold ``amount`` for ``session`` (replacing what it held; 0 releases it).

    LedgerError if the free balance (with what the session held) is below ``amount``, or if the
    session is already settled here (a settled session holds nothing any more).
    """
    if amount < 0:
        raise LedgerError("a hold is not negative")
    if session in ledger.settled:
        if amount == 0:
            return ledger
        raise LedgerError(f"{session} is already settled on this Account")
    if amount > ledger.free_for(session):
        raise LedgerError(
            f"the free balance is {format_money(ledger.free_for(session))} "
            f"(balance {format_money(ledger.balance)}, escrow held by other sessions "
            f"{format_money(ledger.escrow - ledger.holds.get(session, 0))}), "
            f"below the {format_money(amount)} this would hold"
        )
    holds = dict(ledger.holds)
    if amount:
        holds[session] = amount
    else:
        holds.pop(session, None)
    return replace(ledger, holds=holds)


def hold_goods(ledger: Ledger, session: str, good: str, quantity: int) -> Ledger:
    """Hold ``quantity`` of ``good`` for ``session`` (replacing what it held of it; 0 releases).

    LedgerError if the free holding (with what the session held) is below ``quantity``, or if the
    session is already settled here.
    """
    if quantity < 0:
        raise LedgerError("a hold is not negative")
    stock = ledger.stock(good)
    if session in ledger.settled:
        if quantity == 0:
            return ledger
        raise LedgerError(f"{session} is already settled on this Account")
    if stock.holds.get(session, 0) == quantity:
        return ledger
    if quantity > stock.free_for(session):
        raise LedgerError(
            f"the free holding of {good} is {format_quantity(stock.free_for(session))} (held "
            f"{format_quantity(stock.held)}, in escrow for other sessions "
            f"{format_quantity(stock.escrow - stock.holds.get(session, 0))}), below the "
            f"{format_quantity(quantity)} this would hold"
        )
    holds = dict(stock.holds)
    if quantity:
        holds[session] = quantity
    else:
        holds.pop(session, None)
    return replace(ledger, goods={**ledger.goods, good: replace(stock, holds=holds)})


def settle(
    ledger: Ledger,
    session: str,
    postings: Sequence[Posting],
    now: dt.datetime,
    goods: Sequence[GoodsPosting] = (),
) -> Ledger | None:
    """Settle ``session`` on this Account: release its holds (money and goods) and apply
    ``postings`` and ``goods``, once, together.

    None if the session is already settled here (nothing to do). LedgerError if the postings
    would take the balance (or a holding) below zero or below what other sessions hold: a
    settlement pays (delivers) at most what its session held, so this means a fault upstream,
    and nothing is changed.
    """
    if session in ledger.settled:
        return None
    stocks = {
        good: replace(s, holds={k: q for k, q in s.holds.items() if k != session})
        for good, s in ledger.goods.items()
    }
    for good in sorted({g.good for g in goods}):
        stock = stocks.get(good) or Stock()
        after = stock.held + sum(g.quantity for g in goods if g.good == good)
        if after < stock.escrow or after < 0:
            raise LedgerError(
                f"delivering {format_quantity(-sum(g.quantity for g in goods if g.good == good))} of "
                f"{good} for {session} would leave less than escrow holds (held "
                f"{format_quantity(stock.held)}, held for it "
                f"{format_quantity(ledger.stock(good).holds.get(session, 0))})"
            )
        stocks[good] = stock
    holds = {s: a for s, a in ledger.holds.items() if s != session}
    out = sum(-p.amount for p in postings if p.amount < 0)
    held = ledger.holds.get(session, 0)
    total = sum(p.amount for p in postings)
    if ledger.balance + total < sum(holds.values()) or ledger.balance + total < 0:
        raise LedgerError(
            f"paying {format_money(out)} for {session} would leave less than escrow holds "
            f"(balance {format_money(ledger.balance)}, held for it {format_money(held)})"
        )
    posted = replace(ledger, holds=holds, goods=stocks)._post(
        [(session, p.counterparty, p.amount, p.reason) for p in postings if p.amount], now
    )
    # Receipts first: a holding passing through (the house's) never shows a negative entry.
    lines = sorted((g for g in goods if g.quantity), key=lambda g: (g.good, g.quantity < 0))
    posted = posted._post_goods([(session, g.counterparty, g.good, g.quantity, g.reason) for g in lines], now)
    settled = (*ledger.settled, session)[-SETTLED_LIMIT:]
    return replace(posted, settled=settled)


def due_grants(
    ledger: Ledger, spec: AccountSpec, created: dt.datetime, now: dt.datetime
) -> tuple[Ledger, str]:
    """Apply what ``spec`` grants and has not been granted yet; returns the ledger and a summary.

    ``spec.budget`` is the total of one-off grants: more than granted grants the difference,
    less takes it back from the free balance (at most all of it). ``spec.topUp`` grants its
    amount for every full period since ``created`` not granted yet.
    """
    changes: list[tuple[str, str, int, str]] = []
    granted, top_ups = ledger.granted, ledger.top_ups
    free = ledger.free
    notes: list[str] = []
    if spec.budget > granted:
        changes.append(("budget", ADMINISTRATOR, spec.budget - granted, "Grant"))
        notes.append(f"granted {format_money(spec.budget - granted)}")
        free += spec.budget - granted
        granted = spec.budget
    elif spec.budget < granted:
        back = min(granted - spec.budget, max(free, 0))
        if back:
            changes.append(("budget", ADMINISTRATOR, -back, "Revoke"))
            free -= back
            notes.append(f"took back {format_money(back)}")
        if back < granted - spec.budget:
            notes.append(
                f"{format_money(granted - spec.budget - back)} of the lowered budget could not be "
                "taken back: escrow holds it or it was spent"
            )
        granted -= back
    if spec.top_up is not None:
        periods = max(int((now - created).total_seconds() // spec.top_up.every_seconds), 0)
        if periods > top_ups:
            amount = (periods - top_ups) * spec.top_up.amount
            changes.append((f"top-up/{periods}", ADMINISTRATOR, amount, "TopUp"))
            notes.append(f"topped up {format_money(amount)} ({periods - top_ups} period(s))")
            top_ups = periods
    goods_lines, stocks = _due_goods(ledger, spec, notes)
    if not changes and granted == ledger.granted and not goods_lines and stocks == ledger.goods:
        return ledger, ""
    posted = replace(ledger, goods=stocks)._post(changes, now)._post_goods(goods_lines, now)
    return replace(posted, granted=granted, top_ups=top_ups), "; ".join(notes)


def _due_goods(
    ledger: Ledger, spec: AccountSpec, notes: list[str]
) -> tuple[list[tuple[str, str, str, int, str]], dict[str, Stock]]:
    """What ``spec.goods`` grants or takes back: the lines, and the stocks with ``granted`` set."""
    lines: list[tuple[str, str, str, int, str]] = []
    stocks = dict(ledger.goods)
    for good in sorted(set(spec.goods) | {g for g, s in ledger.goods.items() if s.granted}):
        stock = ledger.stock(good)
        want = spec.goods.get(good, 0)
        if want > stock.granted:
            lines.append(("goods", ADMINISTRATOR, good, want - stock.granted, "Grant"))
            notes.append(f"granted {format_quantity(want - stock.granted)} of {good}")
            stocks[good] = replace(stock, granted=want)
        elif want < stock.granted:
            back = min(stock.granted - want, max(stock.free, 0))
            if back:
                lines.append(("goods", ADMINISTRATOR, good, -back, "Revoke"))
                notes.append(f"took back {format_quantity(back)} of {good}")
            if back < stock.granted - want:
                notes.append(
                    f"{format_quantity(stock.granted - want - back)} of {good} could not be taken "
                    "back: escrow holds it or it was sold"
                )
            if back:
                stocks[good] = replace(stock, granted=stock.granted - back)
    return lines, stocks


def next_top_up(spec: AccountSpec, ledger: Ledger, created: dt.datetime) -> dt.datetime | None:
    """When the next top-up falls due (None without a top-up)."""
    if spec.top_up is None:
        return None
    return created + dt.timedelta(seconds=spec.top_up.every_seconds * (ledger.top_ups + 1))
