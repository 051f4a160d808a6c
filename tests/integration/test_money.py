"""Money against the local API: budgets refuse bids, escrow holds, outcomes settle once.

Each test checks the balances against figures worked out by hand in its comments, and that the
total over all Accounts (escrow included) changed only by the grants.
"""

from __future__ import annotations

from typing import Any

from mabeam.kube.client import Kube
from mabeam.kube.resources import ACCOUNT, AUCTION, BID, EVENT, MARKET, ORDER, ROLE, VARIABLE
from mabeam.local.cluster import LocalCluster
from mabeam.models.account import HOUSE_ACCOUNT, parse_money
from mabeam.models.auction import bid_name
from mabeam.models.market import order_name
from tests.integration._coordination import NS, AsAgents, phase_in, suspended, verdict
from tests.integration._util import eventually
from tests.integration.test_economics import resource, sealed, sealed_order


async def account(kube: Kube, name: str, budget: Any) -> None:
    await kube.create(ACCOUNT, {"metadata": {"name": name, "namespace": NS}, "spec": {"budget": budget}})


async def balances(kube: Kube) -> dict[str, tuple[int, int]]:
    """(balance, escrow) of every Account, in minor units."""
    out = {}
    for obj in await kube.list(ACCOUNT, NS):
        s = obj.get("status") or {}
        out[obj["metadata"]["name"]] = (parse_money(s.get("balance", 0)), parse_money(s.get("escrow", 0)))
    return out


async def granted(kube: Kube, names: dict[str, int]) -> None:
    """Wait until each Account has its budget (minor units) granted."""

    async def check() -> bool:
        got = await balances(kube)
        return all(got.get(n, (None, 0))[0] == b for n, b in names.items())

    await eventually(check, what=f"budgets granted: {names}")


async def audited(cluster: LocalCluster, target: str) -> tuple[int, str]:
    """``mabeam audit <target>`` against the local API: its exit status and its report."""
    import io

    from mabeam.cli import build_parser
    from mabeam.cli.audit import cmd_audit

    args = build_parser().parse_args(
        ["audit", target, "--kubeconfig", str(cluster.admin_kubeconfig), "-n", NS]
    )
    out = io.StringIO()
    code = await cmd_audit(args, out)
    return code, out.getvalue()


async def settled(kube: Kube, res: Any, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        s = ((await kube.get(res, name, NS)) or {}).get("status") or {}
        return s if s.get("outcomeApplied") else None

    result: dict[str, Any] = await eventually(check, timeout=20, what=f"{name} settled")
    return result


async def test_budgets_refuse_bids_and_the_winner_pays_the_seller_once(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben", "cat", "sam"]
    await suspended(kube, names)
    await resource(kube, "gpu")
    await account(kube, "ann", 30)
    await account(kube, "ben", "100.50")
    await account(kube, "sam", 0)  # owns the gpu; has no money, but is paid
    await granted(kube, {"ann": 3000, "ben": 10050, "sam": 0})
    # sam owns the gpu (an earlier sale): the auction pays sam, not the house.
    gpu = await kube.get(VARIABLE, "gpu", NS)
    assert gpu is not None
    await kube.patch(
        VARIABLE, "gpu", {"status": {"owner": {"kind": "Agent", "name": "sam"}}}, namespace=NS, status=True
    )
    await kube.create(AUCTION, {"metadata": {"name": "sale", "namespace": NS}, "spec": {
        "mechanism": "second-price", "participants": {"agents": names[:3]}, "items": ["gpu"],
        "reservePrice": 5, "bidSeconds": 30}})  # fmt: skip
    s = await phase_in(kube, AUCTION, "sale", ("Bidding",))
    assert s["payment"] == "Ledger"
    auction = await kube.get(AUCTION, "sale", NS)
    assert auction is not None
    # ann bids beyond her 30: refused with her balance, and nothing is held.
    over = await as_agent.answer(BID, "sale", "ann", sealed=sealed(auction, "ann", amount=40))
    refused = await verdict(kube, BID, bid_name("sale", "ann"), over["metadata"]["generation"])
    assert (refused["accepted"], refused["reason"]) == (False, "OverBudget")
    assert "30.00" in refused["message"] and "40" not in refused["message"]  # never the sealed amount
    # cat has no Account at all.
    cat = await as_agent.answer(BID, "sale", "cat", sealed=sealed(auction, "cat", amount=10))
    assert (await verdict(kube, BID, bid_name("sale", "cat"), cat["metadata"]["generation"]))[
        "reason"
    ] == "NoAccount"
    # Within her means, ann's bid counts and 28 of her 30 is held.
    within = await as_agent.answer(BID, "sale", "ann", sealed=sealed(auction, "ann", amount=28))
    assert (await verdict(kube, BID, bid_name("sale", "ann"), within["metadata"]["generation"]))["accepted"]
    assert (await balances(kube))["ann"] == (3000, 2800)
    # An agent may read its own Account, and no other.
    own = await as_agent("ann").get(ACCOUNT, "ann", NS)
    assert own is not None and own["status"]["free"] == "2.00"
    assert await kube.get(ROLE, "mabeam-account-ann", NS) is not None
    try:
        await as_agent("ann").get(ACCOUNT, "ben", NS)
        raise AssertionError("ann read ben's Account")
    except Exception as exc:
        assert getattr(exc, "status", None) == 403, exc
    await as_agent.answer(BID, "sale", "ben", sealed=sealed(auction, "ben", amount=25))
    # cat gets an Account, and a new version of its bid counts: every bidder is in, bidding closes.
    await account(kube, "cat", 10)
    await granted(kube, {"cat": 1000})
    await as_agent.answer(BID, "sale", "cat", sealed=sealed(auction, "cat", amount=3))
    s = await settled(kube, AUCTION, "sale")
    # Second price: ann (28) wins and pays ben's 25 to sam, the gpu's owner.
    assert s["phase"] == "Awarded"
    assert [(a["agent"], a["price"]) for a in s["result"]["allocations"]] == [("ann", 25)]
    settlement = s["settlement"]
    assert settlement["valid"] and all(c["passed"] for c in settlement["checks"])
    assert [(t["payer"], t["payee"], t["amount"]) for t in settlement["transfers"]] == [
        ("ann", "sam", "25.00")
    ]
    got = await balances(kube)
    assert got["ann"] == (500, 0) and got["ben"] == (10050, 0) and got["sam"] == (2500, 0)
    assert got["cat"] == (1000, 0)
    assert sum(b for b, _ in got.values()) == 3000 + 10050 + 1000
    # The ledger names the session, the counterparty and the amount; it replays to the balance.
    ann = (await kube.get(ACCOUNT, "ann", NS) or {})["status"]
    payment = ann["entries"][-1]
    assert (payment["counterparty"], payment["amount"], payment["reason"]) == ("sam", "-25.00", "Payment")
    assert payment["session"].startswith("auction/sale:")
    assert (
        parse_money(ann["openingBalance"])
        + sum(parse_money(e["amount"], signed=True) for e in ann["entries"])
        == 500
    )
    events = [e for e in await kube.list(EVENT, NS) if e.get("reason") == "Paid"]
    assert any("ann paid 25.00 to sam" in e.get("message", "") for e in events)
    # `mabeam audit` recomputes the outcome from the recorded bids and finds what was applied.
    code, report = await audited(cluster, "auction/sale")
    assert code == 0 and "the applied outcome matches" in report, report
    assert "ann -> sam 25.00" in report and "sam: settled once, 25.00" in report, report
    # A ledger edited behind the operator's back (the payment doubled) is found.
    ann_obj = await kube.get(ACCOUNT, "ann", NS)
    assert ann_obj is not None
    entries = [*ann_obj["status"]["entries"][:-1], {**payment, "amount": "-50.00"}]
    await kube.patch(ACCOUNT, "ann", {"status": {"entries": entries}}, namespace=NS, status=True)
    code, report = await audited(cluster, "auction/sale")
    assert code == 1 and "ann: its entries post -50.00, the settlement -25.00" in report, report


async def test_two_auctions_racing_for_one_balance_hold_it_once(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben"]
    await suspended(kube, names)
    for item in ("g1", "g2"):
        await resource(kube, item)
    await account(kube, "ann", 30)
    await account(kube, "ben", 30)
    await granted(kube, {"ann": 3000, "ben": 3000})
    for lot, item in (("lot1", "g1"), ("lot2", "g2")):
        await kube.create(AUCTION, {"metadata": {"name": lot, "namespace": NS}, "spec": {
            "mechanism": "first-price", "participants": {"agents": names}, "items": [item],
            "bidSeconds": 30}})  # fmt: skip
    auctions = {}
    for lot in ("lot1", "lot2"):
        await phase_in(kube, AUCTION, lot, ("Bidding",))
        auctions[lot] = await kube.get(AUCTION, lot, NS)
    # ann bids 20 in both at once: 40 > 30, so exactly one counts and holds 20.
    bids = [
        await as_agent.answer(BID, lot, "ann", sealed=sealed(auctions[lot], "ann", amount=20))
        for lot in ("lot1", "lot2")
    ]
    verdicts = [
        await verdict(kube, BID, bid_name(lot, "ann"), b["metadata"]["generation"])
        for lot, b in zip(("lot1", "lot2"), bids, strict=True)
    ]
    assert sorted(v["reason"] for v in verdicts) == ["Counted", "OverBudget"]
    assert (await balances(kube))["ann"] == (3000, 2000)
    won = "lot1" if verdicts[0]["accepted"] else "lot2"
    lost = "lot2" if won == "lot1" else "lot1"
    # Within what is left (10 free), ann bids 5 where she was refused: it counts.
    again = await as_agent.answer(BID, lost, "ann", sealed=sealed(auctions[lost], "ann", amount=5))
    assert (await verdict(kube, BID, bid_name(lost, "ann"), again["metadata"]["generation"]))["accepted"]
    for lot in ("lot1", "lot2"):
        await as_agent.answer(BID, lot, "ben", sealed=sealed(auctions[lot], "ben", amount=7))
    for lot in ("lot1", "lot2"):
        await settled(kube, AUCTION, lot)
    # First price: ann pays her 20 where she bid it; ben wins the other at his 7.
    got = await balances(kube)
    assert got["ann"] == (1000, 0) and got["ben"] == (2300, 0)
    assert got[HOUSE_ACCOUNT] == (2700, 0)
    assert sum(b for b, _ in got.values()) == 6000
    assert ((await kube.get(AUCTION, lost, NS)) or {})["status"]["result"]["allocations"][0]["agent"] == "ben"


async def test_a_double_auction_pays_sellers_and_the_house_keeps_the_surplus(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["b1", "b2", "b3", "s1", "s2", "s3"]
    await suspended(kube, names)
    for name in names:
        await account(kube, name, 20)
    for name in ("s1", "s2", "s3"):  # a seller must own what it sells (test_goods.py)
        await kube.patch(ACCOUNT, name, {"spec": {"goods": {"slot-hours": 1}}}, namespace=NS)
    await granted(kube, dict.fromkeys(names, 2000))

    async def goods_granted() -> bool:
        held = {
            o["metadata"]["name"]: [g.get("held") for g in (o.get("status") or {}).get("goods") or []]
            for o in await kube.list(ACCOUNT, NS)
        }
        return all(held.get(n) == ["1"] for n in ("s1", "s2", "s3"))

    await eventually(goods_granted, what="the sellers' goods granted")
    await kube.create(MARKET, {"metadata": {"name": "dx", "namespace": NS}, "spec": {
        "mechanism": "double-auction", "good": "slot-hours", "participants": {"agents": names},
        "orderSeconds": 30}})  # fmt: skip
    await phase_in(kube, MARKET, "dx", ("Collecting",))
    # b1 asks for 3 units at 10 = 30 > its 20: refused; then 1 unit.
    over = await as_agent.answer(
        ORDER, "dx", "b1", sealed=await sealed_order(kube, "dx", "b1", side="buy", price=10, quantity=3)
    )
    assert (await verdict(kube, ORDER, order_name("dx", "b1"), over["metadata"]["generation"]))[
        "reason"
    ] == "OverBudget"
    for agent, side, price in [("b1", "buy", 10), ("b2", "buy", 8), ("b3", "buy", 3), ("s1", "sell", 2),
                               ("s2", "sell", 4), ("s3", "sell", 9)]:  # fmt: skip
        await as_agent.answer(
            ORDER, "dx", agent, sealed=await sealed_order(kube, "dx", agent, side=side, price=price)
        )
    s = await settled(kube, MARKET, "dx")
    # As in test_economics: b1, b2 buy at 6 from s1, s2; the house keeps nothing (one price).
    assert s["phase"] == "Cleared" and s["result"]["price"] == 6
    got = await balances(kube)
    assert {n: got[n][0] for n in names} == {
        "b1": 1400,
        "b2": 1400,
        "b3": 2000,
        "s1": 2600,
        "s2": 2600,
        "s3": 2000,
    }
    assert all(escrow == 0 for _, escrow in got.values())
    assert got[HOUSE_ACCOUNT][0] == 0
    assert sum(b for b, _ in got.values()) == 6 * 2000


async def test_a_lowered_budget_takes_back_only_what_escrow_does_not_hold(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """An administrator empties the bidder's budget while its bid is open: escrow still holds the
    bid, so the winner pays it; only the free rest is taken back."""
    await cluster.start_operator()
    names = ["ann", "ben"]
    await suspended(kube, names)
    await resource(kube, "gpu")
    await account(kube, "ann", 30)
    await account(kube, "ben", 30)
    await granted(kube, {"ann": 3000, "ben": 3000})
    await kube.create(AUCTION, {"metadata": {"name": "sale", "namespace": NS}, "spec": {
        "mechanism": "first-price", "participants": {"agents": names}, "items": ["gpu"],
        "bidSeconds": 30}})  # fmt: skip
    await phase_in(kube, AUCTION, "sale", ("Bidding",))
    auction = await kube.get(AUCTION, "sale", NS)
    assert auction is not None
    await as_agent.answer(BID, "sale", "ann", sealed=sealed(auction, "ann", amount=25))
    await verdict(kube, BID, bid_name("sale", "ann"))
    # The budget drops to 0: only the free 5 can be taken back; the 25 in escrow stays.
    await kube.patch(ACCOUNT, "ann", {"spec": {"budget": 0}}, namespace=NS)

    async def revoked() -> bool:
        return (await balances(kube))["ann"] == (2500, 2500)

    await eventually(revoked, what="ann's free balance taken back")
    await as_agent.answer(BID, "sale", "ben", sealed=sealed(auction, "ben", amount=10))
    s = await settled(kube, AUCTION, "sale")
    assert s["phase"] == "Awarded" and s["settlement"]["valid"]
    got = await balances(kube)
    assert got["ann"] == (0, 0) and got["ben"] == (3000, 0) and got[HOUSE_ACCOUNT] == (2500, 0)
    assert sum(b for b, _ in got.values()) == 3000 + 3000 - 500  # the grants, less the revocation


async def test_an_outcome_that_fails_its_checks_moves_nothing(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents, monkeypatch: Any
) -> None:
    """A fault in the mechanism (here: second price made to charge more than the winner bid)
    never reaches the ledger: the auction fails with the report, nothing is sold, escrow goes."""
    import dataclasses

    from mabeam.core.economics import _sealed, auction

    def faulty(bids: Any, reserve: Any) -> Any:
        honest = _sealed.second_price(bids, reserve)
        return dataclasses.replace(honest, price=honest.bid * 2)

    monkeypatch.setattr(auction, "second_price", faulty)
    await cluster.start_operator()
    names = ["ann", "ben"]
    await suspended(kube, names)
    await resource(kube, "gpu")
    await account(kube, "ann", 100)
    await account(kube, "ben", 100)
    await granted(kube, {"ann": 10000, "ben": 10000})
    await kube.create(AUCTION, {"metadata": {"name": "sale", "namespace": NS}, "spec": {
        "mechanism": "second-price", "participants": {"agents": names}, "items": ["gpu"],
        "bidSeconds": 30}})  # fmt: skip
    await phase_in(kube, AUCTION, "sale", ("Bidding",))
    auction_obj = await kube.get(AUCTION, "sale", NS)
    assert auction_obj is not None
    for agent, amount in (("ann", 30), ("ben", 20)):
        await as_agent.answer(BID, "sale", agent, sealed=sealed(auction_obj, agent, amount=amount))
    s = await settled(kube, AUCTION, "sale")
    assert s["phase"] == "Failed" and s["result"]["reason"] == "SettlementRejected"
    failed = {c["name"]: c["message"] for c in s["settlement"]["checks"] if not c["passed"]}
    assert set(failed) == {"IndividuallyRational", "EscrowCovers"}, failed
    assert "ann pays 60 above its bid 30" in failed["IndividuallyRational"]
    assert not s["settlement"]["valid"] and s["settlement"]["transfers"] == []
    conditions = {c["type"]: c["status"] for c in s["conditions"]}
    assert conditions.get("Failed") == "True" and "Complete" not in conditions
    got = await balances(kube)
    assert got["ann"] == (10000, 0) and got["ben"] == (10000, 0)
    gpu = (await kube.get(VARIABLE, "gpu", NS) or {}).get("status") or {}
    assert "owner" not in gpu or gpu["owner"] is None
    code, report = await audited(cluster, "auction/sale")
    assert code == 0 and "failed: IndividuallyRational, EscrowCovers (nothing moved)" in report, report


async def test_an_operator_killed_at_every_request_settles_once(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """The operator dies right after its first mutating request; restarted from what is stored,
    it dies again after its first one, and so on until a run has nothing left to write: a crash
    after every single request of the close, the escrow, the settlement and the allocation. The
    end state is the clean run's, applied once."""
    names = ["ann", "ben"]
    await suspended(kube, names)
    await resource(kube, "gpu")
    await kube.patch(
        VARIABLE, "gpu", {"status": {"owner": {"kind": "Agent", "name": "sam"}}}, namespace=NS, status=True
    )
    for name, budget in (("ann", 30), ("ben", 30), ("sam", 0)):
        await account(kube, name, budget)
    await cluster.start_operator()
    await granted(kube, {"ann": 3000, "ben": 3000, "sam": 0})
    await kube.create(AUCTION, {"metadata": {"name": "sale", "namespace": NS}, "spec": {
        "mechanism": "second-price", "participants": {"agents": names}, "items": ["gpu"],
        "bidSeconds": 300}})  # fmt: skip
    await phase_in(kube, AUCTION, "sale", ("Bidding",))
    auction = await kube.get(AUCTION, "sale", NS)
    assert auction is not None
    await cluster.stop_operator()
    for agent, amount in (("ann", 20), ("ben", 12)):  # sealed while no operator runs
        await as_agent.answer(BID, "sale", agent, sealed=sealed(auction, agent, amount=amount))

    async def applied() -> bool:
        return bool((((await kube.get(AUCTION, "sale", NS)) or {}).get("status") or {}).get("outcomeApplied"))

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
    # Where the runs died: after the escrow, the ending, each settlement, the owner, the record.
    log = (cluster.workdir / "operator.log").read_text()
    points = [
        line.removeprefix("crash after ") for line in log.splitlines() if line.startswith("crash after ")
    ]
    # (A run may also die right after its last write, outcomeApplied, once the test saw it.)
    assert crashes <= len(points) <= crashes + 1, points
    for wanted in (
        "patch accounts ann/status",
        "patch auctions sale/status",
        "patch accounts sam/status",
        "patch variables gpu/status",
    ):
        assert wanted in points, (wanted, points)
    await cluster.start_operator()  # a clean operator finds nothing more to do
    assert await applied()
    got = await balances(kube)
    # Second price: ann pays ben's 12 to sam, once; ben's escrow is released.
    assert {n: got[n] for n in ("ann", "ben", "sam")} == {
        "ann": (1800, 0),
        "ben": (3000, 0),
        "sam": (1200, 0),
    }
    for name in ("ann", "ben", "sam"):
        status = ((await kube.get(ACCOUNT, name, NS)) or {}).get("status") or {}
        assert sum(1 for s in status.get("settled", []) if s.startswith("auction/sale:")) == (
            name != "sam" or 1
        )
    phases = {
        ((v or {}).get("status") or {}).get("phase")
        for v in cluster.api.history("mabeam.io/v1alpha1/auctions", "sale", NS)
    }
    assert phases & {"Awarded", "NoSale", "Failed", "Cancelled"} == {"Awarded"}
    gpu = ((await kube.get(VARIABLE, "gpu", NS)) or {}).get("status") or {}
    assert gpu["owner"] == {"kind": "Agent", "name": "ann"}
    assert sum(1 for s in gpu["appliedSessions"] if s.startswith("sale:")) == 1
    code, report = await audited(cluster, "auction/sale")
    assert code == 0, report


async def test_a_clock_auction_holds_the_price_accepted_and_the_winner_pays_the_clock(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """english from 10 by 5: staying in holds the round's price; ann (15 to spend) cannot stay at
    20 and is refused, so ben wins at 20; ann's hold of 15 is released, ben's 20 is paid."""
    await cluster.start_operator()
    names = ["ann", "ben"]
    await suspended(kube, names)
    await resource(kube, "slot")
    await account(kube, "ann", 15)
    await account(kube, "ben", 30)
    await granted(kube, {"ann": 1500, "ben": 3000})
    await kube.create(AUCTION, {"metadata": {"name": "clock", "namespace": NS}, "spec": {
        "mechanism": "english", "participants": {"agents": names}, "items": ["slot"],
        "startPrice": 10, "increment": 5, "roundSeconds": 30}})  # fmt: skip

    async def at_round(r: int) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            st = ((await kube.get(AUCTION, "clock", NS)) or {}).get("status") or {}
            return st if st.get("round") == r or st.get("outcomeApplied") else None

        result: dict[str, Any] = await eventually(check, what=f"round {r}")
        return result

    for round_ in (1, 2):
        await at_round(round_)
        for agent in names:
            await as_agent.answer(BID, "clock", agent, round=round_, accept=True)
    s = await at_round(3)
    assert s["clockPrice"] == 20
    # After round 2 (15), each holds the price it accepted last.
    assert (await balances(kube))["ann"] == (1500, 1500) and (await balances(kube))["ben"] == (3000, 1500)
    over = await as_agent.answer(BID, "clock", "ann", round=3, accept=True)
    refused = await verdict(kube, BID, bid_name("clock", "ann"), over["metadata"]["generation"])
    assert refused["reason"] == "OverBudget" and "15.00" in refused["message"]
    await as_agent.answer(BID, "clock", "ben", round=3, accept=True)
    s = await settled(kube, AUCTION, "clock")
    (allocation,) = s["result"]["allocations"]
    assert (allocation["agent"], allocation["price"]) == ("ben", 20)
    got = await balances(kube)
    assert got["ann"] == (1500, 0) and got["ben"] == (1000, 0) and got[HOUSE_ACCOUNT] == (2000, 0)


async def test_a_fisher_market_holds_budgets_and_pays_the_house(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["dave", "erin"]
    await suspended(kube, names)
    await account(kube, "dave", 60)
    await account(kube, "erin", 30)
    await granted(kube, {"dave": 6000, "erin": 3000})
    goods = [{"name": "cpu", "supply": 8}, {"name": "gpu", "supply": 2}]
    await kube.create(MARKET, {"metadata": {"name": "share", "namespace": NS}, "spec": {
        "mechanism": "fisher", "good": "cluster shares", "participants": {"agents": names},
        "goods": goods, "orderSeconds": 30}})  # fmt: skip
    await phase_in(kube, MARKET, "share", ("Collecting",))
    # erin's budget of 31 is beyond her 30: refused; then 24 (escrow holds it).
    over = await as_agent.answer(
        ORDER,
        "share",
        "erin",
        sealed=await sealed_order(kube, "share", "erin", budget=31, utilities={"cpu": 1}),
    )
    refused = await verdict(kube, ORDER, order_name("share", "erin"), over["metadata"]["generation"])
    assert (refused["accepted"], refused["reason"]) == (False, "OverBudget")
    for agent, budget, utilities in (("dave", 60, {"cpu": 1, "gpu": 3}), ("erin", 24, {"cpu": 1, "gpu": 1})):
        content = await sealed_order(kube, "share", agent, budget=budget, utilities=utilities)
        await as_agent.answer(ORDER, "share", agent, sealed=content)
    s = await settled(kube, MARKET, "share")
    # As in test_economics: cpu 6, gpu 18; each pays its whole budget to the house.
    assert s["phase"] == "Cleared" and [g["price"] for g in s["result"]["goods"]] == [6, 18]
    assert s["settlement"]["valid"]
    got = await balances(kube)
    assert {n: got[n] for n in ("dave", "erin", HOUSE_ACCOUNT)} == {
        "dave": (0, 0),
        "erin": (600, 0),
        HOUSE_ACCOUNT: (8400, 0),
    }
    assert sum(b for b, _ in got.values()) == 9000
    # `mabeam audit` recomputes the equilibrium from the published orders and finds it applied.
    code, report = await audited(cluster, "market/share")
    assert code == 0, report
