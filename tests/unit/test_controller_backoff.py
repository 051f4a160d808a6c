"""The reconcile loops' backoff after failed passes, and failures reported on their object."""

from __future__ import annotations

from typing import Any

from mabeam.controller._loop import Backoff, report_failure
from mabeam.errors import ApiError
from mabeam.kube.resources import VARIABLE


def test_the_delay_doubles_up_to_the_cap_and_a_success_resets_it() -> None:
    backoff = Backoff(0.5, 30.0)
    assert [backoff.failed() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # 16 x base
    backoff.succeeded()
    assert backoff.failed() == 0.5


def test_a_longer_retry_after_is_honoured_and_a_shorter_one_is_not() -> None:
    backoff = Backoff(1.0, 10.0)
    assert backoff.failed(retry_after=3.0) == 3.0
    assert backoff.failed(retry_after=0.5) == 2.0
    assert Backoff(1.0, 2.0).failed() == 1.0


class _Recorder:
    """A Kube stand-in: one stored object, the status patches sent."""

    def __init__(self, obj: dict[str, Any] | None, fail: bool = False) -> None:
        self.obj, self.fail, self.patches = obj, fail, []  # type: list[Any]

    async def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.obj

    async def patch(self, res: Any, name: str, patch: Any, **kwargs: Any) -> dict[str, Any]:
        if self.fail:
            raise ApiError("refused", status=413)
        self.patches.append((name, patch, kwargs))
        return {}


async def test_a_failure_is_reported_on_the_object_once_and_a_failed_report_is_only_logged() -> None:
    obj = {"metadata": {"name": "v", "generation": 3}, "status": {"conditions": [{"type": "Valid"}]}}
    kube = _Recorder(obj)
    await report_failure(kube, VARIABLE, "ns", "v", "StatusTooLarge", "too big")  # type: ignore[arg-type]
    [(name, patch, kwargs)] = kube.patches
    conditions = patch["status"]["conditions"]
    assert name == "v" and kwargs == {"namespace": "ns", "status": True} and list(patch) == ["status"]
    assert [c["type"] for c in conditions] == ["Valid", "Reconciled"]
    reported = conditions[1]
    assert (reported["status"], reported["reason"]) == ("False", "StatusTooLarge")
    assert reported["message"] == "too big"
    obj["status"]["conditions"] = conditions
    await report_failure(kube, VARIABLE, "ns", "v", "StatusTooLarge", "too big")  # type: ignore[arg-type]
    assert len(kube.patches) == 1  # said already
    await report_failure(_Recorder(obj, fail=True), VARIABLE, "ns", "v", "X", "y")  # type: ignore[arg-type]
    await report_failure(_Recorder(None), VARIABLE, "ns", "v", "X", "y")  # type: ignore[arg-type]
