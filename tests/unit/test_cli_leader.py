"""The pure leader-election decision: may I take the Lease, is it expired (hand-computed cases);
and the elector stepping down when its renewals hang."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.controller._leader import LeaderElector, LeaseRecord, decide, expires_at, released

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def held(holder: str, renewed: float, duration: int = 10, transitions: int = 3) -> LeaseRecord:
    return LeaseRecord(
        holder, duration, acquire_time=at(-100), renew_time=at(renewed), transitions=transitions
    )


def test_no_lease_is_created_with_me_as_holder() -> None:
    d = decide(None, "me", at(0), 15)
    assert d.action == "create"
    assert d.record == LeaseRecord("me", 15, acquire_time=at(0), renew_time=at(0), transitions=0)


def test_my_lease_is_renewed_keeping_acquire_time_and_transitions() -> None:
    d = decide(held("me", renewed=-3), "me", at(0), 10)
    assert d.action == "renew"
    assert d.record == LeaseRecord("me", 10, acquire_time=at(-100), renew_time=at(0), transitions=3)


def test_another_holders_live_lease_means_waiting_until_it_expires() -> None:
    d = decide(held("other", renewed=-4, duration=10), "me", at(0), 10)
    assert d.action == "wait" and d.record is None
    assert d.retry_in == pytest.approx(6.0)


def test_an_expired_lease_is_taken_over_and_counts_a_transition() -> None:
    d = decide(held("other", renewed=-10, duration=10), "me", at(0), 10)
    assert d.action == "take"
    assert d.record == LeaseRecord("me", 10, acquire_time=at(0), renew_time=at(0), transitions=4)


def test_a_released_lease_is_free_at_once() -> None:
    record = released(held("other", renewed=-1), "other", at(0))
    assert record is not None and record.holder == "" and record.transitions == 3
    assert decide(record, "me", at(0), 10).action == "take"
    assert released(held("other", renewed=-1), "me", at(0)) is None  # only the holder releases


def test_expiry_counts_from_when_this_replica_first_saw_the_record() -> None:
    # The holder's clock runs 30 s behind: its renewTime looks old, but the record is new to us.
    record = held("other", renewed=-30, duration=10)
    assert expires_at(record, observed_at=at(-2)) == at(8)
    assert decide(record, "me", at(0), 10, observed_at=at(-2)).action == "wait"
    assert decide(record, "me", at(8), 10, observed_at=at(-2)).action == "take"


def test_wire_round_trip_uses_kubernetes_micro_time() -> None:
    record = LeaseRecord("me", 15, acquire_time=at(0.25), renew_time=at(1.5), transitions=2)
    spec = record.to_spec()
    assert spec == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "leaseTransitions": 2,
        "acquireTime": "2026-01-01T12:00:00.250000Z",
        "renewTime": "2026-01-01T12:00:01.500000Z",
    }
    assert LeaseRecord.from_spec(spec) == record


@given(
    renewed=st.floats(min_value=-100, max_value=0, allow_nan=False),
    duration=st.integers(min_value=1, max_value=60),
    now=st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_another_holder_is_never_deposed_before_its_lease_runs_out(
    renewed: float, duration: int, now: float
) -> None:
    d = decide(held("other", renewed=renewed, duration=duration), "me", at(now), 10)
    # Reference: the claim lasts until renewTime + duration (no observation given).
    if now - renewed < duration:
        assert d.action == "wait"
        assert d.retry_in == pytest.approx(duration - (now - renewed), abs=1e-6)
    else:
        assert d.action == "take"


class _Partitionable:
    """A Kube stand-in for the Lease: answers until ``cut``, then every request hangs forever."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.cut = asyncio.Event()

    async def _gate(self) -> None:
        if self.cut.is_set():
            await asyncio.Event().wait()  # never answered, as when the API server is unreachable

    async def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        await self._gate()
        return copy.deepcopy(self.lease)

    async def create(self, res: Any, body: dict[str, Any]) -> dict[str, Any]:
        await self._gate()
        return self._store(body)

    async def replace(self, res: Any, body: dict[str, Any]) -> dict[str, Any]:
        await self._gate()
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        meta = {**body["metadata"], "resourceVersion": str(self.version)}
        self.lease = {**copy.deepcopy(body), "metadata": meta}
        return copy.deepcopy(self.lease)


async def test_a_leader_whose_renewals_hang_stops_its_operator_before_its_lease_runs_out() -> None:
    """Partitioned from the API server (requests hang, never fail), the leader still steps down
    within its renew deadline, before any other replica may take the Lease over."""
    kube = _Partitionable()
    elector = LeaderElector(
        kube,  # type: ignore[arg-type]
        namespace="default",
        identity="me",
        lease_seconds=2,
        renew_seconds=0.1,
    )
    running = asyncio.Event()
    stopped_at: list[float] = []
    loop = asyncio.get_running_loop()

    async def operator(stop: asyncio.Event) -> None:
        running.set()
        await stop.wait()
        stopped_at.append(loop.time())

    stop = asyncio.Event()
    task = asyncio.create_task(elector.run(operator, stop))
    await asyncio.wait_for(running.wait(), 5)
    assert elector.leading
    kube.cut.set()
    cut_at = loop.time()
    while not stopped_at:
        assert loop.time() - cut_at < 5, "the partitioned leader never stopped its operator"
        await asyncio.sleep(0.02)
    # The last successful renewal was at most renew_seconds before the cut: the operator stops
    # within renew_deadline (2/3 of the lease) of it, before the lease (2 s) can expire.
    assert stopped_at[0] - cut_at < elector.renew_deadline + 0.05
    assert not elector.leading
    stop.set()
    # Waiting for the Lease again and releasing it are bounded too: the stop is not held up.
    await asyncio.wait_for(task, 5)
