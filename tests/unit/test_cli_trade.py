"""``mabeam bid|order`` and ``mabeam watch auction|market`` against the local API server (no operator)."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from typing import Any

import pytest

from mabeam.cli import build_parser
from mabeam.cli.watch import render_auction, render_market
from mabeam.core.economics.sealing import Opened, open_sealed
from mabeam.kube.client import Kube
from mabeam.kube.resources import AUCTION, BID, MARKET, ORDER, Res
from mabeam.local.cluster import LocalCluster
from mabeam.models._sealed import SealedEnvelope
from tests.strategies_auctions import KEY
from tests.unit._watching import drawn, watching

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)
STAMP = "2026-11-25T12:00:00Z"
SEALING = KEY.info.to_wire()


def later(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def run(argv: list[str]) -> tuple[int, str]:
    args = build_parser().parse_args(argv)
    out = io.StringIO()
    code = await args.async_func(args, out)
    return code, out.getvalue()


async def mabeam(cluster: LocalCluster, *argv: str) -> tuple[int, str]:
    return await run([*argv, "--kubeconfig", str(cluster.admin_kubeconfig)])


def usage_error(cluster: LocalCluster, *argv: str) -> int:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*argv, "--kubeconfig", str(cluster.admin_kubeconfig)])
    return int(exc.value.code or 0)


async def make(kube: Kube, res: Res, name: str, spec: dict[str, Any], **status: Any) -> dict[str, Any]:
    obj = await kube.create(res, {"metadata": {"name": name, "namespace": "default"}, "spec": spec})
    if status:
        obj = await kube.patch(res, name, {"status": status}, namespace="default", status=True)
    return obj


def people(*names: str) -> list[dict[str, str]]:
    return [{"name": n} for n in names]


async def auction(kube: Kube, name: str, mechanism: str, items: list[str], **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mechanism": mechanism,
        "participants": {"agents": ["alice", "bob"]},
        "items": items,
    }
    if mechanism == "english":
        spec["increment"] = 1
    if mechanism == "dutch":
        spec |= {"startPrice": 20, "decrement": 2}
    return await make(kube, AUCTION, name, spec, **status)


async def bid_spec(kube: Kube, name: str) -> dict[str, Any]:
    obj = await kube.get(BID, name, "default")
    assert obj is not None
    return dict(obj["spec"])


def opened(obj: dict[str, Any], agent: str, spec: dict[str, Any]) -> Opened:
    """The Bid ``spec`` opened with the operator's key as ``agent``'s bid in the Auction ``obj``."""
    envelope = SealedEnvelope.model_validate(spec["sealed"])
    result = open_sealed(KEY, envelope, "Bid", obj["metadata"]["uid"], agent)
    assert isinstance(result, Opened), result
    return result


async def test_a_sealed_bid_is_encrypted_to_the_operators_key(
    cluster: LocalCluster, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    created = await auction(
        kube,
        "a1",
        "first-price",
        ["gpu-1"],
        phase="Bidding",
        participants=people("alice", "bob"),
        sealing=SEALING,
    )
    code, out = await mabeam(cluster, "bid", "a1", "--as", "alice", "--amount", "12.5")
    assert (code, out) == (0, "bid.mabeam.io/a1-alice created\n")
    assert "nothing to reveal" in capsys.readouterr().err
    obj = await kube.get(BID, "a1-alice", "default")
    assert obj is not None
    assert obj["metadata"]["labels"] == {"mabeam.io/session": "a1", "mabeam.io/agent": "alice"}
    assert obj["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert set(obj["spec"]) == {"auction", "agent", "sealed"}  # the amount stays secret
    assert (obj["spec"]["auction"], obj["spec"]["agent"]) == ("a1", "alice")
    assert "12.5" not in str(obj["spec"])
    assert opened(created, "alice", obj["spec"]) == Opened({"amount": 12.5})

    # A new bid replaces it while Bidding; once bidding has closed, nothing more is sent.
    assert (await mabeam(cluster, "bid", "a1", "--as", "alice", "--amount", "13"))[0] == 0
    assert opened(created, "alice", await bid_spec(kube, "a1-alice")) == Opened({"amount": 13.0})
    await kube.patch(AUCTION, "a1", {"status": {"phase": "Awarded"}}, namespace="default", status=True)
    assert (await mabeam(cluster, "bid", "a1", "--as", "bob", "--amount", "9"))[0] == 1
    assert "has ended" in capsys.readouterr().err


async def test_without_a_published_key_nothing_is_sent(
    cluster: LocalCluster, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    await auction(kube, "a2", "second-price", ["gpu-1"], phase="Bidding", participants=people("alice"))
    assert (await mabeam(cluster, "bid", "a2", "--as", "alice", "--amount", "7"))[0] == 1
    assert "no sealing key" in capsys.readouterr().err
    assert await kube.get(BID, "a2-alice", "default") is None


async def test_combinatorial_bids_are_bundles(
    cluster: LocalCluster, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    created = await auction(
        kube,
        "c1",
        "combinatorial",
        ["gpu-1", "gpu-2"],
        phase="Bidding",
        participants=people("alice"),
        sealing=SEALING,
    )
    argv = ["bid", "c1", "--as", "alice", "--bundle", "gpu-2,gpu-1=30", "--bundle", "gpu-1=18"]
    assert (await mabeam(cluster, *argv))[0] == 0
    spec = await bid_spec(kube, "c1-alice")
    assert opened(created, "alice", spec) == Opened(
        {"bundles": [{"items": ["gpu-2", "gpu-1"], "amount": 30.0}, {"items": ["gpu-1"], "amount": 18.0}]}
    )
    assert (await mabeam(cluster, "bid", "c1", "--as", "alice", "--bundle", "gpu-9=3"))[0] == 1
    assert "does not sell gpu-9" in capsys.readouterr().err
    assert (await mabeam(cluster, "bid", "c1", "--as", "alice", "--amount", "3"))[0] == 1
    assert "--bundle" in capsys.readouterr().err
    assert usage_error(cluster, "bid", "c1", "--as", "alice", "--bundle", "gpu-1") == 2
    assert usage_error(cluster, "bid", "c1", "--as", "alice", "--bundle", "gpu-1,gpu-1=4") == 2
    assert (
        usage_error(cluster, "bid", "c1", "--as", "alice", "--amount", "3", "--nonce", "0123456789abcdef")
        == 2
    )


async def test_clock_bids_answer_the_current_round(
    cluster: LocalCluster, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    await auction(
        kube,
        "e1",
        "english",
        ["gpu-1"],
        phase="Bidding",
        participants=people("alice", "bob"),
        round=3,
        clockPrice=12,
        active=["alice"],
        rounds=[{"round": 1, "price": 10, "accepted": ["alice", "bob"]}, {"round": 2, "price": 11}],
    )
    assert (await mabeam(cluster, "bid", "e1", "--as", "alice", "--accept"))[0] == 0
    assert await bid_spec(kube, "e1-alice") == {"auction": "e1", "agent": "alice", "round": 3, "accept": True}
    assert (await mabeam(cluster, "bid", "e1", "--as", "bob", "--accept"))[0] == 1
    assert "bob is out" in capsys.readouterr().err
    assert (await mabeam(cluster, "bid", "e1", "--as", "alice", "--amount", "20"))[0] == 1
    assert "--accept or --decline" in capsys.readouterr().err
    assert (await mabeam(cluster, "bid", "e1", "--as", "carol", "--accept"))[0] == 1
    assert "not a participant" in capsys.readouterr().err
    assert usage_error(cluster, "bid", "e1", "--as", "alice", "--accept", "--decline") == 2

    await auction(kube, "d1", "dutch", ["gpu-1"], phase="Bidding", participants=people("bob"), round=2)
    assert (await mabeam(cluster, "bid", "d1", "--as", "bob", "--decline"))[0] == 0
    assert await bid_spec(kube, "d1-bob") == {"auction": "d1", "agent": "bob", "round": 2, "accept": False}
    code, _ = await mabeam(cluster, "bid", "a1", "--as", "bob", "--accept")  # no such auction
    assert code == 1


@pytest.mark.parametrize(
    ("mechanism", "phase", "argv", "says"),
    [
        ("first-price", "Awarded", ["--amount", "5"], "has ended (phase Awarded)"),
        ("first-price", "Pending", ["--amount", "5"], "has not opened yet"),
        ("first-price", "Bidding", ["--accept"], "for clock auctions"),
        ("first-price", "Bidding", ["--bundle", "gpu-1=5"], "--amount A"),
        ("dutch", "Pending", ["--accept"], "has not opened yet"),
        ("english", "NoSale", ["--decline"], "has ended"),
    ],
    ids=["ended", "pending", "accept-on-sealed", "bundle-on-single", "clock-pending", "clock-ended"],
)
async def test_bids_that_do_not_fit_the_auction_are_refused(
    cluster: LocalCluster,
    kube: Kube,
    capsys: pytest.CaptureFixture[str],
    mechanism: str,
    phase: str,
    argv: list[str],
    says: str,
) -> None:
    await auction(kube, "x1", mechanism, ["gpu-1"], phase=phase, participants=people("alice"), round=1)
    assert (await mabeam(cluster, "bid", "x1", "--as", "alice", *argv))[0] == 1
    assert says in capsys.readouterr().err
    assert await kube.get(BID, "x1-alice", "default") is None


async def order_spec(kube: Kube, name: str) -> dict[str, Any]:
    obj = await kube.get(ORDER, name, "default")
    assert obj is not None
    return dict(obj["spec"])


def opened_order(market: dict[str, Any], agent: str, spec: dict[str, Any]) -> Opened:
    """The Order ``spec`` opened with the operator's key as ``agent``'s order in ``market``."""
    assert set(spec) == {"market", "agent", "sealed"}  # nothing in clear
    envelope = SealedEnvelope.model_validate(spec["sealed"])
    result = open_sealed(KEY, envelope, "Order", market["metadata"]["uid"], agent)
    assert isinstance(result, Opened), result
    return result


async def test_double_auction_orders(
    cluster: LocalCluster, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {"mechanism": "double-auction", "participants": {"agents": ["alice"]}, "good": "gpu-hours"}
    created = await make(
        kube, MARKET, "m1", spec, phase="Collecting", participants=people("alice"), sealing=SEALING
    )
    code, out = await mabeam(
        cluster, "order", "m1", "--as", "alice", "--side", "buy", "--price", "10", "--quantity", "3"
    )
    assert (code, out) == (0, "order.mabeam.io/m1-alice created\n")
    obj = await kube.get(ORDER, "m1-alice", "default")
    assert obj is not None
    assert opened_order(created, "alice", obj["spec"]) == Opened(
        {"side": "buy", "price": 10.0, "quantity": 3}
    )
    assert obj["metadata"]["labels"] == {"mabeam.io/session": "m1", "mabeam.io/agent": "alice"}
    assert obj["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    code, out = await mabeam(cluster, "order", "m1", "--as", "alice", "--side", "sell", "--price", "8")
    assert out == "order.mabeam.io/m1-alice updated\n"
    assert opened_order(created, "alice", await order_spec(kube, "m1-alice")) == Opened(
        {"side": "sell", "price": 8.0, "quantity": 1}
    )
    assert (await mabeam(cluster, "order", "m1", "--as", "alice", "--schedule", "10=1"))[0] == 1
    assert "double auction" in capsys.readouterr().err
    assert (await mabeam(cluster, "order", "m1", "--as", "alice", "--side", "buy"))[0] == 1  # no price
    assert usage_error(cluster, "order", "m1", "--as", "alice", "--side", "hold", "--price", "1") == 2
    assert (
        usage_error(
            cluster, "order", "m1", "--as", "alice", "--side", "buy", "--price", "1", "--quantity", "0"
        )
        == 2
    )

    await kube.patch(MARKET, "m1", {"status": {"phase": "Cleared"}}, namespace="default", status=True)
    assert (await mabeam(cluster, "order", "m1", "--as", "alice", "--side", "buy", "--price", "9"))[0] == 1
    assert "has ended (phase Cleared)" in capsys.readouterr().err


async def test_equilibrium_orders_are_schedules(
    cluster: LocalCluster, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {
        "mechanism": "equilibrium",
        "participants": {"agents": ["alice"]},
        "good": "cpu",
        "priceGrid": {"min": 10, "max": 20, "step": 2},
    }
    created = await make(
        kube, MARKET, "m2", spec, phase="Collecting", participants=people("alice"), sealing=SEALING
    )
    assert (await mabeam(cluster, "order", "m2", "--as", "alice", "--schedule", "14=-3,10=5,12=2"))[0] == 0
    assert opened_order(created, "alice", await order_spec(kube, "m2-alice")).content["schedule"] == [
        {"price": 10.0, "quantity": 5.0},
        {"price": 12.0, "quantity": 2.0},
        {"price": 14.0, "quantity": -3.0},
    ]
    assert (await mabeam(cluster, "order", "m2", "--as", "alice", "--schedule", "11=1"))[0] == 1
    assert "not on market m2's price grid (10 to 20 in steps of 2)" in capsys.readouterr().err
    assert (await mabeam(cluster, "order", "m2", "--as", "alice", "--side", "buy", "--price", "12"))[0] == 1
    assert "--schedule" in capsys.readouterr().err
    assert usage_error(cluster, "order", "m2", "--as", "alice", "--schedule", "10=1,12=4") == 2  # rises
    assert usage_error(cluster, "order", "m2", "--as", "alice", "--schedule", "10=1,10=0") == 2
    assert usage_error(cluster, "order", "m2", "--as", "alice", "--schedule", "ten=1") == 2


def rows(frame: str) -> list[list[str]]:
    return [line.split() for line in frame.splitlines()]


def test_sealed_auction_frames() -> None:
    obj = {
        "metadata": {"name": "a1", "namespace": "default"},
        "spec": {"mechanism": "second-price", "items": ["gpu-1"], "reservePrice": 5},
        "status": {
            "phase": "Bidding",
            "deadline": (NOW + dt.timedelta(seconds=20)).isoformat(),
            "participants": people("alice", "bob", "carol", "dave"),
            "bids": [
                {
                    "agent": "alice",
                    "sealed": {"keyId": KEY.key_id, "ciphertext": "AAAA"},
                    "receivedAt": STAMP,
                },
                {"agent": "bob", "sealed": {"keyId": KEY.key_id, "ciphertext": "BBBB"}, "receivedAt": STAMP},
            ],
            "refusals": [{"agent": "carol", "reason": "Copied", "message": "a copy of bob's sealed Bid"}],
        },
    }
    frame = render_auction(obj, NOW)
    assert frame.splitlines()[0].split() == [
        "Auction", "default/a1", "mechanism", "second-price", "phase", "Bidding", "closes", "in", "20s",
    ]  # fmt: skip
    assert "reserve 5" in frame
    assert ["alice", "sealed"] in rows(frame)
    assert ["bob", "sealed"] in rows(frame)
    assert ["carol", "refused:", "Copied"] in rows(frame)
    assert ["dave", "waiting"] in rows(frame)
    assert "Result" not in frame

    obj["status"]["bids"][0]["amount"] = 12.5  # type: ignore[index]
    obj["status"] |= {
        "phase": "Awarded",
        "result": {
            "allocations": [{"agent": "alice", "items": ["gpu-1"], "price": 9, "bid": 12.5}],
            "winners": "alice",
            "revenue": 9,
            "reason": "SecondPrice",
            "message": "alice pays the second-highest bid",
            "decidedAt": STAMP,
        },
    }
    frame = render_auction(obj, NOW)
    assert "phase Awarded   closed" in frame
    assert "Result: Awarded (SecondPrice) alice pays the second-highest bid" in frame
    assert ["WINNER", "ITEMS", "PRICE", "BID"] in rows(frame)
    assert ["alice", "gpu-1", "9", "12.5"] in rows(frame)
    assert "Revenue: 9" in frame
    assert ["alice", "opened", "(12.5)"] in rows(frame)


def test_clock_and_combinatorial_auction_frames() -> None:
    english = {
        "metadata": {"name": "e1", "namespace": "default"},
        "spec": {"mechanism": "english", "items": ["gpu-1"], "increment": 1},
        "status": {
            "phase": "Bidding",
            "deadline": (NOW - dt.timedelta(seconds=1)).isoformat(),
            "participants": people("alice", "bob", "carol"),
            "round": 3,
            "clockPrice": 12,
            "active": ["alice", "carol"],
            "rounds": [
                {"round": 1, "price": 10, "accepted": ["alice", "bob", "carol"]},
                {"round": 2, "price": 11, "accepted": ["alice", "carol"]},
            ],
            "refusals": [{"agent": "bob", "reason": "NotActive"}],
        },
    }
    frame = render_auction(english, NOW)
    assert "deadline passed" in frame.splitlines()[0]
    assert "Round 3   clock price 12   active: alice, carol" in frame
    assert ["alice", "accepted", "round", "2"] in rows(frame)
    assert ["bob", "out", "(accepted", "round", "1);", "refused:", "NotActive"] in rows(frame)

    combinatorial = {
        "metadata": {"name": "c1", "namespace": "default"},
        "spec": {"mechanism": "combinatorial", "items": ["gpu-1", "gpu-2"]},
        "status": {
            "phase": "NoSale",
            "participants": people("alice"),
            "bids": [
                {
                    "agent": "alice",
                    "bundles": [{"items": ["gpu-1", "gpu-2"], "amount": 3}],
                    "receivedAt": STAMP,
                }
            ],
            "result": {"reason": "BelowReserve", "message": "no bid reaches the reserve", "decidedAt": STAMP},
        },
    }
    frame = render_auction(combinatorial, NOW)
    assert "Round" not in frame
    assert ["alice", "opened", "(gpu-1,gpu-2=3)"] in rows(frame)
    assert "Result: NoSale (BelowReserve) no bid reaches the reserve" in frame
    assert "WINNER" not in frame


def test_market_frames() -> None:
    obj = {
        "metadata": {"name": "m1", "namespace": "default"},
        "spec": {"mechanism": "double-auction", "good": "gpu-hours"},
        "status": {
            "phase": "Cleared",
            "participants": people("alice", "bob", "carol", "dave"),
            "orders": [
                {"agent": "alice", "side": "buy", "price": 10, "quantity": 2, "receivedAt": STAMP},
                {"agent": "bob", "side": "sell", "price": 4, "quantity": 2, "receivedAt": STAMP},
            ],
            "refusals": [{"agent": "carol", "reason": "Late"}],
            "result": {
                "price": 7,
                "sellerPrice": 6,
                "volume": 2,
                "trades": [
                    {"agent": "alice", "side": "buy", "quantity": 2, "price": 7, "total": 14},
                    {"agent": "bob", "side": "sell", "quantity": 2, "price": 6, "total": 12},
                ],
                "surplus": 2,
                "reason": "TradeReduction",
                "message": "2 units traded",
                "decidedAt": STAMP,
            },
        },
    }
    frame = render_market(obj, NOW)
    assert frame.splitlines()[0].split()[-3:] == ["phase", "Cleared", "closed"]
    assert "good gpu-hours" in frame
    assert ["alice", "buy", "2", "@", "10", "counted"] in rows(frame)
    assert ["carol", "refused:", "Late"] in rows(frame)
    assert ["dave", "waiting"] in rows(frame)
    assert "Result: Cleared (TradeReduction)   price 7   seller price 6   volume 2   2 units traded" in frame
    assert ["alice", "buy", "2", "7", "14"] in rows(frame)
    assert ["bob", "sell", "2", "6", "12"] in rows(frame)

    schedule = [{"price": 10 + i, "quantity": 8 - i} for i in range(8)]
    equilibrium = {
        "metadata": {"name": "m2", "namespace": "default"},
        "spec": {"mechanism": "equilibrium", "good": "cpu"},
        "status": {
            "phase": "Collecting",
            "participants": people("alice"),
            "orders": [{"agent": "alice", "schedule": schedule, "receivedAt": STAMP}],
        },
    }
    frame = render_market(equilibrium, NOW)
    assert "no deadline yet" in frame
    assert ["alice", "schedule", "10=8,11=7,12=6,13=5,14=4,15=3,...", "(8", "points)", "counted"] in rows(
        frame
    )
    assert "Result" not in frame


async def test_watch_auction_redraws_and_exits_when_awarded(cluster: LocalCluster, kube: Kube) -> None:
    await auction(
        kube,
        "w1",
        "first-price",
        ["gpu-1"],
        phase="Bidding",
        deadline=later(30),
        participants=people("alice"),
    )
    watch, out = watching(cluster, "auction", "w1", "--refresh", "0.1")
    await drawn(watch, out, 1)
    bids = [{"agent": "alice", "sealed": {"keyId": KEY.key_id, "ciphertext": "CCCC"}, "receivedAt": STAMP}]
    await kube.patch(AUCTION, "w1", {"status": {"bids": bids}}, namespace="default", status=True)
    await drawn(watch, out, 2)
    result = {
        "allocations": [{"agent": "alice", "items": ["gpu-1"], "price": 4, "bid": 4}],
        "revenue": 4,
        "reason": "HighestBid",
        "decidedAt": STAMP,
    }
    await kube.patch(
        AUCTION, "w1", {"status": {"phase": "Awarded", "result": result}}, namespace="default", status=True
    )
    code, text = await asyncio.wait_for(watch, 30)
    assert code == 0
    frames = text.strip().split("\n\n")
    assert len(frames) == 3
    assert ["alice", "waiting"] in rows(frames[0]) and ["alice", "sealed"] in rows(frames[1])
    assert "phase Awarded" in frames[2] and ["alice", "gpu-1", "4", "4"] in rows(frames[2])


async def test_watch_market_ends_at_once_when_already_closed(cluster: LocalCluster, kube: Kube) -> None:
    spec = {"mechanism": "double-auction", "participants": {"agents": ["alice"]}, "good": "gpu-hours"}
    result = {"reason": "NoOrders", "message": "nobody ordered", "decidedAt": STAMP}
    await make(kube, MARKET, "w2", spec, phase="NoTrade", result=result)
    code, out = await asyncio.wait_for(mabeam(cluster, "watch", "market", "w2"), 5)
    assert code == 0
    assert "Result: NoTrade (NoOrders)   volume 0   nobody ordered" in out
    assert (await mabeam(cluster, "watch", "market", "nope"))[0] == 1
    assert (await mabeam(cluster, "watch", "bids", "w2"))[0] == 2


async def test_fisher_orders_are_a_budget_and_utilities(
    cluster: LocalCluster, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {
        "mechanism": "fisher",
        "participants": {"agents": ["alice"]},
        "good": "cluster shares",
        "goods": [{"name": "cpu", "supply": 8}, {"name": "gpu", "supply": 2}],
    }
    created = await make(
        kube, MARKET, "m3", spec, phase="Collecting", participants=people("alice"), sealing=SEALING
    )
    argv = ["order", "m3", "--as", "alice", "--budget", "60.50", "--utilities", "cpu=1,gpu=3"]
    assert (await mabeam(cluster, *argv))[0] == 0
    content = opened_order(created, "alice", await order_spec(kube, "m3-alice")).content
    assert (content["budget"], content["utilities"]) == (60.5, {"cpu": 1.0, "gpu": 3.0})
    assert (await mabeam(cluster, "order", "m3", "--as", "alice", "--budget", "5", "--utilities", "ram=1"))[
        0
    ] == 1
    assert "'ram' is not a good of market m3 (cpu, gpu)" in capsys.readouterr().err
    assert (await mabeam(cluster, "order", "m3", "--as", "alice", "--schedule", "1=1"))[0] == 1
    assert "--budget B --utilities" in capsys.readouterr().err
    assert usage_error(cluster, "order", "m3", "--as", "alice", "--utilities", "cpu=1,cpu=2") == 2
    assert usage_error(cluster, "order", "m3", "--as", "alice", "--utilities", "cpu") == 2
