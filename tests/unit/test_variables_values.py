"""Value validation against the type and constraints, and spec coherence (mabeam.core.variables)."""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.core.variables import parse_spec, validate_spec, validate_value
from mabeam.errors import InvalidSpecError
from mabeam.models.variable import VariableSpec
from tests.strategies_variables import candidate_values, coherent_specs, json_values


def reference_ok(spec: VariableSpec, value: Any) -> bool:
    """What the docs promise, written out independently of the implementation."""
    c = spec.constraints
    if value is None:
        return False
    if spec.type == "boolean":
        return type(value) is bool
    if spec.type == "json":
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            return False
        return True
    if spec.type == "enum":
        return type(value) is str and value in (c.allowed_values or [])
    if spec.type == "string":
        return (
            type(value) is str
            and (c.max_length is None or len(value) <= c.max_length)
            and (c.pattern is None or re.search(c.pattern, value) is not None)
        )
    if type(value) not in (int, float) or not math.isfinite(value):
        return False
    exact = Fraction(value)
    if spec.type == "integer" and (exact.denominator != 1 or abs(exact) >= 2**63):
        return False
    if c.minimum is not None and exact < Fraction(c.minimum):
        return False
    return c.maximum is None or exact <= Fraction(c.maximum)


@given(coherent_specs(), candidate_values)
def test_validate_value_accepts_exactly_what_the_reference_allows(spec: VariableSpec, value: Any) -> None:
    expected = reference_ok(spec, value)
    try:
        validate_value(spec, value)
    except InvalidSpecError as exc:
        assert not expected, f"{value!r} should fit {spec.to_wire()}: {exc}"
        assert exc.path == "spec.value"
    else:
        assert expected, f"{value!r} should not fit {spec.to_wire()}"


@given(coherent_specs(types=("json",)), json_values)
def test_json_accepts_any_finite_json(spec: VariableSpec, value: Any) -> None:
    expected = reference_ok(spec, value)
    try:
        validate_value(spec, value)
    except InvalidSpecError:
        assert not expected
    else:
        assert expected


@pytest.mark.parametrize(
    ("spec", "value", "words"),
    [
        ({"type": "integer", "constraints": {"minimum": 0, "maximum": 10}}, 11, ["integer", "0", "10", "11"]),
        ({"type": "integer"}, 2.5, ["integer", "2.5", "whole"]),
        ({"type": "integer"}, True, ["integer", "true"]),
        ({"type": "number", "constraints": {"minimum": 0.5}}, 0, ["number", "at least 0.5"]),
        ({"type": "number"}, "3", ["number", '"3"']),
        (
            {"type": "enum", "constraints": {"allowedValues": ["eco", "max"]}},
            "off",
            ['"eco"', '"max"', "off"],
        ),
        ({"type": "string", "constraints": {"maxLength": 3}}, "abcd", ["at most 3 characters", "4"]),
        ({"type": "string", "constraints": {"pattern": "^v[0-9]+$"}}, "x1", ["^v[0-9]+$", "pattern"]),
        ({"type": "boolean"}, "true", ["true or false"]),
        ({"type": "json"}, None, ["null"]),
    ],
    ids=[
        "int-range",
        "int-fraction",
        "int-bool",
        "num-min",
        "num-str",
        "enum",
        "maxlen",
        "pattern",
        "bool",
        "null",
    ],
)
def test_messages_say_what_is_allowed(spec: dict[str, Any], value: Any, words: list[str]) -> None:
    with pytest.raises(InvalidSpecError) as info:
        validate_value(parse_spec(spec), value)
    assert info.value.path == "spec.value"
    for word in words:
        assert word in info.value.message


def test_whole_floats_are_integers_and_bools_are_not_numbers() -> None:
    spec = parse_spec({"type": "integer", "constraints": {"minimum": 1, "maximum": 3}})
    validate_value(spec, 3.0)
    validate_value(spec, 1)
    for kind in ("integer", "number"):
        with pytest.raises(InvalidSpecError):
            validate_value(parse_spec({"type": kind}), False)


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"type": "enum"}, "spec.constraints.allowedValues"),
        ({"type": "string", "constraints": {"allowedValues": ["a"]}}, "spec.constraints.allowedValues"),
        ({"type": "string", "constraints": {"minimum": 1}}, "spec.constraints.minimum"),
        ({"type": "boolean", "constraints": {"maximum": 1}}, "spec.constraints.maximum"),
        ({"type": "number", "constraints": {"minimum": 2, "maximum": 1}}, "spec.constraints.minimum"),
        ({"type": "integer", "constraints": {"pattern": "a"}}, "spec.constraints.pattern"),
        ({"type": "json", "constraints": {"maxLength": 2}}, "spec.constraints.maxLength"),
        ({"type": "string", "constraints": {"pattern": "(unclosed"}}, "spec.constraints.pattern"),
        (
            {"type": "json", "access": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}},
            "spec.access.selector.matchExpressions[0].values",
        ),
    ],
    ids=[
        "enum-no-values",
        "values-on-string",
        "min-on-string",
        "max-on-bool",
        "min-gt-max",
        "pattern-on-int",
        "maxlen-on-json",
        "bad-regex",
        "selector-in-no-values",
    ],
)
def test_incoherent_specs_are_reported_with_their_path(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        validate_spec(parse_spec(spec))
    assert info.value.path == path


@given(coherent_specs())
def test_coherent_specs_pass(spec: VariableSpec) -> None:
    validate_spec(spec)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"type": "float"}, "spec.type"),
        ({"type": "number", "historyLimit": 1001}, "spec.historyLimit"),
        ({"type": "number", "conflictPolicy": "Random"}, "spec.conflictPolicy"),
        ({"type": "number", "colour": "red"}, "spec.colour"),
        ({"type": "enum", "constraints": {"allowedValues": []}}, "spec.constraints.allowedValues"),
    ],
    ids=["type", "history-limit", "policy", "unknown-field", "empty-allowed-values"],
)
def test_shape_errors_carry_the_field_path(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_spec(raw)
    assert info.value.path == path


@given(st.integers(-(2**80), 2**80))
def test_integers_outside_int64_are_refused(n: int) -> None:
    spec = parse_spec({"type": "integer"})
    if -(2**63) < n < 2**63:
        validate_value(spec, n)
    else:
        with pytest.raises(InvalidSpecError):
            validate_value(spec, n)
