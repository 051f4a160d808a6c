"""Validate objects against a CRD's ``openAPIV3Schema``, the way the Kubernetes API server does.

Pure and reusable: used by the local API server (``mabeam local``) on every write of a custom
resource, and by ``mabeam validate -f DIR`` offline. It does no I/O and imports no Kubernetes
client.

What it does, in the server's order:

1. **Prune** fields the schema does not declare (unless ``x-kubernetes-preserve-unknown-fields``
   or ``additionalProperties`` keeps them); with ``strict=True`` an unknown field is an error
   instead (like ``fieldValidation=Strict``). A ``null`` in a non-nullable property is dropped.
2. **Default** absent properties that declare ``default`` (nested defaults apply inside them).
3. **Validate** types, ``required``, ``enum``, ``pattern``, ``minimum``/``maximum`` (and the
   exclusive forms), ``multipleOf``, ``minLength``/``maxLength``, ``minItems``/``maxItems``,
   ``minProperties``/``maxProperties``, ``x-kubernetes-list-type`` (set/map), ``allOf``/``anyOf``/
   ``oneOf``/``not``, and ``x-kubernetes-validations`` CEL rules (standard CEL, evaluated with
   cel-python; ``self`` is the value at the node, ``oldSelf`` the previous value on updates).

Messages follow the API server's wording, e.g.
``spec.weight: Invalid value: -1: spec.weight in body should be greater than or equal to 0``.
"""

from __future__ import annotations

import copy
import functools
import json
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import celpy
import celpy.adapter
import celpy.celparser
import celpy.celtypes
import celpy.evaluation

__all__ = [
    "SchemaError",
    "check_rules",
    "format_invalid",
    "validate",
]

# Top-level fields every Kubernetes object has; the schema never prunes them.
_OBJECT_ENVELOPE = ("apiVersion", "kind", "metadata")
# The numeric bounds: keyword, its exclusive flag, the comparison that breaks it, the message's words.
_BOUNDS = (
    ("minimum", "exclusiveMinimum", operator.lt, "greater than"),
    ("maximum", "exclusiveMaximum", operator.gt, "less than"),
)


@dataclass(frozen=True)
class SchemaError:
    """One validation failure: where (``path``, e.g. ``spec.items[0].name``) and what.

    ``message`` is the text after the path, as the API server words it (``Required value``,
    ``Invalid value: -1: spec.weight in body should be ...``); ``reason`` is the Kubernetes
    cause type (``FieldValueInvalid``, ``FieldValueRequired``, ...).
    """

    path: str
    message: str
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def format_invalid(kind: str, name: str, errors: list[SchemaError]) -> str:
    """The API server's summary line: ``Agent.mabeam.io "a1" is invalid: spec.x: ...``."""
    if len(errors) == 1:
        return f'{kind} "{name}" is invalid: {errors[0]}'
    return f'{kind} "{name}" is invalid: [{", ".join(str(e) for e in errors)}]'


def validate(
    obj: dict[str, Any],
    schema: dict[str, Any],
    *,
    strict: bool = False,
    old: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[SchemaError]]:
    """Prune, default and validate ``obj`` against ``schema`` (an ``openAPIV3Schema``).

    Returns the pruned and defaulted copy of the object and the list of errors (empty when
    valid). ``old`` is the stored object on an update; CEL transition rules (those that use
    ``oldSelf``) are evaluated only where an old value exists. ``obj`` is not modified.
    """
    ctx = _Context(strict=strict)
    value = copy.deepcopy(obj)
    if not isinstance(value, dict):
        ctx.add("", f"Invalid value: {_json_type(value)!r}: must be an object", value=None)
        return value, ctx.errors
    envelope = {key: value.pop(key) for key in _OBJECT_ENVELOPE if key in value}
    root_schema = dict(schema)
    root_schema["properties"] = {
        key: sub for key, sub in schema.get("properties", {}).items() if key not in _OBJECT_ENVELOPE
    }
    # Rules at the root see metadata.name/generateName only, as in the API server.
    meta: dict[str, Any] = envelope["metadata"] if isinstance(envelope.get("metadata"), dict) else {}
    visible_meta = {k: meta[k] for k in ("name", "generateName") if k in meta}
    old_root = None if old is None else {k: v for k, v in old.items() if k not in _OBJECT_ENVELOPE}
    # The schema may restrict metadata.name and generateName (the only metadata it may touch).
    meta_schemas = (schema.get("properties", {}).get("metadata") or {}).get("properties") or {}
    for key in ("name", "generateName"):
        if key in meta_schemas and isinstance(meta.get(key), str):
            ctx.walk(meta[key], meta_schemas[key], ("metadata", key), None)
    result = ctx.walk(value, root_schema, (), old_root, root_extra={"metadata": visible_meta})
    if not isinstance(result, dict):  # the root was a wrong type; already reported
        result = value
    return {**envelope, **result}, ctx.errors


def check_rules(schema: dict[str, Any], path: str = "openAPIV3Schema") -> list[SchemaError]:
    """Compile every ``x-kubernetes-validations`` rule in ``schema``; report those that fail.

    Paths point into the schema, e.g.
    ``openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule``.
    """
    errors: list[SchemaError] = []
    for node_path, node in _schema_nodes(schema, path):
        for index, rule in enumerate(node.get("x-kubernetes-validations") or []):
            rule_path = f"{node_path}.x-kubernetes-validations[{index}]"
            if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str):
                errors.append(SchemaError(f"{rule_path}.rule", "Required value", "FieldValueRequired"))
                continue
            for key in ("rule", "messageExpression"):
                text = rule.get(key)
                if text is None:
                    continue
                try:
                    _compile(text)
                except celpy.celparser.CELParseError as exc:
                    where = f"line {getattr(exc, 'line', '?')}, column {getattr(exc, 'column', '?')}"
                    errors.append(
                        SchemaError(
                            f"{rule_path}.{key}",
                            f"Invalid value: {json.dumps(text)}: compilation failed: syntax error at {where}",
                        )
                    )
    return errors


def _schema_nodes(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(schema, dict):
        return
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _schema_nodes(sub, f"{path}.properties[{key}]")
    if isinstance(schema.get("items"), dict):
        yield from _schema_nodes(schema["items"], f"{path}.items")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _schema_nodes(schema["additionalProperties"], f"{path}.additionalProperties")
    for key in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(schema.get(key) or []):
            yield from _schema_nodes(sub, f"{path}.{key}[{index}]")


@functools.lru_cache(maxsize=1024)
def _compile(text: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(text))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: Any) -> str:
    """Show a value in a message the way the API server does (JSON scalars, type for others)."""
    if isinstance(value, dict | list):
        return json.dumps(_json_type(value))
    return json.dumps(value)


def _format_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):
            text += part
        else:
            text += f".{part}" if text else part
    return text


def _number(limit: Any) -> str:
    return json.dumps(limit)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _cel_typed(value: Any, schema: dict[str, Any]) -> Any:
    """Values as the API server hands them to CEL: a ``type: number`` field is a double even
    when the JSON says ``2`` (otherwise ``2 >= 0.5`` has no overload in CEL); untyped fields
    are absent."""
    kind = schema.get("type")
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        typed = {}
        for k, v in value.items():
            sub = props[k] if k in props else (extra if isinstance(extra, dict) else {})
            if sub.get("x-kubernetes-preserve-unknown-fields") and not sub.get("type"):
                continue  # untyped JSON (a Variable's value) is left out of CEL, as the server does
            typed[k] = _cel_typed(v, sub)
        return typed
    if kind == "array" and isinstance(value, list):
        items = schema.get("items")
        return [_cel_typed(v, items if isinstance(items, dict) else {}) for v in value]
    return value


@dataclass
class _Context:
    strict: bool
    mutate: bool = True
    errors: list[SchemaError] = field(default_factory=list)

    def add(self, path: str, message: str, *, value: Any, reason: str = "FieldValueInvalid") -> None:
        del value  # kept in the signature to make call sites read like the server's field.Invalid
        self.errors.append(SchemaError(path, message, reason))

    def walk(
        self,
        value: Any,
        schema: dict[str, Any],
        path: tuple[str | int, ...],
        old: Any,
        root_extra: dict[str, Any] | None = None,
    ) -> Any:
        """Validate ``value`` at ``path``; return it pruned and defaulted."""
        where = _format_path(path)
        start = len(self.errors)
        if value is None:
            if schema.get("nullable"):
                return None
            expected = schema.get("type")
            if expected:
                self.add(
                    where,
                    f'Invalid value: "null": {where or "body"} in body must be of type {expected}: "null"',
                    value=value,
                    reason="FieldValueTypeInvalid",
                )
            return value
        value = self._check_type(value, schema, where)
        if len(self.errors) > start:
            return value
        self._check_scalar(value, schema, where)
        if isinstance(value, dict) and _is_object_schema(schema):
            value = self._walk_object(value, schema, path, old if isinstance(old, dict) else None)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            value = self._walk_array(value, schema, path, old if isinstance(old, list) else None)
        self._check_combinators(value, schema, where)
        if len(self.errors) == start and schema.get("x-kubernetes-validations"):
            self._check_rules(value, schema, path, old, root_extra)
        return value

    def _check_type(self, value: Any, schema: dict[str, Any], where: str) -> Any:
        if schema.get("x-kubernetes-int-or-string"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                self.add(
                    where,
                    f"Invalid value: {_show(value)}: {where} in body must be of type int-or-string: "
                    f'"{_json_type(value)}"',
                    value=value,
                    reason="FieldValueTypeInvalid",
                )
            return value
        expected = schema.get("type")
        if not expected:
            return value
        actual = _json_type(value)
        if expected == "integer" and isinstance(value, float) and value.is_integer():
            return int(value)
        if actual == "integer" and not _INT64_MIN <= value <= _INT64_MAX:
            actual = "number"  # the server decodes an integer beyond 64 bits as a float
        ok = actual == expected or (expected == "number" and actual == "integer")
        if not ok:
            self.add(
                where,
                f'Invalid value: "{actual}": {where or "body"} in body '
                f'must be of type {expected}: "{actual}"',
                value=value,
                reason="FieldValueTypeInvalid",
            )
        return value

    def _check_scalar(self, value: Any, schema: dict[str, Any], where: str) -> None:
        if "enum" in schema and value not in schema["enum"]:
            allowed = ", ".join(json.dumps(v) for v in schema["enum"])
            self.add(
                where,
                f"Unsupported value: {_show(value)}: supported values: {allowed}",
                value=value,
                reason="FieldValueNotSupported",
            )
        if isinstance(value, str):
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                self.add(
                    where,
                    f"Too long: may not be longer than {schema['maxLength']}",
                    value=value,
                    reason="FieldValueTooLong",
                )
            if "minLength" in schema and len(value) < schema["minLength"]:
                self.add(
                    where,
                    f"Invalid value: {_show(value)}: {where} in body should be at least "
                    f"{schema['minLength']} chars long",
                    value=value,
                )
            pattern = schema.get("pattern")
            if pattern is not None and re.search(pattern, value) is None:
                self.add(
                    where,
                    f"Invalid value: {_show(value)}: {where} in body should match '{pattern}'",
                    value=value,
                )
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._check_number(value, schema, where)
        if isinstance(value, list | dict):
            most, least, unit = (
                ("maxItems", "minItems", "items")
                if isinstance(value, list)
                else ("maxProperties", "minProperties", "properties")
            )
            if most in schema and len(value) > schema[most]:
                self.add(
                    where,
                    f"Too many: {len(value)}: must have at most {schema[most]} items",  # "items" for both
                    value=value,
                    reason="FieldValueTooMany",
                )
            if least in schema and len(value) < schema[least]:
                self.add(
                    where,
                    f"Invalid value: {len(value)}: {where} in body should have at least "
                    f"{schema[least]} {unit}",
                    value=value,
                )
        if isinstance(value, list):
            self._check_list_type(value, schema, where)

    def _check_number(self, value: float, schema: dict[str, Any], where: str) -> None:
        for key, exclusive_key, beyond, relation in _BOUNDS:
            if key not in schema:
                continue
            bound = schema[key]
            exclusive = schema.get(exclusive_key) is True
            if beyond(value, bound) or (exclusive and value == bound):
                wanted = relation if exclusive else f"{relation} or equal to"
                self.add(
                    where,
                    f"Invalid value: {_show(value)}: {where} in body should be {wanted} {_number(bound)}",
                    value=value,
                )
        factor = schema.get("multipleOf")
        if factor and (value / factor) != int(value / factor):
            self.add(
                where,
                f"Invalid value: {_show(value)}: {where} in body should be a multiple of {_number(factor)}",
                value=value,
            )

    def _check_list_type(self, value: list[Any], schema: dict[str, Any], where: str) -> None:
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list[Any] = []
            for index, item in enumerate(value):
                if item in seen:
                    self.add(
                        f"{where}[{index}]",
                        f"Duplicate value: {_show(item)}",
                        value=item,
                        reason="FieldValueDuplicate",
                    )
                seen.append(item)
        elif list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen_keys: list[tuple[Any, ...]] = []
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                key = tuple(item.get(k) for k in keys)
                if key in seen_keys:
                    shown = ", ".join(f'"{k}":{json.dumps(item.get(k))}' for k in keys)
                    self.add(
                        f"{where}[{index}]",
                        f"Duplicate value: map[string]interface {{}}{{{shown}}}",
                        value=item,
                        reason="FieldValueDuplicate",
                    )
                seen_keys.append(key)

    def _walk_object(
        self,
        value: dict[str, Any],
        schema: dict[str, Any],
        path: tuple[str | int, ...],
        old: dict[str, Any] | None,
    ) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or additional is True
        result: dict[str, Any] = {}
        for key, item in value.items():
            sub_path = (*path, key)
            old_item = old.get(key) if old is not None else None
            if key in properties:
                sub = properties[key]
                if item is None and not sub.get("nullable") and self.mutate:
                    continue  # the server drops non-nullable nulls; a default may fill the gap
                result[key] = self.walk(item, sub, sub_path, old_item)
            elif isinstance(additional, dict):
                result[key] = self.walk(item, additional, (*path, f"[{key}]"), old_item)
            elif preserve or not self.mutate:
                result[key] = item
            elif self.strict:
                self.add(
                    _format_path((*path, key)),
                    f'Unsupported value: unknown field "{_format_path((*path, key))}"',
                    value=item,
                    reason="FieldValueNotSupported",
                )
            # else: pruned silently, as the server does.
        if self.mutate:
            for key, sub in properties.items():
                if key not in result and "default" in sub:
                    old_item = old.get(key) if old is not None else None
                    result[key] = self.walk(copy.deepcopy(sub["default"]), sub, (*path, key), old_item)
        for key in schema.get("required") or []:
            if key not in result:
                missing = _format_path((*path, key))
                self.add(missing, "Required value", value=None, reason="FieldValueRequired")
        return result if self.mutate else value

    def _walk_array(
        self,
        value: list[Any],
        schema: dict[str, Any],
        path: tuple[str | int, ...],
        old: list[Any] | None,
    ) -> list[Any]:
        items_schema = schema["items"]
        old_by_index = old if old is not None and schema.get("x-kubernetes-list-type") == "atomic" else None
        result = []
        for index, item in enumerate(value):
            old_item = old_by_index[index] if old_by_index is not None and index < len(old_by_index) else None
            result.append(self.walk(item, items_schema, (*path, index), old_item))
        return result if self.mutate else value

    def _check_combinators(self, value: Any, schema: dict[str, Any], where: str) -> None:
        for sub in schema.get("allOf") or []:
            self.errors.extend(self._probe(value, sub, where))
        any_of = schema.get("anyOf")
        if any_of and all(self._probe(value, sub, where) for sub in any_of):
            self.add(
                where,
                f"Invalid value: {_show(value)}: must validate at least one schema (anyOf)",
                value=value,
            )
        one_of = schema.get("oneOf")
        if one_of:
            matching = sum(1 for sub in one_of if not self._probe(value, sub, where))
            if matching != 1:
                self.add(
                    where,
                    f"Invalid value: {_show(value)}: must validate one and only one schema (oneOf)",
                    value=value,
                )
        if isinstance(schema.get("not"), dict) and not self._probe(value, schema["not"], where):
            self.add(where, f"Invalid value: {_show(value)}: must not validate the schema (not)", value=value)

    def _probe(self, value: Any, schema: dict[str, Any], where: str) -> list[SchemaError]:
        """Errors of ``value`` against a sub-schema, with no pruning or defaulting."""
        probe = _Context(strict=False, mutate=False)
        path: tuple[str | int, ...] = (where,) if where else ()
        probe.walk(value, schema, path, None)
        return probe.errors

    def _check_rules(
        self,
        value: Any,
        schema: dict[str, Any],
        path: tuple[str | int, ...],
        old: Any,
        root_extra: dict[str, Any] | None,
    ) -> None:
        where = _format_path(path)
        shown_type = json.dumps(schema.get("type") or _json_type(value))
        cel_self = {**value, **root_extra} if root_extra and isinstance(value, dict) else value
        try:
            activation: dict[str, Any] = {"self": celpy.adapter.json_to_cel(_cel_typed(cel_self, schema))}
            if old is not None:
                old_self = {**old, **root_extra} if root_extra and isinstance(old, dict) else old
                activation["oldSelf"] = celpy.adapter.json_to_cel(_cel_typed(old_self, schema))
        except (ValueError, OverflowError) as exc:
            # A number CEL cannot hold (an integer beyond 64 bits, a float beyond a double): the
            # rules cannot be evaluated, so the object is refused (422), never a 500.
            message = f"Invalid value: {shown_type}: a number is out of CEL's range ({exc})"
            self.add(where, message, value=value)
            return
        for rule in schema["x-kubernetes-validations"]:
            text = rule.get("rule", "")
            if "oldSelf" in text and old is None:
                continue  # a transition rule: only checked on updates
            rule_where = where
            if rule.get("fieldPath"):
                rule_where = f"{where}{rule['fieldPath']}" if where else rule["fieldPath"].lstrip(".")
            reason = rule.get("reason") or "FieldValueInvalid"
            try:
                outcome = _compile(text).evaluate(activation)
            except (celpy.evaluation.CELEvalError, celpy.celparser.CELParseError, TypeError) as exc:
                self.add(
                    rule_where,
                    f"Invalid value: {shown_type}: failed to evaluate rule {json.dumps(text)}: {exc.args[0]}",
                    value=value,
                )
                continue
            if outcome is True or (isinstance(outcome, celpy.celtypes.BoolType) and bool(outcome)):
                continue
            message = rule.get("message") or f"failed rule: {text}"
            if rule.get("messageExpression"):
                try:
                    message = str(_compile(rule["messageExpression"]).evaluate(activation))
                except (celpy.evaluation.CELEvalError, celpy.celparser.CELParseError, TypeError):
                    pass  # the server falls back to the static message as well
            if reason == "FieldValueRequired":
                self.add(rule_where, f"Required value: {message}", value=value, reason=reason)
            elif reason == "FieldValueForbidden":
                self.add(rule_where, f"Forbidden: {message}", value=value, reason=reason)
            else:
                self.add(rule_where, f"Invalid value: {shown_type}: {message}", value=value, reason=reason)


def _is_object_schema(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" or "properties" in schema or "additionalProperties" in schema
