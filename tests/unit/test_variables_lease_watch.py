"""The watch of the lock Leases: which Lease events wake which Variable (no API server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from mabeam.controller import variables
from mabeam.core.variables_wire import lease_name

NS = "team"


def lease(variable: str, holder: str | None, *, renewed: str = "2026-12-03T10:00:00.000000Z",
          transitions: int = 0, namespace: str = NS) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"leaseTransitions": transitions, "renewTime": renewed}
    if holder is not None:
        spec.update(holderIdentity=holder, acquireTime="2026-12-03T09:59:00.000000Z", leaseDurationSeconds=15)
    return {"metadata": {"name": lease_name(variable), "namespace": namespace}, "spec": spec}


@pytest.fixture
def watch() -> Any:
    yield variables._LeaseWatch(kube=None, retry=1.0, clusterwide=True)  # type: ignore[arg-type]
    variables._wakers.forget(NS, "gate")


def woken(variable: str = "gate") -> bool:
    flag = variables._wakers.get(NS, variable)
    was = flag.is_set()
    flag.clear()
    return was


def test_a_lock_taken_or_released_wakes_its_variable_and_a_renewal_does_not(watch: Any) -> None:
    woken()
    watch.mirror(NS, "gate", lease("gate", None))
    watch.saw("MODIFIED", lease("gate", None, renewed="2026-12-03T10:00:05.000000Z"))
    assert not woken()
    watch.saw("MODIFIED", lease("gate", "keeper", transitions=1))
    assert woken()
    watch.mirror(NS, "gate", lease("gate", "keeper", transitions=1))  # the pass it woke read it
    watch.saw("MODIFIED", lease("gate", "keeper", transitions=1, renewed="2026-12-03T10:00:09.000000Z"))
    assert not woken()
    watch.saw("MODIFIED", lease("gate", None, transitions=1))
    assert woken()


def test_a_release_before_the_watch_started_is_seen_against_what_the_pass_read(watch: Any) -> None:
    """The pass read the lock held; it was released before the watch opened: the watch's first
    event (the Lease free) differs from what was mirrored, so the Variable is woken."""
    woken()
    watch.mirror(NS, "gate", lease("gate", "keeper", transitions=1))
    watch.saw("ADDED", lease("gate", None, transitions=1))
    assert woken()


def test_a_deleted_lease_wakes_its_variable(watch: Any) -> None:
    woken()
    watch.mirror(NS, "gate", lease("gate", None))
    watch.saw("DELETED", lease("gate", None))
    assert woken()


def test_leases_no_running_variable_read_wake_nothing_and_leave_nothing(watch: Any) -> None:
    watch.saw("MODIFIED", lease("stranger", "someone"))
    watch.saw("MODIFIED", lease("gate", "someone", namespace="elsewhere"))
    assert ("elsewhere", "gate") not in variables._wakers._events
    assert (NS, "stranger") not in variables._wakers._events


def test_a_variable_that_stops_is_forgotten(watch: Any) -> None:
    watch.loops[NS] = 1
    watch.mirror(NS, "gate", lease("gate", None))
    watch.leave(NS, "gate")
    assert watch.mirrored == {} and watch.loops == {}


def test_a_failing_watch_degrades_its_scope_only() -> None:
    namespaced = variables._LeaseWatch(kube=None, retry=1.0, clusterwide=False)  # type: ignore[arg-type]
    namespaced.failing.add("a")
    assert namespaced.degraded("a") and not namespaced.degraded("b")
    clusterwide = variables._LeaseWatch(kube=None, retry=1.0, clusterwide=True)  # type: ignore[arg-type]
    clusterwide.failing.add(None)
    assert clusterwide.degraded("a") and clusterwide.degraded("b")
