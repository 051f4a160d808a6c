"""Money through every mechanism, by property: honest outcomes always settle, and settle once.

Random sequences of sessions of every mechanism (first-price, second-price, combinatorial VCG,
McAfee double auction, equilibrium) among agents with random budgets. Each bidder answers
within its free balance (as the SDK's trader does); its exposure is held in escrow; the
mechanism's own engine clears the recorded answers (``recompute``, as ``mabeam audit`` does);
the settlement is computed and must pass every check; it is applied Account by Account with a
crash after a random number of writes, then applied again in full (the restart), then again
(a duplicate). After each session: money is conserved, no balance is negative, nothing stays in
escrow, each session is settled once per Account, every winner paid at most its bid and every
ledger replays to its balance.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core import ledger as L
from mabeam.core.economics import auction, market
from mabeam.core.economics.settlement import (
    auction_settlement,
    hold_amount,
    market_settlement,
    postings,
    schedule_exposure,
)
from mabeam.models.account import HOUSE_ACCOUNT, AccountSpec, format_money
from mabeam.models.auction import AuctionSpec, AuctionStatus
from mabeam.models.market import MarketSpec, MarketStatus

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
AGENTS = ["a", "b", "c", "d"]


def participants() -> list[dict[str, Any]]:
    return [{"name": n} for n in AGENTS]


@st.composite
def auction_session(draw: st.DrawFn) -> dict[str, Any]:
    mechanism = draw(st.sampled_from(["first-price", "second-price", "combinatorial", "combinatorial"]))
    items = [f"g{i}" for i in range(draw(st.integers(1, 3)) if mechanism == "combinatorial" else 1)]
    bidders = draw(st.lists(st.sampled_from(AGENTS), min_size=1, max_size=4, unique=True))
    wishes: dict[str, Any] = {}
    for agent in bidders:
        if mechanism == "combinatorial":
            bundles = draw(
                st.lists(
                    st.tuples(st.sets(st.sampled_from(items), min_size=1), st.integers(1, 4000)),
                    min_size=1,
                    max_size=3,
                    unique_by=lambda t: frozenset(t[0]),
                )
            )
            wishes[agent] = [(sorted(s), Decimal(a) / 100) for s, a in bundles]
        else:
            wishes[agent] = Decimal(draw(st.integers(1, 4000))) / 100
    owners = {item: draw(st.sampled_from([None, *AGENTS])) for item in items}
    return {
        "kind": "auction",
        "mechanism": mechanism,
        "items": items,
        "reserve": draw(st.integers(0, 5)),
        "wishes": wishes,
        "owners": owners,
        "crash": draw(st.integers(0, 8)),
    }


@st.composite
def market_session(draw: st.DrawFn) -> dict[str, Any]:
    mechanism = draw(st.sampled_from(["double-auction", "equilibrium"]))
    traders = draw(st.lists(st.sampled_from(AGENTS), min_size=2, max_size=4, unique=True))
    wishes: dict[str, Any] = {}
    for agent in traders:
        if mechanism == "double-auction":
            wishes[agent] = (
                draw(st.sampled_from(["buy", "sell"])),
                draw(st.integers(1, 30)),
                draw(st.integers(1, 3)),
            )
        else:
            # A net demand falling with the price: buy q up to v, else sell up to s from c.
            if draw(st.booleans()):
                wishes[agent] = ("buy", draw(st.integers(1, 20)), draw(st.integers(1, 4)))
            else:
                wishes[agent] = ("sell", draw(st.integers(0, 20)), draw(st.integers(1, 4)))
    return {"kind": "market", "mechanism": mechanism, "wishes": wishes, "crash": draw(st.integers(0, 8))}


class Bank:
    def __init__(self, budgets: dict[str, int]) -> None:
        self.accounts = {n: L.Ledger() for n in [*AGENTS, HOUSE_ACCOUNT]}
        for name, budget in budgets.items():
            spec = AccountSpec.model_validate({"budget": format_money(budget)})
            self.accounts[name] = L.due_grants(self.accounts[name], spec, T0, T0)[0]
        self.granted = sum(budgets.values())

    def hold(self, sid: str, agent: str, exposure: Fraction) -> bool:
        try:
            self.accounts[agent] = L.hold(self.accounts[agent], sid, hold_amount(exposure))
        except L.LedgerError:
            return False
        return True

    def settle(self, settlement: Any, crash: int) -> None:
        lines = postings(settlement)
        order = sorted(lines)
        runs = [order[:crash], order, order]  # crashed run, restart, duplicate
        for run in runs:
            for name in run:
                new = L.settle(self.accounts[name], settlement.session, lines[name], T0)
                if new is not None:
                    self.accounts[name] = new

    def check(self, sid: str) -> None:
        assert sum(a.balance for a in self.accounts.values()) == self.granted
        for account in self.accounts.values():
            assert 0 <= account.escrow <= account.balance
            assert sid not in account.holds
            assert account.settled.count(sid) <= 1
            assert account.replays()


def run_auction(bank: Bank, sid: str, s: dict[str, Any], i: int) -> None:
    spec = AuctionSpec.model_validate(
        {
            "mechanism": s["mechanism"],
            "participants": {"agents": AGENTS},
            "items": s["items"],
            "reservePrice": s["reserve"],
        }
    )
    bids = []
    held: dict[str, int] = {}
    for n, (agent, wish) in enumerate(sorted(s["wishes"].items())):
        free = Decimal(bank.accounts[agent].free_for(sid)) / 100
        if s["mechanism"] == "combinatorial":  # within its means, as the trader bids
            bundles = [{"items": items, "amount": min(amount, free)} for items, amount in wish]
            bundles = [b for b in bundles if b["amount"] > 0]
            if not bundles:
                continue
            exposure = max(Fraction(b["amount"]) for b in bundles)
            record = {"agent": agent, "bundles": bundles}
        else:
            amount = min(wish, free)
            if amount <= 0:
                continue
            exposure = Fraction(amount)
            record = {"agent": agent, "amount": amount}
        assert bank.hold(sid, agent, exposure)  # within the free balance: always held
        held[agent] = hold_amount(exposure)
        bids.append({**record, "receivedAt": (T0 + dt.timedelta(seconds=n)).isoformat()})
    status = AuctionStatus.model_validate(
        {
            "phase": "Bidding",
            "participants": participants(),
            "bids": bids,
            "payment": "Ledger",
            "result": {"reason": "Pending", "decidedAt": T0.isoformat()},
        }
    )
    result = auction.recompute(f"s{i}", spec, status) if bids else None
    ended = status.model_copy(
        update={"phase": "Awarded" if result and result.allocations else "NoSale", "result": result}
    )
    sellers = {item: owner for item, owner in s["owners"].items() if owner is not None}
    settlement = auction_settlement(sid, spec, ended, sellers, held)
    assert settlement.valid, [c for c in settlement.checks if not c.passed]
    before = {n: a.balance for n, a in bank.accounts.items()}
    bank.settle(settlement, s["crash"])
    bank.check(sid)
    for allocation in result.allocations if result else []:
        paid = before[allocation.agent] - bank.accounts[allocation.agent].balance
        received = sum(t.amount for t in settlement.transfers if t.payee == allocation.agent)
        assert paid + received <= hold_amount(Fraction(allocation.bid or allocation.price)) + received


def run_market(bank: Bank, sid: str, s: dict[str, Any], i: int) -> None:
    grid = {"min": 0, "max": 20, "step": 1}
    spec = MarketSpec.model_validate(
        {
            "mechanism": s["mechanism"],
            "good": "g",
            "participants": {"agents": AGENTS},
            **({"priceGrid": grid} if s["mechanism"] == "equilibrium" else {}),
        }
    )
    prices = [Fraction(p) for p in range(0, 21)]
    orders = []
    held: dict[str, int] = {}
    for n, (agent, (side, limit, units)) in enumerate(sorted(s["wishes"].items())):
        free = Fraction(bank.accounts[agent].free_for(sid), 100)
        at = (T0 + dt.timedelta(seconds=n)).isoformat()
        if s["mechanism"] == "double-auction":
            price = Fraction(limit)
            if side == "buy":
                price = min(price, Fraction(int(free * 100 / units), 100))  # within its means
                if price <= 0:
                    continue
                exposure = price * units
            else:
                exposure = Fraction(0)
            record = {
                "agent": agent,
                "side": side,
                "price": str(Decimal(price.numerator) / Decimal(price.denominator)),
                "quantity": units,
                "receivedAt": at,
            }
        else:
            if side == "buy":  # q(p) = units while it can pay p x units, fewer when it cannot
                points = [(p, min(units, int(free // p)) if p > 0 else units) for p in prices if p <= limit]
                points += [(Fraction(limit + 1), 0)] if limit < 20 else []
            else:
                points = [(p, 0 if p < limit else -units) for p in prices]
            # keep the points where the quantity changes (and the first)
            kept = [pt for j, pt in enumerate(points) if j == 0 or pt[1] != points[j - 1][1]]
            schedule = [{"price": int(p), "quantity": q} for p, q in kept]
            from mabeam.models.market import SchedulePoint

            exposure = schedule_exposure([SchedulePoint.model_validate(x) for x in schedule], prices)
            record = {"agent": agent, "schedule": schedule, "receivedAt": at}
        if exposure > 0:
            assert bank.hold(sid, agent, exposure)
            held[agent] = hold_amount(exposure)
        orders.append(record)
    status = MarketStatus.model_validate(
        {
            "phase": "Collecting",
            "participants": participants(),
            "orders": orders,
            "payment": "Ledger",
            "result": {"reason": "Pending", "decidedAt": T0.isoformat()},
        }
    )
    result = market.recompute(f"m{i}", spec, status)  # None: no order at all
    phase = "Cleared" if result is not None and result.trades else "NoTrade"
    ended = status.model_copy(update={"phase": phase, "result": result})
    settlement = market_settlement(sid, spec, ended, held)
    assert settlement.valid, [c for c in settlement.checks if not c.passed]
    bank.settle(settlement, s["crash"])
    bank.check(sid)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries({agent: st.integers(0, 5000) for agent in AGENTS}),
    st.lists(st.one_of(auction_session(), market_session()), min_size=1, max_size=5),
)
def test_every_mechanism_settles_honest_outcomes_once_and_conserves_money(
    budgets: dict[str, int], sessions: list[dict[str, Any]]
) -> None:
    bank = Bank(budgets)
    for i, session in enumerate(sessions):
        sid = f"{session['kind']}/s{i}:uid"
        if session["kind"] == "auction":
            run_auction(bank, sid, session, i)
        else:
            run_market(bank, sid, session, i)
