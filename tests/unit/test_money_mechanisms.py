"""Money through every mechanism, by property: honest outcomes always settle, and settle once.

Random sequences of sessions of every mechanism (first-price, second-price, combinatorial VCG,
McAfee double auction, equilibrium) among agents with random budgets. Each bidder answers
within its free balance (as the SDK's trader does); its exposure is held in escrow; the
mechanism's own engine clears the recorded answers (``recompute``, as ``mabeam audit`` does);
the settlement is computed and must pass every check; it is applied Account by Account with a
crash after a random number of writes, then applied again in full (the restart), then again
(a duplicate). After each session: money is conserved, no balance is negative, nothing stays in
escrow, each session is settled once per Account, every winner paid at most its bid and every
ledger replays to its balance. Markets move goods too: each agent is granted some of the good,
a seller offers only what it holds free (an offer beyond it is refused, NotHeld, and the
seller skipped), escrow holds the offer, and the settlement delivers it in the same writes as
the money: the good is conserved, no holding is negative, no goods escrow is left.
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
    goods_postings,
    hold_amount,
    market_settlement,
    order_supply,
    postings,
    schedule_exposure,
)
from mabeam.models.account import HOUSE_ACCOUNT, AccountSpec, format_money, format_quantity
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
    def __init__(self, budgets: dict[str, int], goods: dict[str, int] | None = None) -> None:
        self.accounts = {n: L.Ledger() for n in [*AGENTS, HOUSE_ACCOUNT]}
        goods = goods or {}
        for name, budget in budgets.items():
            spec = AccountSpec.model_validate(
                {"budget": format_money(budget), "goods": {"g": format_quantity(goods.get(name, 0))}}
            )
            self.accounts[name] = L.due_grants(self.accounts[name], spec, T0, T0)[0]
        self.granted = sum(budgets.values())
        self.goods = sum(goods.values())

    def hold(self, sid: str, agent: str, exposure: Fraction) -> bool:
        try:
            self.accounts[agent] = L.hold(self.accounts[agent], sid, hold_amount(exposure))
        except L.LedgerError:
            return False
        return True

    def hold_goods(self, sid: str, agent: str, quantity: int) -> bool:
        try:
            self.accounts[agent] = L.hold_goods(self.accounts[agent], sid, "g", quantity)
        except L.LedgerError:
            return False
        return True

    def settle(self, settlement: Any, crash: int) -> None:
        lines = postings(settlement)
        goods = goods_postings(settlement)
        order = sorted(lines)
        runs = [order[:crash], order, order]  # crashed run, restart, duplicate
        for run in runs:
            for name in run:
                new = L.settle(self.accounts[name], settlement.session, lines[name], T0, goods.get(name, ()))
                if new is not None:
                    self.accounts[name] = new
                # Between two writes: money and goods each conserved (a settlement's postings
                # on one Account are applied in one write, with its goods).
                self.conserved()

    def conserved(self) -> None:
        """Between two writes (the totals are checked once a session is settled everywhere):
        nothing negative, goods escrow within the holding."""
        for account in self.accounts.values():
            assert account.balance >= 0 and account.stock("g").held >= 0
            assert 0 <= account.stock("g").escrow <= account.stock("g").held

    def check(self, sid: str) -> None:
        assert sum(a.balance for a in self.accounts.values()) == self.granted
        assert sum(a.stock("g").held for a in self.accounts.values()) == self.goods
        for account in self.accounts.values():
            assert 0 <= account.escrow <= account.balance
            assert 0 <= account.stock("g").escrow <= account.stock("g").held
            assert sid not in account.holds
            assert sid not in account.stock("g").holds
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
    goods_held: dict[str, int] = {}
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
                units = min(units, bank.accounts[agent].stock("g").free_for(sid) // 1000)  # what it holds
                if units <= 0:
                    continue
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
                units = min(units, bank.accounts[agent].stock("g").free_for(sid) // 1000)
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
        supply = order_supply_of(spec, record)
        if supply:
            # Within its free holding (the admission's NotHeld check): always held.
            assert bank.hold_goods(sid, agent, supply)
            goods_held[agent] = supply
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
    settlement = market_settlement(sid, spec, ended, held, goods_held)
    assert settlement.valid, [c for c in settlement.checks if not c.passed]
    before = {n: a.stock("g").held for n, a in bank.accounts.items()}
    bank.settle(settlement, s["crash"])
    bank.check(sid)
    # Each trader's holding moved by its trade, exactly (a double auction's whole units; an
    # equilibrium's within a thousandth of its exact share), and a seller never delivers more
    # than it offered.
    for trade in result.trades if result and phase == "Cleared" else []:
        moved = bank.accounts[trade.agent].stock("g").held - before[trade.agent]
        want = Fraction(trade.quantity) * 1000 * (1 if trade.side == "buy" else -1)
        assert abs(moved - want) < 1 + Fraction(1, 10**6), (trade, moved)
        if trade.side == "sell":
            assert -moved <= goods_held[trade.agent]


def order_supply_of(spec: MarketSpec, record: dict[str, Any]) -> int:
    """What a recorded order may deliver, by hand: a sell order's units, a schedule's lowest
    quantity (its largest sale), in thousandths; checked against ``order_supply`` below."""
    if "schedule" in record:
        mine = max(0, -min(p["quantity"] for p in record["schedule"])) * 1000
    else:
        mine = record["quantity"] * 1000 if record["side"] == "sell" else 0
    return mine


def test_order_supply_is_what_a_seller_offers_at_most() -> None:
    """order_supply on sealed orders, against figures by hand, and refusing a quantity finer
    than a thousandth."""
    import pytest

    from mabeam.core.economics import OrderAnswer
    from mabeam.core.economics.settlement import QuantityError
    from mabeam.core.protocols import Participant
    from mabeam.models.market import OrderContent
    from tests.strategies_auctions import KEY, UID, seal_as

    def supply(mechanism: str, content: dict[str, Any]) -> int | None:
        spec = MarketSpec.model_validate(
            {
                "mechanism": mechanism,
                "good": "g",
                "participants": {"agents": AGENTS},
                **({"priceGrid": {"min": 0, "max": 20, "step": 1}} if mechanism == "equilibrium" else {}),
            }
        )
        started = market.start("m", spec, [Participant(n) for n in AGENTS], T0, sealing=KEY.info)
        sealed = seal_as("a", OrderContent.model_validate(content), kind="Order")  # type: ignore[arg-type]
        answer = OrderAnswer(at=T0, sealed=sealed)
        return order_supply(spec, started.status, "a", answer, sealing_key=KEY, session_uid=UID)

    assert supply("double-auction", {"side": "sell", "price": 3, "quantity": 4}) == 4000
    assert supply("double-auction", {"side": "buy", "price": 3, "quantity": 4}) is None
    schedule = [{"price": 1, "quantity": 2}, {"price": 5, "quantity": 0}, {"price": 9, "quantity": -2.5}]
    assert supply("equilibrium", {"schedule": schedule}) == 2500
    assert supply("equilibrium", {"schedule": schedule[:2]}) is None  # it only buys
    with pytest.raises(QuantityError, match=r"schedule\[1\].quantity.*thousandths"):
        supply("equilibrium", {"schedule": [{"price": 1, "quantity": 1}, {"price": 2, "quantity": 0.0001}]})


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries({agent: st.integers(0, 5000) for agent in AGENTS}),
    st.lists(st.one_of(auction_session(), market_session()), min_size=1, max_size=5),
    st.fixed_dictionaries({agent: st.sampled_from([0, 1000, 2000, 3000, 6000]) for agent in AGENTS}),
)
def test_every_mechanism_settles_honest_outcomes_once_and_conserves_money(
    budgets: dict[str, int], sessions: list[dict[str, Any]], goods: dict[str, int]
) -> None:
    bank = Bank(budgets, goods)
    for i, session in enumerate(sessions):
        sid = f"{session['kind']}/s{i}:uid"
        if session["kind"] == "auction":
            run_auction(bank, sid, session, i)
        else:
            run_market(bank, sid, session, i)
