"""The operator's diff-base storage copies a spec of any depth (kopf's deepcopy recursed)."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.controller._runtime import DiffBaseStorage, copy_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=30,
)


@given(JSON)
def test_copy_json_equals_deepcopy_and_shares_nothing(value: Any) -> None:
    copied = copy_json(value)
    assert copied == copy.deepcopy(value)
    assert json.dumps(copied) == json.dumps(value)  # same order of keys and items

    def containers(v: Any) -> list[int]:
        out, stack = [], [v]
        while stack:
            x = stack.pop()
            if isinstance(x, dict | list):
                out.append(id(x))
                stack.extend(x.values() if isinstance(x, dict) else x)
        return out

    assert not set(containers(copied)) & set(containers(value))


def body(spec: Any) -> kopf.Body:
    return kopf.Body({
        "apiVersion": "mabeam.io/v1alpha1", "kind": "Variable",
        "metadata": {"name": "v", "namespace": "ns", "labels": {"a": "b"},
                     "annotations": {"mabeam.io/last-handled-configuration": "{}", "note": "x"}},
        "spec": spec, "status": {"phase": "Ready"},
    })  # fmt: skip


def test_the_essence_is_kopfs_for_an_ordinary_body() -> None:
    spec = {"type": "string", "value": {"a": [1, {"b": None}]}}
    ours = DiffBaseStorage(prefix="mabeam.io", key="last-handled-configuration")
    theirs = kopf.AnnotationsDiffBaseStorage(prefix="mabeam.io", key="last-handled-configuration")
    assert ours.build(body=body(spec)) == theirs.build(body=body(spec))
    assert ours.build(body=body({})) == theirs.build(body=body({}))


def test_a_spec_nested_deeper_than_the_recursion_limit_is_copied() -> None:
    # Deeper than any recursion limit the operator sets (allow_deep_json), whatever ran before.
    value: Any = "x"
    for _ in range(30_000):
        value = [value]
    storage = kopf.AnnotationsDiffBaseStorage(prefix="mabeam.io", key="last-handled-configuration")
    with pytest.raises(RecursionError):  # what kopf did: the object was never handled
        storage.build(body=body({"type": "string", "value": value}))
    essence = DiffBaseStorage(prefix="mabeam.io", key="last-handled-configuration").build(
        body=body({"type": "string", "value": value})
    )
    depth, node = 0, essence["spec"]["value"]
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert (depth, node) == (30_000, "x")


def test_the_operator_handles_json_as_deep_as_the_api_server_accepts() -> None:
    import threading

    from mabeam.controller._runtime import allow_deep_json

    allow_deep_json()
    text = '{"spec": {"value": ' + "[" * 10_000 + '"x"' + "]" * 10_000 + "}}"
    results: list[bool] = []

    def handle() -> None:  # what a watch, a status write and a comparison do with it
        obj = json.loads(text)
        results.append(json.loads(json.dumps(obj)) == copy.deepcopy(obj))

    handle()
    thread = threading.Thread(target=handle)  # and in a thread (kopf's sync handlers, tests)
    thread.start()
    thread.join()
    assert results == [True, True]
