"""Exact amounts of money: bids, reserves, prices, limits and payments.

An amount is a :class:`decimal.Decimal` on the Python side. On the wire it may be written as

- a JSON integer (``10``),
- a decimal string (``"10000000000000.001"``), exact however many digits it has (up to
  :data:`MAX_DIGITS` before and :data:`MAX_DECIMALS` after the point), or
- a JSON number with a fraction (``12.5``), for compatibility: it is read as the decimal it is
  written as (its shortest round-trip text, so ``0.1`` is one tenth, not the binary float
  nearest to it). A JSON float carries at most 15 to 17 significant digits; write longer amounts
  as strings.

It is written back (:func:`dump_amount`) as an integer when it is whole, as a JSON number when
that number's shortest text is the amount exactly (at most 15 significant digits, so that every
JSON parser on the way, the API server's included, gives the same text back), else as a decimal
string. Reading what was written gives the same amount: the round trip is exact.

CRD schema. Kubernetes' structural schemas cannot say "a number or a string" (``anyOf`` may not
carry types, except integer-or-string, which refuses ``12.5``), so an amount field keeps any
JSON value (``x-kubernetes-preserve-unknown-fields``) and the operator checks it, as it does for
a Variable's value: a bad amount makes the Bid or Order refused, or the Auction or Market
Invalid, with the field path and what is allowed. Such fields are not visible to CEL rules, so
rules about amounts are checked by the models only.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

__all__ = [
    "AMOUNT_PATTERN",
    "MAX_DECIMALS",
    "MAX_DIGITS",
    "Amount",
    "AnyAmount",
    "PositiveAmount",
    "dump_amount",
    "parse_amount",
    "to_decimal",
]

MAX_DIGITS = 24
MAX_DECIMALS = 18
AMOUNT_PATTERN = rf"^-?[0-9]{{1,{MAX_DIGITS}}}(\.[0-9]{{1,{MAX_DECIMALS}}})?$"
_PATTERN = re.compile(AMOUNT_PATTERN)
_LIMIT = Decimal(10) ** 15


def parse_amount(value: object) -> Decimal:
    """Read an amount: an int, a decimal string, a float (by its shortest text) or a Decimal."""
    if isinstance(value, bool):
        raise ValueError("an amount is a number or a decimal string, not a boolean")
    if isinstance(value, Decimal):
        text = format(value, "f") if value.is_finite() else str(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("an amount is finite")
            text = format(Decimal(text), "f")
    elif isinstance(value, Fraction):
        return to_decimal(value, exact=True)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"an amount is a number or a decimal string, not {type(value).__name__}")
    if text in ("inf", "-inf", "nan", "Infinity", "-Infinity", "NaN"):
        raise ValueError("an amount is finite")
    if not _PATTERN.match(text):
        raise ValueError(
            f'{value!r} is not an amount: write an integer or a decimal such as "12.50" (at most '
            f"{MAX_DIGITS} digits before the point and {MAX_DECIMALS} after it)"
        )
    try:
        return Decimal(text)
    except InvalidOperation as error:  # pragma: no cover - the pattern admits only decimals
        raise ValueError(f"{value!r} is not an amount") from error


def to_decimal(value: Fraction | Decimal | int, *, exact: bool = False) -> Decimal:
    """A Fraction as a Decimal: exact when its decimal expansion ends (it does for sums, differences
    and halves of amounts), else rounded to :data:`MAX_DECIMALS` places (or ValueError if
    ``exact``)."""
    if isinstance(value, Decimal | int):
        return Decimal(value)
    num, den = value.numerator, value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den == 1:
        places = max(twos, fives)
        scaled = value * 10**places
        return Decimal(f"{int(scaled)}E-{places}")
    if exact:
        raise ValueError(f"{value} has no finite decimal expansion")
    quantum = 10**MAX_DECIMALS
    rounded = (num * quantum * 2 + value.denominator) // (2 * value.denominator)
    return Decimal(f"{rounded}E-{MAX_DECIMALS}")


def dump_amount(value: Decimal) -> int | float | str:
    """The wire form of an amount: an int if whole, a float if its shortest text is exact, else a
    decimal string (see the module docstring)."""
    value = Decimal(value)
    if value == value.to_integral_value():
        return int(value)
    digits = len(value.normalize().as_tuple().digits)
    if digits <= 15:
        as_float = float(value)
        if Decimal(repr(as_float)) == value:
            return as_float
    return format(value.normalize(), "f")


def _bounded(low: Decimal | None, high: Decimal | None, *, positive: bool = False) -> Any:
    def check(value: object) -> Decimal:
        amount = parse_amount(value)
        if positive and amount <= 0:
            raise ValueError("must be greater than 0")
        if low is not None and amount < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and amount > high:
            raise ValueError(f"must be at most {high}")
        return amount

    return check


_SCHEMA: dict[str, Any] = {
    "x-kubernetes-preserve-unknown-fields": True,
    "description": 'An exact amount: an integer, a decimal string such as "12.50", or a number.',
}

Amount = Annotated[
    Decimal,
    PlainValidator(_bounded(Decimal(0), _LIMIT)),
    PlainSerializer(dump_amount),
    WithJsonSchema(_SCHEMA),
]
"""A non-negative amount of at most 10^15 (spec fields: bids, reserves, limits)."""

PositiveAmount = Annotated[
    Decimal,
    PlainValidator(_bounded(None, _LIMIT, positive=True)),
    PlainSerializer(dump_amount),
    WithJsonSchema(_SCHEMA),
]
"""An amount above 0 and at most 10^15 (clock increments and decrements, a grid's step)."""

AnyAmount = Annotated[
    Decimal,
    PlainValidator(_bounded(None, None)),
    PlainSerializer(dump_amount),
    WithJsonSchema(_SCHEMA),
]
"""An amount without bounds (status fields the operator computes: prices, payments, totals)."""
