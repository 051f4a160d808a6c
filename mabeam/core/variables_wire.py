"""What the Variable operator and the SDK agree on: names, the write annotation, Lease <-> lock.

No I/O here either; both sides call these to read and write the same wire forms.

- An agent's write is the Variable object itself, PUT with a ``metadata.resourceVersion``
  precondition, with ``spec.value`` set to the new value and the annotation
  :data:`WRITE_ANNOTATION` holding :func:`encode_write` (the VariableWrite and a unique id), and
  :data:`WRITER_ANNOTATION` holding the writer's agent name in plain text, so that admission
  (CEL, which cannot parse the JSON) can check it against the requester's ServiceAccount.
- A lock is the Lease :func:`lease_name` in the Variable's namespace; its ``leaseTransitions``
  is the fencing token (see :func:`lock_from_lease`).
- The values are projected into the ConfigMap :data:`PROJECTION_CONFIGMAP` of the namespace.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from typing import Any

from ..errors import InvalidSpecError
from ..models.variable import VariableLock, VariableStatus, VariableWrite
from .variables import is_expired, parse_write

__all__ = [
    "PROJECTION_CONFIGMAP",
    "WRITER_ANNOTATION",
    "WRITE_ANNOTATION",
    "clear_write_patch",
    "decode_write",
    "encode_write",
    "lease_is_free",
    "lease_name",
    "lock_from_lease",
    "micro_time",
    "parse_time",
    "settled",
    "status_patch",
    "variable_label",
    "write_annotations",
    "write_id_of",
    "writer_role_name",
]

WRITE_ANNOTATION = "mabeam.io/write"
WRITER_ANNOTATION = "mabeam.io/writer"
PROJECTION_CONFIGMAP = "mabeam-variables"


#: The longest name of an object (a DNS subdomain).
_NAME_LIMIT = 253


def _child_name(variable: str, suffix: str = "") -> str:
    """``mabeam-var-<variable><suffix>``, a valid name however long the Variable's name is: a
    name past the limit is cut and ends with a digest of the whole, so that it stays unique."""
    name = f"mabeam-var-{variable}{suffix}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(variable.encode()).hexdigest()[:10]
    head = name[: _NAME_LIMIT - len(suffix) - len(digest) - 1].rstrip(".-")
    return f"{head}-{digest}{suffix}"


#: The longest label value.
_LABEL_LIMIT = 63


def variable_label(variable: str) -> str:
    """The value of the label ``mabeam.io/variable`` on a Variable's children: its name, or, for
    a name past 63 characters (which a real API server refuses as a label value), the name cut
    and ending with a digest of the whole."""
    if len(variable) <= _LABEL_LIMIT:
        return variable
    digest = hashlib.sha256(variable.encode()).hexdigest()[:10]
    return f"{variable[: _LABEL_LIMIT - len(digest) - 1].rstrip('.-')}-{digest}"


def lease_name(variable: str) -> str:
    return _child_name(variable)


def writer_role_name(variable: str) -> str:
    """The Role (and RoleBinding) that lets the allowed agents update this one Variable."""
    return _child_name(variable, "-writer")


def micro_time(now: _dt.datetime) -> str:
    """A Kubernetes MicroTime (what Lease times are)."""
    return now.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> _dt.datetime:
    when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.UTC)


def encode_write(write_id: str, write: VariableWrite) -> str:
    return json.dumps({"writeId": write_id, **write.to_wire()}, sort_keys=True, separators=(",", ":"))


def write_annotations(write_id: str, write: VariableWrite) -> dict[str, str]:
    """The annotations of an agent's write: the write itself and its writer's name."""
    return {WRITE_ANNOTATION: encode_write(write_id, write), WRITER_ANNOTATION: write.writer.name}


def decode_write(text: str) -> tuple[str, VariableWrite]:
    """The id and the write from the annotation; InvalidSpecError if it is not one."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidSpecError(f"not JSON: {exc}", path=f"metadata.annotations[{WRITE_ANNOTATION}]") from None
    except RecursionError:  # how the decoder refuses JSON nested too deeply for it
        raise InvalidSpecError(
            "nested too deeply to decode", path=f"metadata.annotations[{WRITE_ANNOTATION}]"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("writeId"), str) or not raw["writeId"]:
        raise InvalidSpecError(
            "must be a JSON object with a writeId", path=f"metadata.annotations[{WRITE_ANNOTATION}]"
        )
    write_id = raw.pop("writeId")
    return write_id, parse_write(raw)


def lock_from_lease(lease: dict[str, Any] | None) -> VariableLock | None:
    """The lock a Lease stands for: holder, fencing token (leaseTransitions), end of the lease.

    A Lease without a holder (released) keeps its token; no Lease means no lock ever taken.
    """
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    token = int(spec.get("leaseTransitions") or 0)
    holder = spec.get("holderIdentity") or None
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    duration = spec.get("leaseDurationSeconds")
    if holder is None or not renewed or not isinstance(duration, int | float) or not math.isfinite(duration):
        return VariableLock(fencing_token=token)
    expires = parse_time(str(renewed)) + _dt.timedelta(seconds=float(duration))
    return VariableLock(holder=str(holder), fencing_token=token, expires_at=micro_time(expires))


def lease_is_free(lease: dict[str, Any] | None, now: _dt.datetime) -> bool:
    return is_expired(lock_from_lease(lease), now)


def write_id_of(annotation: str) -> str:
    """The id of the write an annotation holds (``malformed`` if it holds none, as the operator
    records such a write)."""
    try:
        return decode_write(annotation)[0]
    except InvalidSpecError:
        return "malformed"


def settled(obj: dict[str, Any]) -> bool:
    """True if the operator has processed the Variable's spec and its pending write (if any).

    An applied write's annotation stays on the object until the next write replaces it (the
    operator writes nothing more for it): a write is pending while its id is not the one of
    ``status.lastWrite``.
    """
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    pending = (meta.get("annotations") or {}).get(WRITE_ANNOTATION)
    if pending is not None:
        last = status.get("lastWrite")
        if not isinstance(last, dict) or last.get("writeId") != write_id_of(pending):
            return False
    return bool(status.get("observedGeneration") == meta.get("generation"))


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def status_patch(resource_version: str, status: VariableStatus) -> list[dict[str, Any]]:
    """A JSON patch that replaces the whole status if the object is still at ``resource_version``."""
    return [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "add", "path": "/status", "value": status.to_wire()},
    ]


def clear_write_patch(obj: dict[str, Any], spec_value: Any, *, reset_value: bool) -> list[dict[str, Any]]:
    """A JSON patch that removes the processed write annotations (and resets spec.value)."""
    meta = obj["metadata"]
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "remove", "path": f"/metadata/annotations/{_pointer(WRITE_ANNOTATION)}"},
    ]
    if WRITER_ANNOTATION in (meta.get("annotations") or {}):
        ops.append({"op": "remove", "path": f"/metadata/annotations/{_pointer(WRITER_ANNOTATION)}"})
    if reset_value:
        if spec_value is None:
            if "value" in (obj.get("spec") or {}):
                ops.append({"op": "remove", "path": "/spec/value"})
        else:
            ops.append({"op": "add", "path": "/spec/value", "value": spec_value})
    return ops
