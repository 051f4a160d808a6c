"""Kube.list_shared: concurrent lists of one (resource, namespace) share requests, and each
caller still gets a list that began after its call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mabeam.errors import ApiError
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, VARIABLE, Res


class Counting(Kube):
    """A Kube whose lists are counted and held until released; list n returns [{"n": n}]."""

    def __init__(self) -> None:
        super().__init__(client=None)
        self.started = 0
        self.release: list[asyncio.Event] = []
        self.fail: set[int] = set()

    async def list(self, res: Res, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        self.started += 1
        number = self.started
        gate = asyncio.Event()
        self.release.append(gate)
        await gate.wait()
        if number in self.fail:
            raise ApiError("list failed", status=503)
        return [{"n": number, "plural": res.plural, "namespace": namespace}]


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0)


async def test_callers_that_arrive_during_a_list_share_the_next_one_not_the_running_one() -> None:
    kube = Counting()
    first = asyncio.create_task(kube.list_shared(AGENT, "ns"))
    await until(lambda: kube.started == 1)
    # 50 callers arrive while list 1 is in flight: it began before them, so none of them may
    # get it; they all share list 2, which starts once list 1 is done.
    later = [asyncio.create_task(kube.list_shared(AGENT, "ns")) for _ in range(50)]
    await asyncio.sleep(0)
    kube.release[0].set()
    assert (await first)[0]["n"] == 1
    await until(lambda: kube.started == 2)
    kube.release[1].set()
    assert {(await t)[0]["n"] for t in later} == {2}
    assert kube.started == 2
    # Nobody waits any more: the next caller gets a new list.
    again = asyncio.create_task(kube.list_shared(AGENT, "ns"))
    await until(lambda: kube.started == 3)
    kube.release[2].set()
    assert (await again)[0]["n"] == 3


async def test_each_resource_and_namespace_has_its_own_lists() -> None:
    kube = Counting()
    tasks = [asyncio.create_task(kube.list_shared(res, ns)) for res in (AGENT, VARIABLE) for ns in ("a", "b")]
    await until(lambda: kube.started == 4)
    for gate in kube.release:
        gate.set()
    got = {(r[0]["plural"], r[0]["namespace"]) for r in await asyncio.gather(*tasks)}
    assert got == {(AGENT.plural, "a"), (AGENT.plural, "b"), (VARIABLE.plural, "a"), (VARIABLE.plural, "b")}


async def test_the_callers_of_a_list_that_fails_all_get_its_error() -> None:
    kube = Counting()
    first = asyncio.create_task(kube.list_shared(AGENT, "ns"))
    await until(lambda: kube.started == 1)
    later = [asyncio.create_task(kube.list_shared(AGENT, "ns")) for _ in range(5)]
    await asyncio.sleep(0)
    kube.fail.add(2)
    kube.release[0].set()
    await first
    await until(lambda: kube.started == 2)
    kube.release[1].set()
    for task in later:
        with pytest.raises(ApiError, match="list failed"):
            await task
    assert kube.started == 2


async def test_a_cancelled_caller_leaves_the_others_a_list() -> None:
    kube = Counting()
    first = asyncio.create_task(kube.list_shared(AGENT, "ns"))
    await until(lambda: kube.started == 1)
    waiting = asyncio.create_task(kube.list_shared(AGENT, "ns"))
    await asyncio.sleep(0)
    first.cancel()  # its list is abandoned: the waiter runs one of its own
    await until(lambda: kube.started == 2)
    kube.release[1].set()
    assert (await waiting)[0]["n"] == 2
