"""The wire forms the SDK and the operator share: write annotation, Lease -> lock, settledness."""

from __future__ import annotations

import datetime as dt

import pytest

from mabeam.core.variables_wire import (
    WRITE_ANNOTATION,
    clear_write_patch,
    decode_write,
    encode_write,
    lease_is_free,
    lock_from_lease,
    settled,
)
from mabeam.errors import InvalidSpecError
from mabeam.local.apiserver._patch import json_patch
from mabeam.models.variable import VariableWrite, Writer

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def lease(holder: str | None, transitions: int, renewed: str = "2026-01-01T12:00:00.000000Z") -> dict:
    spec = {"leaseTransitions": transitions, "leaseDurationSeconds": 10, "renewTime": renewed}
    if holder:
        spec["holderIdentity"] = holder
    return {"metadata": {"name": "mabeam-var-x"}, "spec": spec}


def test_a_write_survives_the_annotation_round_trip() -> None:
    write = VariableWrite(value={"a": [1, None]}, based_on_version=3, fencing_token=2,
                          writer=Writer(kind="Agent", name="a1", priority=5), reason="why")  # fmt: skip
    assert decode_write(encode_write("id-1", write)) == ("id-1", write)


@pytest.mark.parametrize("text", ["{", "[]", '{"value": 1}', '{"writeId": "x", "value": 1}'])
def test_a_malformed_annotation_is_an_invalid_spec_naming_the_annotation(text: str) -> None:
    with pytest.raises(InvalidSpecError):
        decode_write(text)


def test_a_lease_is_the_lock_its_transitions_the_fencing_token() -> None:
    lock = lock_from_lease(lease("a1", 4))
    assert lock is not None
    assert (lock.holder, lock.fencing_token, lock.expires_at) == ("a1", 4, "2026-01-01T12:00:10.000000Z")
    assert not lease_is_free(lease("a1", 4), T0 + dt.timedelta(seconds=9.9))
    assert lease_is_free(lease("a1", 4), T0 + dt.timedelta(seconds=10))
    released = lock_from_lease(lease(None, 4))
    assert released is not None and (released.holder, released.fencing_token) == (None, 4)
    assert lease_is_free(lease(None, 4), T0)
    assert lock_from_lease(None) is None and lease_is_free(None, T0)


def test_settled_means_no_pending_write_and_the_generation_observed() -> None:
    obj = {"metadata": {"generation": 2, "annotations": {}}, "status": {"observedGeneration": 2}}
    assert settled(obj)
    assert not settled({**obj, "status": {"observedGeneration": 1}})
    assert not settled({**obj, "metadata": {"generation": 2, "annotations": {WRITE_ANNOTATION: "{}"}}})
    # An applied write's annotation stays: settled once status.lastWrite records its id.
    write = VariableWrite(value=3, writer=Writer(kind="Agent", name="a"))
    done = {"generation": 2, "annotations": {WRITE_ANNOTATION: encode_write("w-1", write)}}
    assert not settled({**obj, "metadata": done})
    applied = {"observedGeneration": 2, "lastWrite": {"writeId": "w-1"}}
    assert settled({"metadata": done, "status": applied})
    assert not settled({"metadata": done, "status": {**applied, "lastWrite": {"writeId": "w-0"}}})


def test_clearing_a_refused_write_resets_spec_value_under_a_precondition() -> None:
    obj = {
        "metadata": {
            "name": "x",
            "resourceVersion": "7",
            "annotations": {WRITE_ANNOTATION: "{}", "keep": "1"},
        },
        "spec": {"type": "json", "value": {"refused": True}},
    }
    patched = json_patch(obj, clear_write_patch(obj, {"a": None}, reset_value=True))
    assert patched["metadata"]["annotations"] == {"keep": "1"}
    assert patched["spec"]["value"] == {"a": None}  # nulls inside a value are kept (no merge patch)
    assert json_patch(obj, clear_write_patch(obj, None, reset_value=True))["spec"] == {"type": "json"}
    kept = json_patch(obj, clear_write_patch(obj, 1, reset_value=False))
    assert kept["spec"]["value"] == {"refused": True}
