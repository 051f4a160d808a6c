"""Goods against the local API: a market's seller must own what it sells, and goods move once.

Each test checks the holdings (in thousandths of a unit) against figures worked out by hand in
its comments, and that each good's total over all Accounts changed only by the grants.
"""

from __future__ import annotations

from typing import Any

from mabeam.kube.client import Kube
from mabeam.kube.resources import ACCOUNT, EVENT, MARKET, ORDER
from mabeam.local.cluster import LocalCluster
from mabeam.models.account import HOUSE_ACCOUNT, parse_quantity
from mabeam.models.market import order_name
from tests.integration._coordination import NS, AsAgents, phase_in, suspended, verdict
from tests.integration._util import eventually
from tests.integration.test_economics import sealed_order
from tests.integration.test_money import audited, balances, granted, settled


async def account(kube: Kube, name: str, budget: Any, goods: dict[str, Any] | None = None) -> None:
    spec: dict[str, Any] = {"budget": budget, **({"goods": goods} if goods else {})}
    await kube.create(ACCOUNT, {"metadata": {"name": name, "namespace": NS}, "spec": spec})


async def holdings(kube: Kube, good: str) -> dict[str, tuple[int, int]]:
    """(held, escrow) of ``good`` on every Account, in thousandths."""
    out = {}
    for obj in await kube.list(ACCOUNT, NS):
        stocks = {s["good"]: s for s in (obj.get("status") or {}).get("goods") or []}
        s = stocks.get(good, {})
        out[obj["metadata"]["name"]] = (parse_quantity(s.get("held", 0)), parse_quantity(s.get("escrow", 0)))
    return out


async def goods_granted(kube: Kube, good: str, names: dict[str, int]) -> None:
    async def check() -> bool:
        got = await holdings(kube, good)
        return all(got.get(n, (None, 0))[0] == q for n, q in names.items())

    await eventually(check, what=f"goods granted: {names}")


async def order(as_agent: AsAgents, kube: Kube, market: str, agent: str, **content: Any) -> dict[str, Any]:
    """``agent``'s Order, sealed; its verdict once the operator judged this version."""
    sent = await as_agent.answer(
        ORDER, market, agent, sealed=await sealed_order(kube, market, agent, **content)
    )
    result: dict[str, Any] = await verdict(
        kube, ORDER, order_name(market, agent), sent["metadata"]["generation"]
    )
    return result


async def test_a_seller_must_hold_what_it_sells_and_the_goods_move_with_the_money(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["b1", "b2", "b3", "s1", "s2", "s3"]
    await suspended(kube, names)
    for name in names:
        goods = {"slot-hours": 1} if name in ("s1", "s3") else None
        await account(kube, name, 20, goods)
    await granted(kube, dict.fromkeys(names, 2000))
    await goods_granted(kube, "slot-hours", {"s1": 1000, "s3": 1000})
    await kube.create(MARKET, {"metadata": {"name": "dx", "namespace": NS}, "spec": {
        "mechanism": "double-auction", "good": "slot-hours", "participants": {"agents": names},
        "orderSeconds": 60}})  # fmt: skip
    await phase_in(kube, MARKET, "dx", ("Collecting",))
    # s2 holds no slot-hours: its sell order is refused at counting, with its holding.
    refused = await order(as_agent, kube, "dx", "s2", side="sell", price=4)
    assert (refused["accepted"], refused["reason"]) == (False, "NotHeld"), refused
    assert "s2 holds 0 of slot-hours free to sell (held 0, 0 in escrow" in refused["message"], refused
    # s1 offers 2 but holds 1: refused too.
    over = await order(as_agent, kube, "dx", "s1", side="sell", price=2, quantity=2)
    assert over["reason"] == "NotHeld" and "held 1," in over["message"], over
    # Within their holdings, s1 and s3 count, and escrow holds what they offer.
    for agent, price in (("s1", 2), ("s3", 9)):
        assert (await order(as_agent, kube, "dx", agent, side="sell", price=price))["accepted"]
    got = await holdings(kube, "slot-hours")
    assert got["s1"] == (1000, 1000) and got["s3"] == (1000, 1000)
    # An administrator grants s2 one slot-hour; its new order counts.
    await kube.patch(ACCOUNT, "s2", {"spec": {"goods": {"slot-hours": 1}}}, namespace=NS)
    await goods_granted(kube, "slot-hours", {"s2": 1000})
    assert (await order(as_agent, kube, "dx", "s2", side="sell", price=4))["accepted"]
    for agent, price in (("b1", 10), ("b2", 8), ("b3", 3)):
        assert (await order(as_agent, kube, "dx", agent, side="buy", price=price))["accepted"]
    s = await settled(kube, MARKET, "dx")
    # As in test_money: b1, b2 buy at 6 from s1, s2; s3's offer is released.
    assert s["phase"] == "Cleared" and s["result"]["price"] == 6
    settlement = s["settlement"]
    assert settlement["valid"], settlement["checks"]
    checks = {c["name"]: c["passed"] for c in settlement["checks"]}
    assert checks["GoodsHeld"] and checks["GoodsConserved"] and checks["GoodsDelivered"]
    assert {(g["sender"], g["receiver"], g["quantity"]) for g in settlement["goods"]} == {
        ("s1", HOUSE_ACCOUNT, "1"),
        ("s2", HOUSE_ACCOUNT, "1"),
        (HOUSE_ACCOUNT, "b1", "1"),
        (HOUSE_ACCOUNT, "b2", "1"),
    }
    got = await holdings(kube, "slot-hours")
    assert {n: got[n] for n in (*names, HOUSE_ACCOUNT)} == {
        "b1": (1000, 0),
        "b2": (1000, 0),
        "b3": (0, 0),
        "s1": (0, 0),
        "s2": (0, 0),
        "s3": (1000, 0),
        HOUSE_ACCOUNT: (0, 0),
    }
    money = await balances(kube)
    assert money["s1"] == (2600, 0) and money["b1"] == (1400, 0)
    # The goods ledger names the session, the counterparty and the quantity.
    s1 = ((await kube.get(ACCOUNT, "s1", NS)) or {})["status"]
    (sale,) = [e for e in s1["goodsEntries"] if e["reason"] == "Sale"]
    assert (sale["counterparty"], sale["good"], sale["quantity"], sale["held"]) == (
        HOUSE_ACCOUNT, "slot-hours", "-1", "0")  # fmt: skip
    async def delivered() -> bool:  # the Event is posted after the Accounts are written
        events = [e.get("message", "") for e in await kube.list(EVENT, NS) if e.get("reason") == "Delivered"]
        return any("s1 delivered 1 of slot-hours to mabeam-house" in m for m in events)

    await eventually(delivered, what="the Delivered Event")
    code, report = await audited(cluster, "market/dx")
    assert code == 0 and "s1 -> mabeam-house 1 of slot-hours" in report, report
    # A goods ledger edited behind the operator's back (the sale doubled) is found.
    entries = [{**e, "quantity": "-2"} if e == sale else e for e in s1["goodsEntries"]]
    await kube.patch(ACCOUNT, "s1", {"status": {"goodsEntries": entries}}, namespace=NS, status=True)
    code, report = await audited(cluster, "market/dx")
    assert code == 1 and "s1: its entries deliver -2 of slot-hours, the settlement -1" in report, report


async def test_a_seller_that_sold_its_goods_elsewhere_is_refused(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """sam holds 2 units of power and offers them in two markets: escrow holds them for the
    first, so the second refuses the offer; the first sells them, and sam's later offer in the
    second is refused again, now with nothing held. The second ends without a trade and
    releases its buyer's money."""
    await cluster.start_operator()
    names = ["sam", "ann", "ben"]
    await suspended(kube, names)
    await account(kube, "sam", 0, {"power": 2})
    await account(kube, "ann", 30)
    await account(kube, "ben", 30)
    await granted(kube, {"ann": 3000, "ben": 3000})
    await goods_granted(kube, "power", {"sam": 2000})
    await kube.create(MARKET, {"metadata": {"name": "first", "namespace": NS}, "spec": {
        "mechanism": "equilibrium", "good": "power", "participants": {"agents": ["sam", "ann"]},
        "priceGrid": {"min": 1, "max": 10, "step": 1}, "orderSeconds": 60}})  # fmt: skip
    await kube.create(MARKET, {"metadata": {"name": "second", "namespace": NS}, "spec": {
        "mechanism": "double-auction", "good": "power", "participants": {"agents": ["sam", "ben"]},
        "orderSeconds": 15}})  # fmt: skip
    for market in ("first", "second"):
        await phase_in(kube, MARKET, market, ("Collecting",))
    # A quantity finer than a thousandth cannot be counted exactly: refused.
    fine = await order(as_agent, kube, "first", "sam", schedule=[{"price": 1, "quantity": -1.0001}])
    assert fine["reason"] == "QuantityTooFine" and "thousandths" in fine["message"], fine
    offer = [{"price": 1, "quantity": -2}]
    assert (await order(as_agent, kube, "first", "sam", schedule=offer))["accepted"]
    assert (await holdings(kube, "power"))["sam"] == (2000, 2000)
    refused = await order(as_agent, kube, "second", "sam", side="sell", price=3, quantity=2)
    assert refused["reason"] == "NotHeld", refused
    assert "held 2, 2 in escrow for other sessions" in refused["message"], refused
    assert (await order(as_agent, kube, "second", "ben", side="buy", price=9))["accepted"]
    assert (await balances(kube))["ben"] == (3000, 900)
    # ann buys 2 at any price up to 10: the first clears at 1 (the lowest price where supply
    # meets demand), sam delivers 2.
    assert (await order(as_agent, kube, "first", "ann", schedule=[{"price": 1, "quantity": 2}]))["accepted"]
    s = await settled(kube, MARKET, "first")
    assert s["phase"] == "Cleared" and s["result"]["price"] == 1, s["result"]
    got = await holdings(kube, "power")
    assert got["sam"] == (0, 0) and got["ann"] == (2000, 0)
    # Re-checked at counting: a new offer of 1 in the second is refused, sam holds nothing.
    again = await order(as_agent, kube, "second", "sam", side="sell", price=3, quantity=1)
    assert again["reason"] == "NotHeld" and "held 0," in again["message"], again
    s = await settled(kube, MARKET, "second")
    assert s["phase"] == "NoTrade", s["result"]
    money = await balances(kube)
    assert money["ben"] == (3000, 0) and money["ann"] == (2800, 0) and money["sam"] == (200, 0)
    assert sum(q for q, _ in (await holdings(kube, "power")).values()) == 2000


async def test_an_operator_killed_at_every_request_delivers_the_goods_once(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """As test_money's crash test, for a double auction: the operator dies after its first
    mutating request, again and again, through the close, the escrow of money and goods and the
    settlement. ann buys 1 at 10, ben 1 at 3; sam sells 1 at 2, tom 1 at 9: one efficient pair,
    priced by the excluded one at (3 + 9) / 2 = 6. sam's unit goes to ann once, tom's escrow is
    released."""
    names = ["ann", "ben", "sam", "tom"]
    await suspended(kube, names)
    for name, budget, goods in (("ann", 30, None), ("ben", 30, None), ("sam", 0, {"gpu": 1}),
                                ("tom", 0, {"gpu": 1})):  # fmt: skip
        await account(kube, name, budget, goods)
    await cluster.start_operator()
    await granted(kube, {"ann": 3000, "ben": 3000})
    await goods_granted(kube, "gpu", {"sam": 1000, "tom": 1000})
    await kube.create(MARKET, {"metadata": {"name": "dx", "namespace": NS}, "spec": {
        "mechanism": "double-auction", "good": "gpu", "participants": {"agents": names},
        "orderSeconds": 300}})  # fmt: skip
    await phase_in(kube, MARKET, "dx", ("Collecting",))
    await cluster.stop_operator()
    for agent, side, price in (("ann", "buy", 10), ("ben", "buy", 3), ("sam", "sell", 2), ("tom", "sell", 9)):
        content = await sealed_order(kube, "dx", agent, side=side, price=price)
        await as_agent.answer(ORDER, "dx", agent, sealed=content)  # sealed while no operator runs

    async def applied() -> bool:
        return bool((((await kube.get(MARKET, "dx", NS)) or {}).get("status") or {}).get("outcomeApplied"))

    crashes = 0
    for n in range(1, 100):
        try:
            await cluster.start_operator_process(
                "-m", "tests.integration._faulty_operator", "--crash-after", "1"
            )
        except RuntimeError:
            pass  # it died while starting
        process = cluster._process
        assert process is not None

        async def over(process: Any = process) -> bool:
            return process.returncode is not None or await applied()

        await eventually(over, timeout=30, what=f"run {n}: a crash or the settlement")
        died = process.returncode is not None
        crashes += died
        await cluster.kill_operator()
        if not died:
            break
    else:
        raise AssertionError("the operator never finished")
    log = (cluster.workdir / "operator.log").read_text()
    points = [
        line.removeprefix("crash after ") for line in log.splitlines() if line.startswith("crash after ")
    ]
    for wanted in ("patch accounts sam/status", "patch markets dx/status", "patch accounts ann/status"):
        assert wanted in points, (wanted, points)
    await cluster.start_operator()  # a clean operator finds nothing more to do
    assert await applied()
    got = await holdings(kube, "gpu")
    assert {n: got[n] for n in (*names, HOUSE_ACCOUNT)} == {
        "ann": (1000, 0),
        "ben": (0, 0),
        "sam": (0, 0),
        "tom": (1000, 0),
        HOUSE_ACCOUNT: (0, 0),
    }
    money = await balances(kube)
    assert {n: money[n] for n in names} == {
        "ann": (2400, 0),
        "ben": (3000, 0),
        "sam": (600, 0),
        "tom": (0, 0),
    }
    for name in (*names, HOUSE_ACCOUNT):
        status = ((await kube.get(ACCOUNT, name, NS)) or {}).get("status") or {}
        assert sum(1 for s in status.get("settled", []) if s.startswith("market/dx:")) <= 1
        sales = [e for e in status.get("goodsEntries", []) if e["session"].startswith("market/dx:")]
        assert len(sales) == {"ann": 1, "sam": 1, HOUSE_ACCOUNT: 2}.get(name, 0), (name, sales)
    code, report = await audited(cluster, "market/dx")
    assert code == 0, report


async def test_the_house_name_is_reserved_and_an_account_holding_escrow_is_not_deleted(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """The emulator enforces the chart's admission policies (reserved-names, account-escrow)."""
    from mabeam.errors import ApiError
    from mabeam.kube.resources import AGENT
    from tests.integration._coordination import agent_body

    await cluster.start_operator()
    for res, body in (
        (AGENT, agent_body(HOUSE_ACCOUNT)),
        (ACCOUNT, {"metadata": {"name": HOUSE_ACCOUNT, "namespace": NS}, "spec": {"budget": 5}}),
    ):
        try:
            await kube.create(res, body)
        except ApiError as exc:
            assert exc.status == 422 and "the name mabeam-house is reserved" in str(exc), exc
        else:
            raise AssertionError(f"a {res.kind} named {HOUSE_ACCOUNT} was admitted")
    names = ["ann", "sam", "ben"]
    await suspended(kube, names)
    await account(kube, "ann", 30)
    await account(kube, "sam", 0, {"gpu": 1})
    await account(kube, "ben", 0)
    await granted(kube, {"ann": 3000})
    await goods_granted(kube, "gpu", {"sam": 1000})
    await kube.create(MARKET, {"metadata": {"name": "dx", "namespace": NS}, "spec": {
        "mechanism": "double-auction", "good": "gpu", "participants": {"agents": names},
        "orderSeconds": 300}})  # fmt: skip
    await phase_in(kube, MARKET, "dx", ("Collecting",))
    assert (await order(as_agent, kube, "dx", "ann", side="buy", price=10))["accepted"]
    assert (await order(as_agent, kube, "dx", "sam", side="sell", price=2))["accepted"]
    # ann's money and sam's gpu are in escrow: neither Account may be deleted; ben's may.
    for name in ("ann", "sam"):
        try:
            await kube.delete(ACCOUNT, name, NS)
        except ApiError as exc:
            assert exc.status == 403 and f"Account {name} holds escrow for open sessions" in str(exc), exc
        else:
            raise AssertionError(f"Account {name} was deleted while it held escrow")
    assert await kube.delete(ACCOUNT, "ben", NS)
    # The market is cancelled: escrow is released, and then the Accounts may go.
    await kube.patch(MARKET, "dx", {"spec": {"cancel": True}}, namespace=NS)
    await settled(kube, MARKET, "dx")
    assert (await holdings(kube, "gpu"))["sam"] == (1000, 0)
    for name in ("ann", "sam"):
        assert await kube.delete(ACCOUNT, name, NS)
