"""Label selector matching (mabeam.core.selectors) and who may write a Variable (can_write)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from mabeam.core.selectors import matches
from mabeam.core.variables import can_write
from mabeam.errors import InvalidSpecError
from mabeam.models.variable import LabelSelector, VariableAccess
from tests.strategies_variables import labels, selector_dicts


def reference_match(selector: dict[str, Any], obj_labels: dict[str, str]) -> bool:
    """metav1.LabelSelector as the Kubernetes docs describe it, on the wire form."""
    if not set(selector.get("matchLabels", {}).items()) <= set(obj_labels.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, values = expr["key"], set(expr.get("values", []))
        holds = {
            "In": key in obj_labels and obj_labels[key] in values,
            "NotIn": obj_labels.get(key) not in values,
            "Exists": key in obj_labels,
            "DoesNotExist": key not in obj_labels,
        }[expr["operator"]]
        if not holds:
            return False
    return True


@given(selector_dicts(), labels)
def test_matches_agrees_with_the_reference(selector: dict[str, Any], obj_labels: dict[str, str]) -> None:
    assert matches(LabelSelector.model_validate(selector), obj_labels) == reference_match(
        selector, obj_labels
    )


@pytest.mark.parametrize(
    ("selector", "obj_labels", "expected"),
    [
        ({}, {}, True),
        ({}, {"app": "x"}, True),
        ({"matchLabels": {"app": "x"}}, {"app": "x", "tier": "y"}, True),
        ({"matchLabels": {"app": "x"}}, {"app": "y"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}, {}, True),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}, {}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {"app": ""}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": ""}, False),
    ],
    ids=["empty-empty", "empty-any", "labels", "labels-differ", "notin-absent", "in-absent", "exists", "dne"],
)
def test_matches_on_known_cases(selector: dict[str, Any], obj_labels: dict[str, str], expected: bool) -> None:
    assert matches(LabelSelector.model_validate(selector), obj_labels) is expected


@pytest.mark.parametrize(
    "expr",
    [
        {"key": "a", "operator": "In"},
        {"key": "a", "operator": "NotIn"},
        {"key": "a", "operator": "Exists", "values": ["v"]},
    ],
    ids=["in-empty", "notin-empty", "exists-values"],
)
def test_a_malformed_selector_is_an_error_not_a_guess(expr: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpecError):
        matches(LabelSelector.model_validate({"matchExpressions": [expr]}), {"a": "v"})


def test_default_access_lets_no_agent_write() -> None:
    assert not can_write(VariableAccess(), "a1", {"team": "x"})


def test_agents_named_or_selected_may_write() -> None:
    access = VariableAccess.model_validate(
        {"agents": ["a1"], "selector": {"matchLabels": {"capability.mabeam.io/plan": "true"}}}
    )
    assert can_write(access, "a1", {})
    assert can_write(access, "a9", {"capability.mabeam.io/plan": "true"})
    assert not can_write(access, "a9", {"capability.mabeam.io/vote": "true"})


def test_an_empty_selector_lets_every_agent_write() -> None:
    assert can_write(VariableAccess.model_validate({"selector": {}}), "anyone", {})


@given(selector_dicts(), labels)
def test_can_write_is_name_or_selector(selector: dict[str, Any], obj_labels: dict[str, str]) -> None:
    access = VariableAccess.model_validate({"agents": ["listed"], "selector": selector})
    assert can_write(access, "listed", obj_labels)
    assert can_write(access, "other", obj_labels) == reference_match(selector, obj_labels)
