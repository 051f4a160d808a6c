"""Exact amounts: the wire forms round-trip, floats are read as the decimals they are written as,
and huge and tiny amounts stay exact through the sealed mechanisms and the models."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mabeam.core.economics._sealed import SealedBid, first_price, second_price
from mabeam.models._amount import dump_amount, parse_amount, to_decimal
from mabeam.models.auction import AuctionSpec, Bundle
from tests.strategies_auctions import at

FAST = settings(max_examples=300, deadline=None)

amounts = st.decimals(min_value=0, max_value=10**15, places=6) | st.decimals(
    min_value=0, max_value=Decimal("0.001"), places=18
)


@FAST
@given(amounts)
def test_the_wire_form_round_trips_exactly_through_json(amount: Decimal) -> None:
    wire = json.loads(json.dumps(dump_amount(amount)))
    assert parse_amount(wire) == amount
    assert Bundle.model_validate({"items": ["a"], "amount": wire}).amount == amount


@FAST
@given(amounts)
def test_a_decimal_string_is_read_exactly(amount: Decimal) -> None:
    assert parse_amount(format(amount, "f")) == amount


def test_floats_are_read_as_the_decimals_they_are_written_as() -> None:
    assert parse_amount(0.1) == Decimal("0.1")
    assert parse_amount(12.5) == Decimal("12.5")
    assert parse_amount(1e-7) == Decimal("0.0000001")
    assert parse_amount(10) == Decimal(10)


def test_the_wire_form_is_a_number_when_that_is_exact_and_a_string_otherwise() -> None:
    assert dump_amount(Decimal("10")) == 10
    assert dump_amount(Decimal("12.50")) == 12.5
    assert dump_amount(Decimal("10000000000000.001")) == "10000000000000.001"


@pytest.mark.parametrize("bad", ["1e5", "-1", "1.2.3", "", "NaN", True, float("inf"), [1], "0x10"])
def test_what_is_not_an_amount_is_refused_with_a_message(bad: object) -> None:
    with pytest.raises(ValidationError):
        Bundle.model_validate({"items": ["a"], "amount": bad})


def test_spec_bounds_hold() -> None:
    with pytest.raises(ValidationError, match="at most"):
        AuctionSpec.model_validate(
            {"mechanism": "first-price", "participants": {"agents": ["a"]}, "items": ["x"],
             "reservePrice": "1000000000000000.001"}
        )  # fmt: skip
    with pytest.raises(ValidationError, match="greater than 0"):
        AuctionSpec.model_validate(
            {"mechanism": "english", "participants": {"agents": ["a"]}, "items": ["x"], "increment": 0}
        )


@FAST
@given(st.fractions(max_denominator=10**6))
def test_to_decimal_is_exact_when_the_expansion_ends(value: Fraction) -> None:
    decimal = to_decimal(value)
    if all(p in (2, 5) for p in _prime_factors(value.denominator)):
        assert Fraction(decimal) == value
    else:
        assert abs(Fraction(decimal) - value) <= Fraction(1, 2 * 10**18)


def _prime_factors(n: int) -> set[int]:
    out, p = set(), 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            out.add(p)
            n //= p
        p += 1
    if n > 1:
        out.add(n)
    return out


@FAST
@given(
    st.lists(st.integers(min_value=-5, max_value=5), min_size=1, max_size=20),
    st.sampled_from([Decimal("10000000000000"), Decimal("0.000000000000000001"), Decimal(7)]),
)
def test_second_price_is_exact_for_huge_and_tiny_amounts(offsets: list[int], base: Decimal) -> None:
    tick = Decimal("0.001") if base > 1 else Decimal("0.000000000000000001")
    bids = [SealedBid(f"a{i}", base + (k + 5) * tick, at(i)) for i, k in enumerate(offsets)]
    values = sorted((b.amount for b in bids), reverse=True)
    outcome = second_price(bids, Decimal(0))
    assert outcome.bid == values[0]
    assert outcome.price == (values[1] if len(values) > 1 else Decimal(0))
    assert first_price(bids, Decimal(0)).price == values[0]


def test_the_issue_case_one_thousandth_apart_at_ten_trillion() -> None:
    low, high = Decimal("10000000000000"), Decimal("10000000000000.001")
    outcome = second_price([SealedBid("ada", low, at(0)), SealedBid("bob", high, at(1))], Decimal(0))
    assert (outcome.winner, outcome.price, outcome.bid) == ("bob", low, high)
