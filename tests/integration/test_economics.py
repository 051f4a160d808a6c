"""Auctions and markets against the local API: agents' real answers in, owners and prices out."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from mabeam.errors import ApiError
from mabeam.kube.client import Kube
from mabeam.kube.permissions import SEALING_KEY_SECRET
from mabeam.kube.resources import AUCTION, BID, EVENT, MARKET, ORDER, SECRET, VARIABLE
from mabeam.local.cluster import LocalCluster
from mabeam.models._sealed import SealingInfo
from mabeam.models.auction import BidContent, bid_name
from mabeam.models.market import OrderContent, order_name
from mabeam.sdk._trading import seal_bid, seal_order
from tests.integration._coordination import NS, AsAgents, phase_in, suspended, verdict
from tests.integration._util import eventually

AUCTION_DONE = ("Awarded", "NoSale", "Failed", "Cancelled")
MARKET_DONE = ("Cleared", "NoTrade", "Failed", "Cancelled")


async def resource(kube: Kube, name: str, type_: str = "string", value: Any = "slot") -> None:
    await kube.create(
        VARIABLE, {"metadata": {"name": name, "namespace": NS}, "spec": {"type": type_, "value": value}}
    )


def terminal_versions(cluster: LocalCluster, plural: str, name: str, phases: tuple[str, ...]) -> list[str]:
    """Every terminal phase the object's stored history went through, in order (no repeats)."""
    seen: list[str] = []
    for version in cluster.api.history(f"mabeam.io/v1alpha1/{plural}", name, NS):
        phase = ((version or {}).get("status") or {}).get("phase")
        if phase in phases and (not seen or seen[-1] != phase):
            seen.append(phase)
    return seen


def sealed(auction: dict[str, Any], agent: str, **content: Any) -> dict[str, Any]:
    """``agent``'s bid sealed as the SDK seals it, to the key the Auction publishes."""
    info = SealingInfo.model_validate(auction["status"]["sealing"])
    envelope = seal_bid(info, auction["metadata"]["uid"], agent, BidContent.model_validate(content))
    return envelope.to_wire()


async def sealed_order(kube: Kube, market: str, agent: str, **content: Any) -> dict[str, Any]:
    """``agent``'s order sealed as the SDK seals it, to the key the Market publishes."""
    obj = await kube.get(MARKET, market, NS)
    assert obj is not None
    info = SealingInfo.model_validate(obj["status"]["sealing"])
    envelope = seal_order(info, obj["metadata"]["uid"], agent, OrderContent.model_validate(content))
    return envelope.to_wire()


async def test_second_price_auction_is_sealed_then_sells_to_the_highest_bid(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben", "cat"]
    await suspended(kube, names)
    await resource(kube, "gpu")
    await kube.create(
        AUCTION,
        {
            "metadata": {"name": "sale", "namespace": NS},
            "spec": {
                "mechanism": "second-price",
                "participants": {"agents": names},
                "items": ["gpu"],
                "reservePrice": 5,
                # Long enough that bidding is surely still open at the checks below on a busy machine.
                "bidSeconds": 8,
            },
        },
    )
    await phase_in(kube, AUCTION, "sale", ("Bidding",))
    auction = await kube.get(AUCTION, "sale", NS)
    assert auction is not None
    # The key agents seal to is the operator's, whose private half is in a Secret of its own
    # namespace that no agent can read.
    secret = await kube.get(SECRET, SEALING_KEY_SECRET, "mabeam-system")
    assert secret is not None
    assert auction["status"]["sealing"]["keyId"].startswith("sha256:")
    with pytest.raises(ApiError) as denied:
        await as_agent("cat").get(SECRET, SEALING_KEY_SECRET, "mabeam-system")
    assert denied.value.status == 403
    for agent, amount in (("ann", 40), ("ben", 25)):
        await as_agent.answer(BID, "sale", agent, sealed=sealed(auction, agent, amount=amount))
    # cat copies ann's ciphertext as its own bid: refused, naming the original, never counted.
    ann_bid = await as_agent("cat").get(BID, bid_name("sale", "ann"), NS)
    assert ann_bid is not None
    copy = await as_agent.answer(BID, "sale", "cat", sealed=ann_bid["spec"]["sealed"])
    refused = await verdict(kube, BID, bid_name("sale", "cat"), copy["metadata"]["generation"])
    assert refused["reason"] == "Copied" and "ann" in refused["message"]
    # While bidding is open, no amount is visible anywhere.
    bidding = (await kube.get(AUCTION, "sale", NS) or {})["status"]
    assert bidding["phase"] == "Bidding"
    assert [b["agent"] for b in bidding["bids"]] == ["ann", "ben"]
    assert all("amount" not in b for b in bidding["bids"])
    assert [(r["agent"], r["reason"]) for r in bidding["refusals"]] == [("cat", "Copied")]
    # cat has no counted bid, so bidding runs to its deadline (8 s), then the bids are opened.
    s = await phase_in(kube, AUCTION, "sale", AUCTION_DONE, timeout=30)
    assert s["phase"] == "Awarded"
    (allocation,) = s["result"]["allocations"]
    # ann pays ben's 25: had the copy counted, she would pay her own 40.
    assert (allocation["agent"], allocation["items"], allocation["price"]) == ("ann", ["gpu"], 25)
    assert [(b["agent"], b["amount"]) for b in s["bids"]] == [("ann", 40), ("ben", 25)]
    assert terminal_versions(cluster, "auctions", "sale", AUCTION_DONE) == ["Awarded"]

    async def owned() -> bool:
        var = await kube.get(VARIABLE, "gpu", NS)
        return ((var or {}).get("status") or {}).get("owner") == {"kind": "Agent", "name": "ann"}

    await eventually(owned, what="gpu owned by ann")
    var = await kube.get(VARIABLE, "gpu", NS)
    assert var is not None
    assert sum(1 for s_ in var["status"]["appliedSessions"] if s_.startswith("sale:")) == 1

    async def allocated() -> bool:  # the Event is posted after the owner is set
        events = await kube.list(EVENT, NS)
        return any(e.get("reason") == "Allocated" and "ann" in e.get("message", "") for e in events)

    await eventually(allocated, what="an Allocated event for ann")
    events = await kube.list(EVENT, NS)
    # The operator's private key is in no status and no Event.
    auction = await kube.get(AUCTION, "sale", NS)
    published = json.dumps([auction, events])
    assert secret["data"]["x25519-private-key"] not in published


async def test_english_auction_rounds_follow_the_agents_answers(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben"]
    await suspended(kube, names)
    await resource(kube, "slot")
    await kube.create(
        AUCTION,
        {
            "metadata": {"name": "clock", "namespace": NS},
            "spec": {
                "mechanism": "english",
                "participants": {"agents": names},
                "items": ["slot"],
                "startPrice": 10,
                "increment": 5,
                "roundSeconds": 30,
            },
        },
    )
    values = {"ann": 22, "ben": 17}
    for round_ in range(1, 10):
        s = await phase_in(kube, AUCTION, "clock", ("Bidding", *AUCTION_DONE))
        if s["phase"] != "Bidding":
            break

        async def at_round(r: int = round_) -> dict[str, Any] | None:
            obj = await kube.get(AUCTION, "clock", NS)
            st = (obj or {}).get("status") or {}
            return st if st.get("round") == r or st.get("phase") in AUCTION_DONE else None

        s = await eventually(at_round, what=f"round {round_}")
        if s.get("phase") in AUCTION_DONE:
            break
        for agent in s["active"]:
            await as_agent.answer(BID, "clock", agent, round=round_, accept=s["clockPrice"] <= values[agent])
    s = await phase_in(kube, AUCTION, "clock", AUCTION_DONE)
    # 10 and 15: both in; 20: ben (17) drops, ann (22) alone wins at 20.
    assert s["phase"] == "Awarded"
    (allocation,) = s["result"]["allocations"]
    assert (allocation["agent"], allocation["price"]) == ("ann", 20)
    assert [(r["round"], r["price"]) for r in s["rounds"]][:2] == [(1, 10), (2, 15)]


async def test_double_auction_trades_at_mcafee_prices(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["b1", "b2", "b3", "s1", "s2", "s3", "outsider"]
    await suspended(kube, names)
    await kube.create(
        MARKET,
        {
            "metadata": {"name": "dx", "namespace": NS},
            "spec": {
                "mechanism": "double-auction",
                "good": "slot-hours",
                "participants": {"agents": names[:-1]},
                "orderSeconds": 30,
            },
        },
    )
    await phase_in(kube, MARKET, "dx", ("Collecting",))
    outsider_order = await sealed_order(kube, "dx", "outsider", side="buy", price=100)
    refused = await as_agent.answer(ORDER, "dx", "outsider", sealed=outsider_order)
    for agent, side, price in [("b1", "buy", 10), ("b2", "buy", 8), ("b3", "buy", 3), ("s1", "sell", 2),
                               ("s2", "sell", 4)]:  # fmt: skip
        await as_agent.answer(
            ORDER, "dx", agent, sealed=await sealed_order(kube, "dx", agent, side=side, price=price)
        )
    # s3 copies b1's order (to learn nothing, and to trade on b1's terms): refused, naming b1.
    b1 = await as_agent("s3").get(ORDER, order_name("dx", "b1"), NS)
    assert b1 is not None
    copy = await as_agent.answer(ORDER, "dx", "s3", sealed=b1["spec"]["sealed"])
    copied = await verdict(kube, ORDER, order_name("dx", "s3"), copy["metadata"]["generation"])
    assert copied["reason"] == "Copied" and "b1" in copied["message"]
    collecting = (await kube.get(MARKET, "dx", NS) or {})["status"]
    assert collecting["phase"] == "Collecting"
    assert all("price" not in o and "side" not in o for o in collecting["orders"])  # all sealed
    await as_agent.answer(
        ORDER, "dx", "s3", sealed=await sealed_order(kube, "dx", "s3", side="sell", price=9)
    )
    s = await phase_in(kube, MARKET, "dx", MARKET_DONE)
    # k = 2 efficient pairs (10>=2, 8>=4); p0 = (3 + 9) / 2 = 6 lies in [4, 8]: both trade at 6.
    assert (s["phase"], s["result"]["reason"], s["result"]["price"], s["result"]["volume"]) == (
        "Cleared",
        "AllEfficientTrades",
        6,
        2,
    )
    traded = {t["agent"]: (t["side"], t["quantity"], t["price"]) for t in s["result"]["trades"]}
    assert traded == {"b1": ("buy", 1, 6), "b2": ("buy", 1, 6), "s1": ("sell", 1, 6), "s2": ("sell", 1, 6)}
    outsider = await verdict(kube, ORDER, order_name("dx", "outsider"), refused["metadata"]["generation"])
    assert (outsider["accepted"], outsider["reason"]) == (False, "NotParticipant")


async def test_equilibrium_market_sets_its_price_variable_once(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator_process()
    names = ["buyer", "seller"]
    await suspended(kube, names)
    await resource(kube, "power-price", "number", 0)
    await kube.create(
        MARKET,
        {
            "metadata": {"name": "power", "namespace": NS},
            "spec": {
                "mechanism": "equilibrium",
                "good": "kW",
                "participants": {"agents": names},
                "priceGrid": {"min": 0, "max": 10, "step": 1},
                "orderSeconds": 30,
                "priceVariableRef": {"name": "power-price"},
            },
        },
    )
    await phase_in(kube, MARKET, "power", ("Collecting",))
    # The buyer wants 4 up to 6, 2 up to 8, none above; the seller sells 3 from 5 on.
    buyer = await sealed_order(kube, "power", "buyer", schedule=[
        {"price": 0, "quantity": 4}, {"price": 7, "quantity": 2}, {"price": 9, "quantity": 0}])  # fmt: skip
    await as_agent.answer(ORDER, "power", "buyer", sealed=buyer)
    seller = await sealed_order(kube, "power", "seller", schedule=[
        {"price": 0, "quantity": 0}, {"price": 5, "quantity": -3}])  # fmt: skip
    await cluster.kill_operator()  # the last order lands while no operator runs
    await as_agent.answer(ORDER, "power", "seller", sealed=seller)
    await cluster.start_operator_process()
    s = await phase_in(kube, MARKET, "power", MARKET_DONE, timeout=20)
    # Z(p) = 4 below 5, 4 - 3 = 1 at 5 and 6, 2 - 3 = -1 from 7: clears at 7; 2 of 3 sold.
    assert (s["phase"], s["result"]["price"], s["result"]["volume"]) == ("Cleared", 7, 2)

    async def priced() -> bool:
        var = await kube.get(VARIABLE, "power-price", NS)
        return ((var or {}).get("status") or {}).get("value") == 7

    await eventually(priced, what="power-price set")
    var = await kube.get(VARIABLE, "power-price", NS)
    assert var is not None and [h["value"] for h in var["status"]["history"]][-1:] == [7]
    assert terminal_versions(cluster, "markets", "power", MARKET_DONE) == ["Cleared"]


async def test_an_operator_killed_mid_auction_allocates_once_after_restart(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator_process()
    names = ["ann", "ben"]
    await suspended(kube, names)
    for item in ("g1", "g2"):
        await resource(kube, item)
    await kube.create(
        AUCTION,
        {
            "metadata": {"name": "pair", "namespace": NS},
            "spec": {
                "mechanism": "combinatorial",
                "participants": {"agents": names},
                "items": ["g1", "g2"],
                "bidSeconds": 30,
            },
        },
    )
    await phase_in(kube, AUCTION, "pair", ("Bidding",))
    auction = await kube.get(AUCTION, "pair", NS)
    assert auction is not None
    bundles = {
        "ann": [{"items": ["g1"], "amount": 9}],
        "ben": [{"items": ["g2"], "amount": 4}, {"items": ["g1", "g2"], "amount": 11}],
    }
    await cluster.kill_operator()
    for agent, offer in bundles.items():  # sealed while no operator runs
        await as_agent.answer(BID, "pair", agent, sealed=sealed(auction, agent, bundles=offer))
    # The restarted operator reads the same key from its Secret and opens both bids.
    await cluster.start_operator_process()
    s = await phase_in(kube, AUCTION, "pair", AUCTION_DONE, timeout=20)
    # ann g1 (9) + ben g2 (4) = 13 beats ben's pair (11). VCG: ann pays 11 - (13 - 9) = 7;
    # without ben the best is 9 (ann's g1), so ben pays 9 - (13 - 4) = 0.
    assert s["phase"] == "Awarded"
    won = {a["agent"]: (a["items"], a["price"]) for a in s["result"]["allocations"]}
    assert won == {"ann": (["g1"], 7), "ben": (["g2"], 0)}
    assert terminal_versions(cluster, "auctions", "pair", AUCTION_DONE) == ["Awarded"]
    for item, owner in (("g1", "ann"), ("g2", "ben")):

        async def owned(item: str = item, owner: str = owner) -> bool:
            var = await kube.get(VARIABLE, item, NS)
            return ((var or {}).get("status") or {}).get("owner") == {"kind": "Agent", "name": owner}

        await eventually(owned, what=f"{item} owned by {owner}")
    # Each item's Variable records the auction once, in all its stored versions' history.
    for item in ("g1", "g2"):
        var = await kube.get(VARIABLE, item, NS)
        assert var is not None
        assert sum(1 for x in var["status"]["appliedSessions"] if x.startswith("pair:")) == 1


async def test_fisher_market_prices_each_good_from_the_agents_orders(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["dave", "erin"]
    await suspended(kube, names)
    for variable in ("cpu-price", "gpu-price"):
        await resource(kube, variable, "number", 0)
    await kube.create(
        MARKET,
        {
            "metadata": {"name": "share", "namespace": NS},
            "spec": {
                "mechanism": "fisher",
                "good": "cluster shares",
                "participants": {"agents": names},
                "goods": [
                    {"name": "cpu", "supply": 8, "priceVariableRef": {"name": "cpu-price"}},
                    {"name": "gpu", "supply": 2, "priceVariableRef": {"name": "gpu-price"}},
                ],
                "orderSeconds": 30,
            },
        },
    )
    await phase_in(kube, MARKET, "share", ("Collecting",))
    # erin first names a good not on sale: refused, and she sends a good order after it.
    wrong = await as_agent.answer(
        ORDER,
        "share",
        "erin",
        sealed=await sealed_order(kube, "share", "erin", budget=24, utilities={"ram": 1}),
    )
    refused = await verdict(kube, ORDER, order_name("share", "erin"), wrong["metadata"]["generation"])
    assert (refused["accepted"], refused["reason"]) == (False, "UnknownGood")
    for agent, budget, utilities in (
        ("dave", 60, {"cpu": 1, "gpu": 3}),
        ("erin", "24.00", {"cpu": 1, "gpu": 1}),
    ):
        content = await sealed_order(kube, "share", agent, budget=budget, utilities=utilities)
        await as_agent.answer(ORDER, "share", agent, sealed=content)
    s = await phase_in(kube, MARKET, "share", MARKET_DONE, timeout=20)
    # Worked out in docs/economics.md: cpu 6, gpu 18; dave 4 cpu + 2 gpu, erin 4 cpu.
    assert (s["phase"], s["result"]["reason"]) == ("Cleared", "Equilibrium")
    assert [(g["good"], g["price"], g["sold"]) for g in s["result"]["goods"]] == [
        ("cpu", 6, 8),
        ("gpu", 18, 2),
    ]
    got = [(a["agent"], a["good"], a["quantity"], a["payment"]) for a in s["result"]["allocations"]]
    assert got == [("dave", "cpu", 4, 24), ("dave", "gpu", 2, 36), ("erin", "cpu", 4, 24)]
    assert all(c["passed"] for c in s["result"]["equilibrium"]["checks"])
    for variable, price in (("cpu-price", 6), ("gpu-price", 18)):

        async def priced(variable: str = variable, price: int = price) -> bool:
            var = await kube.get(VARIABLE, variable, NS)
            return ((var or {}).get("status") or {}).get("value") == price

        await eventually(priced, what=f"{variable} set to {price}")
    assert terminal_versions(cluster, "markets", "share", MARKET_DONE) == ["Cleared"]


async def test_a_bid_counted_before_a_restart_still_counts_after_the_round_deadline(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """Found by the nemesis: a clock auction keeps no record of a round's answers until the
    round closes, so an operator killed after counting a bid (its verdict written: Counted)
    and restarted after the deadline took the bid for new, received at the restart: Late. The
    verdict (Counted) and the outcome (nobody accepted) then disagreed. The time a version was
    received is now kept in its verdict (status.receivedAt) and read back after a restart."""
    await cluster.start_operator_process()
    names = ["ann", "ben"]
    await suspended(kube, names)
    await resource(kube, "slot")
    await kube.create(AUCTION, {"metadata": {"name": "tick", "namespace": NS}, "spec": {
        "mechanism": "english", "participants": {"agents": names}, "items": ["slot"],
        "startPrice": 10, "increment": 5, "roundSeconds": 3, "maxRounds": 1}})  # fmt: skip
    await phase_in(kube, AUCTION, "tick", ("Bidding",))
    bid = await as_agent.answer(BID, "tick", "ann", round=1, accept=True)
    counted = await verdict(kube, BID, bid_name("tick", "ann"), bid["metadata"]["generation"])
    assert counted["reason"] == "Counted"
    await cluster.kill_operator()
    auction = await kube.get(AUCTION, "tick", NS)
    assert auction is not None
    deadline = dt.datetime.fromisoformat(auction["status"]["deadline"].replace("Z", "+00:00"))
    await asyncio.sleep(max((deadline - dt.datetime.now(dt.UTC)).total_seconds(), 0) + 0.5)
    await cluster.start_operator_process()  # after the deadline; ben never answered
    s = await phase_in(kube, AUCTION, "tick", AUCTION_DONE, timeout=20)
    assert s["rounds"][0]["accepted"] == ["ann"]
    assert (s["phase"], [(a["agent"], a["price"]) for a in s["result"]["allocations"]]) == (
        "Awarded",
        [("ann", 10)],
    )
    assert (await verdict(kube, BID, bid_name("tick", "ann")))["reason"] == "Counted"
