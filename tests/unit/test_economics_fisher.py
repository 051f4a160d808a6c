"""The Fisher market: hand-computed equilibria, random markets checked against independent
references (an LP of the equilibrium conditions solved by HiGHS, the Eisenberg-Gale duality gap
computed here from the published outcome), exact money, and the market engine end to end."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction as F

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mabeam.core.economics.market as engine
from mabeam.core.economics import OrderAnswer
from mabeam.core.economics._fisher import (
    FisherBuyer,
    FisherGood,
    FisherOutcome,
    clear_fisher,
    solve_fisher,
)
from mabeam.core.protocols import Participant, SetVariable
from mabeam.models.market import MarketSpec, MarketStatus, OrderContent
from tests.strategies_auctions import KEY, UID, seal_as
from tests.strategies_markets import T0, at

# --- hand-computed equilibria ------------------------------------------------------------------


def prices_of(out: FisherOutcome) -> list[F]:
    return list(out.prices)


def holdings(out: FisherOutcome) -> dict[tuple[str, str], tuple[Decimal, int]]:
    return {(a.agent, a.good): (a.quantity, a.payment) for a in out.allocations}


def test_the_demo_market_by_hand() -> None:
    # dave: budget 60, gpu 3, cpu 1; erin: budget 24, cpu 1, gpu 1; 8 cpu, 2 gpu. If dave bought
    # only gpu (30 each) he would rather have cpu (3 each): he buys both, so p_gpu = 3 p_cpu, and
    # 8 p_cpu + 2 p_gpu = 84 gives cpu 6, gpu 18. erin (cpu 1/6 > gpu 1/18) buys cpu for 24 (4
    # cpu); dave buys the 2 gpu (36) and the other 4 cpu (24).
    goods = [FisherGood("cpu", F(8)), FisherGood("gpu", F(2))]
    buyers = [FisherBuyer("dave", 60, (1.0, 3.0)), FisherBuyer("erin", 24, (1.0, 1.0))]
    out = clear_fisher(buyers, goods)
    assert out.reason == "Equilibrium" and out.traded
    assert prices_of(out) == [6, 18]
    assert out.revenues == (48, 36)
    assert holdings(out) == {
        ("dave", "cpu"): (Decimal(4), 24),
        ("dave", "gpu"): (Decimal(2), 36),
        ("erin", "cpu"): (Decimal(4), 24),
    }
    assert all(c.passed for c in out.checks)


def test_an_indifferent_buyer_takes_what_is_left() -> None:
    # ann (budget 2) likes both goods alike, ben (budget 1) only the first: p1 = p2 = 1.5; ben
    # spends 1 on good a (2/3 of it), ann 0.5 on a and 1.5 on b.
    goods = [FisherGood("a", F(1)), FisherGood("b", F(1))]
    out = clear_fisher([FisherBuyer("ann", 200, (1.0, 1.0)), FisherBuyer("ben", 100, (1.0, 0.0))], goods)
    assert prices_of(out) == [150, 150]
    got = holdings(out)
    assert got[("ben", "a")] == (Decimal("0.666666667"), 100)
    assert got[("ann", "a")] == (Decimal("0.333333333"), 50)
    assert got[("ann", "b")] == (Decimal(1), 150)


def test_a_good_nobody_wants_is_free_and_unsold() -> None:
    goods = [FisherGood("x", F(3)), FisherGood("y", F(1))]
    out = clear_fisher([FisherBuyer("ann", 7, (0.0, 2.0))], goods)
    assert prices_of(out) == [0, 7]
    assert out.sold == (Decimal(0), Decimal(1))
    assert holdings(out) == {("ann", "y"): (Decimal(1), 7)}


def test_money_is_exact_when_it_does_not_divide() -> None:
    # Three alike buyers of 1 cent each share one good; and one buyer splits 1 cent over 3 goods
    # it values alike, each of supply 1 shared with nobody: payments are whole cents, adding up.
    out = clear_fisher([FisherBuyer(n, 1, (1.0,)) for n in ("a", "b", "c")], [FisherGood("g", F(1))])
    assert out.revenues == (3,)
    assert sum(a.quantity for a in out.allocations) == 1
    assert {a.payment for a in out.allocations} == {1}
    split = clear_fisher([FisherBuyer("a", 1, (1.0, 1.0, 1.0))], [FisherGood(g, F(1)) for g in "xyz"])
    assert sum(split.revenues) == 1
    assert sum(a.payment for a in split.allocations) == 1


def test_bad_input_is_refused() -> None:
    goods = [FisherGood("g", F(1))]
    with pytest.raises(ValueError):
        clear_fisher([FisherBuyer("a", 1, (0.0,))], goods)
    with pytest.raises(ValueError):
        clear_fisher([FisherBuyer("a", 0, (1.0,))], goods)
    with pytest.raises(ValueError):
        clear_fisher([FisherBuyer("a", 1, (1.0,)), FisherBuyer("a", 1, (1.0,))], goods)


def test_a_degenerate_market_that_once_diverged_clears() -> None:
    # Found by a stress run: four alike buyers and a good only one of them wants; a line search
    # that took any step halving the clearing residual let the prices run away (gap inf).
    rows = [(1, 0, 1, 1, 2), (1, 0, 1, 1, 2), (1, 1, 1, 1, 2), (1, 0, 1, 1, 2), (1, 0, 2, 1, 1)]
    budgets = (10_000, 30_000, 10_000, 20_000, 10_000)
    buyers = [
        FisherBuyer(f"b{i}", budget, tuple(map(float, row)))
        for i, (budget, row) in enumerate(zip(budgets, rows, strict=True))
    ]
    goods = [FisherGood(f"g{j}", F(n, 2)) for j, n in enumerate((12, 7, 15, 8, 13))]
    out = clear_fisher(buyers, goods)
    assert out.reason == "Equilibrium" and all(c.passed for c in out.checks), out.message
    prices = [float(p) for p in out.prices]
    rounding = (len(buyers) + 1) / min(out.revenues)
    assert lp_slack(buyers, goods, prices, 1e-6 + 2 * rounding) <= 2 * (len(buyers) + len(goods))
    assert eg_gap(buyers, goods, out) <= 1e-6 + 2 * rounding
    # Pinned (the revenues are 24, 14, 30, 16 and 52 seventeenths of the 80 000 units).
    assert [round(r * 17 / 10_000, 2) for r in out.revenues] == [24, 14, 30, 16, 52]


def test_a_step_limit_ends_without_allocation_and_says_how_far() -> None:
    goods = [FisherGood(f"g{j}", F(1)) for j in range(4)]
    buyers = [FisherBuyer(f"b{i}", 10 + i, (1.0 + i % 3, 2.0, 1.0 + (i * 7) % 5, 0.5)) for i in range(6)]
    out = clear_fisher(buyers, goods, max_steps=1)
    assert out.reason == "NotConverged" and not out.allocations and not out.prices
    assert out.gap > 1e-6 and "no equilibrium within the relative gap" in out.message
    assert clear_fisher(buyers, goods, max_steps=1) == out  # the same every time


# --- random markets against independent references ---------------------------------------------


@st.composite
def markets(draw: st.DrawFn) -> tuple[list[FisherBuyer], list[FisherGood]]:
    m = draw(st.integers(min_value=1, max_value=5))
    n = draw(st.integers(min_value=1, max_value=7))
    goods = [FisherGood(f"g{j}", F(draw(st.integers(min_value=1, max_value=20)), 2)) for j in range(m)]
    buyers = []
    for i in range(n):
        row = draw(st.lists(st.sampled_from([0, 0, 1, 2, 3, 5, 8, 13]), min_size=m, max_size=m))
        if not any(row):
            row[draw(st.integers(min_value=0, max_value=m - 1))] = 1
        budget = draw(st.integers(min_value=10_000, max_value=1_000_000))
        buyers.append(FisherBuyer(f"b{i}", budget, tuple(float(x) for x in row)))
    return buyers, goods


def lp_slack(buyers: list[FisherBuyer], goods: list[FisherGood], prices: list[float], tol: float) -> float:
    """The least total violation, by HiGHS, of the equilibrium conditions at ``prices``: money
    only on edges within ``tol`` of the buyer's best bang per buck, each budget spent, each
    good's revenue ``price x supply``. An equilibrium price vector has slack 0."""
    import highspy
    import numpy as np

    edges = []
    for i, b in enumerate(buyers):
        bangs = [
            u / p if p > 0 else (math.inf if u > 0 else 0.0) for u, p in zip(b.utilities, prices, strict=True)
        ]
        best = max(bangs)
        edges += [(i, j) for j, x in enumerate(bangs) if b.utilities[j] > 0 and x >= best * (1 - tol)]
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    rows = len(buyers) + len(goods)
    for _ in edges:
        h.addVar(0, highspy.kHighsInf)
    slacks = []
    for _ in range(2 * rows):  # a plus and a minus slack per condition
        h.addVar(0, highspy.kHighsInf)
        slacks.append(h.getNumCol() - 1)
    h.changeColsCost(len(slacks), np.array(slacks, dtype=np.int32), np.ones(len(slacks)))
    for r in range(rows):
        members = [k for k, (i, j) in enumerate(edges) if (i if r < len(buyers) else len(buyers) + j) == r]
        target = (
            float(buyers[r].budget)
            if r < len(buyers)
            else prices[r - len(buyers)] * float(goods[r - len(buyers)].supply)
        )
        idx = [*members, slacks[2 * r], slacks[2 * r + 1]]
        vals = [1.0] * len(members) + [1.0, -1.0]
        h.addRow(target, target, len(idx), np.array(idx, dtype=np.int32), np.array(vals))
    h.run()
    return float(h.getInfo().objective_function_value)


def eg_gap(buyers: list[FisherBuyer], goods: list[FisherGood], out: FisherOutcome) -> float:
    """The Eisenberg-Gale relative duality gap of the published outcome, computed here."""
    prices = [float(p) for p in out.prices]
    index = {g.name: j for j, g in enumerate(goods)}
    utility = {b.agent: 0.0 for b in buyers}
    rows = {b.agent: b for b in buyers}
    for a in out.allocations:
        utility[a.agent] += rows[a.agent].utilities[index[a.good]] * float(a.quantity)
    primal = sum(b.budget * math.log(utility[b.agent]) for b in buyers)
    dual = sum(p * float(g.supply) for p, g in zip(prices, goods, strict=True))
    for b in buyers:
        beta = min(p / u for p, u in zip(prices, b.utilities, strict=True) if u > 0)
        dual += b.budget * (math.log(b.budget) - 1 - math.log(beta))
    return (dual - primal) / sum(b.budget for b in buyers)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets())
def test_random_markets_are_in_equilibrium(market: tuple[list[FisherBuyer], list[FisherGood]]) -> None:
    buyers, goods = market
    out = clear_fisher(buyers, goods)
    assert out.reason == "Equilibrium", out.message
    assert all(c.passed for c in out.checks), out.checks
    # Money: every budget spent, revenues adding up to the budgets, exactly.
    paid: dict[str, int] = {}
    for a in out.allocations:
        paid[a.agent] = paid.get(a.agent, 0) + a.payment
    assert paid == {b.agent: b.budget for b in buyers}
    assert sum(out.revenues) == sum(b.budget for b in buyers)
    # Goods: a priced good allocated in full, exactly; an unpriced one nobody wants.
    for j, g in enumerate(goods):
        sold = sum((a.quantity for a in out.allocations if a.good == g.name), Decimal(0))
        if out.prices[j] > 0:
            assert F(sold) == g.supply
        else:
            assert sold == 0 and all(b.utilities[j] == 0 for b in buyers)
    # Independent references: the equilibrium LP at these prices is feasible (up to the rounding
    # to whole money units), and the Eisenberg-Gale gap of the published outcome is tiny.
    # Rounding to whole units moves a revenue by at most one unit per buyer: the tolerance.
    prices = [float(p) for p in out.prices]
    rounding = (len(buyers) + 1) / min(r for r in out.revenues if r > 0)
    assert lp_slack(buyers, goods, prices, 1e-6 + 2 * rounding) <= 2 * (len(buyers) + len(goods))
    assert eg_gap(buyers, goods, out) <= 1e-6 + 2 * rounding


@settings(max_examples=4, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from([0.0, 0.7]))
def test_medium_random_markets_are_in_equilibrium(seed: int, sparsity: float) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    n, m = 150, 15
    utilities = np.round(rng.random((n, m)), 3)
    utilities[rng.random((n, m)) < sparsity] = 0.0
    utilities[np.arange(n), rng.integers(m, size=n)] += 0.5  # everyone wants something
    buyers = [
        FisherBuyer(f"b{i:03}", int(rng.integers(10_000, 1_000_000)), tuple(map(float, utilities[i])))
        for i in range(n)
    ]
    goods = [FisherGood(f"g{j}", F(int(rng.integers(1, 20)))) for j in range(m)]
    out = clear_fisher(buyers, goods)
    assert out.reason == "Equilibrium", out.message
    assert sum(out.revenues) == sum(b.budget for b in buyers)
    prices = [float(p) for p in out.prices]
    rounding = (n + 1) / min(r for r in out.revenues if r > 0)
    assert lp_slack(buyers, goods, prices, 1e-6 + 2 * rounding) <= 2 * (n + m)
    assert eg_gap(buyers, goods, out) <= 1e-6 + 2 * rounding


@settings(max_examples=30, deadline=None)
@given(markets(), st.integers(min_value=2, max_value=1000))
def test_prices_scale_with_money_and_not_with_utilities(
    market: tuple[list[FisherBuyer], list[FisherGood]], factor: int
) -> None:
    buyers, goods = market
    base = solve_fisher(
        [b.budget for b in buyers], [b.utilities for b in buyers], [float(g.supply) for g in goods]
    )
    rich = solve_fisher(
        [b.budget * factor for b in buyers], [b.utilities for b in buyers], [float(g.supply) for g in goods]
    )
    keen = solve_fisher(
        [b.budget for b in buyers],
        [[u * factor for u in b.utilities] for b in buyers],
        [float(g.supply) for g in goods],
    )
    assert base.converged and rich.converged and keen.converged
    for r0, r1, r2 in zip(base.revenue, rich.revenue, keen.revenue, strict=True):
        assert r1 == pytest.approx(r0 * factor, rel=1e-5, abs=1e-6 * factor)
        assert r2 == pytest.approx(r0, rel=1e-5, abs=1e-6)


# --- the market engine -------------------------------------------------------------------------


def spec(**fields: object) -> MarketSpec:
    base: dict[str, object] = {
        "mechanism": "fisher",
        "participants": {"agents": ["dave", "erin", "fay"]},
        "good": "cluster share",
        "orderSeconds": 60,
        "goods": [
            {"name": "cpu", "supply": 8, "priceVariableRef": {"name": "cpu-price"}},
            {"name": "gpu", "supply": 2, "priceVariableRef": {"name": "gpu-price"}},
        ],
    }
    base.update(fields)
    return MarketSpec.model_validate(base)


def order(agent: str, seconds: float = 1, **content: object) -> OrderAnswer:
    return OrderAnswer(
        at=at(seconds), sealed=seal_as(agent, OrderContent.model_validate(content), kind="Order")
    )  # type: ignore[arg-type]


def run(s: MarketSpec, answers: dict[str, OrderAnswer], now: float = 2) -> MarketStatus:
    started = engine.start("m", s, [Participant(n) for n in ("dave", "erin", "fay")], T0, sealing=KEY.info)
    stepped = engine.step("m", s, started.status, answers, {}, at(now), sealing_key=KEY, session_uid=UID)
    return stepped.status


def test_the_engine_clears_a_fisher_market_and_sets_a_price_variable_per_good() -> None:
    s = spec()
    answers = {
        "dave": order("dave", budget=60, utilities={"cpu": 1, "gpu": 3}),
        "erin": order("erin", budget="24.00", utilities={"cpu": 1, "gpu": 1}),
        "fay": order("fay", budget="0.001", utilities={"cpu": 1}),
    }
    started = engine.start("m", s, [Participant(n) for n in ("dave", "erin", "fay")], T0, sealing=KEY.info)
    collecting = engine.step("m", s, started.status, answers, {}, at(2), sealing_key=KEY, session_uid=UID)
    verdicts = {v.agent: (v.accepted, v.reason) for v in collecting.verdicts}
    assert verdicts["fay"] == (False, "BudgetTooFine")
    assert collecting.status.phase == "Collecting"  # fay has no counted order yet
    closed = engine.step("m", s, collecting.status, answers, {}, at(61), sealing_key=KEY, session_uid=UID)
    status = closed.status
    assert status.phase == "Cleared" and status.result is not None
    result = status.result
    assert result.reason == "Equilibrium"
    assert [(g.good, g.price, g.sold, g.revenue) for g in result.goods] == [
        ("cpu", 6, 8, 48),
        ("gpu", 18, 2, 36),
    ]
    assert [(a.agent, a.good, a.quantity, a.payment) for a in result.allocations] == [
        ("dave", "cpu", 4, 24),
        ("dave", "gpu", 2, 36),
        ("erin", "cpu", 4, 24),
    ]
    assert result.equilibrium is not None and result.equilibrium.gap <= 1e-6
    assert {c.name for c in result.equilibrium.checks if c.passed} == {
        "GoodsClear",
        "BudgetsSpent",
        "PricesSumToBudgets",
        "MaximalBangPerBuck",
    }
    sets = [e for e in closed.effects if isinstance(e, SetVariable)]
    assert [(e.name, e.value) for e in sets] == [("cpu-price", 6), ("gpu-price", 18)]
    assert engine.outcome_effects("m", s, status) == tuple(sets)
    # Once closed, the orders are published.
    assert {(o.agent, o.budget) for o in status.orders} == {("dave", 60), ("erin", 24)}
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert MarketStatus.model_validate(wire) == status


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"budget": 5, "utilities": {"ram": 1}}, "UnknownGood"),
        ({"budget": 5, "utilities": {"cpu": 0}}, "NoUtility"),
        ({"budget": "5.001", "utilities": {"cpu": 1}}, "BudgetTooFine"),
        ({"side": "buy", "price": 3}, "WrongAnswerKind"),
    ],
    ids=["unknown-good", "no-utility", "budget-too-fine", "a-limit-order"],
)
def test_fisher_orders_that_do_not_fit_are_refused(content: dict[str, object], reason: str) -> None:
    s = spec()
    started = engine.start("m", s, [Participant(n) for n in ("dave", "erin", "fay")], T0, sealing=KEY.info)
    stepped = engine.step(
        "m",
        s,
        started.status,
        {"dave": order("dave", **content)},
        {},
        at(2),
        sealing_key=KEY,
        session_uid=UID,
    )
    (verdict,) = stepped.verdicts
    assert (verdict.accepted, verdict.reason) == (False, reason)
    assert "5" not in verdict.message  # never the budget


def test_fisher_specs_are_checked() -> None:
    with pytest.raises(ValueError, match=r"needs spec\.goods"):
        spec(goods=None)
    with pytest.raises(ValueError, match="each good once"):
        spec(goods=[{"name": "cpu", "supply": 1}, {"name": "cpu", "supply": 2}])
    with pytest.raises(ValueError, match="priceVariableRef"):
        spec(priceVariableRef={"name": "p"})
    with pytest.raises(ValueError, match="decimal places"):
        spec(goods=[{"name": "cpu", "supply": "0.0000000001"}])


def test_the_sdk_turns_a_callbacks_fisher_order_into_order_fields() -> None:
    from mabeam.sdk._trading import order_fields

    fields = order_fields({"budget": "60.50", "utilities": {"cpu": 1, "gpu": 3}})
    assert fields == {"budget": 60.5, "utilities": {"cpu": 1.0, "gpu": 3.0}}
    assert OrderContent.model_validate(fields).budget == Decimal("60.5")
    with pytest.raises(TypeError):
        order_fields({"budget": 5, "utilities": [1, 2]})


def test_mabeam_watch_shows_a_cleared_fisher_market() -> None:
    from mabeam.cli.watch import render_market

    s = spec()
    answers = {
        "dave": order("dave", budget=60, utilities={"cpu": 1, "gpu": 3}),
        "erin": order("erin", budget=24, utilities={"cpu": 1, "gpu": 1}),
        "fay": order("fay", budget=1, utilities={"gpu": 1}),
    }
    status = run(s, answers)
    obj = {
        "metadata": {"name": "m", "namespace": "default"},
        "spec": s.model_dump(mode="json", by_alias=True, exclude_none=True),
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    frame = render_market(obj, T0)
    assert "budget 60 cpu=1,gpu=3" in frame
    rows = [line.split() for line in frame.splitlines()]
    assert ["GOOD", "PRICE", "SOLD", "REVENUE"] in rows and ["BUYER", "GOOD", "QUANTITY", "PAYMENT"] in rows
    assert "checks: all passed" in frame and "Result: Cleared (Equilibrium)" in frame


def test_a_cleared_fisher_market_settles_its_payments_to_the_house() -> None:
    from fractions import Fraction

    from mabeam.core.economics.settlement import hold_amount, market_settlement, order_exposure
    from mabeam.models.account import HOUSE_ACCOUNT

    s = spec()
    answers = {
        "dave": order("dave", budget="60.00", utilities={"cpu": 1, "gpu": 3}),
        "erin": order("erin", budget="24.50", utilities={"cpu": 1, "gpu": 1}),
        "fay": order("fay", budget="0.01", utilities={"gpu": 1}),
    }
    started = engine.start("m", s, [Participant(n) for n in ("dave", "erin", "fay")], T0, sealing=KEY.info)
    # The exposure escrow holds is the budget (a buyer spends all of it).
    exposure = {
        agent: order_exposure(s, started.status, agent, answer, sealing_key=KEY, session_uid=UID)
        for agent, answer in answers.items()
    }
    assert exposure == {"dave": Fraction(60), "erin": Fraction(49, 2), "fay": Fraction(1, 100)}
    holds = {agent: hold_amount(x) for agent, x in exposure.items() if x is not None}
    status = run(s, answers)
    assert status.phase == "Cleared" and status.result is not None
    settled = market_settlement("market/m:1", s, status, holds)
    assert settled.valid, [c for c in settled.checks if not c.passed]
    # Every buyer pays the house exactly its budget, in cents; nothing else moves.
    assert {(t.payer, t.payee, t.amount) for t in settled.transfers} == {
        ("dave", HOUSE_ACCOUNT, 6000),
        ("erin", HOUSE_ACCOUNT, 2450),
        ("fay", HOUSE_ACCOUNT, 1),
    }
    # A payment beyond the escrow held is refused: nothing moves.
    short = market_settlement("market/m:1", s, status, {**holds, "dave": 5999})
    assert not short.valid and short.transfers == []
    assert [c.name for c in short.checks if not c.passed] == ["EscrowCovers"]


# --- CES utilities -----------------------------------------------------------------------------


def test_a_ces_buyer_alone_spends_by_weight_and_supply_by_hand() -> None:
    # One buyer takes everything; CES demand x_j ~ (a_j / p_j)^s, s = 1 / (1 - rho), with the
    # supplies cleared (p_j = b_j / s_j) gives b_j ~ a_j s_j^rho: with rho 1/2, a = (1, 1) and
    # supplies (4, 1), b ~ (2, 1): 200 and 100 of 300, unit prices 50 and 100.
    goods = [FisherGood("x", F(4)), FisherGood("y", F(1))]
    out = clear_fisher([FisherBuyer("a", 300, (1.0, 1.0))], goods, rho=0.5)
    assert out.reason == "Equilibrium" and out.revenues == (200, 100)
    assert prices_of(out) == [50, 100]
    assert out.checks[-1].name == "OptimalDemand" and out.checks[-1].passed


def ces_proportional_response(
    buyers: list[FisherBuyer], goods: list[FisherGood], rho: float, rounds: int = 20_000
) -> list[float]:
    """The revenues by proportional response for CES (Zhang 2011): each buyer re-splits its
    budget in proportion to u_ij x_ij^rho; it converges for 0 < rho < 1. An independent solver."""
    supplies = [float(g.supply) for g in goods]
    spend = [[b.budget * u / sum(b.utilities) for u in b.utilities] for b in buyers]
    for _ in range(rounds):
        revenue = [sum(row[j] for row in spend) for j in range(len(goods))]
        new = []
        for b, row in zip(buyers, spend, strict=True):
            gains = [
                u * (x * s / r) ** rho if x > 0 else 0.0
                for u, x, s, r in zip(b.utilities, row, supplies, revenue, strict=True)
            ]
            new.append([b.budget * g / sum(gains) for g in gains])
        if (
            max(abs(a - c) for r0, r1 in zip(spend, new, strict=True) for a, c in zip(r0, r1, strict=True))
            < 1e-9
        ):
            spend = new
            break
        spend = new
    return [sum(row[j] for row in spend) for j in range(len(goods))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sampled_from([0.25, 0.5, 0.75]))
def test_ces_markets_agree_with_proportional_response(
    market: tuple[list[FisherBuyer], list[FisherGood]], rho: float
) -> None:
    buyers, goods = market
    out = clear_fisher(buyers, goods, rho=rho)
    assert out.reason == "Equilibrium", out.message
    assert all(c.passed for c in out.checks), out.checks
    assert sum(out.revenues) == sum(b.budget for b in buyers)
    reference = ces_proportional_response(buyers, goods, rho)
    for got, want in zip(out.revenues, reference, strict=True):
        assert got == pytest.approx(want, abs=len(buyers) + 1e-6 * sum(b.budget for b in buyers))


def test_the_engine_clears_a_ces_market() -> None:
    s = spec(rho=0.5)
    answers = {
        "dave": order("dave", budget=60, utilities={"cpu": 1, "gpu": 3}),
        "erin": order("erin", budget=24, utilities={"cpu": 1, "gpu": 1}),
        "fay": order("fay", budget=16, utilities={"cpu": 1}),
    }
    status = run(s, answers)
    assert status.phase == "Cleared" and status.result is not None
    report = status.result.equilibrium
    assert report is not None and [c.name for c in report.checks][-1] == "OptimalDemand"
    assert sum(a.payment for a in status.result.allocations) == 100
    with pytest.raises(ValueError):
        spec(rho=1)
