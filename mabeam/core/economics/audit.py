"""An ended auction's or market's outcome, recomputed from what its status records, and checked
against what was applied: the allocation and prices, the settlement, and the ledgers.

Pure: ``mabeam audit`` reads the session, the Accounts and the items' Variables and calls
:func:`audit_auction` or :func:`audit_market`. The outcome is recomputed from the answers
recorded in the status (opened bids and orders) with the same engine the operator ran; the
settlement from that outcome, the escrow and the sellers the settlement recorded; the ledgers
are checked to hold the session once, with entries that match its transfers and deliveries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...models.account import ENTRIES_LIMIT, Settlement, format_money, format_quantity
from ...models.auction import AuctionSpec, AuctionStatus
from ...models.market import MarketSpec, MarketStatus
from ..ledger import Ledger
from . import auction, market
from .settlement import auction_settlement, market_settlement

__all__ = ["Audit", "audit_auction", "audit_market"]


@dataclass
class Audit:
    """Each finding: (what, whether it matches, the detail)."""

    findings: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.findings)

    def add(self, what: str, ok: bool, detail: str) -> None:
        self.findings.append((what, ok, detail))


def _outcome(audit: Audit, recorded: object, again: object, what: str) -> None:
    if again is None:
        audit.add("Outcome", True, f"{what}: nothing to recompute (no counted answer was opened)")
    elif recorded == again:
        audit.add("Outcome", True, f"{what}: recomputed from the recorded answers, the same")
    else:
        audit.add("Outcome", False, f"{what}: recomputed {again}, recorded {recorded}")


def _settlement(audit: Audit, recorded: Settlement | None, again: Settlement) -> None:
    if recorded is None:
        audit.add("Settlement", False, "no settlement recorded for a session paid from Accounts")
        return
    same = (recorded.valid, recorded.transfers, recorded.goods, sorted(recorded.accounts)) == (
        again.valid,
        again.transfers,
        again.goods,
        sorted(again.accounts),
    )
    moved = (
        ", ".join(f"{t.payer} -> {t.payee} {format_money(t.amount)}" for t in recorded.transfers) or "nothing"
    )
    moved += "".join(
        f", {g.sender} -> {g.receiver} {format_quantity(g.quantity)} of {g.good}" for g in recorded.goods
    )
    audit.add(
        "Settlement",
        same,
        f"recomputed the same: {moved}"
        if same
        else f"recomputed {again.transfers} {again.goods}, recorded {recorded.transfers} {recorded.goods}",
    )
    failed = [c.name for c in recorded.checks if not c.passed]
    audit.add(
        "Checks",
        recorded.valid == (not failed),
        "every check passed" if not failed else f"failed: {', '.join(failed)} (nothing moved)",
    )


def _ledgers(audit: Audit, settlement: Settlement | None, accounts: Mapping[str, Ledger]) -> None:
    if settlement is None:
        return
    expected: dict[str, int] = defaultdict(int)
    for t in settlement.transfers:
        expected[t.payer] -= t.amount
        expected[t.payee] += t.amount
    goods: dict[tuple[str, str], int] = defaultdict(int)
    for g in settlement.goods:
        goods[(g.sender, g.good)] -= g.quantity
        goods[(g.receiver, g.good)] += g.quantity
    for name in settlement.accounts:
        ledger = accounts.get(name)
        if ledger is None:
            audit.add("Ledger", False, f"Account {name} is gone, or its status cannot be read")
            continue
        times = ledger.settled.count(settlement.session)
        entries = [e for e in ledger.entries if e.session == settlement.session]
        posted = sum(e.amount for e in entries)
        # Entries older than the kept history are folded into the opening balance.
        forgotten = not entries and len(ledger.entries) >= ENTRIES_LIMIT
        if times != 1:
            audit.add("Ledger", False, f"{name}: settled {times} times")
        elif settlement.session in ledger.holds or any(
            settlement.session in stock.holds for stock in ledger.goods.values()
        ):
            audit.add("Ledger", False, f"{name}: escrow still held")
        elif problem := _goods_posted(name, settlement.session, ledger, goods):
            audit.add("Ledger", False, problem)
        elif posted != expected[name] and not forgotten:
            wanted = format_money(expected[name])
            audit.add(
                "Ledger", False, f"{name}: its entries post {format_money(posted)}, the settlement {wanted}"
            )
        else:
            detail = f"{name}: settled once, {format_money(expected[name])}"
            audit.add("Ledger", True, detail + (" (older than the kept entries)" if forgotten else ""))


def _goods_posted(name: str, session: str, ledger: Ledger, goods: Mapping[tuple[str, str], int]) -> str:
    """Why ``name``'s goods entries of ``session`` differ from the settlement's, or ''."""
    lines = [e for e in ledger.goods_entries if e.session == session]
    if not lines and len(ledger.goods_entries) >= ENTRIES_LIMIT:
        return ""  # older than the kept entries
    for (account, good), quantity in sorted(goods.items()):
        posted = sum(e.quantity for e in lines if e.good == good)
        if account == name and posted != quantity:
            return (
                f"{name}: its entries deliver {format_quantity(posted)} of {good}, the settlement "
                f"{format_quantity(quantity)}"
            )
    return ""


def audit_auction(
    session: str, spec: AuctionSpec, status: AuctionStatus, accounts: Mapping[str, Ledger]
) -> Audit:
    """Recompute an ended auction and compare (see the module docstring)."""
    out = Audit()
    result = status.result
    if result is None:
        out.add("Outcome", False, f"the auction has not ended (phase {status.phase})")
        return out
    again = auction.recompute(session, spec, status)
    recorded_alloc = [(a.agent, a.items, a.price) for a in result.allocations]
    again_alloc = None if again is None else [(a.agent, a.items, a.price) for a in again.allocations]
    if status.phase == "Failed" and result.reason == "SettlementRejected":
        out.add("Outcome", True, "the outcome failed its checks and was not applied")
    else:
        _outcome(out, recorded_alloc, again_alloc, "allocations (agent, items, price)")
    if status.payment != "Ledger":
        out.add("Settlement", True, "not paid from Accounts (payment None): prices are recorded only")
        return out
    recorded = status.settlement
    sellers: dict[str, str] = {}
    for t in recorded.transfers if recorded else ():
        for item in t.reason.split(", "):
            sellers[item] = t.payee
    holds = {h.account: h.amount for h in recorded.held} if recorded else {}
    base = status
    if status.phase == "Failed" and result.reason == "SettlementRejected":
        base = status.model_copy(update={"phase": "Awarded"})
    _settlement(
        out, recorded, auction_settlement(recorded.session if recorded else "", spec, base, sellers, holds)
    )
    _ledgers(out, recorded, accounts)
    return out


def audit_market(
    session: str, spec: MarketSpec, status: MarketStatus, accounts: Mapping[str, Ledger]
) -> Audit:
    """Recompute an ended market and compare (see the module docstring)."""
    out = Audit()
    result = status.result
    if result is None:
        out.add("Outcome", False, f"the market has not ended (phase {status.phase})")
        return out
    again = market.recompute(session, spec, status)
    rejected = status.phase == "Failed" and result.reason == "SettlementRejected"
    if rejected:
        out.add("Outcome", True, "the outcome failed its checks and was not applied")
    else:
        recorded_trades = (result.price, [(t.agent, t.side, t.quantity, t.price) for t in result.trades])
        again_trades = (
            None
            if again is None
            else (again.price, [(t.agent, t.side, t.quantity, t.price) for t in again.trades])
        )
        _outcome(out, recorded_trades, again_trades, "price and trades")
    if status.payment != "Ledger":
        out.add("Settlement", True, "not paid from Accounts (payment None): prices are recorded only")
        return out
    recorded = status.settlement
    holds = {h.account: h.amount for h in recorded.held} if recorded else {}
    goods_holds = {h.account: h.quantity for h in recorded.held_goods} if recorded else {}
    base = status.model_copy(update={"phase": "Cleared"}) if rejected else status
    again_settlement = market_settlement(recorded.session if recorded else "", spec, base, holds, goods_holds)
    _settlement(out, recorded, again_settlement)
    _ledgers(out, recorded, accounts)
    return out
