"""Leader election on a ``coordination.k8s.io/v1`` Lease: one active operator among replicas.

The Lease (``mabeam-operator`` in the operator's namespace) records ``holderIdentity``,
``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` and ``leaseTransitions``. Every write
carries the ``resourceVersion`` that was read, so of two replicas racing for the same Lease one
gets a conflict and goes on waiting.

- :func:`decide` is the pure decision: given the Lease as read, who I am and the time, do I
  create it, renew it, take it over (it expired or was released), or wait (and how long)?
- :class:`LeaderElector` carries it out: it waits until it holds the Lease, runs the operator
  (an async callable that runs until its stop event is set), renews every ``renew_seconds``,
  and stops the operator when it loses the Lease (someone else holds it, or no renewal
  succeeded for ``renew_deadline`` seconds), then waits again. On a graceful stop it releases
  the Lease (empty holder) so that another replica takes over at once.

A Lease is expired ``leaseDurationSeconds`` after the later of its ``renewTime`` and the moment
this replica first saw that version of it, so a leader whose clock runs behind is not deposed
early. The renew deadline (two thirds of the lease) is shorter than the lease, so a leader that
cannot renew stops before anyone else may take over.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..errors import ApiError, ConflictError
from ..kube.client import AlreadyExistsError, Kube
from ..kube.resources import LEASE
from ._metrics import Metrics

__all__ = [
    "LEASE_NAME",
    "Decision",
    "LeaderElector",
    "LeaseRecord",
    "decide",
    "default_identity",
    "expires_at",
    "operator_in_thread",
    "released",
]

log = logging.getLogger(__name__)

LEASE_NAME = "mabeam-operator"

#: An operator run: runs until the event is set (or fails).
OperatorTerm = Callable[[asyncio.Event], Awaitable[None]]
_Outcome = Literal["stop", "ended", "lost"]


def default_identity() -> str:
    """``<pod or host name>-<random>``: unique per process, readable in ``kubectl get lease``."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}-{uuid.uuid4().hex[:8]}"


# --- the pure part -------------------------------------------------------------------------------


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _micro_time(value: dt.datetime) -> str:
    """Kubernetes MicroTime: ``2006-01-02T15:04:05.000000Z``."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """The election-relevant part of a Lease's spec."""

    holder: str = ""
    duration: int = 15
    acquire_time: dt.datetime | None = None
    renew_time: dt.datetime | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> LeaseRecord:
        spec = spec or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=_parse_time(spec.get("acquireTime")),
            renew_time=_parse_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = _micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = _micro_time(self.renew_time)
        return spec


@dataclass(frozen=True)
class Decision:
    """What to do with the Lease: write ``record`` (create/renew/take) or wait ``retry_in`` s."""

    action: Literal["create", "renew", "take", "wait"]
    record: LeaseRecord | None = None
    retry_in: float = 0.0


def expires_at(record: LeaseRecord, observed_at: dt.datetime | None = None) -> dt.datetime | None:
    """When the holder's claim lapses (None: nobody holds it, so it is free now)."""
    if not record.holder:
        return None
    starts = [t for t in (record.renew_time, observed_at) if t is not None]
    if not starts:
        return None
    return max(starts) + dt.timedelta(seconds=record.duration)


def decide(
    current: LeaseRecord | None,
    identity: str,
    now: dt.datetime,
    lease_seconds: int,
    observed_at: dt.datetime | None = None,
) -> Decision:
    """May ``identity`` hold the Lease at ``now``? ``observed_at``: when this version was first seen.

    - no Lease: create it, held by me (transitions 0);
    - held by me: renew (acquireTime and transitions kept);
    - released (empty holder) or expired: take it (acquireTime now, transitions + 1);
    - held by another and not expired: wait until it would expire.
    """
    if current is None:
        return Decision(
            "create", LeaseRecord(identity, lease_seconds, acquire_time=now, renew_time=now, transitions=0)
        )
    if current.holder == identity:
        return Decision("renew", replace(current, duration=lease_seconds, renew_time=now))
    expiry = expires_at(current, observed_at)
    if expiry is None or expiry <= now:
        return Decision(
            "take",
            LeaseRecord(
                identity,
                lease_seconds,
                acquire_time=now,
                renew_time=now,
                transitions=current.transitions + 1,
            ),
        )
    return Decision("wait", retry_in=(expiry - now).total_seconds())


def released(current: LeaseRecord, identity: str, now: dt.datetime) -> LeaseRecord | None:
    """The record that gives the Lease up, if ``identity`` holds it (None: nothing to release)."""
    if current.holder != identity:
        return None
    return replace(current, holder="", duration=1, renew_time=now)


# --- carrying it out -------------------------------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    """Hold the Lease and run the operator while holding it (see the module docstring)."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        identity: str,
        name: str = LEASE_NAME,
        lease_seconds: int = 15,
        renew_seconds: float | None = None,
        renew_deadline: float | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        metrics: Metrics | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        if lease_seconds < 1:
            raise ValueError(f"lease_seconds must be at least 1, not {lease_seconds}")
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds if renew_seconds is not None else lease_seconds / 4
        self.renew_deadline = renew_deadline if renew_deadline is not None else lease_seconds * 2 / 3
        self.clock = clock
        self.metrics = metrics
        self.stop_timeout = stop_timeout
        self.leading = False
        self._observed: tuple[dict[str, Any], dt.datetime] | None = None

    def _observe(self, spec: dict[str, Any], now: dt.datetime) -> dt.datetime:
        if self._observed is None or self._observed[0] != spec:
            self._observed = (spec, now)
        return self._observed[1]

    async def attempt(self) -> Decision:
        """One read-decide-write round; the returned decision says what happened.

        ``wait`` when another replica holds the Lease or won a write race (a conflict);
        ApiError propagates (the caller decides how long to keep trying).
        """
        obj = await self.kube.get(LEASE, self.name, self.namespace)
        now = self.clock()
        if obj is None:
            decision = decide(None, self.identity, now, self.lease_seconds)
        else:
            spec = obj.get("spec") or {}
            observed = self._observe(spec, now)
            decision = decide(LeaseRecord.from_spec(spec), self.identity, now, self.lease_seconds, observed)
        if decision.record is None:
            return decision
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        try:
            if obj is None:
                await self.kube.create(LEASE, {"metadata": meta, "spec": decision.record.to_spec()})
            else:
                meta["resourceVersion"] = obj["metadata"]["resourceVersion"]
                await self.kube.replace(LEASE, {"metadata": meta, "spec": decision.record.to_spec()})
        except (AlreadyExistsError, ConflictError) as exc:
            log.debug("Lost a race for lease %s/%s: %s", self.namespace, self.name, exc)
            return Decision("wait", retry_in=self.renew_seconds)
        if decision.action != "renew":
            log.info(
                "%s acquired lease %s/%s (%s)", self.identity, self.namespace, self.name, decision.action
            )
        return decision

    async def release(self) -> None:
        """Give the Lease up if this replica holds it (best effort: on failure it just expires)."""
        try:
            obj = await self.kube.get(LEASE, self.name, self.namespace)
            if obj is None:
                return
            record = released(LeaseRecord.from_spec(obj.get("spec")), self.identity, self.clock())
            if record is None:
                return
            meta = {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": obj["metadata"]["resourceVersion"],
            }
            await self.kube.replace(LEASE, {"metadata": meta, "spec": record.to_spec()})
            log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)
        except (ApiError, ConflictError) as exc:
            log.warning("Could not release lease %s/%s (it will expire): %s", self.namespace, self.name, exc)

    async def _acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica holds the Lease (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            try:
                # Bounded, so that a stop is not held up by a request that never gets an answer.
                decision = await asyncio.wait_for(self.attempt(), timeout=self.lease_seconds)
            except (ApiError, TimeoutError) as exc:
                log.warning("Leader election: cannot read or write lease %s: %r", self.name, exc)
                decision = Decision("wait", retry_in=self.renew_seconds)
            if decision.action != "wait":
                return True
            await _wait_for(stop, min(max(decision.retry_in, 0.05), self.renew_seconds))
        return False

    async def _lead(self, stop: asyncio.Event, task: asyncio.Future[None]) -> _Outcome:
        """Renew until ``stop``, the operator ends, or the Lease is lost; say which."""
        loop = asyncio.get_running_loop()
        last_renewal = loop.time()
        while True:
            await _first(task, stop.wait(), timeout=self.renew_seconds)
            if stop.is_set():
                return "stop"
            if task.done():
                return "ended"
            # A renewal that hangs (the API server unreachable, its answer never coming) must not
            # keep this replica leading past its renew deadline: the attempt gets only the time
            # left before it, so that a partitioned leader stops its operator before another
            # replica may take the Lease over (a request still in flight cannot decide anything
            # after that: every outcome write carries the resourceVersion it read).
            left = self.renew_deadline - (loop.time() - last_renewal)
            try:
                decision = await asyncio.wait_for(self.attempt(), timeout=max(left, 0.01))
            except (ApiError, TimeoutError) as exc:
                log.warning("Leader election: renewal of lease %s failed: %r", self.name, exc)
                decision = None
            if decision is not None and decision.action != "wait":
                last_renewal = loop.time()
                continue
            held_by_other = (
                decision is not None
                and self._observed is not None
                and (self._observed[0].get("holderIdentity") not in ("", self.identity))
            )
            if held_by_other or loop.time() - last_renewal >= self.renew_deadline:
                log.warning(
                    "%s lost lease %s/%s; stopping the operator", self.identity, self.namespace, self.name
                )
                return "lost"

    async def run(self, operator: OperatorTerm, stop: asyncio.Event) -> None:
        """Until ``stop``: wait for the Lease, run ``operator`` while holding it, repeat.

        Returns when ``stop`` is set or the operator ends by itself; an operator's exception
        propagates. Either way the Lease is released if held.
        """
        try:
            while await self._acquire(stop):
                self.leading = True
                if self.metrics is not None:
                    self.metrics.leader.set(1)
                term_stop = asyncio.Event()
                task = asyncio.ensure_future(operator(term_stop))
                outcome: str = "stop"
                try:
                    outcome = await self._lead(stop, task)
                finally:
                    # No longer the leader from here on (the health endpoint says so at once),
                    # even while the operator takes its time to stop.
                    self.leading = False
                    if self.metrics is not None:
                        self.metrics.leader.set(0)
                    term_stop.set()
                    await _first(task, timeout=self.stop_timeout)
                    if not task.done():
                        log.error("The operator did not stop within %ss; cancelling it", self.stop_timeout)
                        task.cancel()
                        await asyncio.wait({task})
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
                if outcome == "ended":
                    return
        finally:
            try:
                await asyncio.wait_for(self.release(), timeout=self.renew_deadline)
            except TimeoutError:
                log.warning("Could not release lease %s in time (it will expire)", self.name)


async def _first(*aws: Awaitable[Any], timeout: float | None = None) -> None:
    """Wait until the first of ``aws`` completes (or ``timeout``); cancel the ones it started."""
    futures = [asyncio.ensure_future(a) for a in aws]
    created = [f for f, a in zip(futures, aws, strict=True) if f is not a]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in created:
            f.cancel()


async def _wait_for(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass  # the time is up; the caller looks again


def operator_in_thread(run: Callable[[threading.Event], Awaitable[None]]) -> OperatorTerm:
    """Adapt ``run(stop_flag)`` (e.g. the kopf operator) into an operator term for the elector.

    Each term runs in a thread with its own event loop: when kopf stops it cancels every task
    of its loop that it did not start with, and the elector and the health endpoint must not be
    among them.
    """

    async def term(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        flag = threading.Event()
        finished = asyncio.Event()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(_call(run, flag))
            except BaseException as exc:  # reported to the elector
                errors.append(exc)
            finally:
                loop.call_soon_threadsafe(finished.set)

        thread = threading.Thread(target=target, name="mabeam-operator", daemon=True)
        thread.start()
        try:
            await _first(stop.wait(), finished.wait())
        finally:
            flag.set()
            await finished.wait()
        if errors:
            raise errors[0]

    return term


async def _call(run: Callable[[threading.Event], Awaitable[None]], flag: threading.Event) -> None:
    await run(flag)
