"""The SDK's side of auctions and markets: what a callback's return value becomes on the wire."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.core.economics.sealing import Opened, open_sealed
from mabeam.kube.resources import BID, ORDER
from mabeam.models._sealed import SealedEnvelope
from mabeam.models.auction import BidContent
from mabeam.models.market import OrderContent
from mabeam.sdk._trading import (
    AuctionView,
    TradeResponder,
    TradingCallbacks,
    bid_content,
    compress_schedule,
    order_fields,
    seal_bid,
    seal_order,
)
from tests.strategies_auctions import KEY


def view(**fields: Any) -> AuctionView:
    base: dict[str, Any] = dict(
        name="sale", namespace="ns", mechanism="second-price", items=("gpu",), reserve_price=0.0,
        deadline=None, participants=("ann", "ben"), agent="ann",
    )  # fmt: skip
    base.update(fields)
    return AuctionView(**base)


def test_an_amount_and_bundles_become_bid_contents() -> None:
    content = bid_content(12)
    assert content is not None and (content.amount, content.bundles) == (12.0, None)
    bundles = bid_content({("a", "b"): 30, ("a",): 10.5})
    assert bundles is not None and bundles.bundles is not None
    assert [(b.items, b.amount) for b in bundles.bundles] == [(["a", "b"], 30.0), (["a"], 10.5)]
    assert bid_content(None) is None
    with pytest.raises(TypeError):
        bid_content(True)


def test_a_sealed_bid_opens_only_for_the_operator_as_this_agents_bid_in_this_auction() -> None:
    envelope = seal_bid(KEY.info, "uid-1", "ann", BidContent(amount=7.5))
    again = seal_bid(KEY.info, "uid-1", "ann", BidContent(amount=7.5))
    assert envelope.ciphertext != again.ciphertext  # fresh randomness every time
    assert "7.5" not in envelope.ciphertext
    assert open_sealed(KEY, envelope, "Bid", "uid-1", "ann") == Opened({"amount": 7.5})
    assert not isinstance(open_sealed(KEY, envelope, "Bid", "uid-2", "ann"), Opened)
    assert not isinstance(open_sealed(KEY, envelope, "Bid", "uid-1", "ben"), Opened)


def test_an_exact_amount_survives_the_envelope() -> None:
    # 10^13 + 0.001 has 17 significant digits: no binary float holds it, the decimal string does
    exact = "10000000000000.001"
    content = bid_content(exact)
    assert content is not None and content.amount == Decimal(exact)
    opened = open_sealed(KEY, seal_bid(KEY.info, "uid-1", "ann", content), "Bid", "uid-1", "ann")
    assert opened == Opened({"amount": exact})
    assert BidContent.model_validate(opened.content).amount == Decimal(exact)
    bundles = bid_content({("a", "b"): Decimal(exact), ("a",): 12.5})
    assert bundles is not None
    opened = open_sealed(KEY, seal_bid(KEY.info, "uid-1", "ann", bundles), "Bid", "uid-1", "ann")
    assert isinstance(opened, Opened)
    assert opened.content["bundles"] == [
        {"items": ["a", "b"], "amount": exact},
        {"items": ["a"], "amount": 12.5},
    ]
    order = OrderContent.model_validate(order_fields({"side": "buy", "price": exact}))
    opened = open_sealed(KEY, seal_order(KEY.info, "uid-2", "ann", order), "Order", "uid-2", "ann")
    assert isinstance(opened, Opened)
    assert OrderContent.model_validate(opened.content).price == Decimal(exact)


def test_an_order_needs_a_side_and_a_price() -> None:
    assert order_fields({"side": "sell", "price": 3, "quantity": 2}) == {
        "side": "sell",
        "price": 3.0,
        "quantity": 2,
    }
    assert order_fields({"side": "buy", "price": 1})["quantity"] == 1  # type: ignore[index]
    assert order_fields(None) is None
    with pytest.raises(ValueError, match="buy or sell"):
        order_fields({"side": "hold", "price": 1})
    with pytest.raises(KeyError):
        order_fields({"side": "buy"})


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=40))
def test_a_compressed_schedule_is_the_same_step_function(quantities: list[int]) -> None:
    points = [(float(i), float(q)) for i, q in enumerate(quantities)]
    schedule = compress_schedule(points)
    assert schedule[0]["price"] == 0.0
    for price, quantity in points:  # the quantity in force at each sampled price is unchanged
        in_force = [p for p in schedule if p["price"] <= price][-1]
        assert in_force["quantity"] == quantity
    assert all(a["quantity"] != b["quantity"] for a, b in itertools.pairwise(schedule))


class RecordingKube:
    """Records the Bids the SDK creates."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    async def create(self, res: Any, body: dict[str, Any]) -> dict[str, Any]:
        assert res == BID
        self.created.append(body)
        return body


def auction(phase: str = "Bidding", *, sealing: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "participants": [{"name": "ann"}, {"name": "ben"}]}
    if sealing:
        status["sealing"] = KEY.info.to_wire()
    return {
        "metadata": {"name": "sale", "namespace": "ns", "uid": "uid-1"},
        "spec": {"mechanism": "second-price", "participants": {"agents": ["ann", "ben"]}, "items": ["gpu"]},
        "status": status,
    }


async def test_the_sdk_seals_the_bid_to_the_published_key() -> None:
    kube = RecordingKube()
    responder = TradeResponder(kube, "ann", "ns", TradingCallbacks(on_bid=lambda auction: 9.25))  # type: ignore[arg-type]
    assert responder._auction(auction("Awarded")) is None
    assert responder._auction(auction(sealing=False)) is None  # no key published yet: wait
    request = responder._auction(auction())
    assert request is not None and request[0] == ("uid-1", "bid")
    await request[1]()
    (bid,) = kube.created
    assert set(bid["spec"]) == {"auction", "agent", "sealed"}  # the amount is not in clear
    envelope = SealedEnvelope.model_validate(bid["spec"]["sealed"])
    assert envelope.key_id == KEY.key_id
    assert open_sealed(KEY, envelope, "Bid", "uid-1", "ann") == Opened({"amount": 9.25})


async def test_a_bad_sealed_bid_is_logged_without_its_amount(caplog: pytest.LogCaptureFixture) -> None:
    kube = RecordingKube()
    callbacks = TradingCallbacks(on_bid=lambda auction: [{"items": [], "amount": -1.75}])
    responder = TradeResponder(kube, "ann", "ns", callbacks)  # type: ignore[arg-type]
    request = responder._auction(auction())
    assert request is not None
    with caplog.at_level("DEBUG", logger="mabeam.sdk"):
        await request[1]()
    assert "gave no valid bid" in caplog.text
    assert "1.75" not in caplog.text
    assert kube.created == []


class RecordingOrders(RecordingKube):
    async def create(self, res: Any, body: dict[str, Any]) -> dict[str, Any]:
        assert res == ORDER
        self.created.append(body)
        return body


def market(mechanism: str, *, sealing: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Collecting", "participants": [{"name": "ann"}]}
    if sealing:
        status["sealing"] = KEY.info.to_wire()
    spec: dict[str, Any] = {"mechanism": mechanism, "participants": {"agents": ["ann"]}, "good": "cpu"}
    if mechanism == "equilibrium":
        spec["priceGrid"] = {"min": 1, "max": 3, "step": 1}
    return {"metadata": {"name": "mkt", "namespace": "ns", "uid": "uid-m"}, "spec": spec, "status": status}


async def test_the_sdk_seals_orders_and_schedules() -> None:
    kube = RecordingOrders()
    callbacks = TradingCallbacks(
        on_order=lambda m: {"side": "sell", "price": 4.5, "quantity": 2}, on_price=lambda m, p: 3 - p
    )
    responder = TradeResponder(kube, "ann", "ns", callbacks)  # type: ignore[arg-type]
    assert responder._market(market("double-auction", sealing=False)) is None  # no key yet: wait
    for mechanism in ("double-auction", "equilibrium"):
        request = responder._market(market(mechanism))
        assert request is not None
        await request[1]()
    orders = [SealedEnvelope.model_validate(o["spec"]["sealed"]) for o in kube.created]
    assert all(set(o["spec"]) == {"market", "agent", "sealed"} for o in kube.created)
    assert [open_sealed(KEY, e, "Order", "uid-m", "ann") for e in orders] == [
        Opened({"side": "sell", "price": 4.5, "quantity": 2}),
        Opened({"quantity": 1, "schedule": [{"price": 1.0, "quantity": 2.0}, {"price": 2.0, "quantity": 1.0},
                             {"price": 3.0, "quantity": 0.0}]}),
    ]  # fmt: skip
    assert not isinstance(open_sealed(KEY, orders[0], "Bid", "uid-m", "ann"), Opened)  # an Order is no Bid
