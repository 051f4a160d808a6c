"""Variable handlers: one reconcile loop per Variable applies writes, mirrors the lock, projects.

A kopf daemon per Variable owns every write the operator makes to that Variable (status, the
write annotation, its writer Role and RoleBinding); events on the Variable or on any Agent of
its namespace wake it, a resync is the safety net. Each pass (see docs/variables.md):

1. reads the Variable and its Lease ``mabeam-var-<name>`` (the lock: holder, fencing token);
2. if the annotation ``mabeam.io/write`` holds an agent's write whose id is not yet in
   ``status.lastWrite``, checks the writer (an Agent allowed by ``spec.access``) and applies it
   with :func:`mabeam.core.variables.apply_write`; otherwise, if the spec changed, applies it with
   :func:`mabeam.core.variables.reconcile_spec` (a write by a User);
3. writes the whole status with a resourceVersion precondition: the write id (or the
   observedGeneration) is recorded in the same write as its effect, so a write is applied at
   most once even if the operator dies at any line;
4. if the write was refused, removes its annotation and resets ``spec.value`` to the applied
   value, again with a precondition (an applied write's annotation stays until the next write
   replaces it: its id in ``status.lastWrite`` says it is done, and costs no write);
5. keeps the writer Role/RoleBinding up to date, and marks the namespace's projection
   ConfigMap for a write shortly after (one write for every change within
   ``PROJECTION_DELAY_SECONDS``, retried with backoff).

The operator's own status write wakes no pass (its event carries the resourceVersion it wrote).

Session outcomes come from the coordination controller through :func:`apply_session_outcome`.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import weakref
from collections.abc import Callable
from typing import Any

import kopf

from ..core import agents as _agents
from ..core.variables import (
    WriteOutcome,
    apply_write,
    can_write,
    is_expired,
    parse_spec,
    parse_status,
    projection,
    readiness,
    reconcile_spec,
    transfer_ownership,
    value_hash,
)
from ..core.variables_wire import (
    PROJECTION_CONFIGMAP,
    WRITE_ANNOTATION,
    WRITER_ANNOTATION,
    clear_write_patch,
    decode_write,
    lease_name,
    lock_from_lease,
    parse_time,
    status_patch,
    variable_label,
    write_id_of,
    writer_role_name,
)
from ..errors import ApiError, ConflictError, InvalidSpecError, LockError
from ..kube.client import AlreadyExistsError, Kube
from ..kube.resources import AGENT, CONFIG_MAP, LEASE, ROLE, ROLE_BINDING, VARIABLE
from ..models._base import API_VERSION, Condition, progress_conditions, set_condition
from ..models.variable import (
    Actor,
    VariableSpec,
    VariableStatus,
    VariableWrite,
    Writer,
    WriteResult,
)
from ._events import post
from ._loop import PARKED_SECONDS, TOO_LARGE, Backoff, Wakers, report_failure, sleep_or_wake
from ._metrics import Metrics
from ._runtime import Runtime, clock

__all__ = ["apply_session_outcome", "reconcile"]

log = logging.getLogger(__name__)

#: How often a Variable is reconciled when nothing happened: a safety net only. Its events, its
#: Lease's (a lock taken or released, see _LeaseWatch), and the Agents that may write it wake it;
#: a lock's expiry is scheduled exactly.
RESYNC_SECONDS = 600.0
#: The resync of the Variables whose lock Leases' watch is failing (it is what wakes them on a
#: lock taken or released without a write).
DEGRADED_RESYNC_SECONDS = 30.0
#: The longest wait before a failed watch of the lock Leases is opened again (Backoff caps it
#: at 16 times the retry delay too).
LEASE_WATCH_MAX_BACKOFF_SECONDS = 16.0
#: The first pause after a lost compare-and-swap; it doubles on each further loss, up to the
#: operator's retry delay (settings.agents.retry_seconds).
CONFLICT_BACKOFF_SECONDS = 0.02
#: How many times apply_session_outcome retries a lost compare-and-swap before giving up.
SESSION_ATTEMPTS = 20

_wakers = Wakers()
#: The label of each lock Lease: the Variable's name (a digest where it is too long for a label).
VARIABLE_LABEL = "mabeam.io/variable"
# Per event loop: an operator restarted in the same process (tests) gets fresh locks.
_projection_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
#: The RBAC last written per Variable uid (skips unchanged writes; cleared when its loop stops).
_rbac_seen: dict[str, tuple[Any, Any]] = {}


#: The resourceVersion of each Variable as the operator's own last status write left it: its
#: event wakes no pass (the pass that wrote it already saw everything it says).
_own_writes: dict[tuple[str, str], str] = {}


@kopf.on.event(VARIABLE.kopf_ref)  # type: ignore[arg-type]
async def variable_changed(
    type: str | None, namespace: str, name: str, body: kopf.Body, memo: Runtime, **_: Any
) -> None:
    version = (body.get("metadata") or {}).get("resourceVersion")
    own = type != "DELETED" and version is not None and _own_writes.get((namespace, name)) == version
    if namespace and name and not own:
        _wakers.get(namespace, name).set()
    if type == "DELETED":
        _own_writes.pop((namespace, name), None)
        _access.pop((namespace, name), None)
    elif namespace and name:
        _access[(namespace, name)] = (body.get("spec") or {}).get("access")
    if type == "DELETED" and namespace:
        _project_soon(memo, namespace)


#: Each Variable's spec.access as last seen (unparsed): which Agents' changes concern it.
_access: dict[tuple[str, str], Any] = {}
#: The labels of each Agent as last seen: only a change of them (or an Agent that comes or
#: goes) changes who may write, so only that wakes the Variables of its namespace.
_agent_labels: dict[tuple[str, str], dict[str, str]] = {}


@kopf.on.event(AGENT.kopf_ref)  # type: ignore[arg-type]
async def agent_changed_for_variables(
    type: str | None, namespace: str, name: str, body: kopf.Body, **_: Any
) -> None:
    """An Agent's labels decide which Variables it may write: when they change (not on every
    status write of every Agent), or the Agent comes or goes, re-evaluate the Variables of its
    namespace whose access may concern it."""
    key = (namespace, name)
    if type == "DELETED":
        _agent_labels.pop(key, None)
    else:
        labels = dict((body.get("metadata") or {}).get("labels") or {})
        if _agent_labels.get(key) == labels:
            return
        _agent_labels[key] = labels
    for (ns, variable), access in list(_access.items()):
        if ns == namespace and _may_concern(access, name):
            _wakers.wake(ns, variable)


def _may_concern(access: Any, agent: str) -> bool:
    """Whether ``spec.access`` (as written, unparsed) may let ``agent`` write: it names it, or
    has a selector. Anything unexpected counts as yes (the pass then decides)."""
    if access is None:
        return False  # nobody may write
    if not isinstance(access, dict):
        return True
    agents = access.get("agents") or []
    return access.get("selector") is not None or not isinstance(agents, list) or agent in agents


@kopf.daemon(VARIABLE.kopf_ref, cancellation_timeout=10)  # type: ignore[arg-type]
async def variable_loop(
    namespace: str,
    name: str,
    meta: kopf.Meta,
    stopped: kopf.DaemonStopped,
    memo: Runtime,
    logger: logging.Logger,
    **_: Any,
) -> None:
    waker = _wakers.get(namespace, name)
    leases = _lease_watch(memo)
    leases.join(namespace)
    uid = meta.get("uid")
    _rbac_seen.pop(str(uid), None)
    retry = memo.settings.agents.retry_seconds
    backoff = Backoff(retry, RESYNC_SECONDS)
    conflicts = 0
    try:
        while not stopped:
            waker.clear()
            try:
                with memo.metrics.reconcile_seconds.labels(kind="Variable").time():
                    delay = await reconcile(memo, namespace, name)
                conflicts = 0
                backoff.succeeded()
            except ConflictError as exc:  # lost a compare-and-swap: someone wrote first; go again
                logger.debug(f"Variable {name} changed while reconciling, again: {exc}")
                # Back off (growing, at most the retry delay): the change that beat us has
                # already set the waker, so sleep_or_wake would not wait at all.
                conflicts += 1
                await asyncio.sleep(min(CONFLICT_BACKOFF_SECONDS * 2 ** min(conflicts - 1, 10), retry))
                continue
            except InvalidSpecError as exc:  # input nobody foresaw; the pass reports what it can
                logger.warning(f"Variable {name}: {exc}")
                await sleep_or_wake(waker, stopped, backoff.failed())
                continue
            except ApiError as exc:
                if exc.status == TOO_LARGE:  # the same write would be refused again: say so, wait
                    await report_failure(memo.kube, VARIABLE, namespace, name, "StatusTooLarge",
                                         f"the status could not be written: {exc}; lower spec.historyLimit "
                                         "or write smaller values")  # fmt: skip
                    await sleep_or_wake(waker, stopped, PARKED_SECONDS)
                    continue
                # Waited out whatever wakes the loop: events keep coming while the server is sick.
                delay = backoff.failed(exc.retry_after)
                logger.warning(f"Reconcile of variable {name} failed, retrying in {delay:.2f} s: {exc}")
                memo.metrics.api_errors.labels(kind="Variable").inc()
                await sleep_or_wake(asyncio.Event(), stopped, delay)
                continue
            except Exception as exc:  # a bug, or input nobody foresaw: this Variable's trouble only
                logger.exception(f"Reconcile of variable {name} failed unexpectedly")
                await report_failure(memo.kube, VARIABLE, namespace, name, "ReconcileFailed",
                                     f"{type(exc).__name__}: {exc}")  # fmt: skip
                await sleep_or_wake(asyncio.Event(), stopped, backoff.failed())
                continue
            resync = DEGRADED_RESYNC_SECONDS if leases.degraded(namespace) else RESYNC_SECONDS
            delay = resync if delay is None else min(delay, resync)
            if delay > 0:
                await sleep_or_wake(waker, stopped, delay)
    finally:
        _wakers.forget(namespace, name)
        leases.leave(namespace, name)
        _rbac_seen.pop(str(uid), None)


async def reconcile(memo: Runtime, namespace: str, name: str) -> float | None:
    """One level-triggered pass; returns seconds until the next wanted pass (None: on events only)."""
    kube = memo.kube
    obj = await kube.get(VARIABLE, name, namespace)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    meta = obj["metadata"]
    generation = int(meta.get("generation") or 0)
    now = clock()
    old_wire = obj.get("status") or {}
    try:
        status = _repaired(parse_status(old_wire), now)
    except InvalidSpecError as exc:
        await _report_corrupt_status(kube, obj, str(exc), now)
        return None  # nothing is applied until a person repairs the status (its events wake us)
    try:
        spec: VariableSpec | None = parse_spec(obj.get("spec") or {})
    except InvalidSpecError as exc:
        spec = None
        status = _invalid_spec(status, generation, str(exc), now)
    lease = await _ensure_lease(kube, obj)
    _lease_watch(memo).mirror(namespace, name, lease)
    lock = lock_from_lease(lease)
    status = _mirror_lock(status, lock, now)
    agents = await kube.list_shared(AGENT, namespace)

    events: list[tuple[str, str, str]] = []
    written: str | None = None  # the result of a write taken in this pass, for the metrics
    annotations = meta.get("annotations") or {}
    annotation = annotations.get(WRITE_ANNOTATION)
    write_id = write_id_of(annotation) if annotation is not None else None
    # An applied write's annotation stays (no write to remove it): a recorded id is done.
    taken = status.last_write is not None and status.last_write.write_id == write_id
    if annotation is not None and spec is not None and not taken:
        claimed = annotations.get(WRITER_ANNOTATION)
        before = status.last_write
        status = await _take_write(spec, status, annotation, claimed, agents, generation, now, events)
        if status.last_write is not None and status.last_write != before:
            written = _write_result(status.last_write.applied, status.last_write.reason)
    elif spec is not None and status.observed_generation != generation:
        status, outcome = reconcile_spec(spec, status, generation, now)
        if outcome is not None:
            written = "applied" if outcome.applied else "refused"
            kind = "Normal" if outcome.applied else "Warning"
            events.append((kind, "ValueApplied" if outcome.applied else outcome.reason, outcome.message))

    # Again, so that the Locked condition carries the generation this status observes (else the
    # next pass would write the status once more for that alone).
    status = _mirror_lock(status, lock, now)
    if status.to_wire() != old_wire:
        obj = await kube.patch(
            VARIABLE, name, status_patch(meta["resourceVersion"], status),
            namespace=namespace, status=True, json_patch=True,
        )  # fmt: skip
        _own_writes[(namespace, name)] = obj["metadata"]["resourceVersion"]
    if written is not None:  # counted once the status that records it is written
        memo.metrics.count_variable_write(written)
    if annotation is not None:
        last = status.last_write
        refused = last is not None and last.write_id == write_id and not last.applied
        if refused or (spec is None and not taken):
            # A refused write's spec.value goes back to the applied value; a write to a Variable
            # whose spec is invalid is dropped. An applied write needs no clean-up.
            await kube.patch(
                VARIABLE, name, clear_write_patch(obj, status.value, reset_value=refused),
                namespace=namespace, json_patch=True,
            )  # fmt: skip
    for type_, reason, message in events:
        post(obj, type=type_, reason=reason, message=message)
    if spec is not None:
        await _ensure_writer_rbac(kube, obj, spec, agents)
    _project_soon(memo, namespace)
    lock = status.lock
    if lock is not None and lock.holder is not None and lock.expires_at and not is_expired(lock, now):
        return max((parse_time(lock.expires_at) - now).total_seconds(), 0.0) + 0.05
    return None


def _write_result(applied: bool, reason: str) -> str:
    """The ``result`` label of mabeam_variable_writes_total for a write's outcome."""
    if applied:
        return "applied"
    return "invalid" if reason == "Malformed" else "refused"


async def _ensure_lease(kube: Kube, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The Variable's lock Lease, created free (no holder) if missing.

    The operator creates it, owned by the Variable, so that agents need no right to create
    Leases: the writers get/update this one Lease only (their writer Role).
    """
    meta = obj["metadata"]
    name, namespace = lease_name(meta["name"]), meta["namespace"]
    labels = {"app.kubernetes.io/managed-by": "mabeam", VARIABLE_LABEL: variable_label(meta["name"])}
    lease = await kube.get(LEASE, name, namespace)
    if lease is not None:
        if VARIABLE_LABEL not in (lease["metadata"].get("labels") or {}):
            # Made by an operator before its label existed: the Lease watch selects by it.
            meta = lease["metadata"]
            lease = await kube.replace(
                LEASE, {**lease, "metadata": {**meta, "labels": {**(meta.get("labels") or {}), **labels}}}
            )
        return lease
    body = {
        "metadata": {
            "name": name, "namespace": namespace, "ownerReferences": [_owner(obj)], "labels": labels,
        },
        "spec": {"leaseTransitions": 0},
    }  # fmt: skip
    try:
        return await kube.create(LEASE, body)
    except AlreadyExistsError:
        return await kube.get(LEASE, name, namespace)


#: The Valid condition's reason while the status does not parse.
STATUS_CORRUPT = "StatusCorrupt"


async def _report_corrupt_status(kube: Kube, obj: dict[str, Any], error: str, now: dt.datetime) -> None:
    """Say that the status does not parse, and keep it: no reset of version, history, sessions.

    Resetting would hand out version numbers again and forget which session outcomes were
    applied; so writes wait (their annotation stays) until a person repairs the status. Only
    phase and the Valid condition are written (a merge patch, with a resourceVersion
    precondition), and only if they say something new.
    """
    meta = obj["metadata"]
    name, raw = meta["name"], obj.get("status") or {}
    message = (
        f"status does not parse ({error}); the operator applies no writes and keeps the status "
        f"(version {raw.get('version')!r}) until it is repaired: fix the field named (kubectl edit "
        f"variable {name} --subresource=status), or remove the whole status to start again from "
        "version 0 (kubectl patch variable "
        f'{name} --subresource=status --type=json -p \'[{{"op":"remove","path":"/status"}}]\')'
    )
    log.warning("Variable %s/%s: %s", meta["namespace"], name, message)
    old = raw.get("conditions")
    kept = (
        [c for c in old if isinstance(c, dict) and isinstance(c.get("type"), str)]
        if isinstance(old, list)
        else []
    )
    generation = int(meta.get("generation") or 0)
    conditions = set_condition(
        kept, type="Valid", status="False", reason=STATUS_CORRUPT, message=message, now=now,
        observed_generation=generation,
    )  # fmt: skip
    conditions = set_condition(
        conditions, type="Ready", status="False", reason=STATUS_CORRUPT, message=message, now=now,
        observed_generation=generation,
    )  # fmt: skip
    conditions = progress_conditions(
        conditions, reconciling=None, stalled=message, reason=STATUS_CORRUPT, now=now,
        observed_generation=generation,
    )  # fmt: skip
    if raw.get("phase") == "Invalid" and old == conditions:
        return
    patch = {"metadata": {"resourceVersion": meta["resourceVersion"]},
             "status": {"phase": "Invalid", "conditions": conditions}}  # fmt: skip
    await kube.patch(VARIABLE, name, patch, namespace=meta["namespace"], status=True)


def _repaired(status: VariableStatus, now: dt.datetime) -> VariableStatus:
    """Clear the StatusCorrupt report once the status parses again (the spec is checked after)."""
    valid = next((c for c in status.conditions if c.type == "Valid"), None)
    if valid is None or valid.reason != STATUS_CORRUPT:
        return status
    conditions = _conditions(
        status, type="Valid", status="True", reason="StatusRepaired", message="the status parses again",
        now=now, observed_generation=status.observed_generation,
    )  # fmt: skip
    phase = "Pending" if status.version == 0 else "Ready"
    return readiness(status.model_copy(update={"phase": phase, "conditions": conditions}), now)


def _conditions(current: VariableStatus, /, **kwargs: Any) -> list[Condition]:
    wire = set_condition([c.to_wire() for c in current.conditions], **kwargs)
    return [Condition.model_validate(c) for c in wire]


def _invalid_spec(status: VariableStatus, generation: int, message: str, now: dt.datetime) -> VariableStatus:
    conditions = _conditions(
        status, type="Valid", status="False", reason="InvalidSpec", message=message, now=now,
        observed_generation=generation,
    )  # fmt: skip
    return readiness(
        status.model_copy(
            update={"phase": "Invalid", "observed_generation": generation, "conditions": conditions}
        ),
        now,
    )


def _mirror_lock(status: VariableStatus, lock: Any, now: dt.datetime) -> VariableStatus:
    """status.lock and the Locked condition as the Lease says (the Lease is the truth)."""
    if lock is None:
        return status
    live = not is_expired(lock, now)
    if live:
        message = f"held by {lock.holder} until {lock.expires_at} (fencing token {lock.fencing_token})"
        cond = ("True", "Acquired", message)
    else:
        lock = lock.model_copy(update={"holder": None, "expires_at": None})
        cond = ("False", "Free", f"nobody holds the lock (the latest fencing token is {lock.fencing_token})")
    conditions = _conditions(
        status, type="Locked", status=cond[0], reason=cond[1], message=cond[2], now=now,
        observed_generation=status.observed_generation,
    )  # fmt: skip
    return status.model_copy(update={"lock": lock, "conditions": conditions})


async def _take_write(
    spec: VariableSpec,
    status: VariableStatus,
    annotation: str,
    claimed: str | None,
    agents: list[dict[str, Any]],
    generation: int,
    now: dt.datetime,
    events: list[tuple[str, str, str]],
) -> VariableStatus:
    """Apply (or refuse) the annotated write, once: a write id in status.lastWrite is done."""
    try:
        write_id, write = decode_write(annotation)
    except InvalidSpecError as exc:
        write_id, write = "malformed", None
        error: Exception | None = exc
    else:
        error = None
    if status.last_write is not None and status.last_write.write_id == write_id:
        return status  # processed before the operator restarted: only the cleanup is left
    writer = Actor(kind="Agent", name=write.writer.name if write is not None else "unknown")
    applied, reason, message = False, "Malformed", str(error)
    new = status
    if write is not None:
        agent = next((a for a in agents if a["metadata"]["name"] == write.writer.name), None)
        refusal = _refuse_writer(spec, write, agent, claimed)
        if refusal is not None:
            reason, message = "Forbidden", refusal
        else:
            priority = int(((agent or {}).get("spec") or {}).get("priority") or 0)
            write = write.model_copy(
                update={"writer": Writer(kind="Agent", name=writer.name, priority=priority)}
            )
            try:
                new, outcome = apply_write(spec, status, write, now)
                applied, reason, message = outcome.applied, outcome.reason, outcome.message
            except ConflictError as exc:
                reason, message = "Conflict", str(exc)
            except LockError as exc:
                reason, message = "Locked", str(exc)
    if applied:
        new = new.model_copy(update={"spec_value_hash": value_hash(write.value if write else None)})
    elif new.version > 0:
        # spec.value is reset to the applied value; mark it as applied so that it is not a new write.
        new = new.model_copy(update={"spec_value_hash": value_hash(new.value)})
    result = WriteResult(
        write_id=write_id, writer=writer, applied=applied, reason=reason, message=message,
        version=new.version, current_value=new.value,
    )  # fmt: skip
    events.append(
        ("Normal", "WriteApplied", f"{writer.name} wrote version {new.version}")
        if applied
        else ("Warning", f"Write{reason}", f"a write by {writer.name} was refused: {message}")
    )
    return new.model_copy(update={"last_write": result, "observed_generation": generation})


def _refuse_writer(
    spec: VariableSpec, write: VariableWrite, agent: dict[str, Any] | None, claimed: str | None
) -> str | None:
    """Why the writer may not write (defence in depth behind RBAC and admission), or None.

    ``claimed`` is the annotation mabeam.io/writer, the name admission checked against the
    requester's ServiceAccount: the write must be in that same name.
    """
    name = write.writer.name
    if write.writer.kind != "Agent" or write.session is not None:
        return "writes through the annotation are agents' writes (kind Agent, no session)"
    if claimed != name:
        found = "is missing" if claimed is None else f"names agent {claimed}"
        return (
            f"the write is in the name of agent {name} but the annotation {WRITER_ANNOTATION} "
            f"{found}; an agent names itself in both ({WRITE_ANNOTATION} writer.name and "
            f"{WRITER_ANNOTATION})"
        )
    if agent is None:
        return f"there is no Agent {name} in this namespace"
    labels = agent["metadata"].get("labels") or {}
    try:
        allowed = can_write(spec.access, name, labels)
    except InvalidSpecError as exc:
        return f"spec.access cannot be evaluated: {exc}"
    return None if allowed else f"agent {name} is not allowed by spec.access"


# --- RBAC for the writers ----------------------------------------------------------------------


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": API_VERSION, "kind": "Variable", "name": meta["name"], "uid": meta.get("uid", ""),
        "controller": True, "blockOwnerDeletion": True,
    }  # fmt: skip


def writers(spec: VariableSpec, agents: list[dict[str, Any]]) -> list[str]:
    """The names of the Agents that spec.access lets write (sorted)."""
    names = []
    for agent in agents:
        meta = agent["metadata"]
        try:
            if can_write(spec.access, meta["name"], meta.get("labels") or {}):
                names.append(meta["name"])
        except InvalidSpecError:
            return []
    return sorted(names)


async def _ensure_writer_rbac(
    kube: Kube, obj: dict[str, Any], spec: VariableSpec, agents: list[dict[str, Any]]
) -> None:
    """A Role allowing update/patch of this Variable and get/update of its lock Lease only,
    bound to its writers' ServiceAccounts."""
    meta = obj["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    role_name = writer_role_name(name)
    labels = {"app.kubernetes.io/managed-by": "mabeam", "mabeam.io/variable": variable_label(name)}
    rules = [
        {"apiGroups": ["mabeam.io"], "resources": ["variables"], "verbs": ["update", "patch"],
         "resourceNames": [name]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
         "resourceNames": [lease_name(name)]},
    ]  # fmt: skip
    subjects = [
        {"kind": "ServiceAccount", "name": _agents.service_account_name(a), "namespace": namespace}
        for a in writers(spec, agents)
    ]
    uid = str(meta.get("uid"))
    if _rbac_seen.get(uid) == (rules, subjects):
        return
    base = {"name": role_name, "namespace": namespace, "labels": labels, "ownerReferences": [_owner(obj)]}
    await _create_or_patch(kube, ROLE, {"metadata": base, "rules": rules}, "rules")
    binding = {
        "metadata": base,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": subjects,
    }
    await _create_or_patch(kube, ROLE_BINDING, binding, "subjects")
    _rbac_seen[uid] = (rules, subjects)


async def _create_or_patch(kube: Kube, res: Any, body: dict[str, Any], field: str) -> None:
    meta = body["metadata"]
    current = await kube.get(res, meta["name"], meta["namespace"])
    if current is None:
        try:
            await kube.create(res, body)
            return
        except AlreadyExistsError:
            current = await kube.get(res, meta["name"], meta["namespace"])
    if current is not None and (current.get(field) or []) != body[field]:
        await kube.patch(res, meta["name"], {field: body[field]}, namespace=meta["namespace"])


# --- the lock Leases ------------------------------------------------------------------------------


class _LeaseWatch:
    """The watch of the Variables' lock Leases for one operator (one event loop), selected by
    their label server-side (no other Lease reaches it): one watch of every namespace when the
    operator watches the whole cluster, else one per namespace with Variables, while it has any.

    A Lease whose lock differs from what its Variable's last pass mirrored (taken, released,
    taken over, or the Lease deleted) wakes that Variable, so that ``status.lock`` follows the
    Lease without a periodic pass; a renewal alone does not (the pass scheduled at the lock's
    expiry reads it). Comparing with what the pass read, not with earlier events, makes a
    change between a pass and the watch's (re)start count too. While a watch fails, its
    Variables fall back to a short resync (:data:`DEGRADED_RESYNC_SECONDS`).
    """

    def __init__(self, kube: Kube, retry: float, clusterwide: bool) -> None:
        self.kube, self.retry, self.clusterwide = kube, retry, clusterwide
        self.tasks: dict[str | None, asyncio.Task[None]] = {}
        #: the running Variable loops per namespace
        self.loops: collections.Counter[str] = collections.Counter()
        #: (namespace, Lease name) -> (the Variable, its lock as its last pass read it)
        self.mirrored: dict[tuple[str, str], tuple[str, tuple[Any, ...]]] = {}
        #: the watches (None: the cluster-wide one) that failed and have shown no event since
        self.failing: set[str | None] = set()

    def _scope(self, namespace: str) -> str | None:
        return None if self.clusterwide else namespace

    def join(self, namespace: str) -> None:
        self.loops[namespace] += 1
        scope = self._scope(namespace)
        if scope not in self.tasks:
            self.tasks[scope] = asyncio.create_task(self._run(scope), name=f"lock leases {scope or '*'}")

    def leave(self, namespace: str, variable: str) -> None:
        self.mirrored.pop((namespace, lease_name(variable)), None)
        self.loops[namespace] -= 1
        if self.loops[namespace] <= 0:
            del self.loops[namespace]
            task = None if self.clusterwide else self.tasks.pop(namespace, None)
            if task is not None:
                task.cancel()

    def mirror(self, namespace: str, variable: str, lease: dict[str, Any] | None) -> None:
        self.mirrored[(namespace, lease_name(variable))] = (variable, _lock_key(lease))

    def degraded(self, namespace: str) -> bool:
        return self._scope(namespace) in self.failing

    async def _run(self, scope: str | None) -> None:
        backoff = Backoff(self.retry, LEASE_WATCH_MAX_BACKOFF_SECONDS)
        while True:
            try:
                async for event, lease in self.kube.watch(LEASE, scope, labels={VARIABLE_LABEL: None}):
                    backoff.succeeded()
                    self.failing.discard(scope)
                    self.saw(event, lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an API error (a 410 Gone too) or a broken connection
                self.failing.add(scope)
                delay = backoff.failed()
                log.warning(
                    "The watch of lock Leases in %s failed (again in %.2f s; meanwhile its Variables "
                    "are resynced every %.0f s): %s: %s",
                    scope or "all namespaces", delay, DEGRADED_RESYNC_SECONDS, type(exc).__name__, exc,
                )  # fmt: skip
                await asyncio.sleep(delay)

    def saw(self, event: str, lease: dict[str, Any]) -> None:
        meta = lease.get("metadata") or {}
        entry = self.mirrored.get((str(meta.get("namespace")), str(meta.get("name"))))
        if entry is None:
            return  # no Variable of ours has read it yet: its first pass will
        variable, lock = entry
        if event == "DELETED" or _lock_key(lease) != lock:
            _wakers.wake(str(meta.get("namespace")), variable)


def _lock_key(lease: dict[str, Any] | None) -> tuple[Any, ...]:
    """What of a Lease the lock is (a renewal alone does not change it)."""
    spec = (lease or {}).get("spec") or {}
    return (spec.get("holderIdentity"), spec.get("acquireTime"), spec.get("leaseTransitions"),
            spec.get("leaseDurationSeconds"))  # fmt: skip


_lease_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LeaseWatch] = (
    weakref.WeakKeyDictionary()
)


def _lease_watch(memo: Runtime) -> _LeaseWatch:
    loop = asyncio.get_running_loop()
    watch = _lease_watches.get(loop)
    if watch is None or watch.kube is not memo.kube:
        watch = _lease_watches[loop] = _LeaseWatch(
            memo.kube, memo.settings.agents.retry_seconds, clusterwide=not memo.namespaces
        )
    return watch


@kopf.on.cleanup()
async def stop_lease_watches(**_: Any) -> None:
    watch = _lease_watches.pop(asyncio.get_running_loop(), None)
    if watch is not None:
        await _cancel(watch.tasks)


async def _cancel(tasks: dict[Any, asyncio.Task[None]]) -> None:
    """Cancel the background tasks of one operator (its event loop), and wait for them."""
    running = list(tasks.values())
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


# --- projection --------------------------------------------------------------------------------


#: How long the projection waits for more changes before it is written: one write for all of
#: them (a namespace's Variables written many times a second cost a projection write per window).
PROJECTION_DELAY_SECONDS = 0.1
#: The longest wait between two attempts at a projection that failed.
PROJECTION_MAX_BACKOFF_SECONDS = 30.0


class _Projector:
    """The projections of one operator (one event loop): passes mark a namespace, one task per
    namespace writes it after :data:`PROJECTION_DELAY_SECONDS`, again while passes mark it, and
    retries with a backoff what fails. A projection that never got written is made again by
    the first pass of any Variable of its namespace (every operator start passes them all)."""

    def __init__(self, kube: Kube, retry: float) -> None:
        self.kube, self.retry = kube, retry
        self.dirty: set[str] = set()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: The ConfigMap as our last write returned it (saves reading it before each write).
        self.written: dict[str, dict[str, Any]] = {}

    def mark(self, namespace: str) -> None:
        self.dirty.add(namespace)
        if namespace not in self.tasks:
            self.tasks[namespace] = asyncio.create_task(self._run(namespace), name=f"projection {namespace}")

    async def _run(self, namespace: str) -> None:
        backoff = Backoff(self.retry, PROJECTION_MAX_BACKOFF_SECONDS)
        try:
            while namespace in self.dirty:
                await asyncio.sleep(PROJECTION_DELAY_SECONDS)
                self.dirty.discard(namespace)
                try:
                    await project(self.kube, namespace, self.written)
                    backoff.succeeded()
                except Exception as exc:  # retried: an API error, a conflict, a projection too large
                    self.dirty.add(namespace)
                    delay = backoff.failed(exc.retry_after if isinstance(exc, ApiError) else None)
                    level = (
                        logging.WARNING
                        if isinstance(exc, ApiError | ConflictError | InvalidSpecError)
                        else logging.ERROR
                    )
                    log.log(level, "The projection of %s failed (retry in %.2f s): %s", namespace, delay, exc)
                    await asyncio.sleep(delay)
        finally:
            self.tasks.pop(namespace, None)


_projectors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Projector] = weakref.WeakKeyDictionary()


@kopf.on.cleanup()
async def stop_projections(**_: Any) -> None:
    """Projections not written yet are dropped: the next operator's passes make them."""
    projector = _projectors.pop(asyncio.get_running_loop(), None)
    if projector is not None:
        await _cancel(projector.tasks)


def _project_soon(memo: Runtime, namespace: str) -> None:
    loop = asyncio.get_running_loop()
    projector = _projectors.get(loop)
    if projector is None or projector.kube is not memo.kube:
        projector = _projectors[loop] = _Projector(memo.kube, memo.settings.agents.retry_seconds)
    projector.mark(namespace)


async def project(kube: Kube, namespace: str, written: dict[str, dict[str, Any]] | None = None) -> None:
    """Make the ConfigMap mabeam-variables hold every applied value of the namespace.

    One operator serialises its passes per namespace (a lock), and the write carries the
    ConfigMap's resourceVersion, so a stale list never overwrites a newer projection.
    ``written`` keeps the ConfigMap as the last write returned it, in place of a read; a
    write that loses its precondition forgets it (the next attempt reads).
    """
    written = {} if written is None else written
    locks = _projection_locks.setdefault(asyncio.get_running_loop(), {})
    lock = locks.setdefault(namespace, asyncio.Lock())
    async with lock:
        items = []
        for var in await kube.list(VARIABLE, namespace):
            try:
                items.append((var["metadata"]["name"], parse_status(var.get("status"))))
            except InvalidSpecError:
                continue
        data = projection(items)
        current = written.get(namespace) or await kube.get(CONFIG_MAP, PROJECTION_CONFIGMAP, namespace)
        if current is None:
            body = {
                "metadata": {
                    "name": PROJECTION_CONFIGMAP,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": "mabeam"},
                },
                "data": data,
            }
            written[namespace] = await kube.create(CONFIG_MAP, body)
        elif (current.get("data") or {}) != data:
            try:
                written[namespace] = await kube.replace(CONFIG_MAP, {**current, "data": data})
            except (ConflictError, ApiError):
                written.pop(namespace, None)  # changed or deleted by someone else: read it next time
                raise
        else:
            written[namespace] = current


# --- session outcomes --------------------------------------------------------------------------


async def apply_session_outcome(
    kube: Kube, namespace: str, variable: str, value: Any, session: str, *, metrics: Metrics | None = None
) -> bool:
    """Apply a coordination session's outcome to a Variable, at most once; True if applied now.

    The write is made by the Session ``session`` (which must be unique per session, e.g. the
    Coordination's uid): it is not bound by locks or access rules and has no version
    precondition. ``session`` goes into ``status.appliedSessions`` in the same status write
    (a compare-and-swap on resourceVersion) that applies the value, so calling this again —
    after a crash, a retry, or from a restarted operator — returns False and changes nothing.

    Raises InvalidSpecError if the Variable does not exist or the value does not fit its type
    and constraints (then the Variable keeps its value and reports Valid=False), ApiError if the
    API fails or the Variable has not been initialised by its reconcile yet (retry later: its
    spec.value would else be applied over the outcome), ConflictError if the compare-and-swap
    kept losing (retry later).
    """

    def change(spec: VariableSpec, status: VariableStatus) -> tuple[VariableStatus, WriteOutcome]:
        write = VariableWrite(
            value=value, writer=Writer(kind="Session", name=session), session=session,
            reason=f"the outcome of session {session}",
        )  # fmt: skip
        return apply_write(spec, status, write, clock())

    return await _apply_session(kube, namespace, variable, session, change, metrics)


async def apply_session_owner(kube: Kube, namespace: str, variable: str, agent: str, session: str) -> bool:
    """Make Agent ``agent`` the owner of Variable ``variable`` (an auction's allocation), at most
    once per ``session``; True if applied now. Errors as for :func:`apply_session_outcome`."""

    def change(spec: VariableSpec, status: VariableStatus) -> tuple[VariableStatus, WriteOutcome]:
        return transfer_ownership(status, Actor(kind="Agent", name=agent), session, clock())

    return await _apply_session(kube, namespace, variable, session, change)


async def _apply_session(
    kube: Kube,
    namespace: str,
    variable: str,
    session: str,
    change: Callable[[VariableSpec, VariableStatus], tuple[VariableStatus, WriteOutcome]],
    metrics: Metrics | None = None,
) -> bool:
    """Apply ``change`` and record ``session`` in one compare-and-swap, unless it is recorded
    (a value write is counted in ``metrics``, once its status is written)."""
    for attempt in range(SESSION_ATTEMPTS):
        obj = await kube.get(VARIABLE, variable, namespace)
        if obj is None:
            raise InvalidSpecError(f"Variable {namespace}/{variable} does not exist", path="variable")
        spec = parse_spec(obj.get("spec") or {})
        status = parse_status(obj.get("status"))
        if session in status.applied_sessions:
            return False
        if status.observed_generation is None:
            # Not yet taken in by its own reconcile: that first pass would apply spec.value as a
            # new version over the outcome (found by the nemesis). The session retries later.
            raise ApiError(
                f"Variable {namespace}/{variable} is not initialised yet; the outcome of {session} waits"
            )
        new, outcome = change(spec, status)
        try:
            await kube.patch(
                VARIABLE, variable, status_patch(obj["metadata"]["resourceVersion"], new),
                namespace=namespace, status=True, json_patch=True,
            )  # fmt: skip
        except ConflictError:
            await asyncio.sleep(min(0.01 * 2**attempt, 0.5))
            continue
        if metrics is not None:
            metrics.count_variable_write("applied" if outcome.applied else "refused")
        if not outcome.applied:
            raise InvalidSpecError(outcome.message, path="value")
        log.info("Applied session %s to %s/%s: %s", session, namespace, variable, outcome.message)
        return True
    raise ConflictError(
        f"Variable {namespace}/{variable} kept changing; the outcome of {session} was not applied"
    )
