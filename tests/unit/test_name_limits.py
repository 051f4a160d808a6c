"""Names that become label values: an Agent's and a session's are refused past 63 characters
(as the real API server refuses such a label); a Variable's children carry a label cut to fit."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mabeam.core.variables_wire import variable_label
from mabeam.kube import crdgen
from mabeam.kube import schema as crd_schema

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CRDS = {c["spec"]["names"]["kind"]: c for c in crdgen.generate_crds()}
SPECS: dict[str, dict[str, Any]] = {
    "Agent": {"template": {"spec": {"containers": [{"name": "a", "image": "i"}]}}},
    "Coordination": {"protocol": "majority", "participants": {"agents": ["a"]}, "options": ["x"]},
    "Auction": {"mechanism": "second-price", "participants": {"agents": ["a"]}, "items": ["slot"]},
    "Market": {"mechanism": "double-auction", "participants": {"agents": ["a"]}, "good": "cpu"},
}


def errors(kind: str, name: str) -> list[crd_schema.SchemaError]:
    crd = CRDS[kind]
    obj = {"apiVersion": "mabeam.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": SPECS[kind]}
    return crd_schema.validate(obj, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])[1]


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_a_name_that_is_a_label_value_is_at_most_63_characters(kind: str) -> None:
    assert errors(kind, "n" * 63) == []
    (error,) = errors(kind, "n" * 64)
    assert error.path == "metadata.name"


def test_other_kinds_take_any_name() -> None:
    for kind in ("Variable", "Vote", "Bid", "Order", "Account"):
        meta = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"]
        assert meta == {"type": "object"}


@pytest.mark.parametrize("length", [1, 62, 63, 64, 100, 253])
def test_a_variables_label_is_a_valid_label_value_unique_to_its_name(length: int) -> None:
    name = ("v." * 200)[: length - 1] + "x"
    label = variable_label(name)
    assert len(label) <= 63 and LABEL_VALUE.match(label)
    assert (label == name) == (length <= 63)
    assert variable_label(name[:-1] + "y") != label
