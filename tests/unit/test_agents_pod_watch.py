"""The watch of the agent Pods: what a (re)list and each event do to the view, which Agents they
wake, where it watches, and that a failure lists again (a fake API, no server needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mabeam.controller import _agent_view, agents
from mabeam.controller._runtime import Runtime
from mabeam.core.agents import AGENT_LABEL
from mabeam.errors import ApiError


def pod(
    name: str, agent: str, version: int, *, namespace: str = "team", phase: str = "Running"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": str(version),
            "labels": {AGENT_LABEL: agent},
        },
        "status": {"phase": phase},
    }


def agent(name: str, namespace: str = "team") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": "1", "uid": f"u-{name}"}}


def names(view: _agent_view.AgentView, key: tuple[str, str]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in view.pods(key)}


def listed(*pods: dict[str, Any]) -> list[_agent_view.Listed]:
    return [_agent_view.listed_pod(p) for p in [*pods, {"metadata": {"name": "other", "namespace": "team"}}]]


def test_a_relist_replaces_the_pods_and_keeps_what_a_later_write_put() -> None:
    view = _agent_view.AgentView()
    view.put_pod(pod("a-1", "a", 5))
    view.put_pod(pod("a-2", "a", 12))  # our own create, after the list's snapshot (10)
    view.put_pod(pod("z-1", "z", 3))  # deleted while no watch ran
    view.put_pod(pod("o-1", "o", 4, namespace="other"))
    changed = view.replace_pods("team", listed(pod("a-1", "a", 7), pod("y-1", "y", 8)), "10")
    assert changed == {("team", "a"), ("team", "y"), ("team", "z")}
    assert names(view, ("team", "a")) == {"a-1": "7", "a-2": "12"}
    assert names(view, ("team", "y")) == {"y-1": "8"}
    assert view.pods(("team", "z")) == []
    assert names(view, ("other", "o")) == {"o-1": "4"}  # another namespace's watch holds it
    # The same list again changes nothing and wakes no one.
    assert view.replace_pods("team", listed(pod("a-1", "a", 7), pod("y-1", "y", 8)), "10") == set()
    # A list of every namespace (None) replaces every namespace's Pods.
    assert view.replace_pods(None, [], "20") == {("team", "a"), ("team", "y"), ("other", "o")}
    assert view.pods(("other", "o")) == [] and view.pods(("team", "a")) == []


def test_the_view_counts_its_agents_per_namespace() -> None:
    view = _agent_view.AgentView()
    view.put_agent(agent("a"))
    view.put_agent(agent("a"))
    view.put_agent(agent("b"))
    view.put_agent(agent("c", "other"))
    assert dict(view.per_namespace) == {"team": 2, "other": 1}
    view.drop_agent("team", "a")
    view.drop_agent("team", "a")
    view.drop_agent("other", "c")
    assert dict(view.per_namespace) == {"team": 1}


class FakeKube:
    """Lists from a script; each watch yields the events put for it, then fails if told to."""

    def __init__(self) -> None:
        self.lists: list[tuple[list[dict[str, Any]], str]] = []
        self.calls: list[tuple[str, str | None, dict[str, Any], str | None]] = []
        self.events: asyncio.Queue[tuple[str, dict[str, Any]] | Exception] = asyncio.Queue()

    async def list_versioned(self, res: Any, namespace: str | None, *, labels: Any, each: Any) -> Any:
        self.calls.append(("list", namespace, dict(labels), None))
        if not self.lists:
            raise ApiError("list pods: the server is unavailable", status=503)
        pods, version = self.lists.pop(0)
        return [each(p) for p in pods], version

    async def watch(
        self, res: Any, namespace: str | None, *, labels: Any, resource_version: str | None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.calls.append(("watch", namespace, dict(labels), resource_version))
        while True:
            item = await self.events.get()
            if isinstance(item, Exception):
                raise item
            yield item


async def until(check: Any) -> None:
    for _ in range(20_000):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the watch did not get there")


@pytest.fixture
def setup() -> Any:
    def make(namespaces: tuple[str, ...] = ()) -> tuple[agents.AgentQueue, FakeKube, list[Any]]:
        runtime = Runtime(namespaces=namespaces)
        runtime.settings.agents.retry_seconds = 0.001
        kube = FakeKube()
        runtime.kube = kube  # type: ignore[assignment]
        queue = agents.AgentQueue(runtime)
        woken: list[Any] = []
        queue.wake = lambda key, delay=0.0: woken.append(key)  # type: ignore[method-assign]
        return queue, kube, woken

    return make


async def test_events_after_the_list_wake_their_agents_and_a_failure_lists_again(setup: Any) -> None:
    queue, kube, woken = setup()
    kube.lists.append(([pod("a-1", "a", 5)], "10"))
    queue.view.put_agent(agent("a"))
    queue.pods.follow("team")
    await until(lambda: len(kube.calls) == 2)
    selector = {AGENT_LABEL: None}
    assert kube.calls == [("list", None, selector, None), ("watch", None, selector, "10")]
    assert woken == [("team", "a")]
    await kube.events.put(("MODIFIED", pod("a-1", "a", 11, phase="Failed")))
    await kube.events.put(("ADDED", pod("b-1", "b", 12)))
    await until(lambda: len(woken) == 3)
    assert woken[1:] == [("team", "a"), ("team", "b")]
    assert queue.view.pods(("team", "a"))[0]["status"]["phase"] == "Failed"
    # The watch breaks (410 Gone); b-1 was deleted meanwhile; the first list fails too (503).
    await kube.events.put(ApiError("watch pods: too old resource version", status=410))
    await until(lambda: len(kube.calls) == 3)
    assert kube.calls[2][0] == "list"
    kube.lists.append(([pod("a-1", "a", 11, phase="Failed")], "20"))
    await until(lambda: len(kube.calls) == 5)
    assert kube.calls[3:] == [("list", None, selector, None), ("watch", None, selector, "20")]
    assert woken[3:] == [("team", "b")] and queue.view.pods(("team", "b")) == []
    await queue.close()
    assert queue.pods.tasks == {}


async def test_one_watch_per_namespace_with_agents_when_namespaces_are_named(setup: Any) -> None:
    queue, kube, _ = setup(("team", "other"))
    kube.lists += [([], "1"), ([], "2")]
    queue.pods.follow("team")  # no Agent there yet: no watch
    assert queue.pods.tasks == {}
    queue.view.put_agent(agent("a"))
    queue.pods.follow("team")
    queue.view.put_agent(agent("c", "other"))
    queue.pods.follow("other")
    assert set(queue.pods.tasks) == {"team", "other"}
    await until(lambda: len(kube.calls) == 4)
    assert {(verb, ns) for verb, ns, _, _ in kube.calls} == {
        (v, n) for v in ("list", "watch") for n in ("team", "other")
    }
    watched = queue.pods.tasks["team"]
    queue.view.put_pod(pod("a-1", "a", 5))
    queue.view.drop_agent("team", "a")
    queue.pods.follow("team")
    assert set(queue.pods.tasks) == {"other"}
    assert queue.view.pods(("team", "a")) == []  # no watch keeps them current any more
    await asyncio.gather(watched, return_exceptions=True)
    assert watched.cancelled()
    await queue.close()


async def test_the_cluster_wide_watch_stays_while_the_operator_runs(setup: Any) -> None:
    queue, kube, _ = setup()
    kube.lists.append(([], "1"))
    queue.view.put_agent(agent("a"))
    queue.pods.follow("team")
    queue.view.drop_agent("team", "a")
    queue.pods.follow("team")
    assert set(queue.pods.tasks) == {None}
    await queue.close()


class Gone:
    """The API after an Agent and its Pod were deleted: no Pods, no Agent; writes are errors."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def list(self, res: Any, namespace: str, *, labels: Any) -> list[dict[str, Any]]:
        self.calls.append(f"list {res.plural}")
        return []

    async def get(self, res: Any, name: str, namespace: str) -> None:
        self.calls.append(f"get {res.plural}")
        return None

    def __getattr__(self, verb: str) -> Any:
        raise AssertionError(f"{verb}: nothing may be written for a deleted Agent")


async def test_a_pod_deleted_with_its_agent_and_seen_first_is_not_replaced() -> None:
    """The garbage collector deletes the Pod with its Agent; the Pods' watch may tell before the
    Agents' watch does. The pass asks the API server, finds no Agent, and creates nothing."""
    runtime = Runtime()
    runtime.kube = Gone()  # type: ignore[assignment]
    view = _agent_view.AgentView()
    body = agent("runner")
    body["spec"] = {"template": {"spec": {"containers": [{"name": "agent", "image": "example/agent:1"}]}}}
    body["status"] = {"phase": "Ready", "podName": "runner-1", "incarnation": 1}
    view.put_agent(body)
    assert await agents.reconcile(runtime, view, "team", "runner") is None
    assert runtime.kube.calls == ["list pods", "get agents"]  # type: ignore[attr-defined]
    assert view.agent(("team", "runner")) is None and not view.per_namespace


async def test_at_most_max_passes_run_at_once_and_every_woken_agent_gets_one() -> None:
    runtime = Runtime()
    queue = agents.AgentQueue(runtime, max_passes=2)
    go = asyncio.Event()
    passes: list[tuple[str, str]] = []
    running = [0, 0]  # now, most

    async def one_pass(key: tuple[str, str]) -> None:
        running[0] += 1
        running[1] = max(running)
        passes.append(key)
        await go.wait()
        running[0] -= 1

    queue._pass = one_pass  # type: ignore[assignment, method-assign]
    keys = [("team", f"a{i}") for i in range(6)]
    for key in keys:
        queue.wake(key)
    queue.wake(keys[4])  # already waiting: not twice
    await until(lambda: len(passes) == 2)
    assert running == [2, 2] and list(queue._waiting) == keys[2:]
    queue.wake(keys[0])  # woken while running: once more
    go.set()
    await until(lambda: not queue._running and not queue._waiting)
    assert sorted(passes) == sorted([*keys, keys[0]]) and running[1] == 2
    await queue.close()
