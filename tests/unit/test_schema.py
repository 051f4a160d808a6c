"""mabeam.kube.schema: pruning, defaulting and validation as the Kubernetes API server does them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mabeam.kube.schema import SchemaError, check_rules, format_invalid, validate

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["weight"],
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.limit) || self.weight <= self.limit",
                    "message": "weight must not exceed limit",
                }
            ],
            "properties": {
                "weight": {"type": "integer", "minimum": 0, "maximum": 100},
                "limit": {"type": "integer"},
                "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
                "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 5},
                "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
                "labels": {"type": "object", "maxProperties": 2, "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "note": {"type": "string", "nullable": True},
                "retry": {
                    "type": "object",
                    "default": {},
                    "properties": {"count": {"type": "integer", "default": 3}},
                },
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def _errors(spec: dict[str, Any], **kwargs: Any) -> list[SchemaError]:
    return validate({"spec": spec}, SPEC_SCHEMA, **kwargs)[1]


def test_a_valid_object_passes_with_defaults_filled_in() -> None:
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"weight": 5}}
    result, errors = validate(obj, SPEC_SCHEMA)
    assert errors == []
    assert result["spec"] == {"weight": 5, "mode": "safe", "retry": {"count": 3}}
    assert result["metadata"] == {"name": "a"}
    assert obj["spec"] == {"weight": 5}  # the input is not modified


def test_minimum_violation_names_the_field_and_the_bound() -> None:
    assert _errors({"weight": -1}) == [
        SchemaError(
            "spec.weight", "Invalid value: -1: spec.weight in body should be greater than or equal to 0"
        )
    ]


def test_exclusive_minimum_and_maximum() -> None:
    assert [str(e) for e in _errors({"weight": 101, "ratio": 0})] == [
        "spec.weight: Invalid value: 101: spec.weight in body should be less than or equal to 100",
        "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0",
    ]


@pytest.mark.parametrize(
    ("schema", "value", "message"),
    [
        (
            {"type": "number", "maximum": 1, "exclusiveMaximum": True},
            1,
            "Invalid value: 1: spec.x in body should be less than 1",
        ),
        ({"type": "number", "maximum": 1, "exclusiveMaximum": True}, 0.5, None),
        ({"type": "number", "minimum": 1, "exclusiveMinimum": True}, 1.5, None),
        ({"type": "number", "minimum": 1}, 1, None),
        ({"type": "array", "maxItems": 1}, [1, 2], "Too many: 2: must have at most 1 items"),
        (
            {"type": "array", "minItems": 2},
            [1],
            "Invalid value: 1: spec.x in body should have at least 2 items",
        ),
        ({"type": "object", "maxProperties": 1}, {"a": 1, "b": 2}, "Too many: 2: must have at most 1 items"),
        (
            {"type": "object", "minProperties": 2},
            {"a": 1},
            "Invalid value: 1: spec.x in body should have at least 2 properties",
        ),
        ({"type": "object", "minProperties": 1, "maxProperties": 1}, {"a": 1}, None),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(k for k in v if k != "type"),
)
def test_bounds_of_numbers_lists_and_objects(schema: dict[str, Any], value: Any, message: str | None) -> None:
    """The messages of the Kubernetes API server (apiextensions-apiserver's validation)."""
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"x": schema}}}}
    errors = validate({"spec": {"x": value}}, schema)[1]
    assert [e.message for e in errors] == ([] if message is None else [message])


def test_wrong_type_is_reported_and_not_descended() -> None:
    errors = _errors({"weight": "heavy"})
    assert errors == [
        SchemaError(
            "spec.weight",
            'Invalid value: "string": spec.weight in body must be of type integer: "string"',
            "FieldValueTypeInvalid",
        )
    ]


def test_required_field_missing() -> None:
    assert _errors({}) == [SchemaError("spec.weight", "Required value", "FieldValueRequired")]


def test_enum_lists_the_supported_values() -> None:
    (error,) = _errors({"weight": 1, "mode": "slow"})
    assert error.path == "spec.mode"
    assert error.message == 'Unsupported value: "slow": supported values: "fast", "safe"'
    assert error.reason == "FieldValueNotSupported"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ABC", "Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"),
        ("a", 'Invalid value: "a": spec.name in body should be at least 2 chars long'),
        ("abcdef", "Too long: may not be longer than 5"),
    ],
    ids=["pattern", "minLength", "maxLength"],
)
def test_string_constraints(name: str, message: str) -> None:
    assert [e.message for e in _errors({"weight": 1, "name": name})] == [message]


def test_array_and_map_sizes() -> None:
    errors = _errors({"weight": 1, "tags": ["a", "b", "c"], "labels": {"a": "1", "b": "2", "c": "3"}})
    assert [str(e) for e in errors] == [
        "spec.tags: Too many: 3: must have at most 2 items",
        "spec.labels: Too many: 3: must have at most 2 items",
    ]
    assert [str(e) for e in _errors({"weight": 1, "tags": []})] == [
        "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"
    ]


def test_additional_properties_schema_checks_each_value_with_its_key_in_the_path() -> None:
    assert [str(e) for e in _errors({"weight": 1, "labels": {"a": 1}})] == [
        'spec.labels[a]: Invalid value: "integer": spec.labels[a] in body must be of type string: "integer"'
    ]


def test_unknown_fields_are_pruned_silently_but_kept_under_preserve_unknown_fields() -> None:
    result, errors = validate(
        {"spec": {"weight": 1, "bogus": True, "extra": {"anything": [1, 2]}}, "top": 1}, SPEC_SCHEMA
    )
    assert errors == []
    assert "bogus" not in result["spec"]
    assert "top" not in result
    assert result["spec"]["extra"] == {"anything": [1, 2]}


def test_strict_mode_reports_unknown_fields() -> None:
    errors = _errors({"weight": 1, "bogus": True}, strict=True)
    assert errors == [
        SchemaError("spec.bogus", 'Unsupported value: unknown field "spec.bogus"', "FieldValueNotSupported")
    ]


def test_nullable_keeps_null_and_non_nullable_null_is_dropped_then_defaulted() -> None:
    result, errors = validate({"spec": {"weight": 1, "note": None, "mode": None}}, SPEC_SCHEMA)
    assert errors == []
    assert result["spec"]["note"] is None
    assert result["spec"]["mode"] == "safe"


def test_null_array_item_is_a_type_error() -> None:
    assert [e.path for e in _errors({"weight": 1, "tags": [None]})] == ["spec.tags[0]"]


def test_cel_rule_violation_uses_the_rule_message() -> None:
    assert _errors({"weight": 9, "limit": 5}) == [
        SchemaError("spec", 'Invalid value: "object": weight must not exceed limit')
    ]
    assert _errors({"weight": 5, "limit": 5}) == []


def test_cel_rules_do_not_run_on_a_node_that_already_failed() -> None:
    errors = _errors({"weight": -1, "limit": -5})
    assert [e.path for e in errors] == ["spec.weight"]


def test_cel_message_expression_field_path_and_default_message() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.a < self.b", "messageExpression": "'a=' + string(self.a) + ' too big'"},
            {"rule": "self.b < 10", "fieldPath": ".b", "reason": "FieldValueForbidden"},
            {"rule": "self.a != 7"},
        ],
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    }
    assert [str(e) for e in validate({"a": 7, "b": 12}, schema)[1]] == [
        "b: Forbidden: failed rule: self.b < 10",
        'Invalid value: "object": failed rule: self.a != 7',
    ]
    errors = validate({"spec": {"a": 7, "b": 12}}, {"type": "object", "properties": {"spec": schema}})[1]
    assert [str(e) for e in errors] == [
        "spec.b: Forbidden: failed rule: self.b < 10",
        'spec: Invalid value: "object": failed rule: self.a != 7',
    ]
    errors = validate({"spec": {"a": 20, "b": 5}}, {"type": "object", "properties": {"spec": schema}})[1]
    assert str(errors[0]) == 'spec: Invalid value: "object": a=20 too big'


def test_root_rules_see_metadata_name() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('ok')"}]}
    assert validate({"metadata": {"name": "ok-1"}}, schema)[1] == []
    assert len(validate({"metadata": {"name": "bad"}}, schema)[1]) == 1


def test_transition_rules_run_only_with_an_old_value() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"size": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {"rule": "self.size >= oldSelf.size", "message": "may not shrink"}
                ],
            }
        },
    }
    assert validate({"spec": {"size": 1}}, schema)[1] == []
    assert validate({"spec": {"size": 3}}, schema, old={"spec": {"size": 2}})[1] == []
    assert [str(e) for e in validate({"spec": {"size": 1}}, schema, old={"spec": {"size": 2}})[1]] == [
        'spec: Invalid value: "object": may not shrink'
    ]


def test_cel_evaluation_error_is_a_validation_error_not_a_crash() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.missing > 0"}]}
    (error,) = validate({"spec": {}}, {"type": "object", "properties": {"spec": schema}})[1]
    assert error.path == "spec"
    assert "failed to evaluate rule" in error.message


def test_check_rules_reports_uncompilable_rules_with_their_schema_path() -> None:
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "x-kubernetes-validations": [{"rule": "self.a =="}]}},
    }
    (error,) = check_rules(schema)
    assert error.path == "openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    assert "compilation failed" in error.message
    assert check_rules(SPEC_SCHEMA) == []


def test_int_or_string_list_set_and_combinators() -> None:
    schema = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True},
            "ids": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "pick": {"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["all"]}]},
            "one": {"type": "integer", "oneOf": [{"minimum": 5}, {"maximum": 10}]},
        },
    }
    assert validate({"port": 80, "ids": ["a", "b"], "pick": "all", "one": 2}, schema)[1] == []
    assert validate({"port": "http"}, schema)[1] == []
    errors = validate({"port": True, "ids": ["a", "a"], "pick": "some", "one": 7}, schema)[1]
    assert [(e.path, e.reason) for e in errors] == [
        ("port", "FieldValueTypeInvalid"),
        ("ids[1]", "FieldValueDuplicate"),
        ("pick", "FieldValueInvalid"),
        ("one", "FieldValueInvalid"),
    ]


def test_defaults_apply_only_where_the_parent_exists_and_are_validated() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "inner": {"type": "object", "properties": {"x": {"type": "integer", "default": 1}}}
                },
            }
        },
    }
    assert validate({"spec": {}}, schema)[0] == {"spec": {}}
    assert validate({"spec": {"inner": {}}}, schema)[0] == {"spec": {"inner": {"x": 1}}}
    bad_default = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "default": 1}}}
    assert [e.path for e in validate({}, bad_default)[1]] == ["n"]


def test_format_invalid_matches_the_api_server_summary() -> None:
    one = [SchemaError("spec.weight", "Invalid value: -1: spec.weight in body should be greater than 0")]
    assert format_invalid("Agent.mabeam.io", "a1", one) == (
        'Agent.mabeam.io "a1" is invalid: spec.weight: Invalid value: -1: '
        "spec.weight in body should be greater than 0"
    )
    two = [*one, SchemaError("spec.x", "Required value", "FieldValueRequired")]
    assert format_invalid("Agent.mabeam.io", "a1", two).endswith("greater than 0, spec.x: Required value]")


def test_validate_is_idempotent_on_its_own_output() -> None:
    obj = {"spec": {"weight": 3, "junk": 1}}
    once, _ = validate(obj, SPEC_SCHEMA)
    twice, errors = validate(copy.deepcopy(once), SPEC_SCHEMA)
    assert errors == []
    assert twice == once
