"""RBAC for the local API server: who may do what, from the stored Roles and bindings.

Kubernetes' RBAC authorizer, cut to what MABEAM relies on:

* a request is allowed if some rule of a Role or ClusterRole bound to the caller covers it;
  there are no deny rules;
* a RoleBinding grants its Role (or a ClusterRole) in the binding's namespace only; a
  ClusterRoleBinding grants a ClusterRole everywhere, including cluster-scoped resources;
* a subject matches a service account (``kind: ServiceAccount``, name and namespace), a user
  (``kind: User``, the full user name) or a group the caller is in (``kind: Group``; a service
  account is in ``system:serviceaccounts`` and ``system:serviceaccounts:<namespace>``, everyone
  authenticated in ``system:authenticated``, anonymous callers in ``system:unauthenticated``);
* a rule covers a request when its ``apiGroups``, ``resources`` (``plural`` or
  ``plural/subresource``) and ``verbs`` contain the request's (or ``*``), and, if it lists
  ``resourceNames``, the request names one of them. As in Kubernetes, ``resourceNames`` never
  covers ``create`` or an unnamed ``list``/``watch``/``deletecollection``; a ``list`` or
  ``watch`` with the field selector ``metadata.name=<name>`` is named (see
  :func:`name_from_field_selector`).

Every caller is checked except members of ``system:masters`` (the cluster admin and the local
kubelet), which Kubernetes lets through before RBAC is asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MASTERS",
    "SERVICE_ACCOUNT_PREFIX",
    "Authorizer",
    "Request",
    "name_from_field_selector",
    "rule_covers",
]

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
#: The group whose members bypass authorization (as in Kubernetes).
MASTERS = "system:masters"

#: (kind, namespace or None) -> the stored objects of that RBAC kind in that namespace.
Lookup = Callable[[str, str | None], Iterable[dict[str, Any]]]


@dataclass(frozen=True)
class Request:
    """One resource request, as the authorizer sees it."""

    user: str
    verb: str
    api_group: str
    resource: str
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    groups: tuple[str, ...] = ()

    def describe(self) -> str:
        """The message Kubernetes sends with a 403."""
        what = f"{self.resource}.{self.api_group}" if self.api_group else self.resource
        target = f'{what} "{self.name}"' if self.name else what
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        return (
            f'{target} is forbidden: User "{self.user}" cannot {self.verb} resource "{resource}" '
            f'in API group "{self.api_group}"{where}'
        )


def name_from_field_selector(selector: str) -> str | None:
    """The name a list/watch is authorized for, as Kubernetes' request-info resolver does it:
    the value of a ``metadata.name=`` (or ``==``) requirement of the field selector, if any."""
    for requirement in selector.split(","):
        key, sep, value = requirement.partition("=")
        value = value.removeprefix("=")
        if sep and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return None


def _contains(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and ("*" in values or wanted in values)


def rule_covers(rule: dict[str, Any], request: Request) -> bool:
    """True if one PolicyRule grants ``request``."""
    resource = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    if not (
        _contains(rule.get("apiGroups"), request.api_group)
        and _contains(rule.get("resources"), resource)
        and _contains(rule.get("verbs"), request.verb)
    ):
        return False
    names = rule.get("resourceNames") or []
    if not names:
        return True
    return request.name is not None and request.verb != "create" and request.name in names


def _subject_matches(
    subject: dict[str, Any], user: str, groups: tuple[str, ...], binding_namespace: str | None
) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return name == user
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount" and user.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace, _, account = user[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        return name == account and (subject.get("namespace") or binding_namespace) == namespace
    return False


class Authorizer:
    """Decides requests from the RBAC objects that ``lookup`` returns.

    ``lookup(kind, namespace)`` returns the stored Roles / RoleBindings of a namespace, or the
    ClusterRoles / ClusterRoleBindings (namespace None).
    """

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    def allows(self, request: Request) -> bool:
        if MASTERS in request.groups:
            return True
        return any(rule_covers(rule, request) for rule in self._rules_for(request))

    def _rules_for(self, request: Request) -> Iterable[dict[str, Any]]:
        for binding in self.lookup("ClusterRoleBinding", None):
            if self._bound(binding, request, None):
                yield from self._role_rules(binding.get("roleRef") or {}, None)
        if request.namespace is None:
            return
        for binding in self.lookup("RoleBinding", request.namespace):
            if self._bound(binding, request, request.namespace):
                yield from self._role_rules(binding.get("roleRef") or {}, request.namespace)

    @staticmethod
    def _bound(binding: dict[str, Any], request: Request, namespace: str | None) -> bool:
        return any(
            isinstance(s, dict) and _subject_matches(s, request.user, request.groups, namespace)
            for s in binding.get("subjects") or []
        )

    def _role_rules(self, ref: dict[str, Any], namespace: str | None) -> Iterable[dict[str, Any]]:
        kind, name = ref.get("kind"), ref.get("name")
        if kind == "Role" and namespace is None:
            return  # a ClusterRoleBinding can only refer to a ClusterRole
        scope = namespace if kind == "Role" else None
        if kind not in ("Role", "ClusterRole"):
            return
        for role in self.lookup(kind, scope):
            if (role.get("metadata") or {}).get("name") == name:
                yield from (r for r in role.get("rules") or [] if isinstance(r, dict))
