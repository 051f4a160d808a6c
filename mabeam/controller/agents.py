"""Agent handlers: reconciles fed by watch events, one pass at a time per Agent.

kopf's watch of Agents and our own watch of the Pods labelled ``mabeam.io/agent`` (selected by
the API server, :class:`PodWatch`) feed an in-memory view (the latest version of each Agent and
of each of its Pods) and queue the Agent. A pass reads the view, never the API; it writes only
what changes (children, labels, status, Events) and puts what a write returns back into the
view. Passes of one Agent never overlap; a pass that wants another one later (a restart
back-off) or that failed (an API error: retried with exponential backoff) queues the Agent
again. There is no periodic resync: a watch that restarts lists again, so every object gets an
event, and a pass on an unchanged Agent makes no request at all.

An Agent carries no finalizer and no kopf annotation: deleting it removes it at once, and the
garbage collector removes its Pod, ServiceAccount and RoleBinding (their owner is the Agent).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf

from ..core import agents as _agents
from ..errors import ApiError
from ..kube.client import AlreadyExistsError, Kube
from ..kube.resources import AGENT, POD, ROLE_BINDING, SERVICE_ACCOUNT
from ._agent_view import AgentView, Key, listed_pod
from ._events import post
from ._loop import Backoff
from ._runtime import Runtime, clock

log = logging.getLogger(__name__)

#: The finalizer of operator versions that ran a kopf daemon per Agent: removed when seen.
LEGACY_FINALIZER = "mabeam.io/finalizer"
_MAX_BACKOFF_SECONDS = 60.0

#: Agent passes running at once (a pass makes its requests one after another: twice the API
#: client's requests in flight keeps it busy).
MAX_PASSES = 64

#: The longest wait before a failed watch of the agent Pods is listed and started again.
POD_WATCH_MAX_BACKOFF_SECONDS = 16.0


class PodWatch:
    """The watch of the agent Pods for one operator, selected by their label server-side: no
    other Pod of the cluster reaches the operator (kopf's watch had every Pod sent and filtered
    them in the process, and kept a record of each). One watch of every namespace when the
    operator watches the whole cluster, else one per namespace with Agents, while it has any.

    Each (re)start lists the Pods and puts the list in place of the view's (so a deletion that
    fell between two watches is seen), then watches from the list's version. A failure (an API
    error, 410 Gone, a broken stream) lists and watches again after a backoff. Every change wakes
    its Agent.
    """

    def __init__(self, queue: AgentQueue, clusterwide: bool) -> None:
        self.queue, self.clusterwide = queue, clusterwide
        self.tasks: dict[str | None, asyncio.Task[None]] = {}

    def follow(self, namespace: str) -> None:
        """Watch where the view has Agents: start the watch that covers ``namespace`` when the
        view has an Agent there, stop a namespace's own watch when it has none left."""
        scope = None if self.clusterwide else namespace
        if self.queue.view.per_namespace.get(namespace):
            if scope not in self.tasks:
                self.tasks[scope] = asyncio.create_task(self._run(scope), name=f"agent pods {scope or '*'}")
        elif scope is not None and scope in self.tasks:
            self.tasks.pop(scope).cancel()
            self.queue.view.replace_pods(scope, [], None)  # no watch keeps them current now

    async def _run(self, scope: str | None) -> None:
        runtime, view = self.queue.runtime, self.queue.view
        backoff = Backoff(runtime.settings.agents.retry_seconds, POD_WATCH_MAX_BACKOFF_SECONDS)
        selector = {_agents.AGENT_LABEL: None}
        while True:
            try:
                listed = runtime.kube.list_versioned(POD, scope, labels=selector, each=listed_pod)
                pods, version = await listed
                for changed in view.replace_pods(scope, pods, version):
                    self.queue.wake(changed)
                del pods
                events = runtime.kube.watch(POD, scope, labels=selector, resource_version=version)
                async for event, pod in events:
                    backoff.succeeded()
                    key = view.put_pod(pod, deleted=event == "DELETED")
                    if key is not None:
                        self.queue.wake(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an API error (410 Gone too) or a broken connection
                delay = backoff.failed(exc.retry_after if isinstance(exc, ApiError) else None)
                log.warning("The watch of agent Pods in %s failed (listed again in %.2f s): %s: %s",
                            scope or "all namespaces", delay, type(exc).__name__, exc)  # fmt: skip
                await asyncio.sleep(delay)

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class AgentQueue:
    """Passes of Agents: at most one running per Agent, again when woken during a pass, and at
    most ``max_passes`` at once: the Agents woken beyond wait as keys, in order (a running pass
    holds its Agent and Pods decoded and the bodies it writes; with 9 000 new Agents woken at
    once, so many passes waiting for the API set the operator's peak memory)."""

    runtime: Runtime
    view: AgentView = field(default_factory=AgentView)
    max_passes: int = MAX_PASSES
    _running: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    #: Woken, not running yet (a dict: ordered, each key once).
    _waiting: dict[Key, None] = field(default_factory=dict)
    _again: set[Key] = field(default_factory=set)
    _timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    _failures: dict[Key, int] = field(default_factory=dict)
    pods: PodWatch = field(init=False)

    def __post_init__(self) -> None:
        self.pods = PodWatch(self, clusterwide=not self.runtime.namespaces)

    def wake(self, key: Key, delay: float = 0.0) -> None:
        """A pass of ``key`` now (or after ``delay`` seconds, unless an earlier one is due)."""
        if delay > 0:
            loop = asyncio.get_running_loop()
            timer = self._timers.get(key)
            if timer is not None and timer.when() <= loop.time() + delay:
                return
            if timer is not None:
                timer.cancel()
            self._timers[key] = loop.call_later(delay, self._fire, key)
            return
        if key in self._running:
            self._again.add(key)
        elif len(self._running) >= self.max_passes:
            self._waiting[key] = None
        else:
            self._running[key] = asyncio.create_task(self._run(key), name=f"agent {key[0]}/{key[1]}")

    def _next(self) -> None:
        while self._waiting and len(self._running) < self.max_passes:
            key = next(iter(self._waiting))
            del self._waiting[key]
            self.wake(key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.wake(key)

    async def _run(self, key: Key) -> None:
        try:
            while True:
                self._again.discard(key)
                delay = await self._pass(key)
                if delay is not None:
                    self.wake(key, delay)
                if key not in self._again:
                    return
        finally:
            self._running.pop(key, None)
            self._next()

    async def _pass(self, key: Key) -> float | None:
        memo = self.runtime
        try:
            with memo.metrics.reconcile_seconds.labels(kind="Agent").time():
                delay = await reconcile(memo, self.view, *key)
        except Exception as exc:  # an API error or a bug: retried, never a dead Agent loop
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            memo.metrics.api_errors.labels(kind="Agent").inc()
            backoff: float = min(
                memo.settings.agents.retry_seconds * 2 ** (failures - 1), _MAX_BACKOFF_SECONDS
            )
            level = logging.WARNING if isinstance(exc, ApiError) else logging.ERROR
            log.log(level, "Reconcile of agent %s/%s failed (retry in %.1fs): %s", *key, backoff, exc,
                    exc_info=not isinstance(exc, ApiError))  # fmt: skip
            return backoff
        self._failures.pop(key, None)
        return delay

    async def close(self) -> None:
        self._waiting.clear()
        await self.pods.close()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _queue(memo: Runtime) -> AgentQueue:
    if memo.agent_queue is None:
        memo.agent_queue = AgentQueue(memo)
    queue: AgentQueue = memo.agent_queue
    return queue


@kopf.on.event(AGENT.kopf_ref)  # type: ignore[arg-type]
async def agent_changed(event: dict[str, Any], namespace: str, name: str, memo: Runtime, **_: Any) -> None:
    queue = _queue(memo)
    if event.get("type") == "DELETED":
        queue.view.drop_agent(namespace, name)
    elif isinstance(event.get("object"), dict):
        queue.view.put_agent(event["object"])
    queue.pods.follow(namespace)
    queue.wake((namespace, name))


@kopf.on.cleanup()
async def stop_agent_passes(memo: Runtime, **_: Any) -> None:
    if memo.agent_queue is not None:
        await memo.agent_queue.close()


async def reconcile(memo: Runtime, view: AgentView, namespace: str, name: str) -> float | None:
    """One level-triggered pass from the view; returns seconds until the next wanted pass."""
    kube = memo.kube
    agent = view.agent((namespace, name))
    if agent is None:
        memo.metrics.set_agent_phase(namespace, name, None)
        return None
    meta = agent["metadata"]
    if meta.get("deletionTimestamp"):
        memo.metrics.set_agent_phase(namespace, name, "Terminating")
        if LEGACY_FINALIZER in (meta.get("finalizers") or []):
            finalizers = [f for f in meta["finalizers"] if f != LEGACY_FINALIZER]
            patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
            view.put_agent(await kube.patch(AGENT, name, patch, namespace=namespace))
        return None
    # The label is ours, but only pods this Agent owns count (a user may copy labels).
    uid = meta.get("uid")

    def owned() -> list[dict[str, Any]]:
        return [
            p
            for p in view.pods((namespace, name))
            if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences", []))
        ]

    pods = owned()
    recorded = (agent.get("status") or {}).get("podName")
    if recorded and recorded not in {p["metadata"]["name"] for p in pods}:
        # The view says the recorded pod is gone. The pods' watch may just not have listed it
        # yet (an operator that restarts hears of Agents and Pods in any order): before a pod
        # counts as lost, and is replaced, ask the API server.
        for pod in await kube.list(POD, namespace, labels={_agents.AGENT_LABEL: name}):
            view.put_pod(pod)
        pods = owned()
        if recorded not in {p["metadata"]["name"] for p in pods}:
            # Gone indeed. A pod deleted with its Agent (the garbage collector) may be seen
            # before the Agent's deletion is (two watches): no replacement for a deleted Agent.
            current = await kube.get(AGENT, name, namespace)
            if current is None or current["metadata"].get("uid") != uid:
                view.drop_agent(namespace, name)
                memo.metrics.set_agent_phase(namespace, name, None)
                return None
            view.put_agent(current)
            if current["metadata"].get("deletionTimestamp"):
                return 0.0  # the next pass handles the deletion
    now = clock()
    plan = _agents.plan(agent, pods, now)

    for pod_name in plan.delete_pods:
        await kube.delete(POD, pod_name, namespace)
    if plan.create_pod is not None:
        await _ensure_service_account(kube, agent)
        try:
            view.put_pod(await kube.create(POD, plan.create_pod))
        except AlreadyExistsError:
            pass  # created by an earlier attempt that died before recording it
        except ApiError as exc:
            if exc.status not in (400, 422):
                raise
            # Not retried on a timer: the same template would be refused again. A change of
            # the spec tries again.
            plan = _agents.reject_pod(agent, plan, str(exc), now)
    labelled = await _write_labels(kube, agent, plan.agent_labels)
    if labelled is not None:
        view.put_agent(labelled)
    old_status = agent.get("status") or {}
    status_patch = _merge_patch(old_status, plan.status)
    hold = _hold(memo, view, (namespace, name), old_status, plan) if status_patch else None
    if hold is None and status_patch and _agents.says_more(old_status, plan.status):
        view.held.pop((namespace, name), None)
        view.put_agent(
            await kube.patch(AGENT, name, {"status": status_patch}, namespace=namespace, status=True)
        )
    if plan.status.get("replacements", 0) != (agent.get("status") or {}).get("replacements", 0):
        memo.metrics.pod_replacements.labels(namespace=namespace).inc()
    memo.metrics.set_agent_restarts(namespace, name, int(plan.status.get("restarts") or 0))
    memo.metrics.set_agent_phase(namespace, name, plan.status.get("phase"))
    if hold is not None:
        # A held status has not changed the phase anyone sees: its PhaseChanged comes with the
        # write; its other Events wait for it too (a pod Ready in time: one Event, not two).
        held = [e for e in plan.events if e[1] != "PhaseChanged"]
        view.held_events.setdefault((namespace, name), []).extend(held)
        events: list[tuple[str, str, str]] = []
    else:
        events = _agents.merge_events(view.held_events.pop((namespace, name), []), plan.events)
    for type_, reason, message in events:
        post(agent, type=type_, reason=reason, message=message)
        log.log(
            logging.WARNING if type_ == "Warning" else logging.INFO,
            "%s/%s %s: %s",
            namespace,
            name,
            reason,
            message,
        )
    if plan.wake_at is not None:
        wake = max((plan.wake_at - now).total_seconds(), 0.0)
        return wake if hold is None else min(wake, hold)
    return hold


def _hold(memo: Runtime, view: AgentView, key: Key, old: dict[str, Any], plan: _agents.Plan) -> float | None:
    """Seconds to hold back the first status of a new Agent, or None to write it now.

    Only a status that says "Pending" or "Running" (not ready yet) of the first pod is held, and
    only while the Agent has none yet: a pod that turns Ready within ``pending_status_seconds``
    costs one status write (and one Event). Nothing depends on the held status: the pod carries
    its incarnation, and an operator that restarts adopts it (and holds again). Anything else
    ends the hold: a pod deleted or failed, a Warning, a second pod (its loss must be recorded,
    for the back-off).
    """
    new = plan.status
    if (
        old.get("phase")
        or new.get("phase") not in ("Pending", "Running")
        or new.get("nextRestartAt")
        or int(new.get("incarnation") or 0) != 1
        or plan.delete_pods
        or any(type_ != "Normal" for type_, _, _ in plan.events)
    ):
        return None
    now = asyncio.get_running_loop().time()
    until = view.held.setdefault(key, now + memo.settings.agents.pending_status_seconds)
    return until - now if until > now else None


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The top-level merge patch that turns ``old`` into ``new`` (None deletes a key)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


async def _ensure_service_account(kube: Kube, agent: dict[str, Any]) -> None:
    """The agent's ServiceAccount and its base rights (AGENT_RULES), before its pod uses them."""
    try:
        await kube.create(SERVICE_ACCOUNT, _agents.build_service_account(agent))
    except AlreadyExistsError:
        pass
    try:
        await kube.create(ROLE_BINDING, _agents.build_role_binding(agent))
    except AlreadyExistsError:
        pass


async def _write_labels(
    kube: Kube, agent: dict[str, Any], wanted: dict[str, str] | None
) -> dict[str, Any] | None:
    if wanted is None:
        return None
    meta = agent["metadata"]
    current = meta.get("labels") or {}
    stale = {k: None for k in current if k.startswith(_agents.CAPABILITY_PREFIX) and k not in wanted}
    missing = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not (stale or missing):
        return None
    return await kube.patch(
        AGENT, meta["name"], {"metadata": {"labels": {**missing, **stale}}}, namespace=meta["namespace"]
    )
