"""The Variable CRD's CEL admission rules, evaluated offline with cel-python.

The object is handed to CEL the way the API server does it: defaults from the generated schema
filled in, numbers typed by the schema (a ``number`` is a double even when written as 3), null
fields absent, and fields without a declared type (``spec.value``) invisible.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

import celpy
import pytest
from celpy import celtypes
from hypothesis import given

from mabeam.core.variables import parse_spec, parse_status, reconcile_spec, validate_spec
from mabeam.errors import InvalidSpecError
from mabeam.kube.crdgen import crd_for
from mabeam.models.variable import VARIABLE
from tests.strategies_variables import any_specs

SPEC_SCHEMA: dict[str, Any] = crd_for(VARIABLE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
    "properties"
]["spec"]
RULES: list[dict[str, str]] = SPEC_SCHEMA["x-kubernetes-validations"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ENV = celpy.Environment()
PROGRAMS = [(ENV.program(ENV.compile(r["rule"])), r["message"]) for r in RULES]


def defaulted(value: Any, node: dict[str, Any]) -> Any:
    if isinstance(value, dict) and node.get("type") == "object":
        out = dict(value)
        for key, sub in node.get("properties", {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = defaulted(out[key], sub)
        return out
    if isinstance(value, list) and node.get("type") == "array":
        return [defaulted(v, node.get("items", {})) for v in value]
    return value


def typed(value: Any, node: dict[str, Any]) -> Any:
    kind = node.get("type")
    if kind == "number":
        return celtypes.DoubleType(value)
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "object" and isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        seen = {}
        for key, sub_value in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub_value is None or sub is None or "type" not in sub:
                continue  # null, unknown or untyped: not visible to CEL
            seen[celtypes.StringType(key)] = typed(sub_value, sub)
        return celtypes.MapType(seen)
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([typed(v, node.get("items", {})) for v in value])
    return celpy.json_to_cel(value)


def cel_failures(spec: dict[str, Any]) -> list[str]:
    activation = {"self": typed(defaulted(spec, SPEC_SCHEMA), SPEC_SCHEMA)}
    failed = []
    for program, message in PROGRAMS:
        try:
            result = program.evaluate(activation)
        except celpy.CELEvalError:
            result = None
        if not (isinstance(result, celtypes.BoolType) and bool(result)):
            failed.append(message)
    return failed


ALLOWED = {
    "number-range": {"type": "number", "constraints": {"minimum": 0, "maximum": 2.5}, "value": 1},
    "integer-equal-bounds": {"type": "integer", "constraints": {"minimum": 3, "maximum": 3}},
    "enum": {"type": "enum", "constraints": {"allowedValues": ["eco", "max"]}, "value": "eco"},
    "string": {"type": "string", "constraints": {"pattern": "^v", "maxLength": 8}},
    "boolean-bare": {"type": "boolean", "value": True},
    "json-any": {"type": "json", "value": {"a": [1, None]}},
    "selector": {
        "type": "json",
        "access": {
            "selector": {
                "matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["x"]},
                    {"key": "tier", "operator": "Exists"},
                ]
            }
        },
    },
}

FORBIDDEN = {
    "enum-without-values": ({"type": "enum"}, "allowedValues is required"),
    "values-on-string": ({"type": "string", "constraints": {"allowedValues": ["a"]}}, "only allowed when"),
    "range-on-string": ({"type": "string", "constraints": {"minimum": 1}}, "minimum and maximum"),
    "range-on-bool": ({"type": "boolean", "constraints": {"maximum": 1}}, "minimum and maximum"),
    "min-above-max": ({"type": "integer", "constraints": {"minimum": 5, "maximum": 4}}, "must not exceed"),
    "pattern-on-number": ({"type": "number", "constraints": {"pattern": "a"}}, "pattern and maxLength"),
    "maxlength-on-enum": (
        {"type": "enum", "constraints": {"allowedValues": ["a"], "maxLength": 1}},
        "pattern and maxLength",
    ),
    "in-without-values": (
        {"type": "json", "access": {"selector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}},
        "In and NotIn need",
    ),
    "exists-with-values": (
        {
            "type": "json",
            "access": {
                "selector": {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["v"]}]}
            },
        },
        "In and NotIn need",
    ),
}


@pytest.mark.parametrize("spec", ALLOWED.values(), ids=ALLOWED.keys())
def test_allowed_specs_pass_every_rule(spec: dict[str, Any]) -> None:
    assert cel_failures(spec) == []
    validate_spec(parse_spec(spec))


@pytest.mark.parametrize(("spec", "words"), FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_forbidden_specs_fail_the_rule_that_names_the_problem(spec: dict[str, Any], words: str) -> None:
    failures = cel_failures(spec)
    assert len(failures) == 1 and words in failures[0]
    with pytest.raises(InvalidSpecError):
        validate_spec(parse_spec(spec))


@given(any_specs())
def test_cel_admits_exactly_the_specs_the_operator_accepts(spec: dict[str, Any]) -> None:
    try:
        validate_spec(parse_spec(spec))
    except InvalidSpecError:
        operator_ok = False
    else:
        operator_ok = True
    assert (cel_failures(spec) == []) == operator_ok


def test_rules_only_reference_fields_with_a_declared_type() -> None:
    """The API server leaves untyped fields (like spec.value) out of CEL: a rule naming one fails
    to compile and the CRD is refused. Walk every ``self.a.b`` path through the schema."""
    for rule in (r["rule"] for r in RULES):
        for match in re.finditer(r"self((?:\.\w+)+)(\()?", rule):
            names = match.group(1).strip(".").split(".")
            if match.group(2):  # a method call such as .all(...)
                names = names[:-1]
            node = SPEC_SCHEMA
            for name in names:
                assert name in node.get("properties", {}), f"{rule}: no field {name}"
                node = node["properties"][name]
                assert "type" in node, f"{rule}: {name} has no declared type, CEL cannot see it"


def test_a_value_admission_cannot_see_is_reported_by_the_operator() -> None:
    spec = {"type": "integer", "constraints": {"minimum": 0, "maximum": 10}, "value": 99}
    assert cel_failures(spec) == []  # admitted: spec.value is invisible to CEL
    status, outcome = reconcile_spec(parse_spec(spec), parse_status(None), 1, T0)
    assert outcome is not None and not outcome.applied
    valid = next(c for c in status.conditions if c.type == "Valid")
    assert (valid.status, valid.reason) == ("False", "InvalidValue")
    assert "between 0 and 10" in valid.message
