"""A strict in-memory Kubernetes API server: the control plane of ``mabeam local`` and the tests.

Built on kmock's :class:`kmock.KubernetesEmulator` (discovery, HTTP plumbing) and served over
HTTP with :class:`kmock.Server`. Resource requests are handled here, like a real API server:

* one global, monotonically increasing ``resourceVersion``; ``uid``, ``creationTimestamp``,
  ``generation`` (bumped only when something outside metadata and status changes);
* create (409 AlreadyExists), replace (409 Conflict on a stale ``resourceVersion``), merge /
  strategic-merge / JSON patches (a ``resourceVersion`` in the patch is a precondition),
  server-side apply (approximated as create-or-merge), delete with finalizers, preconditions,
  and owner-reference garbage collection (background, recursive; ``Orphan`` supported);
* the ``status`` subresource: ``/status`` writes change only ``.status``; main writes ignore it;
* label and field selectors, ``limit``/``continue`` paging, watches with ``resourceVersion``
  resumption, 410 Gone for expired versions, ``timeoutSeconds`` and bookmarks;
* CustomResourceDefinitions: creating one registers its kind in discovery, and every custom
  resource is pruned, defaulted and validated against its ``openAPIV3Schema`` (with CEL rules)
  by :mod:`mabeam.kube.schema`; failures are 422 ``Invalid`` with field paths;
* namespaces must exist; deleting one deletes its content.

Entry point::

    async with LocalApiServer(port=0) as api:
        api.kubeconfig(path)              # insecure kubeconfig for kubectl / lightkube / kopf
        api.install_crds([crd_dict])      # or create CRDs through the API
        api.get("mabeam.io/v1alpha1/agents", "a1", namespace="default")

Callers are identified by ``Impersonate-User`` or a bearer token ``sa:<namespace>:<name>`` (a
service account) or ``user:<name>``; see :attr:`LocalApiServer.audit`. Service accounts are
authorised by RBAC from the stored Roles, ClusterRoles and bindings (:mod:`mabeam.local.rbac`;
403 Forbidden otherwise); other users are not restricted. ``authorize_service_accounts=False``
turns RBAC off.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import dataclasses
import datetime
import json
import logging
import pathlib
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Self

import aiohttp.web
import attrs
import kmock
import yaml

from mabeam.errors import InvalidSpecError
from mabeam.kube import schema as crd_schema

from . import rbac

__all__ = [
    "AuditRecord",
    "LocalApiEmulator",
    "LocalApiServer",
    "ResourceType",
    "ThreadedApiServer",
]

logger = logging.getLogger(__name__)

_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})
_CRD_GROUP = "apiextensions.k8s.io"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """A served resource: what discovery advertises and how its objects behave."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    schema: dict[str, Any] | None = None  # openAPIV3Schema of a custom resource
    storage_version: str = ""  # all versions of a CRD share the storage of this one
    custom: bool = False

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``agents.mabeam.io`` or ``pods``: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Agent.mabeam.io`` or ``Pod``: how validation messages name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def store_key(self) -> kmock.resource:
        return kmock.resource(self.group, self.storage_version or self.version, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _builtin(
    group_version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool,
    status: bool = False,
    short_names: tuple[str, ...] = (),
) -> ResourceType:
    group, _, version = group_version.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=short_names,
        subresources=frozenset({"status"}) if status else frozenset(),
    )


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("v1", "namespaces", "Namespace", namespaced=False, status=True, short_names=("ns",)),
    _builtin("v1", "pods", "Pod", namespaced=True, status=True, short_names=("po",)),
    _builtin("v1", "serviceaccounts", "ServiceAccount", namespaced=True, short_names=("sa",)),
    _builtin("v1", "configmaps", "ConfigMap", namespaced=True, short_names=("cm",)),
    _builtin("v1", "secrets", "Secret", namespaced=True),
    _builtin("v1", "events", "Event", namespaced=True, short_names=("ev",)),
    _builtin("v1", "services", "Service", namespaced=True, status=True, short_names=("svc",)),
    _builtin("events.k8s.io/v1", "events", "Event", namespaced=True, short_names=("ev",)),
    _builtin("coordination.k8s.io/v1", "leases", "Lease", namespaced=True),
    _builtin(
        f"{_CRD_GROUP}/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status=True,
        short_names=("crd", "crds"),
    ),
    _builtin("rbac.authorization.k8s.io/v1", "roles", "Role", namespaced=True),
    _builtin("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", namespaced=True),
    _builtin("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _builtin(
        "admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        namespaced=False,
        status=True,
    ),
    _builtin(
        "admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        namespaced=False,
    ),
)


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One served resource request: who did what, and the HTTP status it got."""

    verb: str
    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None
    user: str
    code: int


class _ApiError(Exception):
    """A failure that becomes a Kubernetes ``Status`` response."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def _not_found(rtype: ResourceType, name: str) -> _ApiError:
    return _ApiError(
        404,
        "NotFound",
        f'{rtype.qualified} "{name}" not found',
        {"name": name, "group": rtype.group, "kind": rtype.plural},
    )


def _conflict(rtype: ResourceType, name: str, why: str) -> _ApiError:
    return _ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rtype.qualified} "{name}": {why}',
        {"name": name, "group": rtype.group, "kind": rtype.plural},
    )


_STALE = "the object has been modified; please apply your changes to the latest version and try again"


def _invalid(rtype: ResourceType, name: str, errors: list[crd_schema.SchemaError]) -> _ApiError:
    return _ApiError(
        422,
        "Invalid",
        crd_schema.format_invalid(rtype.qualified_kind, name, errors),
        {
            "name": name,
            "group": rtype.group,
            "kind": rtype.kind,
            "causes": [{"reason": e.reason, "message": e.message, "field": e.path} for e in errors],
        },
    )


def _json_response(payload: Any, code: int) -> aiohttp.web.Response:
    # Exactly "application/json" (no charset), as the API server sends: lightkube checks for it.
    body = json.dumps(payload).encode()
    return aiohttp.web.Response(body=body, status=code, content_type="application/json")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _resolve_parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"path /{'/'.join(parts)} does not exist")
    return node, parts[-1]


def _get_at(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent, last = _resolve_parent(doc, parts)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise ValueError(f"path /{'/'.join(parts)} does not exist")


def _remove_at(doc: Any, parts: list[str]) -> Any:
    parent, last = _resolve_parent(doc, parts)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise ValueError(f"path /{'/'.join(parts)} does not exist")


def _add_at(doc: Any, parts: list[str], value: Any, *, replace: bool) -> Any:
    if not parts:
        return value
    parent, last = _resolve_parent(doc, parts)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise ValueError(f"path /{'/'.join(parts)} does not exist")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise ValueError(f"index {last!r} is out of range at /{'/'.join(parts)}")
    else:
        raise ValueError(f"path /{'/'.join(parts)} does not exist")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test); raises ValueError."""
    if not isinstance(ops, list):
        raise ValueError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError(f"malformed JSON patch operation: {op!r}")
        parts = _pointer(op["path"])
        kind = op["op"]
        if kind == "add":
            doc = _add_at(doc, parts, copy.deepcopy(op.get("value")), replace=False)
        elif kind == "replace":
            doc = _add_at(doc, parts, copy.deepcopy(op.get("value")), replace=True)
        elif kind == "remove":
            _remove_at(doc, parts)
        elif kind in ("move", "copy"):
            source = _pointer(op["from"])
            value = _remove_at(doc, source) if kind == "move" else copy.deepcopy(_get_at(doc, source))
            doc = _add_at(doc, parts, value, replace=False)
        elif kind == "test":
            actual = _get_at(doc, parts)
            if actual != op.get("value"):
                raise ValueError(
                    f"testing value {op['path']} failed: is {json.dumps(actual)}, "
                    f"expected {json.dumps(op.get('value'))}"
                )
        else:
            raise ValueError(f"unknown JSON patch operation {kind!r}")
    return doc


# --- selectors ---------------------------------------------------------------------------------

Selector = Callable[[dict[str, Any]], bool]

_REQ_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_REQ_EQ = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=|>|<)\s*([\w./-]*)\s*$")
_REQ_EXISTS = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*$")


def _split_requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def parse_label_selector(text: str) -> Selector:
    """Parse a label selector (``a=b,c!=d,e in (x,y),f notin (z),g,!h,n>3``) into a predicate."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for requirement in _split_requirements(text):
        if match := _REQ_SET.match(requirement):
            key, op, raw = match.groups()
            values = frozenset(v.strip() for v in raw.split(",") if v.strip())
            checks.append(_label_in(key, values, negated=op == "notin"))
        elif match := _REQ_EQ.match(requirement):
            key, op, value = match.groups()
            if op in ("=", "==", "!="):
                checks.append(_label_equals(key, value, negated=op == "!="))
            else:
                try:
                    bound = int(value)
                except ValueError:
                    raise ValueError(f"{requirement.strip()!r}: {op} needs an integer value") from None
                checks.append(_label_compares(key, op, bound))
        elif match := _REQ_EXISTS.match(requirement):
            negated, key = match.groups()
            checks.append(_label_exists(key, negated=bool(negated)))
        else:
            raise ValueError(f"unable to parse requirement: {requirement.strip()!r}")

    def select(obj: dict[str, Any]) -> bool:
        labels = _meta(obj).get("labels") or {}
        return all(check(labels) for check in checks)

    return select


def _label_in(key: str, values: frozenset[str], *, negated: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) in values) != negated


def _label_equals(key: str, value: str, *, negated: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) == value) != negated


def _label_exists(key: str, *, negated: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (key in labels) != negated


def _label_compares(key: str, op: str, bound: int) -> Callable[[dict[str, str]], bool]:
    return lambda labels: _compare_label(labels.get(key), op, bound)


def _compare_label(value: str | None, op: str, bound: int) -> bool:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return False
    if number is None:
        return False
    return number > bound if op == ">" else number < bound


def parse_field_selector(text: str) -> Selector:
    """Parse a field selector (``metadata.name=x,status.phase!=Failed``) into a predicate."""
    checks: list[tuple[list[str], bool, str]] = []
    for requirement in _split_requirements(text):
        match = re.match(r"^\s*([\w.-]+)\s*(==|=|!=)\s*(.*?)\s*$", requirement)
        if match is None:
            raise ValueError(f"invalid field selector: {requirement.strip()!r}")
        path, op, value = match.groups()
        checks.append((path.split("."), op != "!=", value))

    def lookup(obj: Any, parts: list[str]) -> str:
        for part in parts:
            obj = obj.get(part) if isinstance(obj, dict) else None
        if obj is None:
            return ""
        if isinstance(obj, bool):
            return "true" if obj else "false"
        return str(obj)

    def select(obj: dict[str, Any]) -> bool:
        return all((lookup(obj, parts) == value) == equal for parts, equal, value in checks)

    return select


# --- watches -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    old: dict[str, Any] | None
    new: dict[str, Any]


@dataclasses.dataclass(eq=False)
class _Watch:
    selector: Selector
    queue: asyncio.Queue[_Event | None] = dataclasses.field(default_factory=asyncio.Queue)


def _view(event: _Event, selector: Selector) -> tuple[str, dict[str, Any]] | None:
    """What a watcher with this selector sees of the event (objects enter and leave selections)."""
    new_in = selector(event.new)
    if event.type == "DELETED":
        return ("DELETED", event.new) if new_in else None
    old_in = event.old is not None and selector(event.old)
    if event.type == "ADDED" or (new_in and not old_in):
        return ("ADDED", event.new) if new_in else None
    if new_in:
        return "MODIFIED", event.new
    if old_in:
        return "DELETED", event.new
    return None


# --- the emulator ------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class LocalApiEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with real API-server semantics for resource requests (see module doc)."""

    watch_history: int = 1000  # events kept per resource for watch resumption (older: 410 Gone)
    history_limit: int | None = None  # versions kept per object for :meth:`history` (None: all)
    retain_deleted: bool = True  # keep the history of deleted objects (tests and oracles want it)
    require_namespaces: bool = True  # creating in a missing namespace is 404, as in a cluster
    bookmark_interval: float = 30.0  # seconds between BOOKMARK events when a watcher asks for them
    keep_requests: int = 10_000  # kmock records every request; keep only the latest ones
    authorize_service_accounts: bool = True  # RBAC for service accounts (see mabeam.local.rbac)

    types: dict[tuple[str, str, str], ResourceType] = attrs.field(factory=dict, init=False)
    counts: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    audit: collections.deque[AuditRecord] = attrs.field(
        factory=lambda: collections.deque(maxlen=10_000), init=False
    )
    server_errors: list[BaseException] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _uids: dict[str, tuple[ResourceType, str | None, str]] = attrs.field(factory=dict, init=False)
    _events: dict[tuple[str, str], collections.deque[_Event]] = attrs.field(factory=dict, init=False)
    _expired: dict[tuple[str, str], int] = attrs.field(factory=dict, init=False)
    _watches: dict[tuple[str, str], set[_Watch]] = attrs.field(factory=dict, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for rtype in BUILTIN_TYPES:
            self.declare(rtype)
        self.create_object(BUILTIN_TYPES[0], None, {"metadata": {"name": "default"}})

    # ---- registry ----

    def declare(self, rtype: ResourceType) -> None:
        """Serve a resource type (and advertise it in discovery)."""
        self.types[rtype.group, rtype.version, rtype.plural] = rtype
        self.resources[f"{rtype.group_version}/{rtype.plural}"] = kmock.ResourceInfo(
            kind=rtype.kind,
            singular=rtype.singular or rtype.kind.lower(),
            namespaced=rtype.namespaced,
            verbs=set(_VERBS),
            shortnames=set(rtype.short_names),
            categories=set(rtype.categories),
            subresources=set(rtype.subresources),
        )

    def undeclare(self, group: str, plural: str) -> None:
        for key in [k for k in self.types if k[0] == group and k[2] == plural]:
            rtype = self.types.pop(key)
            del self.resources[f"{rtype.group_version}/{rtype.plural}"]

    def resolve(self, spec: str) -> ResourceType:
        """Find a type by ``group/version/plural``, ``v1/pods``, ``plural.group``, plural, kind."""
        parts = spec.split("/")
        if len(parts) == 3:
            found = self.types.get((parts[0], parts[1], parts[2]))
            if found:
                return found
        if len(parts) == 2:
            found = self.types.get(("", parts[0], parts[1]))
            if found:
                return found
        plural, _, group = spec.partition(".")
        for rtype in self.types.values():
            if group and (rtype.plural, rtype.group) == (plural, group):
                return rtype
        for rtype in self.types.values():
            if spec in (rtype.plural, rtype.kind, rtype.singular, *rtype.short_names):
                return rtype
        raise KeyError(f"no resource type {spec!r} is served")

    def _by_kind(self, api_version: str, kind: str) -> ResourceType:
        for rtype in self.types.values():
            if rtype.group_version == api_version and rtype.kind == kind:
                return rtype
        raise _ApiError(404, "NotFound", f"no kind {kind!r} is registered for version {api_version!r}")

    def _get_resources(self) -> list[kmock.resource]:
        # Discovery shows the declared types only (not kmock's guesses from stored objects).
        return [kmock.resource(key) for key in self.resources]

    # ---- storage ----

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def load(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (not a copy: never mutate it), or None."""
        key = (rtype.store_key, namespace if rtype.namespaced else None, name)
        if key not in self.objects:
            return None
        obj = self.objects[key]
        return None if obj.deleted else obj.raw

    def live(self, rtype: ResourceType, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored objects of a type (optionally in one namespace), sorted by namespace and name."""
        store_key = rtype.store_key
        found = []
        for (res, ns, name), obj in self.objects.items():
            if res == store_key and not obj.deleted and (namespace is None or ns == namespace):
                found.append(((ns or "", name), obj.raw))
        for _, raw in sorted(found, key=lambda item: item[0]):
            yield raw

    def present(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as served for this type's version."""
        if obj.get("apiVersion") == rtype.group_version:
            return obj
        return {**obj, "apiVersion": rtype.group_version}

    def _commit(
        self, rtype: ResourceType, old: dict[str, Any] | None, new: dict[str, Any], event: str
    ) -> dict[str, Any]:
        meta = new["metadata"]
        namespace, name = meta.get("namespace"), meta["name"]
        key = (rtype.store_key, namespace, name)
        rv = self._next_rv()
        if event == "DELETED":  # the last state, stamped with the deletion's version
            new = {**new, "metadata": {**meta, "resourceVersion": str(rv)}}
        else:
            meta["resourceVersion"] = str(rv)
        if key not in self.objects:
            self.objects[key] = []
        stored = self.objects[key]
        if event == "DELETED":
            stored.delete()
            self._uids.pop(meta.get("uid", ""), None)
        else:
            stored.create(new)
            self._uids[meta["uid"]] = (rtype, namespace, name)
        if self.history_limit is not None and len(stored.history) > self.history_limit:
            del stored.history[: len(stored.history) - self.history_limit]
        if event == "DELETED" and not self.retain_deleted:
            del self.objects[key]
        self._publish(rtype, _Event(rv, event, old, new))
        return new

    def _publish(self, rtype: ResourceType, event: _Event) -> None:
        key = (rtype.group, rtype.plural)
        history = self._events.setdefault(key, collections.deque(maxlen=self.watch_history))
        if history.maxlen is not None and len(history) == history.maxlen:
            self._expired[key] = history[0].rv
        history.append(event)
        for watch in self._watches.get(key, ()):
            watch.queue.put_nowait(event)

    # ---- writes (synchronous: no awaits inside, so each is atomic on the event loop) ----

    def create_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        strict: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Create an object (POST)."""
        if not isinstance(body, dict):
            raise _ApiError(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)[:5]}"
        name = meta.get("name")
        if not name:
            raise _invalid(
                rtype, "", [crd_schema.SchemaError("metadata.name", "Required value", "FieldValueRequired")]
            )
        if rtype.namespaced:
            if namespace is None:
                raise _ApiError(
                    405, "MethodNotAllowed", f"{rtype.qualified} are namespaced: POST to a namespace"
                )
            if meta.get("namespace") not in (None, namespace):
                raise _ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
            self._check_namespace(namespace)
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise _ApiError(400, "BadRequest", "resourceVersion should not be set on objects to be created")
        self._check_envelope(rtype, obj)
        self._check_name(rtype, name)
        if self.load(rtype, meta.get("namespace"), name) is not None:
            raise _ApiError(
                409,
                "AlreadyExists",
                f'{rtype.qualified} "{name}" already exists',
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        for key in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        if rtype.has_status:
            obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = rtype.group_version, rtype.kind
        obj = self._admit(rtype, obj, None, strict=strict)
        self._set_initial_status(rtype, obj)
        if dry_run:
            return obj
        self._commit(rtype, None, obj, "ADDED")
        if rtype.group == _CRD_GROUP:
            self._register_crd(obj)
        return obj

    def replace_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
        require_rv: bool = False,
    ) -> dict[str, Any]:
        """Update an object (PUT, and the last step of every PATCH)."""
        old = self.load(rtype, namespace, name)
        if old is None:
            raise _not_found(rtype, name)
        if not isinstance(body, dict):
            raise _ApiError(400, "BadRequest", "the request body must be a JSON object")
        new = copy.deepcopy(body)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if meta.get("name", name) != name:
            raise _ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if rtype.namespaced and meta.get("namespace", namespace) != namespace:
            raise _ApiError(
                400, "BadRequest", "the namespace of the object does not match the namespace on the URL"
            )
        rv = meta.get("resourceVersion")
        if rv is not None and str(rv) != _meta(old)["resourceVersion"]:
            raise _conflict(rtype, name, _STALE)
        if rv is None and require_rv:
            raise _invalid(
                rtype,
                name,
                [
                    crd_schema.SchemaError(
                        "metadata.resourceVersion", "Invalid value: 0: must be specified for an update"
                    )
                ],
            )
        self._check_envelope(rtype, new)
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif rtype.has_status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        meta, old_meta = new["metadata"], _meta(old)
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["name"] = name
        if rtype.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"], new["kind"] = rtype.group_version, rtype.kind
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise _invalid(
                    rtype,
                    name,
                    [
                        crd_schema.SchemaError(
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {sorted(added)}",
                            "FieldValueForbidden",
                        )
                    ],
                )
        new = self._admit(rtype, new, old, strict=strict)
        meta = new["metadata"]
        if self._spec_of(rtype, new) != self._spec_of(rtype, old):
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
        if new == old or dry_run:
            return new if dry_run else old
        self._commit(rtype, old, new, "MODIFIED")
        if rtype.group == _CRD_GROUP:
            self._register_crd(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, new)
        return new

    def patch_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Patch an object: merge, strategic-merge (as merge), JSON patch, or apply."""
        old = self.load(rtype, namespace, name)
        if content_type == "application/apply-patch+yaml" and old is None:
            if subresource:
                raise _not_found(rtype, name)
            if not isinstance(body, dict):
                raise _ApiError(400, "BadRequest", "an apply patch must be an object")
            return self.create_object(rtype, namespace, body, strict=strict, dry_run=dry_run)
        if old is None:
            raise _not_found(rtype, name)
        if content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ):
            if not isinstance(body, dict):
                raise _ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            patched = merge_patch(old, body)
        elif content_type == "application/json-patch+json":
            try:
                patched = json_patch(old, body)
            except ValueError as exc:
                raise _ApiError(422, "Invalid", f"the server rejected our request: {exc}") from None
        else:
            raise _ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {content_type}",
            )
        if not isinstance(patched, dict):
            raise _ApiError(422, "Invalid", "the patched object is not a JSON object")
        patched_rv = _meta(patched).get("resourceVersion")
        if patched_rv is not None and str(patched_rv) != _meta(old)["resourceVersion"]:
            raise _conflict(rtype, name, _STALE)
        return self.replace_object(
            rtype, namespace, name, patched, subresource=subresource, strict=strict, dry_run=dry_run
        )

    def delete_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete an object (or mark it for deletion when it has finalizers)."""
        options = options or {}
        old = self.load(rtype, namespace, name)
        if old is None:
            raise _not_found(rtype, name)
        old_meta = _meta(old)
        preconditions = options.get("preconditions") or {}
        want_rv = preconditions.get("resourceVersion")
        if want_rv is not None and str(want_rv) != old_meta["resourceVersion"]:
            raise _conflict(
                rtype,
                name,
                f"Precondition failed: ResourceVersion in precondition: {want_rv}, "
                f"ResourceVersion in object meta: {old_meta['resourceVersion']}",
            )
        want_uid = preconditions.get("uid")
        if want_uid is not None and want_uid != old_meta["uid"]:
            raise _conflict(
                rtype,
                name,
                f"Precondition failed: UID in precondition: {want_uid}, "
                f"UID in object meta: {old_meta['uid']}",
            )
        if dry_run:
            return old
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
        if old_meta.get("deletionTimestamp"):
            return old
        if rtype.group == "" and rtype.plural == "namespaces":
            return self._delete_namespace(rtype, old)
        if old_meta.get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["generation"] = int(old_meta.get("generation", 0)) + 1
            return self._commit(rtype, old, new, "MODIFIED")
        self._remove(rtype, old, orphan=orphan)
        return old

    def _delete_namespace(self, rtype: ResourceType, old: dict[str, Any]) -> dict[str, Any]:
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = _now()
        new.setdefault("status", {})["phase"] = "Terminating"
        self._commit(rtype, old, new, "MODIFIED")
        namespace = new["metadata"]["name"]
        for other in list(self.types.values()):
            if other.namespaced and other.version == (other.storage_version or other.version):
                for obj in list(self.live(other, namespace)):
                    self.delete_object(other, namespace, obj["metadata"]["name"])
        self._finish_namespace(namespace)
        return new

    def _finish_namespace(self, namespace: str) -> None:
        ns_type = BUILTIN_TYPES[0]
        ns = self.load(ns_type, None, namespace)
        if ns is None or not _meta(ns).get("deletionTimestamp") or _meta(ns).get("finalizers"):
            return
        for other in self.types.values():
            if other.namespaced and next(self.live(other, namespace), None) is not None:
                return
        self._remove(ns_type, ns)

    def _remove(self, rtype: ResourceType, obj: dict[str, Any], *, orphan: bool = False) -> None:
        """Really delete: the DELETED event, then garbage collection of dependents."""
        if self.load(rtype, _meta(obj).get("namespace"), _meta(obj)["name"]) is None:
            return
        self._commit(rtype, obj, obj, "DELETED")
        uid = _meta(obj)["uid"]
        if rtype.group == _CRD_GROUP:
            self._unregister_crd(obj)
        self._collect_garbage(uid, orphan=orphan)
        namespace = _meta(obj).get("namespace")
        if namespace:
            self._finish_namespace(namespace)

    def _collect_garbage(self, owner_uid: str, *, orphan: bool) -> None:
        dependents = []
        for (_, namespace, name), stored in list(self.objects.items()):
            if stored.deleted:
                continue
            refs = _meta(stored.raw).get("ownerReferences") or []
            if any(isinstance(ref, dict) and ref.get("uid") == owner_uid for ref in refs):
                dependents.append((namespace, name, stored.raw))
        for namespace, name, raw in dependents:
            rtype = self.resolve(f"{raw['apiVersion']}/{self._plural_of(raw)}")
            refs = _meta(raw).get("ownerReferences") or []
            remaining = [ref for ref in refs if ref.get("uid") != owner_uid]
            if orphan or any(ref.get("uid") in self._uids for ref in remaining):
                new = copy.deepcopy(raw)
                if remaining:
                    new["metadata"]["ownerReferences"] = remaining
                else:
                    new["metadata"].pop("ownerReferences", None)
                self._commit(rtype, raw, new, "MODIFIED")
            elif self.load(rtype, namespace, name) is not None:
                self.delete_object(rtype, namespace, name)

    def _plural_of(self, raw: dict[str, Any]) -> str:
        for rtype in self.types.values():
            if rtype.group_version == raw.get("apiVersion") and rtype.kind == raw.get("kind"):
                return rtype.plural
        raise KeyError(f"no type for {raw.get('apiVersion')}/{raw.get('kind')}")

    # ---- admission ----

    def _check_namespace(self, namespace: str) -> None:
        if not self.require_namespaces:
            return
        ns = self.load(BUILTIN_TYPES[0], None, namespace)
        if ns is None:
            raise _ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
        if _meta(ns).get("deletionTimestamp"):
            raise _ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _check_envelope(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind not in (None, rtype.kind):
            raise _ApiError(
                400, "BadRequest", f"the kind {kind!r} does not match the resource ({rtype.kind})"
            )
        if api_version not in (None, rtype.group_version):
            versions = {
                t.group_version
                for t in self.types.values()
                if (t.group, t.plural) == (rtype.group, rtype.plural)
            }
            if api_version not in versions:
                raise _ApiError(
                    400,
                    "BadRequest",
                    f"the apiVersion {api_version!r} does not match the resource ({rtype.group_version})",
                )

    def _check_name(self, rtype: ResourceType, name: str) -> None:
        label = rtype.plural == "namespaces" and rtype.group == ""
        pattern, limit = (_DNS_LABEL, 63) if label else (_DNS_SUBDOMAIN, 253)
        if len(name) > limit or not pattern.match(name):
            what = "RFC 1123 label" if label else "RFC 1123 subdomain"
            chars = "'-'" if label else "'-' or '.'"
            raise _invalid(
                rtype,
                name,
                [
                    crd_schema.SchemaError(
                        "metadata.name",
                        f"Invalid value: {json.dumps(name)}: a lowercase {what} must consist of lower case "
                        f"alphanumeric characters, {chars}, must start and end with "
                        f"an alphanumeric character, and be at most {limit} characters",
                    )
                ],
            )

    def _admit(
        self, rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, *, strict: bool
    ) -> dict[str, Any]:
        if rtype.group == _CRD_GROUP:
            self._check_crd(rtype, obj)
        if rtype.schema is None:
            return obj
        result, errors = crd_schema.validate(obj, rtype.schema, strict=strict, old=old)
        if errors:
            raise _invalid(rtype, _meta(obj).get("name", ""), errors)
        return result

    @staticmethod
    def _spec_of(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        skip = (
            ("metadata", "status", "apiVersion", "kind")
            if rtype.has_status
            else ("metadata", "apiVersion", "kind")
        )
        return {key: value for key, value in obj.items() if key not in skip}

    def _set_initial_status(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        if rtype.group == _CRD_GROUP:
            now = _now()
            obj["status"] = {
                "acceptedNames": copy.deepcopy(obj["spec"]["names"]),
                "storedVersions": [v["name"] for v in obj["spec"]["versions"] if v.get("storage")],
                "conditions": [
                    {
                        "type": kind,
                        "status": "True",
                        "reason": reason,
                        "lastTransitionTime": now,
                        "message": "",
                    }
                    for kind, reason in (
                        ("NamesAccepted", "NoConflicts"),
                        ("Established", "InitialNamesAccepted"),
                    )
                ],
            }
        if rtype.group != "":
            return
        if rtype.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        elif rtype.plural == "pods":
            obj["status"] = {"phase": "Pending"}

    # ---- custom resource definitions ----

    def _check_crd(self, rtype: ResourceType, crd: dict[str, Any]) -> None:
        errors: list[crd_schema.SchemaError] = []
        spec: dict[str, Any] = crd["spec"] if isinstance(crd.get("spec"), dict) else {}
        names: dict[str, Any] = spec["names"] if isinstance(spec.get("names"), dict) else {}
        for field in ("group",):
            if not spec.get(field):
                errors.append(crd_schema.SchemaError(f"spec.{field}", "Required value", "FieldValueRequired"))
        for field in ("plural", "kind"):
            if not names.get(field):
                errors.append(
                    crd_schema.SchemaError(f"spec.names.{field}", "Required value", "FieldValueRequired")
                )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            errors.append(
                crd_schema.SchemaError(
                    "spec.scope",
                    f"Unsupported value: {json.dumps(spec.get('scope'))}: "
                    'supported values: "Cluster", "Namespaced"',
                    "FieldValueNotSupported",
                )
            )
        versions: list[Any] = spec["versions"] if isinstance(spec.get("versions"), list) else []
        for index, version in enumerate(versions):
            if not isinstance(version, dict) or not isinstance(version.get("name"), str):
                errors.append(
                    crd_schema.SchemaError(
                        f"spec.versions[{index}].name", "Required value", "FieldValueRequired"
                    )
                )
        versions = [v for v in versions if isinstance(v, dict) and isinstance(v.get("name"), str)]
        if not versions:
            errors.append(
                crd_schema.SchemaError(
                    "spec.versions",
                    "Invalid value: null: must have exactly one version marked as storage version",
                )
            )
        elif sum(1 for v in versions if v.get("storage")) != 1:
            errors.append(
                crd_schema.SchemaError(
                    "spec.versions", "Invalid value: must have exactly one version marked as storage version"
                )
            )
        expected = f"{names.get('plural')}.{spec.get('group')}"
        name = _meta(crd).get("name")
        if names.get("plural") and spec.get("group") and name != expected:
            errors.append(
                crd_schema.SchemaError(
                    "metadata.name",
                    f'Invalid value: {json.dumps(name)}: must be spec.names.plural+"."+spec.group',
                )
            )
        for index, version in enumerate(versions):
            schema = (
                ((version.get("schema") or {}).get("openAPIV3Schema")) if isinstance(version, dict) else None
            )
            if isinstance(schema, dict):
                errors.extend(
                    dataclasses.replace(e, path=f"spec.versions[{index}].schema.{e.path}")
                    for e in crd_schema.check_rules(schema)
                )
        if errors:
            raise _invalid(rtype, name or "", errors)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec, names = crd["spec"], crd["spec"]["names"]
        storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
        self.undeclare(spec["group"], names["plural"])
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            self.declare(
                ResourceType(
                    group=spec["group"],
                    version=version["name"],
                    plural=names["plural"],
                    kind=names["kind"],
                    namespaced=spec["scope"] == "Namespaced",
                    singular=names.get("singular") or names["kind"].lower(),
                    short_names=tuple(names.get("shortNames") or ()),
                    categories=tuple(names.get("categories") or ()),
                    subresources=frozenset((version.get("subresources") or {}).keys()),
                    schema=schema,
                    storage_version=storage,
                    custom=True,
                )
            )

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
        served = [t for t in self.types.values() if (t.group, t.plural) == (group, plural)]
        if served:
            storage = next((t for t in served if t.version == (t.storage_version or t.version)), served[0])
            for obj in list(self.live(storage)):
                self._commit(storage, obj, obj, "DELETED")
                self._uids.pop(_meta(obj).get("uid", ""), None)
        if group and plural:
            self.undeclare(group, plural)

    def install_crd(self, crd: dict[str, Any]) -> dict[str, Any]:
        """Create (or replace) a CRD directly; raises InvalidSpecError if the server rejects it."""
        crd_type = self.types[_CRD_GROUP, "v1", "customresourcedefinitions"]
        name = _meta(crd).get("name", "")
        try:
            if self.load(crd_type, None, name) is None:
                return self.create_object(crd_type, None, crd)
            body = copy.deepcopy(crd)
            body.setdefault("metadata", {}).pop("resourceVersion", None)
            return self.replace_object(crd_type, None, name, body)
        except _ApiError as exc:
            causes = exc.details.get("causes") or [{}]
            raise InvalidSpecError(exc.message, path=causes[0].get("field", "")) from None

    # ---- HTTP ----

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's URL parser mistakes /api/v1/namespaces[/name] for a namespace scope (and fails on
        # the bare list), so resource URLs are parsed here; discovery goes through kmock as is.
        parsed = parse_resource_path(raw_request.path)
        if parsed is None:
            return await super().__call__(raw_request)
        group, version, namespace, plural, name, subresource = parsed
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        request = kmock.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            resource=kmock.resource(group, version, plural),
            namespace=namespace,
            name=name,
            subresource=subresource,
        )
        self._requests.append(request)
        if len(self._requests) > self.keep_requests:
            del self._requests[: len(self._requests) - self.keep_requests // 2]
        return await self._handle(request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or not request.resource.plural:
            self.counts["discovery"] += 1
            return await kmock.KubernetesScaffold._handle(self, request)
        verb = self._verb(request)
        self.counts[verb] += 1
        user = identify(request.headers)
        code = 200
        audited = False
        try:
            self._authorize(user, verb, request)
            if verb == "watch":
                # A watch is audited when it starts: a stream may outlive whoever reads the log.
                self.audit.append(self._audit_record(request, verb, user, 200))
                audited = True
                return await self._stream_watch(request)
            payload, code = self._serve(request, verb)
            return _json_response(payload, code)
        except _ApiError as exc:
            code = exc.code
            return _json_response(exc.status(), exc.code)
        except Exception as exc:
            code = 500
            logger.exception("The local API server failed on %s %s", request.method, request.url)
            self.server_errors.append(exc)
            error = _ApiError(500, "InternalError", f"Internal error occurred: {exc!r}")
            return _json_response(error.status(), 500)
        finally:
            if not audited:
                self.audit.append(self._audit_record(request, verb, user, code))

    @staticmethod
    def _audit_record(request: kmock.Request, verb: str, user: str, code: int) -> AuditRecord:
        res = request.resource
        assert res is not None  # only resource requests are audited
        return AuditRecord(
            verb=verb,
            resource=f"{res.group}/{res.version}/{res.plural}",
            namespace=request.namespace,
            name=request.name,
            subresource=request.subresource,
            user=user,
            code=code,
        )

    def _rbac_objects(self, kind: str, namespace: str | None) -> Iterator[dict[str, Any]]:
        return self.live(self._by_kind("rbac.authorization.k8s.io/v1", kind), namespace)

    def _authorize(self, user: str, verb: str, request: kmock.Request) -> None:
        """403 Forbidden unless RBAC allows a service account's request (others pass)."""
        if not self.authorize_service_accounts or not user.startswith(rbac.SERVICE_ACCOUNT_PREFIX):
            return
        res = request.resource
        assert res is not None  # a resource request
        asked = rbac.Request(
            user=user,
            verb=verb,
            api_group=res.group or "",
            resource=res.plural or "",
            subresource=request.subresource,
            namespace=request.namespace,
            name=request.name or self._selected_name(verb, request),
        )
        if not rbac.Authorizer(self._rbac_objects).allows(asked):
            details = {"name": request.name or "", "group": asked.api_group, "kind": asked.resource}
            raise _ApiError(403, "Forbidden", asked.describe(), details)

    @staticmethod
    def _selected_name(verb: str, request: kmock.Request) -> str | None:
        """A list/watch restricted to one name by its field selector is a request for that name."""
        if verb not in ("list", "watch"):
            return None
        return rbac.name_from_field_selector(str(request.params.get("fieldSelector") or ""))

    @staticmethod
    def _verb(request: kmock.Request) -> str:
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        if method == "GET":
            if request.params.get("watch") in ("true", "1"):
                return "watch"
            return "get" if request.name else "list"
        if method == "DELETE":
            return "delete" if request.name else "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())

    def _request_type(self, request: kmock.Request) -> ResourceType:
        res = request.resource
        assert res is not None and res.plural  # checked by the caller
        rtype = self.types.get((res.group or "", res.version or "", res.plural))
        if rtype is None:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource")
        if request.subresource and request.subresource not in rtype.subresources:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource")
        if request.namespace is not None and not rtype.namespaced:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource")
        return rtype

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        if not request.body:
            return None
        try:
            return json.loads(request.body)
        except ValueError:
            try:
                return yaml.safe_load(request.body)
            except yaml.YAMLError:
                raise _ApiError(400, "BadRequest", "the request body is neither JSON nor YAML") from None

    def _serve(self, request: kmock.Request, verb: str) -> tuple[Any, int]:
        rtype = self._request_type(request)
        params = request.params
        strict = params.get("fieldValidation") == "Strict"
        dry_run = params.get("dryRun") == "All"
        ns, name = request.namespace, request.name
        if verb == "get":
            assert name is not None
            obj = self.load(rtype, ns, name)
            if obj is None:
                raise _not_found(rtype, name)
            return self.present(rtype, obj), 200
        if verb == "list":
            return self._list(rtype, ns, params), 200
        if verb == "create":
            if name:
                raise _ApiError(405, "MethodNotAllowed", "POST to a named object is not allowed")
            return self.present(
                rtype, self.create_object(rtype, ns, self._body(request), strict=strict, dry_run=dry_run)
            ), 201
        assert name is not None or verb == "deletecollection"
        if verb == "update":
            assert name is not None
            obj = self.replace_object(
                rtype,
                ns,
                name,
                self._body(request),
                subresource=request.subresource,
                strict=strict,
                dry_run=dry_run,
                require_rv=rtype.custom,
            )
            return self.present(rtype, obj), 200
        if verb == "patch":
            assert name is not None
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            obj = self.patch_object(
                rtype,
                ns,
                name,
                content_type,
                self._body(request),
                subresource=request.subresource,
                strict=strict,
                dry_run=dry_run,
            )
            return self.present(rtype, obj), 200
        options = self._body(request)
        options = options if isinstance(options, dict) else {}
        if "propagationPolicy" in params:
            options.setdefault("propagationPolicy", params["propagationPolicy"])
        if verb == "delete":
            assert name is not None
            return self.present(rtype, self.delete_object(rtype, ns, name, options, dry_run=dry_run)), 200
        if verb == "deletecollection":
            selector = self._selector(rtype, ns, params)
            deleted = [
                self.delete_object(
                    rtype, _meta(obj).get("namespace"), _meta(obj)["name"], options, dry_run=dry_run
                )
                for obj in list(self.live(rtype, ns))
                if selector(obj)
            ]
            return self._list_payload(rtype, [self.present(rtype, o) for o in deleted]), 200
        raise _ApiError(405, "MethodNotAllowed", f"the server does not allow this method ({request.method})")

    def _selector(self, rtype: ResourceType, namespace: str | None, params: Any) -> Selector:
        try:
            labels = parse_label_selector(params.get("labelSelector", ""))
            fields = parse_field_selector(params.get("fieldSelector", ""))
        except ValueError as exc:
            raise _ApiError(400, "BadRequest", str(exc)) from None
        return lambda obj: (
            labels(obj) and fields(obj) and (namespace is None or _meta(obj).get("namespace") == namespace)
        )

    def _list_payload(self, rtype: ResourceType, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": rtype.group_version,
            "kind": f"{rtype.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _list(self, rtype: ResourceType, namespace: str | None, params: Any) -> dict[str, Any]:
        selector = self._selector(rtype, namespace, params)
        items = [self.present(rtype, obj) for obj in self.live(rtype, namespace) if selector(obj)]
        start = 0
        if params.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(params["continue"].encode()))
                start = int(token["start"])
            except (ValueError, KeyError, TypeError):
                raise _ApiError(400, "BadRequest", "invalid continue token") from None
        payload = self._list_payload(rtype, items[start:])
        limit = int(params.get("limit") or 0)
        if limit > 0 and len(items) - start > limit:
            payload["items"] = items[start : start + limit]
            token = json.dumps({"start": start + limit}).encode()
            payload["metadata"]["continue"] = base64.urlsafe_b64encode(token).decode()
            payload["metadata"]["remainingItemCount"] = len(items) - start - limit
        return payload

    async def _stream_watch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        rtype = self._request_type(request)
        params = dict(request.params)
        if request.name:
            params["fieldSelector"] = ",".join(
                filter(None, [params.get("fieldSelector"), f"metadata.name={request.name}"])
            )
        selector = self._selector(rtype, request.namespace, params)
        timeout = float(params.get("timeoutSeconds") or 0) or None
        bookmarks = params.get("allowWatchBookmarks") == "true"
        since_text = params.get("resourceVersion") or "0"
        try:
            since = int(since_text)
        except ValueError:
            raise _ApiError(400, "BadRequest", f"invalid resourceVersion {since_text!r}") from None
        key = (rtype.group, rtype.plural)

        # Collect the backlog and subscribe with no await in between: nothing is missed or doubled.
        backlog: list[tuple[str, dict[str, Any]]] = []
        if since == 0:
            backlog = [("ADDED", obj) for obj in self.live(rtype, request.namespace) if selector(obj)]
        elif since < self._expired.get(key, 0):
            error = _ApiError(410, "Expired", f"too old resource version: {since} ({self._expired[key] + 1})")
            backlog = [("ERROR", error.status())]
        else:
            for past in self._events.get(key, ()):
                seen = _view(past, selector) if past.rv > since else None
                if seen is not None:
                    backlog.append(seen)
        watch = _Watch(selector=selector)
        expired = bool(backlog) and backlog[0][0] == "ERROR"
        if not expired:
            self._watches.setdefault(key, set()).add(watch)

        assert request._raw_request is not None
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            await response.prepare(request._raw_request)
            for kind, obj in backlog:
                shown = obj if kind == "ERROR" else self.present(rtype, obj)
                await response.write(json.dumps({"type": kind, "object": shown}).encode() + b"\n")
            if expired:
                await response.write_eof()
                return response
            while not self._closing:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    wait = min(wait, left) if wait is not None else left
                try:
                    event: _Event | None = await asyncio.wait_for(watch.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        bookmark = {
                            "apiVersion": rtype.group_version,
                            "kind": rtype.kind,
                            "metadata": {"resourceVersion": str(self._rv)},
                        }
                        await response.write(
                            json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n"
                        )
                    continue
                if event is None:
                    break
                seen = _view(event, selector)
                if seen is not None:
                    line = {"type": seen[0], "object": self.present(rtype, seen[1])}
                    await response.write(json.dumps(line).encode() + b"\n")
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watches.get(key, set()).discard(watch)
        return response

    def close_watches(self) -> None:
        """End every open watch stream (on shutdown)."""
        self._closing = True
        for watches in self._watches.values():
            for watch in watches:
                watch.queue.put_nowait(None)

    async def _serve_version(self, request: kmock.Request) -> Any:
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and request.resource is not None and request.resource.group == "":
            payload["groupVersion"] = request.resource.version  # "v1", not kmock's "/v1"
        for entry in payload.get("resources", []) if isinstance(payload, dict) else []:
            if "/" in entry["name"]:  # a subresource: no short names of its own, as in a real server
                entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return payload

    async def _serve_server_version(self, request: kmock.Request) -> Any:
        return {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-mabeam-local",
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T00:00:00Z",
            "goVersion": "",
            "compiler": "python",
            "platform": "linux/amd64",
        }


def parse_resource_path(path: str) -> tuple[str, str, str | None, str, str | None, str | None] | None:
    """Split a resource URL into (group, version, namespace, plural, name, subresource).

    None for anything that is not a resource URL (discovery, /version, /openapi, ...).
    """
    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return group, version, namespace, plural, name, subresource


def identify(headers: Any) -> str:
    """The caller's user name: ``Impersonate-User``, or from a ``Bearer`` token, or anonymous."""
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    if lowered.get("impersonate-user"):
        return str(lowered["impersonate-user"])
    auth = str(lowered.get("authorization", ""))
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
        if token.startswith("sa:") and token.count(":") == 2:
            _, namespace, name = token.split(":")
            return f"system:serviceaccount:{namespace}:{name}"
        if token.startswith("user:"):
            return token[5:]
    return "system:anonymous"


# --- the entry point ---------------------------------------------------------------------------


class LocalApiServer:
    """The local API server, as an async context manager (``async with LocalApiServer() as api``)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        watch_history: int = 1000,
        history_limit: int | None = None,
        retain_deleted: bool = True,
        require_namespaces: bool = True,
        bookmark_interval: float = 30.0,
        authorize_service_accounts: bool = True,
    ) -> None:
        self.emulator = LocalApiEmulator(
            watch_history=watch_history,
            history_limit=history_limit,
            retain_deleted=retain_deleted,
            require_namespaces=require_namespaces,
            bookmark_interval=bookmark_interval,
            authorize_service_accounts=authorize_service_accounts,
        )
        self._host, self._port = host, port
        self._server: kmock.Server | None = None

    async def __aenter__(self) -> Self:
        await self.emulator.__aenter__()
        self._server = kmock.Server(self.emulator, host=self._host, port=self._port or None)
        await self._server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.emulator.close_watches()
        await asyncio.sleep(0)  # let the streams see the end before the server goes
        if self._server is not None:
            await self._server.__aexit__(exc_type, exc, tb)
            self._server = None
        await self.emulator.__aexit__(exc_type, exc, tb)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local API server is not running (use `async with`)")
        return str(self._server.url).rstrip("/")

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the local API server is not running (use `async with`)")
        return self._server.port

    def kubeconfig(self, path: str | pathlib.Path, *, token: str | None = "user:admin") -> pathlib.Path:
        """Write a kubeconfig (insecure, no TLS) pointing at this server; return its path.

        ``token="sa:<namespace>:<name>"`` makes every request act as that service account.
        """
        return write_kubeconfig(path, self.url, token=token)

    # ---- direct access for tests and oracles (no HTTP) ----

    def install_crds(self, crds: Iterable[dict[str, Any]]) -> None:
        """Create or replace CRDs, registering their kinds; InvalidSpecError if one is invalid."""
        for crd in crds:
            self.emulator.install_crd(crd)

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """A copy of a stored object, or None. ``resource``: ``v1/pods``, ``agents.mabeam.io``..."""
        rtype = self.emulator.resolve(resource)
        obj = self.emulator.load(rtype, namespace if rtype.namespaced else None, name)
        return None if obj is None else copy.deepcopy(self.emulator.present(rtype, obj))

    def objects(
        self, resource: str, namespace: str | None = None, *, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Copies of the stored objects of a resource, sorted by namespace and name."""
        rtype = self.emulator.resolve(resource)
        select = parse_label_selector(label_selector)
        return [
            copy.deepcopy(self.emulator.present(rtype, obj))
            for obj in self.emulator.live(rtype, namespace)
            if select(obj)
        ]

    def history(self, resource: str, name: str, namespace: str | None = None) -> list[dict[str, Any] | None]:
        """Every stored version of an object, oldest first; ``None`` marks a deletion."""
        rtype = self.emulator.resolve(resource)
        key = (rtype.store_key, namespace if rtype.namespaced else None, name)
        if key not in self.emulator.objects:
            return []
        return [None if v is None else copy.deepcopy(v.raw) for v in self.emulator.objects[key].history]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object directly (its type from apiVersion and kind)."""
        rtype = self.emulator._by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        namespace = _meta(obj).get("namespace") or ("default" if rtype.namespaced else None)
        try:
            return copy.deepcopy(self.emulator.create_object(rtype, namespace, obj))
        except _ApiError as exc:
            raise InvalidSpecError(exc.message) from None

    @property
    def resource_version(self) -> int:
        """The current (global) resourceVersion."""
        return self.emulator._rv

    @property
    def request_counts(self) -> dict[str, int]:
        """Requests served, by verb (get, list, watch, create, update, patch, delete, discovery)."""
        return dict(self.emulator.counts)

    @property
    def audit(self) -> list[AuditRecord]:
        """The latest resource requests, oldest first, with the caller's identity."""
        return list(self.emulator.audit)

    @property
    def server_errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the server (500s); a test can assert this is empty."""
        return list(self.emulator.server_errors)

    # ---- running without an event loop of one's own ----

    @classmethod
    def run_forever(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 8001,
        kubeconfig: str | pathlib.Path | None = None,
        crds: Iterable[dict[str, Any]] = (),
        on_ready: Callable[[LocalApiServer], None] | None = None,
    ) -> None:
        """Serve until interrupted (Ctrl-C). For ``mabeam local``."""

        async def serve() -> None:
            async with cls(host=host, port=port, retain_deleted=False, history_limit=20) as api:
                api.install_crds(crds)
                if kubeconfig is not None:
                    api.kubeconfig(kubeconfig)
                if on_ready is not None:
                    on_ready(api)
                await asyncio.Event().wait()

        try:
            asyncio.run(serve())
        except KeyboardInterrupt:
            pass

    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> ThreadedApiServer:
        """Start a server in a background thread; stop it with ``.stop()`` (or ``with``)."""
        return ThreadedApiServer(cls(**kwargs))


class ThreadedApiServer:
    """A :class:`LocalApiServer` running on its own event loop in a daemon thread."""

    def __init__(self, api: LocalApiServer) -> None:
        self.api = api
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mabeam-local-apiserver", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                async with self.api:
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                self._failure = exc
                self._ready.set()
                raise

        try:
            self._loop.run_until_complete(serve())
        except BaseException:  # reported to the starting thread through self._failure
            logger.debug("the threaded local API server ended with an error", exc_info=True)
        finally:
            self._loop.close()

    @property
    def url(self) -> str:
        return self.api.url

    def kubeconfig(self, path: str | pathlib.Path, *, token: str | None = "user:admin") -> pathlib.Path:
        return self.api.kubeconfig(path, token=token)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (the state is not thread-safe) and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_kubeconfig(path: str | pathlib.Path, url: str, *, token: str | None = "user:admin") -> pathlib.Path:
    """Write an insecure kubeconfig for ``url`` (context ``mabeam-local``)."""
    user: dict[str, Any] = {"token": token} if token else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mabeam-local", "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "mabeam-local", "user": user}],
        "contexts": [
            {
                "name": "mabeam-local",
                "context": {"cluster": "mabeam-local", "user": "mabeam-local", "namespace": "default"},
            }
        ],
        "current-context": "mabeam-local",
        "preferences": {},
    }
    target = pathlib.Path(path)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
