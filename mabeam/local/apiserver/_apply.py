"""Server-side apply: ``managedFields``, conflicts between field managers, removal of the fields
a manager stops applying.

A field set is a set of paths (tuples of map keys); a path ends at a scalar, a list (lists are
atomic: owned whole, as ``x-kubernetes-list-type: atomic``) or an empty map. In
``metadata.managedFields`` it is written as Kubernetes' ``FieldsV1`` (``{"f:spec": {"f:a": {}}}``).

An apply (``PATCH`` with ``application/apply-patch+yaml``, a ``fieldManager`` required):

* conflicts: a field the configuration sets to another value than the live one, owned by
  another manager, is a 409 ``Conflict`` naming the manager and the field, unless ``force=true``
  (the field then changes owner);
* the fields are merged into the live object and owned by the manager (operation ``Apply``);
* a field the manager applied before and no longer applies is removed, unless another manager
  owns it too (the schema's default comes back by admission, as on a real server).

Other writes (``create``, ``update``, merge and JSON patches) of an object that has
``managedFields`` record the fields they change for their manager (``fieldManager``, else the
client's user agent) with operation ``Update``, and take them from the other managers: a later
apply by someone else conflicts with them. (Objects never applied server-side carry no
``managedFields``: nothing here reads them.)
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Iterable
from typing import Any

import attrs

from ._types import _STALE, ResourceType, _ApiError, _conflict, _meta, _not_found, _now
from ._writes import Writes

__all__ = ["REQUEST_MANAGER", "ServerSideApply", "field_paths", "fields_v1", "from_fields_v1"]

Path = tuple[str, ...]

#: The field manager of the request being served (``fieldManager``, else from the user agent).
REQUEST_MANAGER: contextvars.ContextVar[str] = contextvars.ContextVar("mabeam_request_manager", default="")

#: Set by the server, never owned: identity and bookkeeping of the object.
_SERVER_FIELDS: frozenset[Path] = frozenset(
    {
        ("apiVersion",),
        ("kind",),
        ("metadata", "name"),
        ("metadata", "namespace"),
        ("metadata", "uid"),
        ("metadata", "resourceVersion"),
        ("metadata", "generation"),
        ("metadata", "creationTimestamp"),
        ("metadata", "deletionTimestamp"),
        ("metadata", "deletionGracePeriodSeconds"),
        ("metadata", "managedFields"),
        ("metadata", "selfLink"),
    }
)


def _in_scope(path: Path, subresource: str | None) -> bool:
    if path in _SERVER_FIELDS or not path:
        return False
    return (path[0] == "status") == (subresource == "status")


def field_paths(obj: Any, subresource: str | None = None, prefix: Path = ()) -> set[Path]:
    """The leaf paths of ``obj`` (maps are walked; lists, scalars and empty maps are leaves)
    that a write of the main resource (``subresource=None``) or of ``status`` may own."""
    if isinstance(obj, dict) and (obj or not prefix):
        paths: set[Path] = set()
        for key, value in obj.items():
            path = (*prefix, str(key))
            if _in_scope(path, subresource):
                paths |= field_paths(value, subresource, path)
        return paths
    return {prefix}


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """A field set as ``FieldsV1``."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    """The paths of a ``FieldsV1`` tree (keys other than ``f:`` ones are not ours: skipped)."""
    if not isinstance(tree, dict):
        return set()
    children = {k[2:]: v for k, v in tree.items() if isinstance(k, str) and k.startswith("f:")}
    if not children:
        return {prefix} if prefix else set()
    paths: set[Path] = set()
    for key, sub in children.items():
        paths |= from_fields_v1(sub, (*prefix, key))
    return paths


_MISSING = object()


def _value(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _overlaps(a: Path, b: Path) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)


def _remove(obj: dict[str, Any], path: Path, keep: set[Path]) -> None:
    """Remove ``path``, then the maps it leaves empty unless someone owns them."""
    parents: list[tuple[dict[str, Any], str]] = []
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for depth in range(len(parents) - 1, -1, -1):
        parent, key = parents[depth]
        if parent[key] or path[: depth + 1] in keep:
            break
        del parent[key]


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    entries = _meta(obj).get("managedFields")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _entry(
    rtype: ResourceType, manager: str, operation: str, paths: set[Path], subresource: str | None
) -> dict[str, Any]:
    entry = {
        "manager": manager,
        "operation": operation,
        "apiVersion": rtype.group_version,
        "time": _now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(paths),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _same_owner(entry: dict[str, Any], manager: str, operation: str, subresource: str | None) -> bool:
    return (entry.get("manager"), entry.get("operation"), entry.get("subresource") or None) == (
        manager,
        operation,
        subresource,
    )


def record_update(
    rtype: ResourceType, old: dict[str, Any], new: dict[str, Any], manager: str, subresource: str | None
) -> list[dict[str, Any]]:
    """The ``managedFields`` after a non-apply write from ``old`` to ``new`` by ``manager``
    (unchanged entries stay as they are, in their order)."""
    before, after = field_paths(old, subresource), field_paths(new, subresource)
    changed = {p for p in after if _value(old, p) != _value(new, p)}
    gone = before - after
    result: list[dict[str, Any]] = []
    found = False
    for entry in _entries(old):
        paths = from_fields_v1(entry.get("fieldsV1"))
        if _same_owner(entry, manager, "Update", subresource):
            found = True
            kept = (paths - gone) | changed
        else:
            kept = {p for p in paths if not any(_overlaps(p, c) for c in changed) and p not in gone}
        if kept == paths:
            result.append(entry)
        elif kept:
            result.append(
                _entry(rtype, str(entry.get("manager")), str(entry.get("operation")), kept, subresource)
                if _same_owner(entry, manager, "Update", subresource)
                else {**entry, "fieldsV1": fields_v1(kept), "time": _now()}
            )
    if not found and changed:
        result.append(_entry(rtype, manager, "Update", changed, subresource))
    return result


@attrs.define(kw_only=True)
class ServerSideApply(Writes):
    """Server-side apply, and field ownership recorded by the other writes (see the module doc)."""

    def _record_fields(
        self, rtype: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None
    ) -> None:
        if _entries(old):
            manager = REQUEST_MANAGER.get() or "unknown"
            new["metadata"]["managedFields"] = record_update(rtype, old, new, manager, subresource)

    def apply_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        manager: str,
        force: bool = False,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """``PATCH`` with ``application/apply-patch+yaml``: apply ``body`` as ``manager``."""
        if not manager:
            raise _ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                "is required for apply patch",
            )
        if not isinstance(body, dict):
            raise _ApiError(400, "BadRequest", "an apply patch must be an object")
        for key, want in (("apiVersion", rtype.group_version), ("kind", rtype.kind)):
            if body.get(key) != want:
                raise _ApiError(
                    400,
                    "BadRequest",
                    f"the apply configuration's {key} must be {want!r}, not {body.get(key)!r}",
                )
        meta = _meta(body)
        if meta.get("name", name) != name:
            raise _ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        applied = field_paths(body, subresource)
        old = self.load(rtype, namespace, name)
        if old is None:
            if subresource:
                raise _not_found(rtype, name)
            created = copy.deepcopy(body)
            created.setdefault("metadata", {})["managedFields"] = [
                _entry(rtype, manager, "Apply", applied, None)
            ]
            return self.create_object(rtype, namespace, created, strict=strict, dry_run=dry_run)

        entries = _entries(old)
        owned = {id(e): from_fields_v1(e.get("fieldsV1")) for e in entries}
        mine = next((e for e in entries if _same_owner(e, manager, "Apply", subresource)), None)
        others = [e for e in entries if e is not mine]
        conflicts: list[tuple[str, str, Path]] = []
        for path in sorted(applied):
            if _value(old, path) == _value(body, path):
                continue
            for entry in others:
                if any(_overlaps(path, p) for p in owned[id(entry)]):
                    conflicts.append((str(entry.get("manager")), str(entry.get("apiVersion", "")), path))
        if conflicts and not force:
            raise _apply_conflict(rtype, name, conflicts)

        new = copy.deepcopy(old)
        taken = {c[2] for c in conflicts}
        result: list[dict[str, Any]] = []
        still_owned = set(applied)
        for entry in entries:
            if entry is mine:
                result.append(entry)  # replaced below if the apply changes anything
                continue
            paths = {p for p in owned[id(entry)] if not any(_overlaps(p, t) for t in taken)}
            still_owned |= paths
            if paths == owned[id(entry)]:
                result.append(entry)
            elif paths:
                result.append({**entry, "fieldsV1": fields_v1(paths), "time": _now()})
        if mine is None:
            result.append(_entry(rtype, manager, "Apply", applied, subresource))
        for path in sorted(applied):
            _set(new, path, _value(body, path))
        previous = owned[id(mine)] if mine is not None else set()
        for path in sorted(previous - applied, key=len, reverse=True):
            if not any(_overlaps(path, p) for p in still_owned):
                _remove(new, path, still_owned)
        if mine is not None and (owned[id(mine)] != applied or _content(new) != _content(old)):
            # A no-op apply leaves the object as it is (no new resourceVersion, no event).
            result[result.index(mine)] = _entry(rtype, manager, "Apply", applied, subresource)
        new["metadata"]["managedFields"] = result
        new["metadata"].pop("resourceVersion", None)
        if meta.get("resourceVersion") is not None:  # a precondition, as in other patches
            if str(meta["resourceVersion"]) != _meta(old)["resourceVersion"]:
                raise _conflict(rtype, name, _STALE)
            new["metadata"]["resourceVersion"] = meta["resourceVersion"]
        return self.replace_object(
            rtype, namespace, name, new, subresource=subresource, strict=strict, dry_run=dry_run, managed=True
        )


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without its managedFields."""
    meta = {k: v for k, v in _meta(obj).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def _apply_conflict(rtype: ResourceType, name: str, conflicts: list[tuple[str, str, Path]]) -> _ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{manager}" using {version}',
            "field": "." + ".".join(path),
        }
        for manager, version, path in conflicts
    ]
    count = f"{len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}"
    listed = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
    return _ApiError(
        409,
        "Conflict",
        f"Apply failed with {count}: {listed.removeprefix('- ')}"
        if len(conflicts) == 1
        else f"Apply failed with {count}:\n{listed}",
        {"name": name, "group": rtype.group, "kind": rtype.plural, "causes": causes},
    )
