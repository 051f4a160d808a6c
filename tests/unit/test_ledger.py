"""The ledger (mabeam.core.ledger) and settlements (mabeam.core.economics.settlement), by property.

Random sequences of grants and sessions run against Accounts held in memory, the way the
operator runs them: a session holds each bidder's exposure (one compare-and-swap per Account),
ends with transfers no larger than what it held, and is settled Account by Account. A crash
may come between any two writes: the operator then starts again from what was written and
settles the whole session again. After every step: money is conserved (the total changes only
by grants), no balance is negative or below its escrow, every session is settled once on each
of its Accounts and holds nothing afterwards, and every ledger replays to its balance.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core import ledger as L
from mabeam.core.economics.settlement import (
    auction_settlement,
    goods_postings,
    hold_amount,
    market_settlement,
    postings,
    release_only,
)
from mabeam.models.account import (
    ENTRIES_LIMIT,
    HOUSE_ACCOUNT,
    AccountSpec,
    AccountStatus,
    format_money,
    parse_money,
)
from mabeam.models.auction import AuctionSpec, AuctionStatus
from mabeam.models.market import MarketSpec, MarketStatus

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NAMES = ["a", "b", "c", "d"]


def spec(budget: int) -> AccountSpec:
    return AccountSpec.model_validate({"budget": format_money(budget)})


class Bank:
    """Accounts in memory, changed one write at a time as the operator changes them."""

    def __init__(self) -> None:
        self.accounts = {n: L.Ledger() for n in [*NAMES, HOUSE_ACCOUNT]}
        self.budgets = dict.fromkeys(NAMES, 0)
        self.writes = 0

    def total(self) -> int:
        return sum(a.balance for a in self.accounts.values())

    def grant(self, name: str, amount: int) -> None:
        self.budgets[name] += amount
        new, _ = L.due_grants(self.accounts[name], spec(self.budgets[name]), T0, T0)
        self.accounts[name] = new

    def check(self, settled: set[str]) -> None:
        assert self.total() == sum(self.budgets.values())
        for account in self.accounts.values():
            assert account.balance >= 0
            assert account.escrow <= account.balance
            assert account.replays()
            assert len(set(account.settled)) == len(account.settled)
            assert not settled & set(account.holds)
            # The wire form reads back to the same ledger.
            status = AccountStatus.model_validate(account.to_wire())
            assert L.Ledger.from_status(status) == account


@st.composite
def sessions(draw: st.DrawFn) -> list[tuple[str, object]]:
    """A sequence of steps: ("grant", (name, amount)) or ("session", (bids, pays, crash))."""
    steps: list[tuple[str, object]] = []
    for i in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            steps.append(("grant", (draw(st.sampled_from(NAMES)), draw(st.integers(0, 5000)))))
            continue
        bids = draw(st.dictionaries(st.sampled_from(NAMES), st.integers(1, 6000), max_size=4))
        # What each bidder pays, as a share of its hold (the mechanism's price, at most the bid).
        shares = {n: draw(st.fractions(0, 1)) for n in bids}
        payee = draw(st.sampled_from([*NAMES, HOUSE_ACCOUNT]))
        crash = draw(st.integers(0, 12))
        steps.append(("session", (f"auction/s{i}:uid{i}", bids, shares, payee, crash)))
    return steps


@settings(max_examples=300, deadline=None)
@given(sessions())
def test_random_grants_and_sessions_with_crashes_conserve_money_and_settle_once(
    steps: list[tuple[str, object]],
) -> None:
    bank = Bank()
    settled: set[str] = set()
    for kind, args in steps:
        if kind == "grant":
            name, amount = args  # type: ignore[misc]
            bank.grant(name, amount)
            bank.check(settled)
            continue
        sid, bids, shares, payee, crash = args  # type: ignore[misc]
        held: dict[str, int] = {}
        for name, amount in sorted(bids.items()):
            try:
                bank.accounts[name] = L.hold(bank.accounts[name], sid, amount)
                held[name] = amount
            except L.LedgerError:
                assert amount > bank.accounts[name].free_for(sid)  # refused only when short
        bank.check(settled)
        raw = [(n, payee, int(held[n] * shares[n])) for n in sorted(held)]
        transfers = [
            {"payer": p, "payee": q, "amount": format_money(a), "reason": "x"}
            for p, q, a in raw
            if p != q and a
        ]
        from mabeam.models.account import Settlement

        settlement = Settlement.model_validate(
            {
                "session": sid,
                "valid": True,
                "transfers": transfers,
                "accounts": sorted(
                    set(held) | {t["payer"] for t in transfers} | {t["payee"] for t in transfers}
                ),
            }
        )
        lines = postings(settlement)
        order = sorted(lines)
        # The first run crashes after ``crash`` Account writes; the next run settles everything.
        for name in order[:crash]:
            new = L.settle(bank.accounts[name], sid, lines[name], T0)
            if new is not None:
                bank.accounts[name] = new
        for _ in range(2):  # the restart, and a duplicate run: nothing changes twice
            for name in order:
                new = L.settle(bank.accounts[name], sid, lines[name], T0)
                if new is not None:
                    bank.accounts[name] = new
        settled.add(sid)
        bank.check(settled)
        for name in order:
            assert bank.accounts[name].settled.count(sid) == 1


def test_a_hold_beyond_the_free_balance_is_refused_with_the_figures() -> None:
    ledger = L.due_grants(L.Ledger(), spec(3000), T0, T0)[0]
    ledger = L.hold(ledger, "auction/x:1", 2000)
    with pytest.raises(L.LedgerError, match=r"free balance is 10\.00 \(balance 30\.00"):
        L.hold(ledger, "auction/y:2", 1500)
    # The same session may change its own hold within balance minus the others' escrow.
    assert L.hold(ledger, "auction/x:1", 3000).escrow == 3000
    assert L.hold(ledger, "auction/x:1", 0).escrow == 0


def test_a_settled_session_cannot_hold_again_and_settles_once() -> None:
    ledger = L.due_grants(L.Ledger(), spec(3000), T0, T0)[0]
    ledger = L.hold(ledger, "s", 1000)
    paid = L.settle(ledger, "s", [L.Posting("h", -700, "Payment")], T0)
    assert paid is not None and (paid.balance, paid.escrow) == (2300, 0)
    assert L.settle(paid, "s", [L.Posting("h", -700, "Payment")], T0) is None
    with pytest.raises(L.LedgerError):
        L.hold(paid, "s", 10)
    with pytest.raises(L.LedgerError):  # never below zero, whatever the postings say
        L.settle(paid, "t", [L.Posting("h", -2301, "Payment")], T0)


def test_lowering_a_budget_takes_back_only_the_free_money_and_the_rest_later() -> None:
    ledger = L.due_grants(L.Ledger(), spec(3000), T0, T0)[0]
    ledger = L.hold(ledger, "s", 2500)
    lowered, note = L.due_grants(ledger, spec(0), T0, T0)
    assert (lowered.balance, lowered.granted) == (2500, 2500)
    assert "could not be taken back" in note
    released = L.hold(lowered, "s", 0)
    again, _ = L.due_grants(released, spec(0), T0, T0)
    assert (again.balance, again.granted) == (0, 0)
    assert again.replays()


def test_top_ups_are_granted_once_per_period() -> None:
    s = AccountSpec.model_validate({"budget": 10, "topUp": {"amount": "2.50", "everySeconds": 3600}})
    ledger, _ = L.due_grants(L.Ledger(), s, T0, T0 + dt.timedelta(minutes=59))
    assert ledger.balance == 1000
    ledger, note = L.due_grants(ledger, s, T0, T0 + dt.timedelta(hours=3, minutes=1))
    assert (ledger.balance, ledger.top_ups) == (1750, 3) and "3 period" in note
    assert L.due_grants(ledger, s, T0, T0 + dt.timedelta(hours=3, minutes=30))[0] == ledger
    assert L.next_top_up(s, ledger, T0) == T0 + dt.timedelta(hours=4)


def test_a_long_ledger_keeps_its_last_entries_and_still_replays() -> None:
    ledger = L.Ledger()
    for i in range(ENTRIES_LIMIT + 30):
        ledger = L.due_grants(ledger, spec(100 * (i + 1)), T0, T0)[0]
    assert len(ledger.entries) == ENTRIES_LIMIT
    assert ledger.opening == 100 * 30 and ledger.replays()


@pytest.mark.parametrize(
    ("wire", "minor"), [(10, 1000), ("12.5", 1250), ("0.01", 1), ("1000000000000.99", 100000000000099)]
)
def test_money_is_exact_hundredths(wire: object, minor: int) -> None:
    assert parse_money(wire) == minor
    assert parse_money(format_money(minor)) == minor
    with pytest.raises(ValueError, match="two decimals"):
        parse_money("0.001")
    with pytest.raises(ValueError):
        parse_money(-1)


# --- settlements --------------------------------------------------------------------------------


def awarded(
    allocations: list[dict[str, object]], mechanism: str = "combinatorial", reserve: int = 0
) -> tuple[AuctionSpec, AuctionStatus]:
    items = sorted({i for a in allocations for i in a["items"]} | {"spare"})  # type: ignore[attr-defined]
    spec_ = AuctionSpec.model_validate(
        {"mechanism": mechanism, "participants": {"agents": NAMES}, "items": items, "reservePrice": reserve}
    )
    status = AuctionStatus.model_validate(
        {
            "phase": "Awarded",
            "participants": [{"name": n} for n in NAMES],
            "result": {"allocations": allocations, "reason": "Test", "decidedAt": T0.isoformat()},
        }
    )
    return spec_, status


def test_a_winner_pays_each_items_seller_an_even_share_and_money_is_conserved() -> None:
    spec_, status = awarded([{"agent": "a", "items": ["g1", "g2", "g3"], "price": "10.01", "bid": 12}])
    s = auction_settlement("auction/x:1", spec_, status, {"g1": "b", "g2": "c"}, {"a": 1200})
    assert s.valid, s.checks
    # 10.01 = 1001 hundredths over 3 items: 333 each, the remainder 2 to g1: 335 to b, 333 to c and the house.
    assert [(t.payer, t.payee, t.amount) for t in s.transfers] == [
        ("a", "b", 335),
        ("a", "c", 333),
        ("a", HOUSE_ACCOUNT, 333),
    ]
    lines = postings(s)
    assert sum(p.amount for ps in lines.values() for p in ps) == 0


@pytest.mark.parametrize(
    ("allocation", "holds", "failing"),
    [
        ({"agent": "a", "items": ["g1"], "price": 13, "bid": 12}, {"a": 1300}, {"IndividuallyRational"}),
        ({"agent": "a", "items": ["g1"], "price": 12, "bid": 12}, {"a": 1199}, {"EscrowCovers"}),
        ({"agent": "x", "items": ["g1"], "price": 6, "bid": 7}, {"x": 700}, {"AllocationFeasible"}),
        ({"agent": "a", "items": ["g1"], "price": 4, "bid": 12}, {"a": 1200}, {"ReserveMet"}),
    ],
)
def test_a_faulty_outcome_fails_the_check_that_catches_it_and_moves_nothing(
    allocation: dict[str, object], holds: dict[str, int], failing: set[str]
) -> None:
    spec_, status = awarded([allocation], reserve=5)
    s = auction_settlement("auction/x:1", spec_, status, {}, holds)
    assert not s.valid and s.transfers == []
    assert {c.name for c in s.checks if not c.passed} == failing
    assert set(s.accounts) == set(holds)  # escrow is released everywhere


def test_an_item_sold_twice_is_infeasible() -> None:
    spec_, status = awarded(
        [
            {"agent": "a", "items": ["g1"], "price": 1, "bid": 2},
            {"agent": "b", "items": ["g1"], "price": 1, "bid": 2},
        ]
    )
    s = auction_settlement("auction/x:1", spec_, status, {}, {"a": 200, "b": 200})
    assert not s.valid and "g1 is allocated to a and b" in next(
        c.message for c in s.checks if c.name == "AllocationFeasible"
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, 10**6)), min_size=1, max_size=6),
    st.integers(1, 7),
)
def test_fractional_trades_round_so_that_the_house_never_pays(
    units: list[tuple[int, int]], sellers: int
) -> None:
    """An equilibrium's trades at one price, the sellers' quantities rationed into thirds and
    sevenths: buyers pay their totals rounded down, sellers together never get more."""
    price = Decimal("3.33")
    bought = sum(q for q, _ in units)
    trades = [
        {"agent": f"b{i}", "side": "buy", "quantity": q, "price": price, "total": price * q}
        for i, (q, _) in enumerate(units)
    ]
    for j in range(sellers):
        q = Fraction(bought, sellers)
        total = Fraction(price) * q
        trades.append(
            {
                "agent": f"s{j}",
                "side": "sell",
                "quantity": float(q),
                "price": price,
                "total": str(round(Decimal(total.numerator) / Decimal(total.denominator), 18)),
            }
        )
    agents = [t["agent"] for t in trades]
    spec_ = MarketSpec.model_validate(
        {
            "mechanism": "equilibrium",
            "good": "g",
            "participants": {"agents": agents},
            "priceGrid": {"min": 1, "max": 5, "step": "0.01"},
        }
    )
    status = MarketStatus.model_validate(
        {
            "phase": "Cleared",
            # The orders the trades come from: buyers want q at 3.33, each seller offers all
            # that is bought (so the sellers are rationed to bought/sellers each).
            "orders": [
                {
                    "agent": t["agent"],
                    "schedule": [
                        {"price": price, "quantity": t["quantity"] if t["side"] == "buy" else -bought}
                    ],
                    "receivedAt": T0.isoformat(),
                }
                for t in trades
            ],
            "result": {
                "price": price,
                "volume": bought,
                "trades": trades,
                "reason": "Test",
                "decidedAt": T0.isoformat(),
            },
        }
    )
    holds = {f"b{i}": hold_amount(Fraction(price) * q) for i, (q, _) in enumerate(units)}
    goods = {f"s{j}": bought * 1000 for j in range(sellers)}
    s = market_settlement("market/m:1", spec_, status, holds, goods)
    assert s.valid, [c for c in s.checks if not c.passed]
    # The goods: every buyer gets its units exactly; the sellers' thirds and sevenths are
    # apportioned in thousandths, each within one of its exact share, adding up to what is bought.
    received = {g.receiver: g.quantity for g in s.goods if g.sender == HOUSE_ACCOUNT}
    delivered = {g.sender: g.quantity for g in s.goods if g.receiver == HOUSE_ACCOUNT}
    assert received == {f"b{i}": q * 1000 for i, (q, _) in enumerate(units)}
    assert sum(delivered.values()) == bought * 1000
    assert all(abs(Fraction(d) - Fraction(bought * 1000, sellers)) < 1 for d in delivered.values())
    into_house = sum(t.amount for t in s.transfers if t.payee == HOUSE_ACCOUNT)
    out_of_house = sum(t.amount for t in s.transfers if t.payer == HOUSE_ACCOUNT)
    assert 0 <= into_house - out_of_house <= len(trades)


def test_a_session_without_outcome_only_releases_escrow() -> None:
    s = release_only("auction/x:1", {"a": 5, "b": 7})
    assert s.valid and s.transfers == [] and s.accounts == ["a", "b"]
    assert postings(s) == {"a": [], "b": []}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(-5, 5)), min_size=1, max_size=6, unique_by=lambda t: t[0]
    ),
    st.integers(1, 40),
)
def test_a_schedules_exposure_is_its_dearest_purchase_on_the_grid(
    points: list[tuple[int, int]], top: int
) -> None:
    """Against the step function the equilibrium clears with, evaluated at every grid price."""
    from mabeam.core.economics._equilibrium import NetDemand
    from mabeam.core.economics.settlement import schedule_exposure
    from mabeam.models.market import SchedulePoint

    points = sorted(points)
    quantities = sorted((q for _, q in points), reverse=True)  # a schedule slopes down
    schedule = [
        SchedulePoint(price=Decimal(p), quantity=q) for (p, _), q in zip(points, quantities, strict=True)
    ]
    grid = [Fraction(p) for p in range(0, top + 1)]
    demand = NetDemand(
        "x", tuple((Fraction(p), Fraction(q)) for (p, _), q in zip(points, quantities, strict=True))
    )
    brute = max((p * max(demand.at(p), Fraction(0)) for p in grid), default=Fraction(0))
    assert schedule_exposure(schedule, grid) == brute


# --- goods -------------------------------------------------------------------------------------


@st.composite
def goods_steps(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Grants (raised or lowered) of goods, and sales: sellers offer what they want, a buyer
    takes part of it; with a crash after any number of Account writes."""
    steps: list[tuple[str, object]] = []
    for i in range(draw(st.integers(1, 10))):
        if draw(st.booleans()):
            steps.append(("grant", (draw(st.sampled_from(NAMES)), draw(st.sampled_from(GOODS)),
                                    draw(st.integers(0, 5000)))))  # fmt: skip
            continue
        good = draw(st.sampled_from(GOODS))
        offers = draw(st.dictionaries(st.sampled_from(NAMES), st.integers(1, 4000), max_size=3))
        buyer = draw(st.sampled_from(NAMES))
        share = draw(st.fractions(0, 1))
        steps.append(("sale", (f"market/m{i}:u{i}", good, offers, buyer, share, draw(st.integers(0, 8)))))
    return steps


GOODS = ["cpu", "gpu hours"]


@settings(max_examples=300, deadline=None)
@given(goods_steps())
def test_goods_are_conserved_held_and_delivered_once_across_crashes(steps: list[tuple[str, object]]) -> None:
    """The goods ledger by itself, against a count kept by hand: each good's total over all
    Accounts changes only by grants and revocations; a sale delivers at most what escrow held;
    a crash between two Account writes and the run after it deliver once; no holding negative
    or below its escrow; the goods entries replay to the holdings; the wire form reads back."""
    from mabeam.models.account import GoodsTransfer, Settlement, format_quantity

    accounts = {n: L.Ledger() for n in [*NAMES, HOUSE_ACCOUNT]}
    granted = {(n, g): 0 for n in NAMES for g in GOODS}

    def total(good: str) -> int:
        return sum(a.stock(good).held for a in accounts.values())

    def check() -> None:
        for good in GOODS:
            assert total(good) == sum(q for (_, g), q in granted.items() if g == good)
        for account in accounts.values():
            assert account.replays()
            for stock in account.goods.values():
                assert 0 <= stock.escrow <= stock.held
            assert L.Ledger.from_status(AccountStatus.model_validate(account.to_wire())) == account

    for kind, args in steps:
        if kind == "grant":
            name, good, quantity = args  # type: ignore[misc]
            want = {g: q for (n, g), q in granted.items() if n == name}
            want[good] = quantity
            spec_ = AccountSpec.model_validate({"goods": {g: format_quantity(q) for g, q in want.items()}})
            before = accounts[name].stock(good)
            accounts[name], _ = L.due_grants(accounts[name], spec_, T0, T0)
            after = accounts[name].stock(good)
            # Raising grants the difference; lowering takes back at most the free holding.
            if quantity >= before.granted:
                assert after.held - before.held == quantity - before.granted
            else:
                assert before.held - after.held == min(before.granted - quantity, before.free)
            granted[(name, good)] += after.held - before.held
            check()
            continue
        sid, good, offers, buyer, share, crash = args  # type: ignore[misc]
        held: dict[str, int] = {}
        for name, quantity in sorted(offers.items()):
            try:
                accounts[name] = L.hold_goods(accounts[name], sid, good, quantity)
                held[name] = quantity
            except L.LedgerError as exc:
                assert quantity > accounts[name].stock(good).free_for(sid)  # refused only when short
                assert "free holding" in str(exc)
        check()
        sold = {n: int(q * share) for n, q in held.items() if n != buyer}
        transfers = [
            GoodsTransfer.model_validate(
                {"sender": n, "receiver": HOUSE_ACCOUNT, "good": good, "quantity": format_quantity(q)}
            )
            for n, q in sorted(sold.items())
            if q
        ]
        if sum(sold.values()):
            transfers.append(
                GoodsTransfer.model_validate(
                    {
                        "sender": HOUSE_ACCOUNT,
                        "receiver": buyer,
                        "good": good,
                        "quantity": format_quantity(sum(sold.values())),
                    }
                )
            )
        settlement = Settlement(
            session=sid,
            valid=True,
            goods=transfers,
            accounts=sorted(set(held) | {t.sender for t in transfers} | {t.receiver for t in transfers}),
        )
        lines = goods_postings(settlement)
        order = sorted(lines)
        before = {n: a.stock(good).held for n, a in accounts.items()}
        for run in (order[:crash], order, order):  # crashed run, restart, duplicate
            for name in run:
                new = L.settle(accounts[name], sid, [], T0, lines[name])
                if new is not None:
                    accounts[name] = new
        check()
        for name, account in accounts.items():
            assert sid not in account.stock(good).holds
            expected = -sold.get(name, 0) + (sum(sold.values()) if name == buyer else 0)
            assert account.stock(good).held - before[name] == expected
            assert account.settled.count(sid) <= 1


def test_a_delivery_beyond_the_holding_is_refused_and_nothing_changes() -> None:
    spec_ = AccountSpec.model_validate({"goods": {"cpu": 3}})
    ledger, note = L.due_grants(L.Ledger(), spec_, T0, T0)
    assert note == "granted 3 of cpu" and ledger.stock("cpu").held == 3000
    ledger = L.hold_goods(ledger, "market/a:1", "cpu", 2000)
    short = r"free holding of cpu is 1 \(held 3, in escrow for other sessions 2\)"
    with pytest.raises(L.LedgerError, match=short):
        L.hold_goods(ledger, "market/b:1", "cpu", 1500)
    # A settlement delivering more than the session held would eat another session's escrow.
    with pytest.raises(L.LedgerError, match="would leave less than escrow holds"):
        L.settle(ledger, "market/b:1", [], T0, [L.GoodsPosting("cpu", HOUSE_ACCOUNT, -1500, "Sale")])
    # Lowering the grant takes back only the free 1; the 2 in escrow stay.
    lowered, note = L.due_grants(ledger, AccountSpec.model_validate({"goods": {"cpu": 0}}), T0, T0)
    assert lowered.stock("cpu").held == 2000 and lowered.stock("cpu").granted == 2000
    assert "2 of cpu could not be taken back" in note


def test_describe_shows_an_accounts_goods_and_their_ledger() -> None:
    """`mabeam describe account/x`: the holdings (held, escrow, free, granted, who holds them)
    and the goods ledger, from the status the ledger writes."""
    from mabeam.cli.get import describe, resolve_kind

    ledger, _ = L.due_grants(L.Ledger(), AccountSpec.model_validate({"goods": {"power-kw": "2.5"}}), T0, T0)
    ledger = L.hold_goods(ledger, "market/power:u1", "power-kw", 2000)
    obj = {"metadata": {"name": "frank", "namespace": "default"}, "spec": {}, "status": ledger.to_wire()}
    text = describe(resolve_kind("account"), obj, [], T0)
    goods = text.split("Goods:\n", 1)[1].splitlines()
    assert goods[0].split() == ["GOOD", "HELD", "ESCROW", "FREE", "GRANTED", "HELD", "FOR"]
    assert goods[1].split() == ["power-kw", "2.5", "2", "0.5", "2.5", "market/power:u1=2"]
    ledger_lines = text.split("Goods ledger:\n", 1)[1].splitlines()
    assert ledger_lines[1].split()[1:] == ["Grant", "power-kw", "2.5", "2.5", "administrator", "goods"]
