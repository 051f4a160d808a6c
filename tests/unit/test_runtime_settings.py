"""The kopf settings the operator relies on: no change-detecting handler, so no essence."""

from __future__ import annotations

import kopf

import mabeam.controller  # noqa: F401  (registers every handler with kopf's default registry)
from mabeam.controller._runtime import NoEssenceStorage


def test_no_handler_reacts_to_field_changes() -> None:
    """NoEssenceStorage builds no essence: right only while no on.create/update/resume/field
    handler is registered (they compare essences)."""
    registry = kopf.get_default_registry()
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) != []  # the daemons are seen: the check looks


def test_the_essence_is_empty_and_the_stored_one_still_read() -> None:
    storage = NoEssenceStorage(prefix="mabeam.io", key="last-handled-configuration")
    body = kopf.Body({"metadata": {"name": "a", "annotations": {}}, "spec": {"x": [1, 2, 3]}})
    assert storage.build(body=body) == {}
    stored = kopf.Body(
        {"metadata": {"annotations": {"mabeam.io/last-handled-configuration": '{"spec": {}}'}}}
    )
    assert storage.fetch(body=stored) == {"spec": {}}
