"""The per-namespace ConfigMap projection of Variables' applied values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.core.variables import PROJECTION_MAX_BYTES, decode_projection, projection
from mabeam.errors import InvalidSpecError
from mabeam.models.variable import VariableStatus

finite_json = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True)


def status(value: Any, version: int = 1) -> VariableStatus:
    return VariableStatus(value=value, version=version)


def test_the_documented_format() -> None:
    data = projection(
        [
            ("threshold", status(42)),
            ("mode", status("eco")),
            ("on", status(True)),
            ("plan", status({"b": [1, 2.5], "a": None})),
            ("unset", status(None, version=0)),
        ]
    )
    assert data == {
        "threshold": "42",
        "mode": '"eco"',
        "on": "true",
        "plan": '{"a":null,"b":[1,2.5]}',
    }


@given(st.dictionaries(names, finite_json, max_size=6))
def test_a_pod_reads_back_exactly_the_applied_values(values: dict[str, Any]) -> None:
    data = projection([(name, status(value)) for name, value in values.items()])
    assert set(data) == set(values)
    for name, value in values.items():
        assert json.loads(data[name]) == value
    assert decode_projection(data) == values


@pytest.mark.parametrize(
    "name", ["has space", "slash/no", "", "é"], ids=["space", "slash", "empty", "accent"]
)
def test_a_name_that_cannot_be_a_key_is_refused(name: str) -> None:
    with pytest.raises(InvalidSpecError):
        projection([(name, status(1))])


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(InvalidSpecError, match="twice"):
        projection([("x", status(1)), ("x", status(2))])


def test_data_past_the_configmap_limit_is_refused_naming_the_largest() -> None:
    big = "x" * (PROJECTION_MAX_BYTES // 2)
    with pytest.raises(InvalidSpecError, match="big-2"):
        projection([("small", status(1)), ("big-1", status(big)), ("big-2", status(big + "y"))])


def test_decode_reports_a_garbled_entry() -> None:
    with pytest.raises(InvalidSpecError) as info:
        decode_projection({"x": "{not json"})
    assert info.value.path == "data.x"
