"""Label and field selectors of list and watch requests, parsed into predicates."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._types import _meta

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
