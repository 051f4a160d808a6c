"""Agent handlers: one reconcile loop per Agent, woken by changes to the Agent or its Pods.

A kopf daemon per Agent owns every write to that Agent's status and children, so no two
reconciles of one Agent ever race inside the operator. Events on the Agent or on a Pod
labelled ``mabeam.io/agent`` wake the daemon; a resync interval is the safety net.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ..core import agents as _agents
from ..errors import ApiError, ConflictError
from ..kube.client import AlreadyExistsError, Kube
from ..kube.resources import AGENT, POD, ROLE_BINDING, SERVICE_ACCOUNT
from ._events import post
from ._loop import Backoff, Wakers, report_failure, sleep_or_wake
from ._runtime import Runtime, clock

log = logging.getLogger(__name__)

_wakers = Wakers()
wake = _wakers.wake


@kopf.on.event(AGENT.kopf_ref)  # type: ignore[arg-type]
async def agent_changed(namespace: str, name: str, **_: Any) -> None:
    wake(namespace, name)


@kopf.on.event("v1", "pods", labels={_agents.AGENT_LABEL: kopf.PRESENT})  # type: ignore[arg-type]
async def agent_pod_changed(namespace: str, labels: dict[str, str], **_: Any) -> None:
    wake(namespace, labels.get(_agents.AGENT_LABEL))


@kopf.on.delete(AGENT.kopf_ref, optional=True)  # type: ignore[arg-type]
async def agent_deleted(body: kopf.Body, namespace: str, name: str, memo: Runtime, **_: Any) -> None:
    """Show Terminating while the garbage collector removes the Pod and ServiceAccount."""
    if body.get("status", {}).get("phase") != "Terminating":
        try:
            await memo.kube.patch(
                AGENT, name, {"status": {"phase": "Terminating"}}, namespace=namespace, status=True
            )
        except ApiError:
            pass  # the object may be gone already; nothing to show then
    kopf.event(body, type="Normal", reason="Terminating", message="The agent is being deleted.")


@kopf.daemon(AGENT.kopf_ref, cancellation_timeout=10)  # type: ignore[arg-type]
async def agent_loop(
    namespace: str, name: str, stopped: kopf.DaemonStopped, memo: Runtime, logger: logging.Logger, **_: Any
) -> None:
    waker = _wakers.get(namespace, name)
    settings = memo.settings.agents
    backoff = Backoff(settings.retry_seconds, settings.resync_seconds)
    try:
        while not stopped:
            waker.clear()
            try:
                with memo.metrics.reconcile_seconds.labels(kind="Agent").time():
                    delay = await reconcile(memo, namespace, name)
                backoff.succeeded()
            except (ApiError, ConflictError) as exc:
                retry_after = exc.retry_after if isinstance(exc, ApiError) else None
                delay = backoff.failed(retry_after)
                logger.warning(f"Reconcile of agent {name} failed, retrying in {delay:.2f} s: {exc}")
                memo.metrics.api_errors.labels(kind="Agent").inc()
            except Exception as exc:  # a bug, or input nobody foresaw: this Agent's trouble only
                logger.exception(f"Reconcile of agent {name} failed unexpectedly")
                await report_failure(memo.kube, AGENT, namespace, name, "ReconcileFailed",
                                     f"{type(exc).__name__}: {exc}")  # fmt: skip
                delay = backoff.failed()
            delay = settings.resync_seconds if delay is None else min(delay, settings.resync_seconds)
            await sleep_or_wake(waker, stopped, delay)
    finally:
        _wakers.forget(namespace, name)
        memo.metrics.set_agent_phase(namespace, name, None)


async def reconcile(memo: Runtime, namespace: str, name: str) -> float | None:
    """One level-triggered pass; returns seconds until the next wanted pass (None: on events only)."""
    kube = memo.kube
    agent = await kube.get(AGENT, name, namespace)
    if agent is None or agent.get("metadata", {}).get("deletionTimestamp"):
        memo.metrics.set_agent_phase(namespace, name, "Terminating" if agent else None)
        return None
    pods = await kube.list(POD, namespace, labels={_agents.AGENT_LABEL: name})
    # The label is ours, but only pods this Agent owns count (a user may copy labels).
    uid = agent["metadata"].get("uid")
    pods = [p for p in pods if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences", []))]
    now = clock()
    plan = _agents.plan(agent, pods, now)

    for pod_name in plan.delete_pods:
        await kube.delete(POD, pod_name, namespace)
    if plan.create_pod is not None:
        await _ensure_service_account(kube, agent)
        try:
            await kube.create(POD, plan.create_pod)
        except AlreadyExistsError:
            pass  # created by an earlier attempt that died before recording it
        except ApiError as exc:
            if exc.status not in (400, 422):
                raise
            # Not retried on a timer: the same template would be refused again. A change of
            # the spec (or the resync) tries again.
            plan = _agents.reject_pod(agent, plan, str(exc), now)
    await _write_labels(kube, agent, plan.agent_labels)
    status_patch = _merge_patch(agent.get("status") or {}, plan.status)
    if status_patch:
        await kube.patch(AGENT, name, {"status": status_patch}, namespace=namespace, status=True)
    if plan.status.get("replacements", 0) != (agent.get("status") or {}).get("replacements", 0):
        memo.metrics.pod_replacements.labels(namespace=namespace).inc()
    memo.metrics.pod_restarts.labels(namespace=namespace, agent=name).set(plan.status.get("restarts", 0))
    memo.metrics.set_agent_phase(namespace, name, plan.status.get("phase"))
    for type_, reason, message in plan.events:
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
        return max((plan.wake_at - now).total_seconds(), 0.0)
    return None


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The top-level merge patch that turns ``old`` into ``new`` (None deletes a key)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


async def _ensure_service_account(kube: Kube, agent: dict[str, Any]) -> None:
    body = _agents.build_service_account(agent)
    try:
        await kube.create(SERVICE_ACCOUNT, body)
        post(
            agent,
            type="Normal",
            reason="ServiceAccountCreated",
            message=f"Created service account {body['metadata']['name']}.",
        )
    except AlreadyExistsError:
        pass
    try:  # the agent's base rights (AGENT_RULES), before its pod can use them
        await kube.create(ROLE_BINDING, _agents.build_role_binding(agent))
    except AlreadyExistsError:
        pass


async def _write_labels(kube: Kube, agent: dict[str, Any], wanted: dict[str, str] | None) -> None:
    if wanted is None:
        return
    meta = agent["metadata"]
    current = meta.get("labels") or {}
    stale = {k: None for k in current if k.startswith(_agents.CAPABILITY_PREFIX) and k not in wanted}
    missing = {k: v for k, v in wanted.items() if current.get(k) != v}
    if stale or missing:
        await kube.patch(
            AGENT, meta["name"], {"metadata": {"labels": {**missing, **stale}}}, namespace=meta["namespace"]
        )
