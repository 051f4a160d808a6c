"""The operator handles a spec of any depth the API server accepts (kopf's deepcopy recursed)."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf
import pytest

from mabeam.controller._runtime import NoEssenceStorage


def body(spec: Any) -> kopf.Body:
    return kopf.Body({
        "apiVersion": "mabeam.io/v1alpha1", "kind": "Variable",
        "metadata": {"name": "v", "namespace": "ns", "labels": {"a": "b"},
                     "annotations": {"mabeam.io/last-handled-configuration": "{}", "note": "x"}},
        "spec": spec, "status": {"phase": "Ready"},
    })  # fmt: skip


def test_a_spec_nested_deeper_than_the_recursion_limit_is_handled() -> None:
    # Deeper than any recursion limit the operator sets (allow_deep_json), whatever ran before.
    value: Any = "x"
    for _ in range(30_000):
        value = [value]
    storage = kopf.AnnotationsDiffBaseStorage(prefix="mabeam.io", key="last-handled-configuration")
    with pytest.raises(RecursionError):  # what kopf did: the object was never handled
        storage.build(body=body({"type": "string", "value": value}))
    ours = NoEssenceStorage(prefix="mabeam.io", key="last-handled-configuration")
    assert ours.build(body=body({"type": "string", "value": value})) == {}


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
