"""Kube caps its requests in flight (the rest wait in the client, never in httpx's pool where
they would time out); watches are not capped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from mabeam.kube.client import IN_FLIGHT, LIMITS, Kube
from mabeam.kube.resources import CONFIG_MAP


class Held:
    """A stand-in for lightkube's client: every request waits until released; counts how many
    are in flight at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.go = asyncio.Event()

    async def _request(self) -> dict[str, Any]:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.go.wait()
        finally:
            self.now -= 1
        return {"metadata": {"name": "x"}}

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        return await self._request()

    async def patch(self, *_: Any, **__: Any) -> dict[str, Any]:
        return await self._request()

    async def delete(self, *_: Any, **__: Any) -> dict[str, Any]:
        return await self._request()

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        await self._request()
        yield "ADDED", {"metadata": {"name": "x"}}


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0)


async def test_at_most_in_flight_requests_at_once_and_every_caller_is_answered() -> None:
    client = Held()
    kube = Kube(client, in_flight=4)  # type: ignore[arg-type]
    calls = [kube.get(CONFIG_MAP, f"c{i}", "ns") for i in range(10)]
    calls += [kube.patch(CONFIG_MAP, f"c{i}", {"data": {}}, namespace="ns") for i in range(10)]
    calls += [kube.delete(CONFIG_MAP, f"c{i}", "ns") for i in range(10)]
    tasks = [asyncio.ensure_future(c) for c in calls]
    await until(lambda: client.now == 4)
    for _ in range(20):
        await asyncio.sleep(0)
    assert client.most == 4  # the other 26 wait in the client
    client.go.set()
    results = await asyncio.gather(*tasks)
    assert len(results) == 30 and client.most == 4


async def test_watches_are_not_capped() -> None:
    client = Held()
    kube = Kube(client, in_flight=1)  # type: ignore[arg-type]

    async def first(n: int) -> Any:
        async for event in kube.watch(CONFIG_MAP, f"ns{n}"):
            return event

    watches = [asyncio.ensure_future(first(n)) for n in range(5)]
    await until(lambda: client.now == 5)  # five watches open at once past a cap of one
    client.go.set()
    assert len(await asyncio.gather(*watches)) == 5


def test_the_pool_never_makes_a_request_or_a_watch_wait() -> None:
    assert LIMITS.max_connections is None
    assert LIMITS.max_keepalive_connections is not None and LIMITS.max_keepalive_connections >= IN_FLIGHT
