"""What every per-object reconcile loop (a kopf daemon) shares: wake-ups, the wait, the backoff.

A loop sleeps until its next wanted pass, until an event about its object (or a child)
wakes it, or until kopf stops it, whichever comes first. After a failed pass it waits out a
:class:`Backoff` first, whatever wakes it: an API server that answers 429 or 503 is not hit
again at once by every event that arrives meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from ..errors import ApiError, ConflictError
from ..kube.client import Kube
from ..kube.resources import Res
from ..models._base import set_condition
from ._runtime import clock

__all__ = ["PARKED_SECONDS", "TOO_LARGE", "Backoff", "Wakers", "newer", "report_failure", "sleep_or_wake"]

log = logging.getLogger(__name__)

#: The status code of a write the API server refuses as too large (the object's size limit).
TOO_LARGE = 413
#: How long a loop whose object cannot be written (413) waits for a change of it: the same
#: write would be refused again, so only an event (a new spec) wakes it before this.
PARKED_SECONDS = 3600.0


class Wakers:
    """One wake-up flag per (namespace, name) of one kind."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}

    def get(self, namespace: str, name: str) -> asyncio.Event:
        return self._events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str | None, name: str | None) -> None:
        """Set the flag of a loop that runs (one that has not started yet makes its first pass
        anyway): an event for an object without a loop (an answer naming a session that does
        not exist, a Lease of a deleted Variable) leaves nothing behind."""
        if namespace and name:
            event = self._events.get((namespace, name))
            if event is not None:
                event.set()

    def wake_namespace(self, namespace: str) -> None:
        for (ns, _), event in list(self._events.items()):
            if ns == namespace:
                event.set()

    def forget(self, namespace: str, name: str) -> None:
        self._events.pop((namespace, name), None)


async def sleep_or_wake(waker: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    """Wait ``delay`` seconds, or less if ``waker`` is set or the daemon is stopped."""
    woken = asyncio.ensure_future(waker.wait())
    halted = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, halted}, timeout=max(delay, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        halted.cancel()


class Backoff:
    """The delays after consecutive failed passes: ``base`` doubling up to ``cap``.

    The cap is at most 16 times the base: a pass makes several requests, so under a steady
    share of failures several passes in a row fail, and a long outage is over long before a
    wait without bound would be.

    A delay the server asked for (``Retry-After`` of a 429 or 503) is honoured when longer.
    A successful pass resets it.
    """

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = max(min(cap, 16 * base), base)
        self.failures = 0

    def failed(self, retry_after: float | None = None) -> float:
        """Count a failure; the seconds to wait before the next pass."""
        self.failures += 1
        delay: float = min(self.base * 2.0 ** min(self.failures - 1, 16), self.cap)
        return max(delay, retry_after or 0.0)

    def succeeded(self) -> None:
        self.failures = 0


async def report_failure(kube: Kube, res: Res, namespace: str, name: str, reason: str, message: str) -> None:
    """Say on the object itself why its reconcile failed: condition ``Reconciled=False``.

    A small merge patch of the status (conditions only), so that it fits where the full status
    did not (413). If even this fails, the failure is logged: one object's trouble never
    stops the loop, nor any other object's.
    """
    try:
        obj = await kube.get(res, name, namespace)
        if obj is None:
            return
        status: Any = obj.get("status")
        old: Any = status.get("conditions") if isinstance(status, dict) else None
        old = old if isinstance(old, list) else []
        kept = [c for c in old if isinstance(c, dict) and isinstance(c.get("type"), str)]
        conditions = set_condition(
            kept, type="Reconciled", status="False", reason=reason, message=message[:1024], now=clock(),
            observed_generation=obj["metadata"].get("generation"),
        )  # fmt: skip
        if conditions != old:
            patch = {"status": {"conditions": conditions}}
            await kube.patch(res, name, patch, namespace=namespace, status=True)
    except (ApiError, ConflictError) as exc:
        log.warning("Could not report on %s %s/%s that %s: %s", res.kind, namespace, name, reason, exc)


def newer(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether ``new`` is not older than ``old`` (resourceVersions are etcd revisions)."""
    if old is None:
        return True
    try:
        return int(new["metadata"]["resourceVersion"]) >= int(old["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return True
