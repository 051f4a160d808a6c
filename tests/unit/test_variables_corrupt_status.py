"""A Variable status that does not parse is reported and kept, never reset.

Resetting it would hand out version numbers again and forget which session outcomes were
applied. The reconcile pass runs against a small in-memory stand-in for the API (the real API
server validates status against the CRD schema, so such a status comes from elsewhere: an
older schema, a hand-made object in etcd).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any, cast

from mabeam.controller._runtime import Runtime
from mabeam.controller.variables import STATUS_CORRUPT, _repaired, reconcile
from mabeam.core.variables import parse_status
from mabeam.core.variables_wire import WRITE_ANNOTATION
from mabeam.kube.client import Kube
from mabeam.kube.resources import VARIABLE, Res
from mabeam.models.variable import VariableStatus

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class OneVariable:
    """get/patch of one stored Variable; every other call is a test failure."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[tuple[Mapping[str, Any], bool]] = []

    async def get(self, res: Res, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        assert res == VARIABLE and name == self.obj["metadata"]["name"]
        return copy.deepcopy(self.obj)

    async def patch(
        self, res: Res, name: str, patch: Mapping[str, Any], *, namespace: str | None = None,
        status: bool = False, json_patch: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        assert res == VARIABLE and not json_patch
        assert patch["metadata"]["resourceVersion"] == self.obj["metadata"]["resourceVersion"]
        self.patches.append((patch, status))
        self.obj["status"] = {**self.obj.get("status", {}), **patch["status"]}
        self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.obj)


PENDING_WRITE = '{"writeId":"w1","value":5,"writer":{"kind":"Agent","name":"a"}}'


def corrupt_variable() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "target", "namespace": "team", "generation": 3, "resourceVersion": "40",
            "annotations": {WRITE_ANNOTATION: PENDING_WRITE},
        },
        "spec": {"type": "number", "value": 5},
        "status": {"version": 7, "value": 4, "appliedSessions": ["s-1"], "history": "not a list"},
    }  # fmt: skip


def runtime(kube: OneVariable) -> Runtime:
    memo = Runtime()
    memo.kube = cast(Kube, kube)
    return memo


async def test_a_corrupt_status_is_reported_and_kept_and_no_write_is_applied() -> None:
    kube = OneVariable(corrupt_variable())
    assert await reconcile(runtime(kube), "team", "target") is None
    ((patch, on_status),) = kube.patches
    assert on_status
    assert set(patch["status"]) == {"phase", "conditions"}  # version, value, sessions untouched
    status = kube.obj["status"]
    assert (status["version"], status["value"], status["appliedSessions"]) == (7, 4, ["s-1"])
    assert status["phase"] == "Invalid"
    (valid,) = [c for c in status["conditions"] if c["type"] == "Valid"]
    assert (valid["status"], valid["reason"]) == ("False", STATUS_CORRUPT)
    assert "history" in valid["message"]  # what is wrong
    assert "version 7" in valid["message"] and "--subresource=status" in valid["message"]  # how to fix
    # The pending write stays pending (it is applied once the status is repaired).
    assert WRITE_ANNOTATION in kube.obj["metadata"]["annotations"]

    # Another pass changes nothing: the report is written once.
    assert await reconcile(runtime(kube), "team", "target") is None
    assert len(kube.patches) == 1


def test_a_repaired_status_is_valid_again() -> None:
    kube_status = {
        "version": 7, "value": 4, "phase": "Invalid",
        "conditions": [{"type": "Valid", "status": "False", "reason": STATUS_CORRUPT, "message": "x",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }  # fmt: skip
    status = _repaired(parse_status(kube_status), T0)
    assert status.phase == "Ready" and status.version == 7
    (valid,) = [c for c in status.conditions if c.type == "Valid"]
    assert (valid.status, valid.reason) == ("True", "StatusRepaired")
    untouched = VariableStatus(version=2)
    assert _repaired(untouched, T0) is untouched
