"""hypothesis strategies for the Variable tests: specs, values, labels, selectors, writes."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from mabeam.models.variable import VariableSpec, VariableWrite, Writer

TYPES = ("number", "integer", "string", "boolean", "enum", "json")

# Small alphabets make collisions (equal values, shared keys) frequent enough to matter.
words = st.text(alphabet="abcxyz", min_size=0, max_size=6)
bounds = st.one_of(st.none(), st.integers(-20, 20), st.floats(-20, 20, allow_nan=False))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
# Values near the interesting edges: small numbers, floats that are or are not whole, short strings.
candidate_values = st.one_of(
    st.integers(-25, 25),
    st.floats(-25, 25, allow_nan=False),
    st.integers(-25, 25).map(float),
    st.booleans(),
    words,
    json_values,
)


@st.composite
def coherent_specs(draw: st.DrawFn, types: tuple[str, ...] = TYPES) -> VariableSpec:
    """Specs whose constraints fit their type (what admission lets through)."""
    kind = draw(st.sampled_from(types))
    constraints: dict[str, Any] = {}
    if kind in ("number", "integer"):
        lo, hi = draw(bounds), draw(bounds)
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        constraints = {k: v for k, v in (("minimum", lo), ("maximum", hi)) if v is not None}
    elif kind == "string":
        if draw(st.booleans()):
            constraints["maxLength"] = draw(st.integers(0, 6))
        if draw(st.booleans()):
            constraints["pattern"] = draw(st.sampled_from(["^a", "b", "^[abc]*$", "x$", "^$"]))
    elif kind == "enum":
        constraints["allowedValues"] = draw(st.lists(words, min_size=1, max_size=4))
    return VariableSpec.model_validate(
        {"type": kind, "constraints": constraints, "historyLimit": draw(st.integers(0, 5))}
    )


@st.composite
def any_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Structurally valid spec dicts whose constraints may or may not fit their type."""
    spec: dict[str, Any] = {"type": draw(st.sampled_from(TYPES))}
    constraints: dict[str, Any] = {}
    for name, strategy in (
        ("minimum", st.integers(-5, 5).map(float)),
        ("maximum", st.integers(-5, 5).map(float)),
        ("allowedValues", st.lists(words, min_size=1, max_size=3)),
        ("pattern", st.sampled_from(["^a", "b+"])),
        ("maxLength", st.integers(0, 5)),
    ):
        if draw(st.integers(0, 3)) == 0:
            constraints[name] = draw(strategy)
    if constraints or draw(st.booleans()):
        spec["constraints"] = constraints
    if draw(st.booleans()):
        spec["access"] = {"selector": draw(selector_dicts(allow_malformed=True))}
    return spec


label_keys = st.sampled_from(["app", "tier", "team", "capability.mabeam.io/vote"])
label_values = st.sampled_from(["a", "b", "c"])
labels = st.dictionaries(label_keys, label_values, max_size=4)


@st.composite
def selector_dicts(draw: st.DrawFn, allow_malformed: bool = False) -> dict[str, Any]:
    """Label selectors in wire form; with allow_malformed, operators may get the wrong values."""
    selector: dict[str, Any] = {}
    if draw(st.booleans()):
        selector["matchLabels"] = draw(st.dictionaries(label_keys, label_values, max_size=2))
    expressions = []
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        expr: dict[str, Any] = {"key": draw(label_keys), "operator": op}
        wants_values = op in ("In", "NotIn")
        if allow_malformed and draw(st.integers(0, 4)) == 0:
            wants_values = not wants_values
        if wants_values:
            expr["values"] = draw(st.lists(label_values, min_size=1, max_size=3))
        expressions.append(expr)
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def writes(
    values: st.SearchStrategy[Any],
    *,
    kinds: tuple[str, ...] = ("Agent",),
    based_on: st.SearchStrategy[int | None] | None = None,
    sessions: st.SearchStrategy[str | None] | None = None,
) -> st.SearchStrategy[VariableWrite]:
    return st.builds(
        VariableWrite,
        value=values,
        based_on_version=based_on if based_on is not None else st.none(),
        writer=st.builds(
            Writer,
            kind=st.sampled_from(kinds),
            name=st.sampled_from(["a1", "a2", "a3"]),
            priority=st.integers(-3, 3),
        ),
        session=sessions if sessions is not None else st.none(),
        reason=words,
    )
