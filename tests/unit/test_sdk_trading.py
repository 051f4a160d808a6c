"""The SDK's side of auctions and markets: what a callback's return value becomes on the wire."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.core.economics import commitment
from mabeam.sdk._trading import (
    AuctionView,
    TradeResponder,
    TradingCallbacks,
    bid_reveal,
    compress_schedule,
    order_fields,
)


def view(**fields: Any) -> AuctionView:
    base: dict[str, Any] = dict(
        name="sale", namespace="ns", mechanism="second-price", items=("gpu",), reserve_price=0.0,
        deadline=None, participants=("ann", "ben"), agent="ann",
    )  # fmt: skip
    base.update(fields)
    return AuctionView(**base)


def test_an_amount_and_bundles_become_reveals() -> None:
    reveal = bid_reveal(12, "x" * 16)
    assert reveal is not None and (reveal.amount, reveal.bundles) == (12.0, None)
    bundles = bid_reveal({("a", "b"): 30, ("a",): 10.5}, "x" * 16)
    assert bundles is not None and bundles.bundles is not None
    assert [(b.items, b.amount) for b in bundles.bundles] == [(["a", "b"], 30.0), (["a"], 10.5)]
    assert bid_reveal(None, "x" * 16) is None
    with pytest.raises(TypeError):
        bid_reveal(True, "x" * 16)


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


def test_with_a_bid_key_a_restarted_agent_opens_its_own_commitment() -> None:
    callbacks = TradingCallbacks(on_bid=lambda auction: 7.0)
    first = TradeResponder(None, "ann", "ns", callbacks, bid_key=b"secret")  # type: ignore[arg-type]
    again = TradeResponder(None, "ann", "ns", callbacks, bid_key=b"secret")  # type: ignore[arg-type]
    other_key = TradeResponder(None, "ann", "ns", callbacks, bid_key=b"other")  # type: ignore[arg-type]
    no_key = TradeResponder(None, "ann", "ns", callbacks, bid_key=None)  # type: ignore[arg-type]
    committed = commitment(bid_reveal(7.0, first._nonce(view(), "uid-1")))  # type: ignore[arg-type]
    assert commitment(bid_reveal(7.0, again._nonce(view(), "uid-1"))) == committed  # type: ignore[arg-type]
    assert commitment(bid_reveal(7.0, other_key._nonce(view(), "uid-1"))) != committed  # type: ignore[arg-type]
    # Another auction (uid) gets another nonce; without a key every nonce is fresh.
    assert first._nonce(view(), "uid-2") != first._nonce(view(), "uid-1")
    assert no_key._nonce(view(), "uid-1") != no_key._nonce(view(), "uid-1")


async def test_a_bad_sealed_bid_is_logged_without_its_secret(caplog: pytest.LogCaptureFixture) -> None:
    callbacks = TradingCallbacks(on_bid=lambda auction: [{"items": [], "amount": -1}])
    responder = TradeResponder(None, "ann", "ns", callbacks, bid_key=b"secret")  # type: ignore[arg-type]
    nonce = responder._nonce(view(), "uid-1")
    with caplog.at_level("DEBUG", logger="mabeam.sdk"):
        assert await responder._sealed_bid(callbacks.on_bid, view(), "uid-1") is None  # type: ignore[arg-type]
    assert "gave no valid bid" in caplog.text
    assert nonce not in caplog.text and "secret" not in caplog.text
