"""What every per-object reconcile loop (a kopf daemon) shares: wake-ups and the wait.

A loop sleeps until its next wanted pass, until an event about its object (or a child)
wakes it, or until kopf stops it, whichever comes first.
"""

from __future__ import annotations

import asyncio

import kopf


class Wakers:
    """One wake-up flag per (namespace, name) of one kind."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}

    def get(self, namespace: str, name: str) -> asyncio.Event:
        return self._events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name:
            self.get(namespace, name).set()

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
