"""The store and its versions: the types served, the objects, ``resourceVersion`` and events.

One global, monotonically increasing ``resourceVersion``; every committed change is an event
that the open watches receive and that a later watch can resume from (``watch_history`` of them
per resource; older ones are 410 Gone).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Iterator
from typing import Any

import attrs
import kmock

from ._selectors import Selector
from ._types import _VERBS, AuditRecord, ResourceType, _ApiError


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


_INT64 = 2**63


def _as_stored(value: Any) -> Any:
    """JSON numbers as a real API server stores them, changed in place: it decodes a number
    that parses as an int64 to an integer, anything else to a float64, and encodes a float64
    that is integral without a fraction (16.0 -> 16). So after one round trip, 16.0 reads
    back as 16."""
    if isinstance(value, float) and value.is_integer() and -_INT64 <= value < _INT64:
        return int(value)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list, float)):
                value[key] = _as_stored(item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, (dict, list, float)):
                value[i] = _as_stored(item)
    return value


@attrs.define(kw_only=True)
class Store(kmock.KubernetesEmulator):
    """The emulator's state: the types served, the stored objects and their versions, the events."""

    watch_history: int = 1000  # events kept per resource for watch resumption (older: 410 Gone)
    history_limit: int | None = None  # versions kept per object for :meth:`history` (None: all)
    retain_deleted: bool = True  # keep the history of deleted objects (tests and oracles want it)
    require_namespaces: bool = True  # creating in a missing namespace is 404, as in a cluster
    bookmark_interval: float = 30.0  # seconds between BOOKMARK events when a watcher asks for them
    keep_requests: int = 10_000  # kmock records every request; keep only the latest ones
    authorize: bool = True  # RBAC for every caller but system:masters (see mabeam.local.rbac)

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
    #: The live objects by type and namespace ("" for cluster-scoped): an index, so that a list
    #: or an RBAC lookup costs what it returns, not what the store holds.
    _live: dict[Any, dict[str, dict[str, None]]] = attrs.field(factory=dict, init=False)
    #: Bumped on every change of a Role, ClusterRole or binding (RBAC decisions are cached).
    _rbac_generation: int = attrs.field(default=0, init=False)

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
        by_namespace = self._live.get(rtype.store_key)
        if not by_namespace:
            return
        if namespace is not None:
            spaces = [namespace] if namespace in by_namespace else []
        else:
            spaces = sorted(by_namespace)
        for ns in spaces:
            for name in sorted(by_namespace.get(ns, ())):
                obj = self.objects[(rtype.store_key, ns or None, name)]
                if not obj.deleted:
                    yield obj.raw

    def present(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as served for this type's version."""
        if obj.get("apiVersion") == rtype.group_version:
            return obj
        return {**obj, "apiVersion": rtype.group_version}

    def _commit(
        self, rtype: ResourceType, old: dict[str, Any] | None, new: dict[str, Any], event: str
    ) -> dict[str, Any]:
        if event != "DELETED":
            _as_stored(new)
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
        names = self._live.setdefault(rtype.store_key, {}).setdefault(namespace or "", {})
        if event == "DELETED":
            stored.delete()
            self._uids.pop(meta.get("uid", ""), None)
            names.pop(name, None)
        else:
            stored.create(new)
            self._uids[meta["uid"]] = (rtype, namespace, name)
            names[name] = None
        if rtype.group == "rbac.authorization.k8s.io":
            self._rbac_generation += 1
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
