"""The pure core of the Variable kind: validation, writes, reconciliation, locks, access, projection.

Nothing here does I/O or reads the clock: ``now`` (a timezone-aware datetime) is an argument, and
every function returns new models instead of changing its arguments. The handlers parse the
object (:func:`parse_spec`, :func:`parse_status`, :func:`parse_write`), call these functions and
write the result (``status.to_wire()``).

Writes (:func:`apply_write`), in this order:

1. a write from a session already in ``status.appliedSessions`` is a no-op (same status back);
2. the spec must be coherent (:func:`validate_spec`) and the value must fit it
   (:func:`validate_value`); otherwise nothing is applied, ``Valid`` turns False and the outcome
   says why;
3. a fencing token older than the lock's current token is refused (ConflictError), one that was
   never issued too (LockError); while a live lock is held, an Agent must be its holder and
   carry the current token (LockError otherwise). Users and Sessions are not lock participants;
4. a write whose ``basedOnVersion`` is not the current version follows ``spec.conflictPolicy``;
5. the value is applied: version + 1, history bounded by ``spec.historyLimit``.

Access control (:func:`can_write`) is checked by the handler before it calls :func:`apply_write`,
since it needs the writing Agent's labels.

Projection (:func:`projection`): one ConfigMap per namespace whose data has one key per Variable
that has a value: the key is the Variable's name, the value the JSON text of ``status.value``
(compact, keys sorted), e.g. ``{"threshold": "42", "mode": "\\"eco\\"", "on": "true"}``. A pod
that mounts the ConfigMap reads file ``/<mount>/<name>`` and parses it as JSON.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import re2
from pydantic import BaseModel, ValidationError

from ..errors import ConflictError, InvalidSpecError, LockError
from ..models._base import Condition, ConditionStatus, progress_conditions, rfc3339, set_condition
from ..models.variable import (
    APPLIED_SESSIONS_LIMIT,
    Actor,
    HistoryEntry,
    VariableAccess,
    VariableLock,
    VariableSpec,
    VariableStatus,
    VariableWrite,
    Writer,
)
from .selectors import matches, validate_selector

__all__ = [
    "PROJECTION_MAX_BYTES",
    "SUMMARY_LENGTH",
    "WriteOutcome",
    "acquire",
    "apply_write",
    "can_write",
    "decode_projection",
    "expire_lock",
    "is_expired",
    "parse_spec",
    "parse_status",
    "parse_write",
    "projection",
    "readiness",
    "reconcile_spec",
    "release",
    "transfer_ownership",
    "validate_spec",
    "validate_value",
    "value_hash",
    "value_shape_problem",
]

#: The most bytes of data the projection may hold (a ConfigMap is limited to 1 MiB in all).
PROJECTION_MAX_BYTES = 1_000_000

#: The longest ``status.valueSummary`` (the Value column of ``kubectl get variables``).
SUMMARY_LENGTH = 64

#: The deepest nesting of lists and objects a value may have. Deeper values are refused before
#: anything walks them (encoding JSON, copying, hashing recurse once per level).
VALUE_MAX_DEPTH = 64
#: The most items (scalars, lists, objects, keys) a value may hold: a value goes into the status
#: with its history, and the status must stay well within an object's size limit.
VALUE_MAX_ITEMS = 10_000
#: The most characters the strings of a value (with the keys) may hold in all.
VALUE_MAX_CHARS = 256 * 1024

_INT64_MAX = 2**63 - 1
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")

_M = TypeVar("_M", bound=BaseModel)


# --- parsing -----------------------------------------------------------------------------------


def _parse(model: type[_M], raw: Mapping[str, Any], path: str) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join([path, *(str(p) for p in err["loc"])])
        raise InvalidSpecError(err["msg"], path=where) from None


def parse_spec(raw: Mapping[str, Any]) -> VariableSpec:
    """Parse ``spec`` (the wire form); a shape error raises InvalidSpecError with its path."""
    return _parse(VariableSpec, raw, "spec")


def parse_status(raw: Mapping[str, Any] | None) -> VariableStatus:
    """Parse ``status`` (absent on a new object)."""
    return _parse(VariableStatus, raw or {}, "status")


def parse_write(raw: Mapping[str, Any]) -> VariableWrite:
    """Parse a write request as the SDK sends it."""
    return _parse(VariableWrite, raw, "write")


# --- validation --------------------------------------------------------------------------------


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def value_shape_problem(value: Any) -> str | None:
    """Why ``value`` is too deep or too big to be a Variable's value, or None.

    Walks without recursion, so that it is safe on any value the API server accepted.
    """
    items = chars = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        items += 1
        if items > VALUE_MAX_ITEMS:
            return f"more than {VALUE_MAX_ITEMS} items (lists, objects, keys and scalars in all)"
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict | list):
            if depth > VALUE_MAX_DEPTH:
                return f"nested deeper than {VALUE_MAX_DEPTH} levels of lists and objects"
            if isinstance(item, dict):
                items += len(item)
                chars += sum(len(k) for k in item if isinstance(k, str))
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        if chars > VALUE_MAX_CHARS:
            return f"more than {VALUE_MAX_CHARS} characters of text"
    return None


def _show(value: Any) -> str:
    problem = value_shape_problem(value)
    if problem is not None:
        return f"a value {problem}"
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(spec: VariableSpec) -> str:
    """What spec.value may be, in words."""
    c = spec.constraints
    if spec.type in ("number", "integer"):
        what = "an integer" if spec.type == "integer" else "a number"
        if c.minimum is not None and c.maximum is not None:
            return f"{what} between {_num(c.minimum)} and {_num(c.maximum)}"
        if c.minimum is not None:
            return f"{what} of at least {_num(c.minimum)}"
        if c.maximum is not None:
            return f"{what} of at most {_num(c.maximum)}"
        return what
    if spec.type == "string":
        text = "a string"
        if c.max_length is not None:
            text += f" of at most {c.max_length} characters"
        if c.pattern is not None:
            text += f" containing a match of the pattern {c.pattern!r}"
        return text
    if spec.type == "boolean":
        return "true or false"
    if spec.type == "enum":
        return "one of " + ", ".join(json.dumps(v) for v in c.allowed_values or [])
    return "any JSON value (object, array, string, number, boolean)"


def _is_json(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif item is not None and not isinstance(item, str | int | bool):
            return False
    return True


@functools.lru_cache(maxsize=256)
def _user_pattern(pattern: str) -> Any:
    """A user's ``pattern`` compiled by RE2: matching takes linear time whatever the pattern (no
    catastrophic backtracking), and the syntax is that of Kubernetes' own patterns (Go's RE2).
    InvalidSpecError (path spec.constraints.pattern) if it is not one."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise InvalidSpecError(
            f"not a valid regular expression (RE2 syntax): {detail}", path="spec.constraints.pattern"
        ) from None


def validate_spec(spec: VariableSpec) -> None:
    """Check that the constraints fit the type (what the CEL rules check, and the pattern)."""
    c = spec.constraints
    if spec.type == "enum" and c.allowed_values is None:
        raise InvalidSpecError(
            "required when spec.type is enum: list the allowed values",
            path="spec.constraints.allowedValues",
        )
    if c.allowed_values is not None and spec.type != "enum":
        raise InvalidSpecError(
            f"only allowed when spec.type is enum (it is {spec.type})", path="spec.constraints.allowedValues"
        )
    for name, bound in (("minimum", c.minimum), ("maximum", c.maximum)):
        if bound is not None and spec.type not in ("number", "integer"):
            raise InvalidSpecError(
                f"only allowed when spec.type is number or integer (it is {spec.type})",
                path=f"spec.constraints.{name}",
            )
    if c.minimum is not None and c.maximum is not None and c.minimum > c.maximum:
        raise InvalidSpecError(
            f"{_num(c.minimum)} exceeds spec.constraints.maximum ({_num(c.maximum)})",
            path="spec.constraints.minimum",
        )
    for name, given in (("pattern", c.pattern is not None), ("maxLength", c.max_length is not None)):
        if given and spec.type != "string":
            raise InvalidSpecError(
                f"only allowed when spec.type is string (it is {spec.type})", path=f"spec.constraints.{name}"
            )
    if c.pattern is not None:
        _user_pattern(c.pattern)
    if spec.access.selector is not None:
        validate_selector(spec.access.selector, path="spec.access.selector")


def validate_value(spec: VariableSpec, value: Any) -> None:
    """Raise InvalidSpecError (path ``spec.value``) unless ``value`` fits the type and constraints."""
    c = spec.constraints

    def bad(detail: str = "") -> InvalidSpecError:
        suffix = f" ({detail})" if detail else ""
        return InvalidSpecError(f"must be {_describe(spec)}; got {_show(value)}{suffix}", path="spec.value")

    if value is None:
        raise bad("null is not a value")
    if value_shape_problem(value) is not None:
        raise bad()  # _show names the problem
    if spec.type in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        if isinstance(value, float) and not math.isfinite(value):
            raise bad("not finite")
        if spec.type == "integer":
            if isinstance(value, float) and not value.is_integer():
                raise bad("not a whole number")
            if abs(value) > _INT64_MAX:
                raise bad("outside the 64-bit integer range")
        if (c.minimum is not None and value < c.minimum) or (c.maximum is not None and value > c.maximum):
            raise bad("out of range")
    elif spec.type == "string":
        if not isinstance(value, str):
            raise bad()
        if c.max_length is not None and len(value) > c.max_length:
            raise bad(f"{len(value)} characters")
        if c.pattern is not None and _user_pattern(c.pattern).search(value) is None:
            raise bad("no match of the pattern")
    elif spec.type == "boolean":
        if not isinstance(value, bool):
            raise bad()
    elif spec.type == "enum":
        if c.allowed_values is None:
            raise InvalidSpecError(
                "required when spec.type is enum: list the allowed values",
                path="spec.constraints.allowedValues",
            )
        if not isinstance(value, str) or value not in c.allowed_values:
            raise bad()
    elif not _is_json(value):
        raise bad("not representable as JSON")


def value_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value`` (how reconcile_spec notices a new spec.value)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# --- writes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteOutcome:
    """What became of a write that raised no error.

    reason: ``Applied``, ``AlreadyApplied`` (the session was applied before), ``InvalidValue`` or
    ``InvalidSpec``. Conflicts and lock refusals raise ConflictError / LockError instead.
    """

    applied: bool
    reason: str
    message: str
    version: int


def _with_condition(
    status: VariableStatus, type: str, cond: ConditionStatus, reason: str, message: str, now: _dt.datetime
) -> VariableStatus:
    conditions = set_condition(
        [c.to_wire() for c in status.conditions],
        type=type,
        status=cond,
        reason=reason,
        message=message,
        now=now,
        observed_generation=status.observed_generation,
    )
    return status.model_copy(update={"conditions": [Condition.model_validate(c) for c in conditions]})


def _set_valid(
    status: VariableStatus, valid: bool, reason: str, message: str, now: _dt.datetime
) -> VariableStatus:
    """Set the Valid condition and the phase that summarises it."""
    phase = "Invalid" if not valid else ("Pending" if status.version == 0 else "Ready")
    status = status.model_copy(update={"phase": phase})
    return readiness(
        _with_condition(status, "Valid", "True" if valid else "False", reason, message, now), now
    )


def readiness(status: VariableStatus, now: _dt.datetime) -> VariableStatus:
    """``Ready`` (and kstatus's ``Reconciling``/``Stalled``) from the phase and ``Valid``: a
    Variable is ready once it holds a value that fits its spec; one with no value yet is still
    reconciling; an invalid one is stalled until its spec (or status) is fixed."""
    valid = next((c for c in status.conditions if c.type == "Valid"), None)
    reason, message = (valid.reason, valid.message) if valid is not None else ("NoValue", "no value yet")
    ready: ConditionStatus = "True" if status.phase == "Ready" else "False"
    status = _with_condition(status, "Ready", ready, reason, message, now)
    wire = progress_conditions(
        [c.to_wire() for c in status.conditions],
        reconciling=message if status.phase == "Pending" else None,
        stalled=message if status.phase == "Invalid" else None,
        reason=reason,
        now=now,
        observed_generation=status.observed_generation,
    )
    return status.model_copy(update={"conditions": [Condition.model_validate(c) for c in wire]})


def _summary(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= SUMMARY_LENGTH else text[: SUMMARY_LENGTH - 3] + "..."


def _valid_message(status: VariableStatus) -> tuple[str, str]:
    if status.version == 0:
        return "NoValue", "the spec is valid; no value has been set yet"
    return "ValueApplied", f"version {status.version} fits the spec"


def _refuse(
    status: VariableStatus, write: VariableWrite, reason: str, exc: InvalidSpecError, now: _dt.datetime
) -> tuple[VariableStatus, WriteOutcome]:
    who = f"{write.writer.kind} {write.writer.name}"
    message = f"a write by {who} was not applied: {exc}"
    new = _set_valid(status, False, reason, message, now)
    return new, WriteOutcome(applied=False, reason=reason, message=message, version=status.version)


def _parse_time(text: str, path: str) -> _dt.datetime:
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSpecError(f"not an RFC 3339 time: {text!r}", path=path) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.UTC)


def is_expired(lock: VariableLock | None, now: _dt.datetime) -> bool:
    """True if nobody holds ``lock`` at ``now`` (free, released, or its lease ran out)."""
    if lock is None or lock.holder is None or lock.expires_at is None:
        return True
    return _parse_time(lock.expires_at, "status.lock.expiresAt") <= now


def _check_lock(status: VariableStatus, write: VariableWrite, now: _dt.datetime) -> None:
    lock = status.lock
    current = lock.fencing_token if lock is not None else 0
    token = write.fencing_token
    if token is not None and token < current:
        raise ConflictError(
            f"fencing token {token} is older than the lock's current token {current}: the lock was "
            "taken again since yours; read the value again and acquire the lock anew",
            current_value=status.value,
            current_version=status.version,
        )
    if token is not None and token > current:
        raise LockError(f"fencing token {token} was never issued (the latest is {current})")
    if write.writer.kind != "Agent" or lock is None or is_expired(lock, now):
        return
    if token is None:
        raise LockError(
            f"the Variable is locked by {lock.holder} until {lock.expires_at}: "
            "acquire the lock and send its fencing token, or wait"
        )
    if write.writer.name != lock.holder:
        # The token is public (status.lock): carrying it proves nothing, holding the lock does.
        raise LockError(
            f"the Variable is locked by {lock.holder} until {lock.expires_at}, not by "
            f"{write.writer.name}: a fencing token is valid only in its holder's writes; acquire "
            "the lock yourself, or wait"
        )


def _check_version(spec: VariableSpec, status: VariableStatus, write: VariableWrite) -> None:
    based_on = write.based_on_version
    if based_on is None or based_on == status.version or spec.conflict_policy == "LastWriterWins":
        return
    stale = f"the write is based on version {based_on} but the Variable is at version {status.version}"

    def conflict(detail: str) -> ConflictError:
        return ConflictError(
            f"{stale}{detail}; read the current value and retry",
            current_value=status.value,
            current_version=status.version,
        )

    if spec.conflict_policy == "Reject":
        raise conflict(" (conflictPolicy Reject)")
    # HighestPriority: a stale write wins if the writer outranks (or ties) the last writer.
    if write.writer.kind == "User":
        return
    if status.changed_by is not None and status.changed_by.kind == "User":
        raise conflict(", and the last change was made by a user, whom no priority outranks")
    last = status.last_writer_priority
    if last is not None and write.writer.priority < last:
        raise conflict(f", and the last writer's priority {last} is above yours ({write.writer.priority})")


def _trimmed(history: list[HistoryEntry], limit: int) -> list[HistoryEntry]:
    return list(history[-limit:]) if limit > 0 else []


def apply_write(
    spec: VariableSpec, status: VariableStatus, write: VariableWrite, now: _dt.datetime
) -> tuple[VariableStatus, WriteOutcome]:
    """Apply ``write`` to ``status`` under ``spec`` (see the module docstring for the rules).

    Raises ConflictError (stale version under Reject/HighestPriority, old fencing token) or
    LockError (locked by someone else, or a token never issued).
    """
    if write.session is not None and write.session in status.applied_sessions:
        message = f"the outcome of session {write.session} was applied already"
        return status, WriteOutcome(False, "AlreadyApplied", message, status.version)
    try:
        validate_spec(spec)
    except InvalidSpecError as exc:
        return _refuse(status, write, "InvalidSpec", exc, now)
    try:
        validate_value(spec, write.value)
    except InvalidSpecError as exc:
        return _refuse(status, write, "InvalidValue", exc, now)
    _check_lock(status, write, now)
    _check_version(spec, status, write)

    version = status.version + 1
    stamp = rfc3339(now)
    actor = Actor(kind=write.writer.kind, name=write.writer.name)
    value = copy.deepcopy(write.value)
    entry = HistoryEntry(
        version=version,
        value=copy.deepcopy(value),
        changed_by=actor,
        changed_at=stamp,
        reason=write.reason,
        session=write.session,
    )
    sessions = list(status.applied_sessions)
    if write.session is not None:
        sessions = [*sessions, write.session][-APPLIED_SESSIONS_LIMIT:]
    new = status.model_copy(
        update={
            "value": value,
            "value_summary": _summary(value),
            "version": version,
            "changed_by": actor,
            "last_writer_priority": None if write.writer.kind == "User" else write.writer.priority,
            "reason": write.reason,
            "changed_at": stamp,
            "history": _trimmed([*status.history, entry], spec.history_limit),
            "applied_sessions": sessions,
        }
    )
    reason, message = _valid_message(new)
    new = _set_valid(new, True, reason, message, now)
    return new, WriteOutcome(True, "Applied", f"version {version} applied", version)


def transfer_ownership(
    status: VariableStatus, owner: Actor, session: str, now: _dt.datetime
) -> tuple[VariableStatus, WriteOutcome]:
    """Make ``owner`` the owner of the resource the Variable stands for, once per ``session``.

    An auction's allocation: the value, its version and history stay as they are (ownership is
    not a value); ``session`` joins ``status.appliedSessions`` in the same status, so a second
    call with it changes nothing (reason ``AlreadyApplied``).
    """
    if session in status.applied_sessions:
        message = f"the allocation of session {session} was applied already"
        return status, WriteOutcome(False, "AlreadyApplied", message, status.version)
    sessions = [*status.applied_sessions, session][-APPLIED_SESSIONS_LIMIT:]
    new = status.model_copy(update={"owner": owner, "applied_sessions": sessions})
    previous = f" (was {status.owner.name})" if status.owner is not None else ""
    return new, WriteOutcome(True, "Applied", f"owned by {owner.kind} {owner.name}{previous}", status.version)


def reconcile_spec(
    spec: VariableSpec, status: VariableStatus, generation: int, now: _dt.datetime, *, user: str = "spec"
) -> tuple[VariableStatus, WriteOutcome | None]:
    """Bring status in line with a (new) spec; idempotent.

    A spec.value that differs from the one last applied is applied as a write by the User
    ``user`` (no version precondition, not bound by locks). Otherwise the applied value is checked
    against the (maybe changed) constraints. ``Valid`` reports the result; history is trimmed to
    the (maybe lowered) historyLimit. The outcome is that of the write, or None if none was made.
    """
    status = status.model_copy(
        update={
            "observed_generation": generation,
            "history": _trimmed(status.history, spec.history_limit),
        }
    )
    try:
        validate_spec(spec)
    except InvalidSpecError as exc:
        return _set_valid(status, False, "InvalidSpec", str(exc), now), None
    problem = None if spec.value is None else value_shape_problem(spec.value)
    if problem is not None:  # refused before anything walks it (hashing recurses)
        write = VariableWrite(value=None, writer=Writer(kind="User", name=user), reason="spec.value changed")
        error = InvalidSpecError(f"must be {_describe(spec)}; got a value {problem}", path="spec.value")
        return _refuse(status, write, "InvalidValue", error, now)
    if spec.value is not None:
        digest = value_hash(spec.value)
        if digest != status.spec_value_hash:
            write = VariableWrite(
                value=spec.value, writer=Writer(kind="User", name=user), reason="spec.value changed"
            )
            new, outcome = apply_write(spec, status, write, now)
            if outcome.applied:
                new = new.model_copy(update={"spec_value_hash": digest})
            return new, outcome
    if status.version > 0:
        try:
            validate_value(spec, status.value)
        except InvalidSpecError as exc:
            message = f"the applied value (version {status.version}) no longer fits the spec: {exc}"
            return _set_valid(status, False, "AppliedValueInvalid", message, now), None
    reason, message = _valid_message(status)
    return _set_valid(status, True, reason, message, now), None


# --- locks -------------------------------------------------------------------------------------


def _micro(now: _dt.datetime) -> str:
    return now.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def acquire(status: VariableStatus, holder: str, now: _dt.datetime, ttl: float) -> tuple[VariableStatus, int]:
    """Take (or renew) the lock for ``ttl`` seconds; return the new status and the fencing token.

    A free or expired lock gets a new token (the last one plus one); the holder renewing its own
    live lock keeps its token. A live lock held by another raises LockError.
    """
    if not holder:
        raise InvalidSpecError("the lock holder must be named", path="lock.holder")
    if not (math.isfinite(ttl) and ttl > 0):
        raise InvalidSpecError(
            f"the lock's time to live must be a positive number of seconds, got {ttl}", path="lock.ttl"
        )
    lock = status.lock or VariableLock()
    live = not is_expired(lock, now)
    if live and lock.holder != holder:
        raise LockError(f"the Variable is locked by {lock.holder} until {lock.expires_at}")
    token = lock.fencing_token if live else lock.fencing_token + 1
    expires = _micro(now + _dt.timedelta(seconds=ttl))
    new = status.model_copy(
        update={"lock": VariableLock(holder=holder, fencing_token=token, expires_at=expires)}
    )
    message = f"held by {holder} until {expires} (fencing token {token})"
    return _with_condition(new, "Locked", "True", "Acquired", message, now), token


def release(
    status: VariableStatus, holder: str, now: _dt.datetime, token: int | None = None
) -> VariableStatus:
    """Give the lock up; the fencing token is kept so that the next one is larger.

    Releasing a lock nobody holds is a no-op (returns ``status``). A live lock held by another,
    or a ``token`` that is not the current one, raises LockError.
    """
    lock = status.lock
    if lock is None or is_expired(lock, now):
        return status if lock is None or lock.holder is None else expire_lock(status, now)
    if lock.holder != holder:
        raise LockError(f"the lock is held by {lock.holder}, not {holder}")
    if token is not None and token != lock.fencing_token:
        raise LockError(f"fencing token {token} is not the current one ({lock.fencing_token})")
    new = status.model_copy(update={"lock": VariableLock(fencing_token=lock.fencing_token)})
    return _with_condition(new, "Locked", "False", "Released", f"released by {holder}", now)


def expire_lock(status: VariableStatus, now: _dt.datetime) -> VariableStatus:
    """Clear a lock whose lease ran out (keeping its token); otherwise return ``status``."""
    lock = status.lock
    if lock is None or lock.holder is None or not is_expired(lock, now):
        return status
    new = status.model_copy(update={"lock": VariableLock(fencing_token=lock.fencing_token)})
    message = f"the lease of {lock.holder} ran out at {lock.expires_at}"
    return _with_condition(new, "Locked", "False", "Expired", message, now)


# --- access and projection ---------------------------------------------------------------------


def can_write(access: VariableAccess, agent_name: str, agent_labels: Mapping[str, str]) -> bool:
    """True if the Agent may write: named in ``access.agents`` or matched by ``access.selector``.

    No selector matches nobody; an empty selector (``{}``) matches every Agent.
    """
    if agent_name in access.agents:
        return True
    return access.selector is not None and matches(access.selector, agent_labels)


def projection(variables: Iterable[tuple[str, VariableStatus]]) -> dict[str, str]:
    """The data of the per-namespace ConfigMap: Variable name -> JSON text of status.value.

    Variables never written (version 0) are left out. Raises InvalidSpecError for a name that
    cannot be a ConfigMap key, a name given twice, or data past PROJECTION_MAX_BYTES.
    """
    data: dict[str, str] = {}
    seen: set[str] = set()
    for name, status in variables:
        if not _CONFIGMAP_KEY.fullmatch(name):
            raise InvalidSpecError(f"{name!r} cannot be a ConfigMap key", path="metadata.name")
        if name in seen:
            raise InvalidSpecError(f"Variable {name!r} was given twice", path="metadata.name")
        seen.add(name)
        if status.version == 0:
            continue
        data[name] = json.dumps(status.value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > PROJECTION_MAX_BYTES:
        largest = sorted(data, key=lambda k: len(data[k].encode()), reverse=True)[:3]
        raise InvalidSpecError(
            f"the projected values take {size} bytes, more than a ConfigMap holds "
            f"({PROJECTION_MAX_BYTES}); the largest are {', '.join(largest)}",
            path="status.value",
        )
    return data


def decode_projection(data: Mapping[str, str]) -> dict[str, Any]:
    """Read the projection's ConfigMap data back into values (what a pod does with the files)."""
    values: dict[str, Any] = {}
    for name, text in data.items():
        try:
            values[name] = json.loads(text)
        except ValueError as exc:
            raise InvalidSpecError(f"not JSON: {exc}", path=f"data.{name}") from None
    return values
