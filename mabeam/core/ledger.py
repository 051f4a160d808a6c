"""The ledger of one Account: grants, escrow holds and settlements, exact and idempotent.

Pure: no client, no clock (``now`` is passed in). Every amount is an int of minor units
(:data:`mabeam.models.account.MINOR_UNITS` per unit). The operator reads an Account's status into
a :class:`Ledger`, applies one operation, and writes the result back with the resourceVersion it
read as a precondition, so two sessions touching one Account serialise on the API server.

The invariants every operation keeps (property-tested in tests/unit/test_ledger.py):

- the balance is never negative, and never below what escrow holds;
- a session is settled on an Account at most once (``settled``), a grant period granted once;
- the entries replay to the balance: ``opening + sum(entry amounts) == balance``;
- money moves only between Accounts (a settlement's postings sum to zero over its Accounts);
  only grants, top-ups and revocations change the total.
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
)

__all__ = [
    "Entry",
    "Ledger",
    "LedgerError",
    "Posting",
    "due_grants",
    "hold",
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
class Ledger:
    balance: int = 0
    holds: Mapping[str, int] = field(default_factory=dict)
    granted: int = 0
    top_ups: int = 0
    opening: int = 0
    entries: tuple[Entry, ...] = ()
    settled: tuple[str, ...] = ()

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
            "settled": list(self.settled),
        }

    def replays(self) -> bool:
        """Whether the kept entries lead from the opening balance to the balance."""
        running = self.opening
        for entry in self.entries:
            running += entry.amount
            if running != entry.balance:
                return False
        return running == self.balance

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


def settle(ledger: Ledger, session: str, postings: Sequence[Posting], now: dt.datetime) -> Ledger | None:
    """Settle ``session`` on this Account: release its hold and apply ``postings``, once.

    None if the session is already settled here (nothing to do). LedgerError if the postings
    would take the balance below zero or below what other sessions hold: a settlement pays at
    most what its session held, so this means a fault upstream, and nothing is changed.
    """
    if session in ledger.settled:
        return None
    holds = {s: a for s, a in ledger.holds.items() if s != session}
    out = sum(-p.amount for p in postings if p.amount < 0)
    held = ledger.holds.get(session, 0)
    total = sum(p.amount for p in postings)
    if ledger.balance + total < sum(holds.values()) or ledger.balance + total < 0:
        raise LedgerError(
            f"paying {format_money(out)} for {session} would leave less than escrow holds "
            f"(balance {format_money(ledger.balance)}, held for it {format_money(held)})"
        )
    posted = replace(ledger, holds=holds)._post(
        [(session, p.counterparty, p.amount, p.reason) for p in postings if p.amount], now
    )
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
    if not changes and granted == ledger.granted:
        return ledger, ""
    posted = ledger._post(changes, now)
    return replace(posted, granted=granted, top_ups=top_ups), "; ".join(notes)


def next_top_up(spec: AccountSpec, ledger: Ledger, created: dt.datetime) -> dt.datetime | None:
    """When the next top-up falls due (None without a top-up)."""
    if spec.top_up is None:
        return None
    return created + dt.timedelta(seconds=spec.top_up.every_seconds * (ledger.top_ups + 1))
