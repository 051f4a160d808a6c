"""Kubernetes label selectors: a pure matcher.

The semantics are those of ``metav1.LabelSelector``:

- ``matchLabels``: every ``key: value`` pair must be present on the object;
- ``matchExpressions``: every requirement must hold, where ``In`` needs the key present with one
  of ``values``, ``NotIn`` holds when the key is absent or its value is not in ``values``,
  ``Exists`` needs the key and ``DoesNotExist`` needs it absent;
- all terms are ANDed, so an empty selector (``{}``) matches every object.

``In``/``NotIn`` need at least one value; ``Exists``/``DoesNotExist`` take none.

The pydantic models (``LabelSelector``, ``LabelSelectorRequirement``) and the CEL rule that keeps
them well formed (``selector_cel_rule``) live in ``mabeam.models.variable``; this module holds the
logic.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidSpecError
from ..models.variable import LabelSelector, LabelSelectorRequirement

__all__ = [
    "matches",
    "validate_selector",
]


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
