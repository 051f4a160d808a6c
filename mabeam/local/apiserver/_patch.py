"""Merge patches (RFC 7386) and JSON patches (RFC 6902), as the API server applies them."""

from __future__ import annotations

import copy
import json
from typing import Any


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
