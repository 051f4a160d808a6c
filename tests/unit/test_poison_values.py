"""Hostile values and patterns: refused with a field path, in bounded time, without recursion."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mabeam.core.variables import (
    VALUE_MAX_DEPTH,
    VALUE_MAX_ITEMS,
    parse_spec,
    parse_status,
    reconcile_spec,
    validate_spec,
    validate_value,
    value_shape_problem,
)
from mabeam.core.variables_wire import decode_write
from mabeam.errors import InvalidSpecError
from mabeam.kube.schema import validate

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_depth_is_allowed_up_to_the_limit_and_refused_past_it() -> None:
    assert value_shape_problem(nested(VALUE_MAX_DEPTH)) is None
    assert "nested deeper than" in (value_shape_problem(nested(VALUE_MAX_DEPTH + 1)) or "")
    # Far past any recursion limit: still an answer, not a RecursionError.
    assert "nested deeper than" in (value_shape_problem(nested(100_000)) or "")


def test_size_is_limited_in_items_and_in_text() -> None:
    assert value_shape_problem(list(range(VALUE_MAX_ITEMS - 1))) is None
    assert "items" in (value_shape_problem(list(range(100_000))) or "")
    assert "items" in (value_shape_problem({str(i): i for i in range(VALUE_MAX_ITEMS)}) or "")
    assert "characters" in (value_shape_problem(["x" * 200_000, "y" * 100_000]) or "")


@pytest.mark.parametrize("value", [nested(5000), list(range(100_000))], ids=["deep", "huge"])
def test_a_poison_spec_value_makes_the_variable_invalid_with_a_small_status(value: Any) -> None:
    spec = parse_spec({"type": "json", "value": value})
    status, outcome = reconcile_spec(spec, parse_status(None), 1, NOW)
    assert outcome is not None and not outcome.applied and outcome.reason == "InvalidValue"
    assert status.phase == "Invalid" and status.version == 0
    assert len(str(status.to_wire())) < 2000
    with pytest.raises(InvalidSpecError) as err:
        validate_value(spec, value)
    assert err.value.path == "spec.value"


@pytest.mark.timeout(10)
def test_a_catastrophic_pattern_is_matched_in_linear_time() -> None:
    spec = parse_spec({"type": "string", "constraints": {"pattern": "^(a+)+$"}})
    validate_value(spec, "a" * 10_000)
    with pytest.raises(InvalidSpecError, match="no match of the pattern"):
        validate_value(spec, "a" * 10_000 + "!")  # hours for a backtracking engine


def test_a_pattern_outside_re2_syntax_is_refused_with_its_path() -> None:
    with pytest.raises(InvalidSpecError) as err:
        validate_spec(parse_spec({"type": "string", "constraints": {"pattern": r"(a)\1"}}))
    assert err.value.path == "spec.constraints.pattern" and "RE2" in str(err.value)


def test_a_write_annotation_nested_too_deeply_is_malformed() -> None:
    with pytest.raises(InvalidSpecError, match="nested too deeply"):
        decode_write('{"writeId": "w", "value": ' + "[" * 100_000 + "]" * 100_000 + "}")


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.low <= self.high"}],
            "properties": {
                "low": {"type": "number"},
                "high": {"type": "number"},
                "count": {"type": "integer"},
                "anything": {"x-kubernetes-preserve-unknown-fields": True},
            },
        }
    },
}


def test_an_integer_beyond_64_bits_in_an_integer_field_is_a_type_error() -> None:
    _, errors = validate({"spec": {"low": 1, "high": 2, "count": 2**70}}, SCHEMA)
    assert [(e.path, e.reason) for e in errors] == [("spec.count", "FieldValueTypeInvalid")]


def test_a_number_cel_cannot_hold_is_an_error_of_the_field_not_a_crash() -> None:
    _, errors = validate({"spec": {"low": 10**400, "high": 2}}, SCHEMA)
    assert len(errors) == 1 and errors[0].path == "spec" and "out of CEL's range" in str(errors[0])


def test_untyped_json_is_left_out_of_cel() -> None:
    _, errors = validate({"spec": {"low": 1, "high": 2, "anything": {"n": 2**200}}}, SCHEMA)
    assert errors == []
