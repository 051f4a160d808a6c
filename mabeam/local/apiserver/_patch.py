"""Merge patches (RFC 7386) and JSON patches (RFC 6902, applied by :mod:`jsonpatch`)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer


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


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) with :mod:`jsonpatch`;
    raises ValueError with the message the API server gives (all or nothing)."""
    if not isinstance(ops, list):
        raise ValueError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError(f"malformed JSON patch operation: {op!r}")
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            actual = jsonpointer.resolve_pointer(doc, op["path"], None)
            raise ValueError(
                f"testing value {op['path']} failed: is {json.dumps(actual)}, "
                f"expected {json.dumps(op.get('value'))}"
            ) from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
            raise ValueError(f"{op['op']} {op['path']}: {exc}") from None
    return doc
