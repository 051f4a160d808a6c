"""Server-side printing: ``meta.k8s.io`` Table responses, as ``kubectl get`` asks for them.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ...``; the server answers
a ``Table`` whose columns are, as in a real API server:

* for a custom resource: ``Name`` and the CRD version's ``additionalPrinterColumns`` (a CRD
  without any gets ``Age``), each cell evaluated by a simple JSONPath (``.a.b``, ``.a[0].b``,
  ``.a['x.y']``) and typed as the column says (``date`` cells become ages such as ``5m``);
* for the built-in kinds ``kubectl get`` shows most (pods, namespaces, events, config maps,
  secrets, service accounts, leases): the columns of Kubernetes' printers, simplified where they need
  state this server has not (a pod's IP, its restarts' ages);
* for every other kind: the default ``Name`` / ``Created At`` table.

Each row carries the object as ``PartialObjectMetadata`` (``includeObject=Metadata``, the
default), whole (``Object``) or not at all (``None``).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from ._types import ResourceType, _ApiError, _meta

__all__ = ["human_duration", "simple_jsonpath", "table", "table_version"]

_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. "
    "It is not guaranteed to be set in happens-before order across separate operations. Clients "
    "may not set this value. It is represented in RFC3339 form and is in UTC."
)

Column = dict[str, Any]
Row = Callable[[dict[str, Any], datetime.datetime], list[Any]]


def table_version(accept: str) -> str | None:
    """The ``meta.k8s.io`` version of the Table the client accepts (``v1``, ``v1beta1``), or None."""
    for media_range in accept.split(","):
        parts = [part.strip() for part in media_range.split(";")]
        params = dict(part.partition("=")[::2] for part in parts[1:])
        json_table = parts[0] in ("application/json", "*/*") and params.get("as") == "Table"
        if json_table and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return params["v"]
    return None


_SEGMENT = re.compile(r"""\.([^.\[\]]+)|\[(\d+)\]|\[['"]([^'"]+)['"]\]""")


def simple_jsonpath(obj: Any, path: str) -> tuple[bool, Any]:
    """Evaluate a simple JSONPath (``.a.b``, ``.a[0]``, ``.a['b.c']``): (found, value)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    text = text.removeprefix("$")
    position, node = 0, obj
    while position < len(text):
        match = _SEGMENT.match(text, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r}")
        position = match.end()
        key, index, quoted = match.groups()
        if index is not None:
            if not isinstance(node, list) or int(index) >= len(node):
                return False, None
            node = node[int(index)]
        else:
            name = key if key is not None else quoted
            if not isinstance(node, dict) or name not in node:
                return False, None
            node = node[name]
    return True, node


def human_duration(seconds: float) -> str:
    """A duration as Kubernetes prints an age (``k8s.io/apimachinery/pkg/util/duration``)."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    total = int(seconds)
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = total // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def _age(timestamp: Any, now: datetime.datetime) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        when = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return human_duration((now - when).total_seconds())


def _text(value: Any) -> str:
    """A value in a ``string`` column, as kubectl's JSONPath printer writes it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _typed(column_type: str, value: Any, now: datetime.datetime) -> Any:
    """A cell of a non-string column, as the CRD table convertor types it (None if it does not fit)."""
    if column_type == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(value)
    if column_type == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        return _age(value, now) if isinstance(value, str) else None
    return None


def _column(
    name: str, kind: str = "string", *, fmt: str = "", description: str = "", priority: int = 0
) -> Column:
    return {"name": name, "type": kind, "format": fmt, "description": description, "priority": priority}


_NAME = _column("Name", fmt="name", description=_NAME_DESCRIPTION)
_AGE = _column("Age", "string", description=_CREATED_DESCRIPTION)


def _custom(rtype: ResourceType) -> tuple[list[Column], Row]:
    columns = list(rtype.printer_columns) or [
        {
            "name": "Age",
            "type": "date",
            "jsonPath": ".metadata.creationTimestamp",
            "description": _CREATED_DESCRIPTION,
        }
    ]

    def row(obj: dict[str, Any], now: datetime.datetime) -> list[Any]:
        cells: list[Any] = [_meta(obj).get("name", "")]
        for column in columns:
            try:
                found, value = simple_jsonpath(obj, str(column.get("jsonPath", "")))
            except ValueError:
                found, value = False, None
            if not found or value is None:
                cells.append(None)
            elif column.get("type", "string") == "string":
                cells.append(_text(value))
            else:
                cells.append(_typed(str(column.get("type")), value, now))
        return cells

    definitions = [
        _column(
            str(c["name"]),
            str(c.get("type", "string")),
            fmt=str(c.get("format", "")),
            description=str(c.get("description", "")),
            priority=int(c.get("priority", 0)),
        )
        for c in columns
    ]
    return [_NAME, *definitions], row


def _pod_row(obj: dict[str, Any], now: datetime.datetime) -> list[Any]:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, _meta(obj)
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for state in (s.get("state") or {} for s in statuses):
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated.get("reason"):
            reason = terminated["reason"]
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    return [
        meta.get("name", ""),
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        _age(meta.get("creationTimestamp"), now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _event_row(obj: dict[str, Any], now: datetime.datetime) -> list[Any]:
    """A core/v1 or events.k8s.io/v1 Event, as Kubernetes' event printer shows both."""
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingController") or ""
    host = source.get("host") or ""
    first = obj.get("firstTimestamp") or obj.get("deprecatedFirstTimestamp") or obj.get("eventTime")
    last = (
        (obj.get("series") or {}).get("lastObservedTime")
        or obj.get("lastTimestamp")
        or obj.get("deprecatedLastTimestamp")
        or obj.get("eventTime")
        or first
    )
    count = (obj.get("series") or {}).get("count") or obj.get("count") or obj.get("deprecatedCount") or 1
    return [
        _age(last, now),
        obj.get("type") or "",
        obj.get("reason") or "",
        f"{str(involved.get('kind') or '').lower()}/{involved.get('name') or ''}",
        involved.get("fieldPath") or "",
        f"{component}, {host}" if host else component,
        obj.get("message") or obj.get("note") or "",
        _age(first, now),
        str(count),
        _meta(obj).get("name", ""),
    ]


_EVENT_COLUMNS: list[Column] = [
    _column("Last Seen", description="Time when last this event was seen."),
    _column(
        "Type", description="Type of this event (Normal, Warning), new types could be added in the future."
    ),
    _column("Reason", description="The reason for the transition into the object's current status."),
    _column("Object", description="The object that this event is about."),
    _column("Subobject", description="The field path of the object that this event is about.", priority=1),
    _column("Source", description="The component reporting this event.", priority=1),
    _column("Message", description="A human-readable description of the status of this operation."),
    _column("First Seen", description="The time at which the event was first recorded.", priority=1),
    _column("Count", description="The number of times this event has occurred.", priority=1),
    {**_NAME, "priority": 1},
]

_BUILTIN: dict[tuple[str, str], tuple[list[Column], Row]] = {
    ("", "events"): (_EVENT_COLUMNS, _event_row),
    ("events.k8s.io", "events"): (_EVENT_COLUMNS, _event_row),
    ("", "pods"): (
        [
            _NAME,
            _column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
            _column("Status", description="The aggregate status of the containers in this pod."),
            _column(
                "Restarts", description="The number of times the containers in this pod have been restarted."
            ),
            _AGE,
            _column("IP", description="IP address allocated to the pod.", priority=1),
            _column("Node", description="Name of the Node this pod is assigned to.", priority=1),
            _column("Nominated Node", description="Name of the Node the pod is nominated for.", priority=1),
            _column("Readiness Gates", description="The readiness gates of the pod.", priority=1),
        ],
        _pod_row,
    ),
    ("", "namespaces"): (
        [_NAME, _column("Status", description="The status of the namespace"), _AGE],
        lambda o, now: [
            _meta(o).get("name", ""),
            (o.get("status") or {}).get("phase") or "Active",
            _age(_meta(o).get("creationTimestamp"), now),
        ],
    ),
    ("", "configmaps"): (
        [_NAME, _column("Data", "integer", description="Number of data in the ConfigMap"), _AGE],
        lambda o, now: [
            _meta(o).get("name", ""),
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            _age(_meta(o).get("creationTimestamp"), now),
        ],
    ),
    ("", "secrets"): (
        [
            _NAME,
            _column("Type", description="The type of the secret"),
            _column("Data", "integer", description="The number of data in the secret"),
            _AGE,
        ],
        lambda o, now: [
            _meta(o).get("name", ""),
            o.get("type") or "Opaque",
            len(o.get("data") or {}) + len(o.get("stringData") or {}),
            _age(_meta(o).get("creationTimestamp"), now),
        ],
    ),
    ("", "serviceaccounts"): (
        [_NAME, _column("Secrets", "integer", description="The number of secrets of the account"), _AGE],
        lambda o, now: [
            _meta(o).get("name", ""),
            len(o.get("secrets") or []),
            _age(_meta(o).get("creationTimestamp"), now),
        ],
    ),
    ("coordination.k8s.io", "leases"): (
        [_NAME, _column("Holder", description="The holder of the lease"), _AGE],
        lambda o, now: [
            _meta(o).get("name", ""),
            (o.get("spec") or {}).get("holderIdentity") or "",
            _age(_meta(o).get("creationTimestamp"), now),
        ],
    ),
}

_DEFAULT: tuple[list[Column], Row] = (
    [_NAME, _column("Created At", "date", description=_CREATED_DESCRIPTION)],
    lambda o, now: [_meta(o).get("name", ""), _meta(o).get("creationTimestamp", "")],
)


def _row_object(obj: dict[str, Any], include: str, version: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    meta = {k: v for k, v in _meta(obj).items() if k != "managedFields"}
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": meta}


def table(
    rtype: ResourceType,
    objects: Sequence[dict[str, Any]],
    *,
    version: str,
    list_meta: dict[str, Any] | None = None,
    include_object: str = "Metadata",
    headers: bool = True,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The ``meta.k8s.io`` Table of ``objects`` of ``rtype``."""
    if include_object not in ("None", "Metadata", "Object"):
        raise _ApiError(
            400,
            "BadRequest",
            f'includeObject: Unsupported value: "{include_object}": supported values: '
            '"None", "Metadata", "Object"',
        )
    now = now or datetime.datetime.now(datetime.UTC)
    if rtype.custom:
        columns, row = _custom(rtype)
    else:
        columns, row = _BUILTIN.get((rtype.group, rtype.plural), _DEFAULT)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": dict(list_meta or {}),
        "columnDefinitions": columns if headers else [],
        "rows": [
            {"cells": row(obj, now), "object": _row_object(obj, include_object, version)} for obj in objects
        ],
    }
