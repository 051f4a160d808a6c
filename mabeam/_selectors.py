"""Kubernetes label selectors: a pure matcher and the CEL rule that keeps them well formed.

The semantics are those of ``metav1.LabelSelector``:

- ``matchLabels``: every ``key: value`` pair must be present on the object;
- ``matchExpressions``: every requirement must hold, where ``In`` needs the key present with one
  of ``values``, ``NotIn`` holds when the key is absent or its value is not in ``values``,
  ``Exists`` needs the key and ``DoesNotExist`` needs it absent;
- all terms are ANDed, so an empty selector (``{}``) matches every object.

``In``/``NotIn`` need at least one value; ``Exists``/``DoesNotExist`` take none.

The pydantic models (``LabelSelector``, ``LabelSelectorRequirement``) live in
``mabeam.models.variable``; this module holds the logic and imports no model at runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import InvalidSpecError

if TYPE_CHECKING:  # the models import this module (for the CEL rule): no import cycle at runtime
    from .models.variable import LabelSelector, LabelSelectorRequirement

__all__ = [
    "matches",
    "selector_cel_rule",
    "validate_selector",
]


def selector_cel_rule(path: str) -> str:
    """A standard-CEL rule (rooted at ``self``) checking the operator/values pairing at ``path``.

    ``path`` is the dotted path of an optional selector below ``self``, e.g. ``access.selector``.
    Every component on the way is guarded with ``has()``.
    """
    parts = path.split(".")
    guards = ["!has(self." + ".".join(parts[: i + 1]) + ")" for i in range(len(parts))]
    sel = "self." + path
    guards.append(f"!has({sel}.matchExpressions)")
    body = (
        f"{sel}.matchExpressions.all(e, e.operator == 'In' || e.operator == 'NotIn' "
        "? has(e.values) && size(e.values) > 0 : !has(e.values) || size(e.values) == 0)"
    )
    return " || ".join([*guards, body])


def validate_selector(selector: LabelSelector, *, path: str) -> None:
    """Raise InvalidSpecError if a requirement pairs its operator with the wrong number of values."""
    for i, req in enumerate(selector.match_expressions):
        where = f"{path}.matchExpressions[{i}].values"
        if req.operator in ("In", "NotIn") and not req.values:
            raise InvalidSpecError(
                f"operator {req.operator} needs at least one value (key {req.key!r})", path=where
            )
        if req.operator in ("Exists", "DoesNotExist") and req.values:
            raise InvalidSpecError(
                f"operator {req.operator} takes no values (key {req.key!r}); remove them", path=where
            )


def _requirement_holds(req: LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    present = req.key in labels
    if req.operator == "In":
        return present and labels[req.key] in req.values
    if req.operator == "NotIn":
        return not present or labels[req.key] not in req.values
    if req.operator == "Exists":
        return present
    return not present  # DoesNotExist


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """True if ``labels`` satisfy every term of ``selector``.

    A malformed requirement (see :func:`validate_selector`) raises InvalidSpecError rather than
    being read one way or another.
    """
    validate_selector(selector, path="selector")
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    return all(_requirement_holds(req, labels) for req in selector.match_expressions)
