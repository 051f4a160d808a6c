"""Variables from an agent: cached reads, watches, compare-and-swap writes, Lease locks.

``ctx.variables`` (or ``Variables(kube, namespace, agent)``)::

    target = await ctx.variables.get("target-temperature")      # from the cache: no API call
    async for value, version in ctx.variables.watch("target-temperature"):
        ...
    version = await ctx.variables.write("heater-owner", ctx.name, based_on=3)
    async with ctx.variables.lock("heater-owner", ttl=10) as token:
        await ctx.variables.write("heater-owner", ctx.name)      # carries the fencing token

Reads come from a cache fed by one watch on the namespace's Variables. A write PUTs the
Variable with its resourceVersion as precondition (``spec.value``, the annotation
``mabeam.io/write`` and, for admission, ``mabeam.io/writer`` = the agent's name), then waits
until the operator reports the write's outcome in ``status.lastWrite`` (see docs/variables.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

from ..core.variables import parse_spec, parse_status
from ..core.variables_wire import lease_is_free, lease_name, micro_time, settled, write_annotations
from ..errors import AccessDeniedError, ApiError, ConflictError, InvalidSpecError, LockError, MabeamError
from ..kube.client import Kube, _dict
from ..kube.resources import LEASE, VARIABLE
from ..models.variable import VariableWrite, Writer, WriteResult

__all__ = ["VariableValue", "Variables"]

log = logging.getLogger("mabeam.sdk")

_RESULTS_KEPT = 1024


class VariableValue(NamedTuple):
    """A Variable's applied value and its version (0: never written)."""

    value: Any
    version: int


def _value_of(obj: dict[str, Any]) -> VariableValue:
    status = obj.get("status") or {}
    return VariableValue(status.get("value"), int(status.get("version") or 0))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Variables:
    """An agent's view of the Variables of its namespace (see the module docstring)."""

    def __init__(
        self, kube: Kube, namespace: str, agent: str, *, priority: int = 0, write_timeout: float = 30.0
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.agent = agent
        self.priority = priority
        self.write_timeout = write_timeout
        self._objects: dict[str, dict[str, Any]] = {}
        self._results: OrderedDict[str, WriteResult] = OrderedDict()
        self._changed = asyncio.Condition()
        self._primed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tokens: dict[str, int] = {}
        self._watchers: dict[str, set[asyncio.Queue[VariableValue]]] = {}

    # ---- the cache ----

    async def start(self) -> None:
        """Start the cache (done on first use); returns once it holds every Variable."""
        if self._task is None:
            self._task = asyncio.create_task(self._feed(), name=f"mabeam-variables-{self.namespace}")
        await self._primed.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _feed(self) -> None:
        while True:
            try:
                listing = self.kube.client.list(VARIABLE.lightkube, namespace=self.namespace)
                objects = {}
                async for item in listing:
                    obj = _dict(item)
                    objects[obj["metadata"]["name"]] = obj
                version = listing.resourceVersion
                async with self._changed:
                    for name in set(self._objects) | set(objects):
                        self._update(name, objects.get(name))
                    self._primed.set()
                    self._changed.notify_all()
                async for event, obj in self.kube.watch(VARIABLE, self.namespace, resource_version=version):
                    async with self._changed:
                        self._update(obj["metadata"]["name"], None if event == "DELETED" else obj)
                        self._changed.notify_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watch ends (410, network): list again after a pause
                log.debug("the Variables watch of %s ended (%s); listing again", self.namespace, exc)
                await asyncio.sleep(0.2)

    def _update(self, name: str, obj: dict[str, Any] | None) -> None:
        before = self._objects.get(name)
        if obj is None:
            self._objects.pop(name, None)
            return
        self._objects[name] = obj
        last = (obj.get("status") or {}).get("lastWrite")
        if last:
            try:
                result = WriteResult.model_validate(last)
            except ValueError:
                result = None
            if result is not None:
                self._results[result.write_id] = result
                while len(self._results) > _RESULTS_KEPT:
                    self._results.popitem(last=False)
        value = _value_of(obj)
        if before is None or _value_of(before) != value:
            for queue in self._watchers.get(name, ()):
                queue.put_nowait(value)

    async def get(self, name: str) -> Any:
        """The applied value of Variable ``name`` (None if never written), from the cache."""
        return (await self.read(name)).value

    async def read(self, name: str) -> VariableValue:
        """Value and version, from the cache; MabeamError if there is no such Variable."""
        await self.start()
        obj = self._objects.get(name)
        if obj is None:
            raise MabeamError(f"there is no Variable {self.namespace}/{name}")
        return _value_of(obj)

    async def watch(self, name: str) -> AsyncIterator[VariableValue]:
        """Yield (value, version) now and on every change of the applied value.

        A Variable that has never had a value applied (version 0) yields nothing until it has.
        """
        await self.start()
        queue: asyncio.Queue[VariableValue] = asyncio.Queue()
        self._watchers.setdefault(name, set()).add(queue)
        try:
            if name in self._objects:
                queue.put_nowait(_value_of(self._objects[name]))
            last: VariableValue | None = None
            while True:
                value = await queue.get()
                if value.version > 0 and value != last:
                    last = value
                    yield value
        finally:
            self._watchers[name].discard(queue)

    async def _wait_change(self, predicate: Callable[[], bool], timeout: float) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except TimeoutError:
                return False
        return True

    # ---- writes ----

    async def write(
        self,
        name: str,
        value: Any,
        *,
        based_on: int | None = None,
        reason: str = "",
        timeout: float | None = None,
    ) -> int:
        """Write ``value``; return the version it became.

        ``based_on`` is the version the value was computed from: under conflictPolicy Reject a
        write based on another version raises ConflictError (with the current value and
        version); LastWriterWins applies it; HighestPriority lets the operator decide by
        priority. Inside ``lock(name)`` the write carries the lock's fencing token. Raises
        AccessDeniedError (not allowed to write), InvalidSpecError (the value does not fit),
        LockError (locked by another agent), ConflictError, or ApiError.
        """
        await self.start()
        deadline = asyncio.get_running_loop().time() + (timeout or self.write_timeout)
        write_id = uuid.uuid4().hex
        write = VariableWrite(
            value=value,
            based_on_version=based_on,
            writer=Writer(kind="Agent", name=self.agent, priority=self.priority),
            fencing_token=self._tokens.get(name),
            reason=reason,
        )
        fresh = False
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise ApiError(f"could not write Variable {name}: it stayed busy (timed out)")
            obj = await self.kube.get(VARIABLE, name, self.namespace) if fresh else self._objects.get(name)
            fresh = False
            if obj is None:
                obj = await self.kube.get(VARIABLE, name, self.namespace)
                if obj is None:
                    raise MabeamError(f"there is no Variable {self.namespace}/{name}")
            if not settled(obj):  # the operator is still on an earlier write
                changed = await self._wait_newer(name, obj, min(left, 0.5))
                fresh = not changed
                continue
            self._check_base(name, obj, based_on)
            body = dict(obj)
            body["metadata"] = {
                **obj["metadata"],
                "annotations": {
                    **(obj["metadata"].get("annotations") or {}),
                    **write_annotations(write_id, write),
                },
            }
            body["spec"] = {**(obj.get("spec") or {}), "value": value}
            try:
                await self.kube.replace(VARIABLE, body)
            except ConflictError:  # someone wrote first: read again, check the base again
                changed = await self._wait_newer(name, obj, min(left, 0.2))
                fresh = not changed
                continue
            except ApiError as exc:
                if exc.status == 403:
                    raise AccessDeniedError(
                        f"agent {self.agent} may not write Variable {self.namespace}/{name} "
                        f"(spec.access does not allow it): {exc}"
                    ) from exc
                raise
            return self._outcome(name, await self._result(name, write_id, deadline))

    async def _wait_newer(self, name: str, obj: dict[str, Any], timeout: float) -> bool:
        """Wait until the cache holds a version of ``name`` other than ``obj``; False on timeout."""
        seen = obj["metadata"]["resourceVersion"]
        return await self._wait_change(lambda: self._rv(name) != seen, timeout)

    def _rv(self, name: str) -> str | None:
        obj = self._objects.get(name)
        return None if obj is None else obj["metadata"].get("resourceVersion")

    @staticmethod
    def _check_base(name: str, obj: dict[str, Any], based_on: int | None) -> None:
        if based_on is None:
            return
        status = parse_status(obj.get("status"))
        if based_on == status.version:
            return
        if parse_spec(obj.get("spec") or {}).conflict_policy == "Reject":
            raise ConflictError(
                f"Variable {name} is at version {status.version}, not {based_on} "
                "(conflictPolicy Reject): read the current value and retry",
                current_value=status.value,
                current_version=status.version,
            )

    async def _result(self, name: str, write_id: str, deadline: float) -> WriteResult:
        loop = asyncio.get_running_loop()
        while True:
            if write_id in self._results:
                return self._results[write_id]
            left = deadline - loop.time()
            if left <= 0:
                raise ApiError(
                    f"the write {write_id} to Variable {name} was accepted by the API, but the "
                    "operator did not report its outcome in time (is the operator running?)"
                )
            if not await self._wait_change(lambda: write_id in self._results, min(left, 1.0)):
                obj = await self.kube.get(VARIABLE, name, self.namespace)  # the watch may lag
                if obj is not None:
                    async with self._changed:
                        self._update(name, obj)

    @staticmethod
    def _outcome(name: str, result: WriteResult) -> int:
        if result.applied:
            return result.version
        message = f"the write to Variable {name} was refused: {result.message}"
        if result.reason == "Conflict":
            raise ConflictError(message, current_value=result.current_value, current_version=result.version)
        if result.reason == "Locked":
            raise LockError(message)
        if result.reason == "Forbidden":
            raise AccessDeniedError(message)
        raise InvalidSpecError(message, path="spec.value")

    # ---- locks ----

    @contextlib.asynccontextmanager
    async def lock(
        self, name: str, ttl: float = 15.0, *, wait: float = 30.0, renew: bool = True
    ) -> AsyncIterator[int]:
        """Hold the lock of Variable ``name`` (a Lease) for the block; yields the fencing token.

        The lease lasts ``ttl`` seconds and is renewed in the background (every ttl/3) unless
        ``renew`` is False; it is released at the end. Waits up to ``wait`` seconds for another
        holder's lease to end (LockError after that). If the lease is lost (not renewed in
        time), writes made with its token are refused by the operator. The Lease is created by
        the operator with the Variable; only the agents allowed to write may read and take it
        (AccessDeniedError otherwise).
        """
        if not (math.isfinite(ttl) and ttl > 0):
            raise InvalidSpecError(f"must be a positive number of seconds, got {ttl}", path="lock.ttl")
        token = await self._acquire(name, ttl, wait)
        self._tokens[name] = token
        renewer = asyncio.create_task(self._renew(name, ttl, token)) if renew else None
        try:
            yield token
        finally:
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            if self._tokens.get(name) == token:
                del self._tokens[name]
            await self._release(name, token)

    def _lease_spec(
        self, ttl: float, now: dt.datetime, transitions: int, acquired: str | None
    ) -> dict[str, Any]:
        return {
            "holderIdentity": self.agent,
            "leaseDurationSeconds": max(1, math.ceil(ttl)),
            "acquireTime": acquired or micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }

    async def _acquire(self, name: str, ttl: float, wait: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        lease_id = lease_name(name)
        while True:
            now = _now()
            try:
                lease = await self.kube.get(LEASE, lease_id, self.namespace)
            except ApiError as exc:
                if exc.status != 403:
                    raise
                # The operator grants the lock to a Variable's writers (a Role) shortly after the
                # Variable or the agent appears: a new agent may ask first. Wait for the grant.
                if loop.time() >= deadline:
                    raise AccessDeniedError(
                        f"agent {self.agent} may not lock Variable {name}: only the agents that "
                        f"spec.access lets write may take its lock ({exc}; waited {wait:g}s)"
                    ) from None
                await asyncio.sleep(min(0.2, max(deadline - loop.time(), 0.0)))
                continue
            if lease is None:  # the operator creates it with the Variable (agents may not)
                if loop.time() >= deadline:
                    raise LockError(
                        f"the lock Lease {lease_id} of Variable {name} does not exist; the operator "
                        f"creates it for an existing Variable (gave up after {wait:g}s)"
                    )
                await asyncio.sleep(min(0.1, max(deadline - loop.time(), 0.0)))
                continue
            try:
                if lease_is_free(lease, now):
                    token = int((lease.get("spec") or {}).get("leaseTransitions") or 0) + 1
                    await self.kube.replace(LEASE, {**lease, "spec": self._lease_spec(ttl, now, token, None)})
                    return token
            except ConflictError:  # another agent got there first
                continue
            holder = (lease.get("spec") or {}).get("holderIdentity")
            if holder == self.agent and name in self._tokens:
                raise LockError(f"agent {self.agent} holds the lock of {name} already (locks do not nest)")
            if loop.time() >= deadline:
                raise LockError(f"the lock of Variable {name} is held by {holder}; gave up after {wait:g}s")
            await asyncio.sleep(min(0.1, max(deadline - loop.time(), 0.0)))

    async def _renew(self, name: str, ttl: float, token: int) -> None:
        lease_id = lease_name(name)
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                lease = await self.kube.get(LEASE, lease_id, self.namespace)
                spec = (lease or {}).get("spec") or {}
                if (
                    lease is None
                    or spec.get("holderIdentity") != self.agent
                    or spec.get("leaseTransitions") != token
                ):
                    log.warning("agent %s lost the lock of Variable %s", self.agent, name)
                    return
                spec = self._lease_spec(ttl, _now(), token, spec.get("acquireTime"))
                await self.kube.replace(LEASE, {**lease, "spec": spec})
            except (ApiError, ConflictError) as exc:  # try again at the next tick; the TTL has slack
                log.debug("renewing the lock of %s failed: %s", name, exc)

    async def _release(self, name: str, token: int) -> None:
        for _ in range(10):
            lease = await self.kube.get(LEASE, lease_name(name), self.namespace)
            spec = (lease or {}).get("spec") or {}
            if (
                lease is None
                or spec.get("holderIdentity") != self.agent
                or spec.get("leaseTransitions") != token
            ):
                return  # lost already: nothing of ours to release
            released = {"leaseTransitions": token}
            try:
                await self.kube.replace(LEASE, {**lease, "spec": released})
                return
            except ConflictError:
                continue
