"""Account handlers: grants and top-ups, each Agent's right to read its own Account, stale escrow.

Every change of an Account's ledger goes through :func:`change_account`: read, apply one pure
operation of :mod:`mabeam.core.ledger`, write the whole ledger back with the resourceVersion read
as a precondition, and on a conflict read again. Sessions (auctions, markets) use it for escrow
and settlement (see _money.py); this module uses it for grants.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import kopf
import pydantic

from ..core import ledger as _ledger
from ..core.agents import MANAGED_BY, service_account_name
from ..errors import ApiError, ConflictError
from ..kube.client import AlreadyExistsError, Kube
from ..kube.resources import ACCOUNT, AUCTION, MARKET, ROLE, ROLE_BINDING, Res
from ..models._base import API_VERSION
from ..models.account import HOUSE_ACCOUNT, AccountSpec, AccountStatus
from ._events import post
from ._runtime import Runtime, clock

__all__ = ["account_ledger", "change_account", "ensure_house", "reader_role_name"]

log = logging.getLogger(__name__)

#: How many times a ledger change is retried on conflicts before the caller's pass retries.
ATTEMPTS = 12
#: How often Accounts with a top-up or with escrow are looked at (the top-up falls due, a
#: session that held escrow is gone).
CHECK_SECONDS = 60.0

_SESSION_RES: dict[str, Res] = {"auction": AUCTION, "market": MARKET}


def account_ledger(obj: dict[str, Any]) -> _ledger.Ledger:
    """An Account object's ledger (an unreadable status is a fresh ledger: see the handler)."""
    return _ledger.Ledger.from_status(AccountStatus.model_validate(obj.get("status") or {}))


async def change_account(
    kube: Kube,
    namespace: str,
    name: str,
    change: Callable[[_ledger.Ledger, dict[str, Any]], _ledger.Ledger | None],
) -> tuple[_ledger.Ledger, dict[str, Any]] | None:
    """Apply ``change`` to Account ``name``'s ledger in one compare-and-swap; None if the Account
    does not exist. ``change`` returns None for "nothing to change" and may raise LedgerError
    (nothing is written). ConflictError after :data:`ATTEMPTS` lost races."""
    for attempt in range(ATTEMPTS):
        obj = await kube.get(ACCOUNT, name, namespace)
        if obj is None:
            return None
        current = account_ledger(obj)
        new = change(current, obj)
        if new is None or new == current:
            return current, obj
        patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": new.to_wire()}
        try:
            written = await kube.patch(ACCOUNT, name, patch, namespace=namespace, status=True)
        except ConflictError:
            await asyncio.sleep(min(0.005 * 2**attempt, 0.25))
            continue
        return new, written
    raise ConflictError(f"Account {namespace}/{name} kept changing; the ledger change was not applied")


async def ensure_house(kube: Kube, namespace: str) -> None:
    """Create the namespace's house Account if it is missing (it starts with nothing)."""
    if await kube.get(ACCOUNT, HOUSE_ACCOUNT, namespace) is not None:
        return
    try:
        await kube.create(
            ACCOUNT,
            {
                "metadata": {"name": HOUSE_ACCOUNT, "namespace": namespace, "labels": dict(MANAGED_BY)},
                "spec": {},
            },
        )
    except AlreadyExistsError:
        pass


#: Accounts whose reader Role and RoleBinding this operator run has made sure of.
_readers: set[tuple[str, str, str]] = set()


def reader_role_name(account: str) -> str:
    return f"mabeam-account-{account}"


async def _ensure_reader(kube: Kube, body: dict[str, Any]) -> None:
    """Let the Agent the Account is named after read it, and only it (get on that one name)."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    owner = [
        {
            "apiVersion": API_VERSION,
            "kind": "Account",
            "name": name,
            "uid": meta.get("uid", ""),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = {"mabeam.io/account": name, **MANAGED_BY}
    role = {
        "metadata": {
            "name": reader_role_name(name),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": owner,
        },
        "rules": [
            {
                "apiGroups": [ACCOUNT.group],
                "resources": [ACCOUNT.plural],
                "verbs": ["get"],
                "resourceNames": [name],
            }
        ],
    }
    binding = {
        "metadata": {
            "name": reader_role_name(name),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": owner,
        },
        "roleRef": {"apiGroup": ROLE.group, "kind": "Role", "name": reader_role_name(name)},
        "subjects": [{"kind": "ServiceAccount", "name": service_account_name(name), "namespace": namespace}],
    }
    for res, obj in ((ROLE, role), (ROLE_BINDING, binding)):
        try:
            await kube.create(res, obj)
        except AlreadyExistsError:
            pass
    _readers.add((namespace, name, str(meta.get("uid", ""))))


def _ready(
    status: dict[str, Any], generation: int | None, now: dt.datetime, message: str
) -> list[dict[str, Any]]:
    conditions = [
        c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") != "Ready"
    ]
    old = next(
        (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), None
    )
    since = old.get("lastTransitionTime") if old and old.get("status") == "True" else now.isoformat()
    return [
        *conditions,
        {
            "type": "Ready",
            "status": "True",
            "reason": "Reconciled",
            "message": message,
            "lastTransitionTime": since,
            "observedGeneration": generation,
        },
    ]


async def _invalid(kube: Kube, body: dict[str, Any], message: str, now: dt.datetime) -> None:
    meta = body["metadata"]
    conditions = body.get("status", {}).get("conditions") or []
    if any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("message") == message for c in conditions
    ):
        return
    await kube.patch(
        ACCOUNT,
        meta["name"],
        {
            "status": {
                "observedGeneration": meta.get("generation"),
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "Invalid",
                        "message": message,
                        "lastTransitionTime": now.isoformat(),
                        "observedGeneration": meta.get("generation"),
                    }
                ],
            }
        },
        namespace=meta["namespace"],
        status=True,
    )
    post(body, type="Warning", reason="Invalid", message=message)


def _ready_message(spec: AccountSpec) -> str:
    # Not the balance: it changes with every hold, and the condition would be rewritten each time.
    if spec.goods:
        return "the budget and goods are granted"
    return "the budget is granted" if spec.budget or spec.top_up else "reconciled"


def _up_to_date(body: dict[str, Any], spec: AccountSpec, created: dt.datetime, now: dt.datetime) -> bool:
    """Whether this version of the Account has nothing due and is recorded as reconciled."""
    status = body.get("status") or {}
    ledger = account_ledger(body)
    ready = next(
        (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {}
    )
    return (
        "balance" in status
        and status.get("observedGeneration") == body["metadata"].get("generation")
        and ready.get("status") == "True"
        and ready.get("message") == _ready_message(spec)
        and _ledger.due_grants(ledger, spec, created, now)[0] == ledger
    )


async def reconcile_account(kube: Kube, body: dict[str, Any], *, rbac: bool) -> None:
    """Grant what the spec grants and is due, and record the Account as reconciled."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    now = clock()
    try:
        spec = AccountSpec.model_validate(body.get("spec") or {})
        AccountStatus.model_validate(body.get("status") or {})
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        await _invalid(kube, body, f"{where}: {first['msg']}", now)
        return
    if rbac and name != HOUSE_ACCOUNT and (namespace, name, str(meta.get("uid", ""))) not in _readers:
        await _ensure_reader(kube, body)
    created = dt.datetime.fromisoformat(
        str(meta.get("creationTimestamp") or now.isoformat()).replace("Z", "+00:00")
    )
    if _up_to_date(body, spec, created, now):
        return  # the watched version needs nothing (most events: a hold or a settlement)
    notes: list[str] = []

    def grant(current: _ledger.Ledger, obj: dict[str, Any]) -> _ledger.Ledger | None:
        new, note = _ledger.due_grants(current, spec, created, now)
        notes[:] = [note] if note else []
        return new

    changed = await change_account(kube, namespace, name, grant)
    if changed is None:
        return
    ledger, obj = changed
    if notes:
        post(obj, type="Normal", reason="Granted", message=notes[0])
    generation = obj["metadata"].get("generation")
    status = obj.get("status") or {}
    message = _ready_message(spec)
    ready = next(
        (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {}
    )
    if (
        status.get("observedGeneration") == generation
        and ready.get("status") == "True"
        and ready.get("message") == message
        and "balance" in status
    ):
        return
    try:
        await kube.patch(
            ACCOUNT,
            name,
            {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": {
                    **ledger.to_wire(),
                    "observedGeneration": generation,
                    "conditions": _ready(status, generation, now, message),
                },
            },
            namespace=namespace,
            status=True,
        )
    except ConflictError:
        pass  # changed meanwhile: that change's event reconciles again


def _held_sessions(body: dict[str, Any]) -> set[str]:
    """The sessions that hold escrow on an Account object: money or goods."""
    status = body.get("status") or {}
    sessions = {str(h.get("session", "")) for h in status.get("holds") or [] if isinstance(h, dict)}
    for stock in status.get("goods") or []:
        if isinstance(stock, dict):
            sessions |= {str(h.get("session", "")) for h in stock.get("holds") or [] if isinstance(h, dict)}
    return sessions


async def release_stale_holds(kube: Kube, body: dict[str, Any]) -> list[str]:
    """Release escrow held for sessions that no longer exist (deleted while open); returns them."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    stale: list[str] = []
    for session in sorted(_held_sessions(body)):
        kind, _, rest = session.partition("/")
        name, _, uid = rest.rpartition(":")
        res = _SESSION_RES.get(kind)
        if res is None or not name:
            continue
        obj = await kube.get(res, name, namespace)
        if obj is None or obj["metadata"].get("uid") != uid:
            stale.append(session)
    if not stale:
        return []
    now = clock()

    def release(current: _ledger.Ledger, obj: dict[str, Any]) -> _ledger.Ledger | None:
        new = current
        for session in stale:
            settled = _ledger.settle(new, session, (), now)
            new = settled if settled is not None else new
        return new

    await change_account(kube, namespace, meta["name"], release)
    post(
        body,
        type="Normal",
        reason="EscrowReleased",
        message=f"released escrow of ended sessions: {', '.join(stale)}",
    )
    return stale


class _Checks:
    """One task for the whole operator that looks at the Accounts that need it: a top-up that
    falls due, escrow held for a session that may be gone. It works from what the watch
    delivered (no polling list); only an Account with escrow costs a read of each of its
    sessions per :data:`CHECK_SECONDS`."""

    def __init__(self) -> None:
        self.watched: dict[tuple[str, str], dict[str, Any]] = {}
        #: Accounts whose reconcile failed (an API error): (when to try again, the next delay).
        self.retry: dict[tuple[str, str], tuple[dt.datetime, float]] = {}
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    def put(self, body: dict[str, Any], memo: Runtime, deleted: bool = False) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        spec = body.get("spec") or {}
        if deleted:
            self.retry.pop(key, None)
        if deleted or not (spec.get("topUp") or _held_sessions(body) or key in self.retry):
            self.watched.pop(key, None)
            return
        self.watched[key] = body
        self._start(memo)

    def failed(self, body: dict[str, Any], memo: Runtime) -> None:
        """Reconcile ``body``'s Account again after a backoff (its event is spent)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        delay = self.retry.get(key, (clock(), 0.5))[1]
        self.retry[key] = (clock() + dt.timedelta(seconds=delay), min(delay * 2, CHECK_SECONDS))
        self.watched[key] = body
        self._start(memo)
        self.wake.set()

    def _start(self, memo: Runtime) -> None:
        if self.task is None or self.task.done():
            self.wake = asyncio.Event()
            self.task = asyncio.create_task(self._run(memo), name="account checks")

    def _due(self, body: dict[str, Any], now: dt.datetime) -> dt.datetime | None:
        try:
            spec = AccountSpec.model_validate(body.get("spec") or {})
            ledger = account_ledger(body)
        except pydantic.ValidationError:
            return None
        created = dt.datetime.fromisoformat(
            str(body["metadata"].get("creationTimestamp") or now.isoformat()).replace("Z", "+00:00")
        )
        return _ledger.next_top_up(spec, ledger, created)

    async def _run(self, memo: Runtime) -> None:
        last_holds = clock()
        while self.watched:
            now = clock()
            wait = CHECK_SECONDS
            for key, (at, _) in list(self.retry.items()):
                if at > now:
                    wait = min(wait, (at - now).total_seconds())
                    continue
                body = self.watched[key]
                try:
                    await reconcile_account(memo.kube, body, rbac=True)
                except (ApiError, ConflictError) as exc:
                    log.warning("Reconcile of Account %s failed, retrying: %s", key[1], exc)
                    self.failed(body, memo)
                else:
                    self.retry.pop(key, None)
                    self.put(body, memo)
            for body in list(self.watched.values()):
                due = self._due(body, now)
                if due is not None and due <= now:
                    try:
                        await reconcile_account(memo.kube, body, rbac=False)
                    except ApiError as exc:
                        log.warning(
                            "Top-up of Account %s failed, retrying: %s", body["metadata"]["name"], exc
                        )
                elif due is not None:
                    wait = min(wait, (due - now).total_seconds() + 0.01)
            if (now - last_holds).total_seconds() >= CHECK_SECONDS:
                last_holds = now
                for body in list(self.watched.values()):
                    if _held_sessions(body):
                        try:
                            await release_stale_holds(memo.kube, body)
                        except ApiError as exc:
                            log.warning(
                                "Escrow check of Account %s failed: %s", body["metadata"]["name"], exc
                            )
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=max(wait, 0.01))
            except TimeoutError:
                pass
            self.wake.clear()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.watched.clear()
        self.retry.clear()


_checks: _Checks | None = None


@kopf.on.event(ACCOUNT.kopf_ref)  # type: ignore[arg-type]
async def account_changed(event: dict[str, Any], body: kopf.Body, memo: Runtime, **_: Any) -> None:
    global _checks
    if _checks is None or (
        _checks.task is not None and _checks.task.get_loop() is not asyncio.get_running_loop()
    ):
        _checks = _Checks()
    _checks.put(dict(body), memo, deleted=event.get("type") == "DELETED")
    meta = body["metadata"]
    if event.get("type") == "DELETED":
        memo.metrics.set_balance(meta["namespace"], meta["name"], None)
        return
    try:
        ledger = account_ledger(dict(body))
        memo.metrics.set_balance(meta["namespace"], meta["name"], ledger.balance, ledger.escrow)
    except pydantic.ValidationError:
        pass
    try:
        await reconcile_account(memo.kube, dict(body), rbac=True)
    except (ApiError, ConflictError) as exc:
        # The event is spent: the checks task tries again, with a backoff, until it succeeds.
        log.warning("Reconcile of Account %s failed, retrying: %s", meta["name"], exc)
        _checks.failed(dict(body), memo)


@kopf.on.cleanup()
async def stop_account_checks(**_: Any) -> None:
    global _checks
    if _checks is not None:
        await _checks.close()
        _checks = None
