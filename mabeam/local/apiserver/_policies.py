"""ValidatingAdmissionPolicies: the CEL rules applied to the server are enforced, as in a cluster.

A write (create, update, delete; a subresource only if a rule names it) is checked against every
stored ValidatingAdmissionPolicy that a ValidatingAdmissionPolicyBinding with the ``Deny``
action binds: if the policy's ``matchConstraints`` (and the binding's ``matchResources``) match
the request and its ``matchConditions`` hold, each validation's expression must be true. The
expressions see ``object``, ``oldObject``, ``request`` (with ``userInfo`` of the authenticated
caller), ``params`` (always null: parameter resources are not supported), ``namespaceObject``
and the policy's ``variables``; they are evaluated with cel-python (standard CEL, without
Kubernetes' extension libraries). A false validation refuses the request with its
``messageExpression`` (or ``message``) and ``reason``; an evaluation error refuses it unless the
policy's ``failurePolicy`` is ``Ignore``.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Iterable
from typing import Any

import attrs
import celpy
import celpy.adapter
import celpy.celparser
import celpy.celtypes
import celpy.evaluation

from ._admission import Admission
from ._selectors import parse_label_selector
from ._types import REQUEST_USER, ResourceType, _ApiError, _meta

__all__ = ["AdmissionPolicies"]

_ADMISSION = "admissionregistration.k8s.io/v1"
_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}


class _PolicyError(Exception):
    """An expression failed to compile or evaluate."""


@functools.lru_cache(maxsize=1024)
def _program(expression: str) -> Any:
    env = celpy.Environment()
    try:
        return env.program(env.compile(expression))
    except celpy.celparser.CELParseError as exc:
        raise _PolicyError(f"compilation failed: {exc}") from None


def _evaluate(expression: str, activation: dict[str, Any]) -> Any:
    try:
        result = _program(expression).evaluate(activation)
    except (celpy.evaluation.CELEvalError, TypeError, ValueError, KeyError, OverflowError) as exc:
        raise _PolicyError(str(exc) or type(exc).__name__) from None
    if isinstance(result, celpy.evaluation.CELEvalError):
        raise _PolicyError(str(result))
    return result


_INT64 = 2**63


def _as_decoded(value: Any) -> Any:
    """A JSON value as the API server hands it to CEL: an integer beyond 64 bits was decoded as
    a double (CEL's int is 64 bits; celpy refuses a larger one with a ValueError)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)
    if isinstance(value, dict):
        return {k: _as_decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_decoded(v) for v in value]
    return value


def _truth(value: Any) -> bool:
    if isinstance(value, bool | celpy.celtypes.BoolType):
        return bool(value)
    raise _PolicyError(f"the expression gave {value!r}, not a bool")


def _listed(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and ("*" in values or wanted in values)


def _rule_matches(rule: dict[str, Any], rtype: ResourceType, operation: str, subresource: str | None) -> bool:
    resource = f"{rtype.plural}/{subresource}" if subresource else rtype.plural
    resources = rule.get("resources") or []
    resource_ok = (
        "*" in resources
        or resource in resources
        or (subresource is None and f"{rtype.plural}/*" in resources)
        or (subresource is not None and (f"*/{subresource}" in resources or f"{rtype.plural}/*" in resources))
    )
    scope = rule.get("scope") or "*"
    scope_ok = scope == "*" or (scope == "Namespaced") == rtype.namespaced
    return (
        _listed(rule.get("apiGroups"), rtype.group)
        and _listed(rule.get("apiVersions"), rtype.version)
        and _listed(rule.get("operations"), operation)
        and resource_ok
        and scope_ok
    )


def _selector_matches(selector: Any, labels: dict[str, Any]) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions); empty or absent matches all."""
    if not isinstance(selector, dict) or not selector:
        return True
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return bool(parse_label_selector(",".join(parts))({"metadata": {"labels": labels}}))


@attrs.define(kw_only=True)
class AdmissionPolicies(Admission):
    """Enforcement of the stored ValidatingAdmissionPolicies and their bindings."""

    def _policy_objects(self, kind: str) -> Iterable[dict[str, Any]]:
        return self.live(self._by_kind(_ADMISSION, kind), None)

    def _check_policies(
        self,
        rtype: ResourceType,
        operation: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> None:
        """Refuse the write if a bound ValidatingAdmissionPolicy denies it."""
        bindings = list(self._policy_objects("ValidatingAdmissionPolicyBinding"))
        if not bindings:
            return
        policies = {_meta(p).get("name"): p for p in self._policy_objects("ValidatingAdmissionPolicy")}
        target = obj if obj is not None else old or {}
        namespace = _meta(target).get("namespace")
        labels = _meta(target).get("labels") or {}
        old_labels = _meta(old).get("labels") or {} if old is not None else {}
        namespace_obj = self.load(self._by_kind("v1", "Namespace"), None, namespace) if namespace else None
        namespace_labels = _meta(namespace_obj).get("labels") or {} if namespace_obj else {}
        request: dict[str, Any] | None = None
        for binding in bindings:
            spec = binding.get("spec") or {}
            if "Deny" not in (spec.get("validationActions") or []):
                continue
            policy = policies.get(spec.get("policyName"))
            if policy is None:
                continue
            pspec = policy.get("spec") or {}
            if not self._constraints_match(
                pspec.get("matchConstraints"),
                rtype,
                operation,
                subresource,
                labels,
                old_labels,
                namespace_labels,
            ):
                continue
            if spec.get("matchResources") and not self._constraints_match(
                spec["matchResources"], rtype, operation, subresource, labels, old_labels, namespace_labels
            ):
                continue
            if request is None:
                request = self._admission_request(rtype, operation, target, subresource, dry_run)
            self._validate(policy, binding, request, obj, old, namespace_obj)

    @staticmethod
    def _constraints_match(
        constraints: Any,
        rtype: ResourceType,
        operation: str,
        subresource: str | None,
        labels: dict[str, Any],
        old_labels: dict[str, Any],
        namespace_labels: dict[str, Any],
    ) -> bool:
        if not isinstance(constraints, dict):
            return False
        if not any(
            _rule_matches(r, rtype, operation, subresource) for r in constraints.get("resourceRules") or []
        ):
            return False
        if any(
            _rule_matches(r, rtype, operation, subresource)
            for r in constraints.get("excludeResourceRules") or []
        ):
            return False
        object_selector = constraints.get("objectSelector")
        if not (_selector_matches(object_selector, labels) or _selector_matches(object_selector, old_labels)):
            return False
        return not rtype.namespaced or _selector_matches(
            constraints.get("namespaceSelector"), namespace_labels
        )

    @staticmethod
    def _admission_request(
        rtype: ResourceType, operation: str, target: dict[str, Any], subresource: str | None, dry_run: bool
    ) -> dict[str, Any]:
        meta = _meta(target)
        return {
            "uid": str(uuid.uuid4()),
            "kind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
            "resource": {"group": rtype.group, "version": rtype.version, "resource": rtype.plural},
            "subResource": subresource or "",
            "requestKind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
            "requestResource": {"group": rtype.group, "version": rtype.version, "resource": rtype.plural},
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "operation": operation,
            "userInfo": REQUEST_USER.get().as_request_user(),
            "dryRun": dry_run,
        }

    def _validate(
        self,
        policy: dict[str, Any],
        binding: dict[str, Any],
        request: dict[str, Any],
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        namespace_obj: dict[str, Any] | None,
    ) -> None:
        pspec = policy.get("spec") or {}
        policy_name, binding_name = _meta(policy).get("name"), _meta(binding).get("name")
        ignore_errors = pspec.get("failurePolicy") == "Ignore"
        prefix = f"ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request"
        activation: dict[str, Any] = {
            "object": celpy.adapter.json_to_cel(_as_decoded(obj)),
            "oldObject": celpy.adapter.json_to_cel(_as_decoded(old)),
            "request": celpy.adapter.json_to_cel(request),
            "params": celpy.adapter.json_to_cel(None),
            "namespaceObject": celpy.adapter.json_to_cel(namespace_obj),
        }
        try:
            variables: dict[str, Any] = {}
            for variable in pspec.get("variables") or []:
                activation["variables"] = celpy.celtypes.MapType(variables)
                variables[celpy.celtypes.StringType(variable["name"])] = _evaluate(
                    variable["expression"], activation
                )
            activation["variables"] = celpy.celtypes.MapType(variables)
            for condition in pspec.get("matchConditions") or []:
                if not _truth(_evaluate(condition["expression"], activation)):
                    return
        except _PolicyError as exc:
            if ignore_errors:
                return
            raise _ApiError(403, "Forbidden", f"{prefix}: expression error: {exc}") from None
        for validation in pspec.get("validations") or []:
            expression = validation.get("expression", "")
            try:
                if _truth(_evaluate(expression, activation)):
                    continue
            except _PolicyError as exc:
                if ignore_errors:
                    continue
                raise _ApiError(
                    403, "Forbidden", f"{prefix}: expression '{expression}' resulted in error: {exc}"
                ) from None
            message = validation.get("message") or f"failed expression: {expression}"
            if validation.get("messageExpression"):
                try:
                    produced = _evaluate(validation["messageExpression"], activation)
                    if isinstance(produced, str) and produced.strip():
                        message = str(produced)
                except _PolicyError:
                    pass  # as Kubernetes: the static message stands
            reason = validation.get("reason") or "Invalid"
            raise _ApiError(_CODES.get(reason, 422), reason, f"{prefix}: {message}")
