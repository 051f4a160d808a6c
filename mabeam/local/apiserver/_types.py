"""Resource types, the error a request fails with, and the small helpers every layer uses."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import json
import re
from typing import Any

import aiohttp.web
import kmock

from mabeam.kube import schema as crd_schema

_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})
_CRD_GROUP = "apiextensions.k8s.io"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """A served resource: what discovery advertises and how its objects behave."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    schema: dict[str, Any] | None = None  # openAPIV3Schema of a custom resource
    storage_version: str = ""  # all versions of a CRD share the storage of this one
    printer_columns: tuple[dict[str, Any], ...] = ()  # additionalPrinterColumns of a custom resource
    custom: bool = False

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``agents.mabeam.io`` or ``pods``: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Agent.mabeam.io`` or ``Pod``: how validation messages name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def store_key(self) -> kmock.resource:
        return kmock.resource(self.group, self.storage_version or self.version, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _builtin(
    group_version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool,
    status: bool = False,
    short_names: tuple[str, ...] = (),
) -> ResourceType:
    group, _, version = group_version.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=short_names,
        subresources=frozenset({"status"}) if status else frozenset(),
    )


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("v1", "namespaces", "Namespace", namespaced=False, status=True, short_names=("ns",)),
    dataclasses.replace(  # pods/binding: how a scheduler (here, the local kubelet) assigns a node
        _builtin("v1", "pods", "Pod", namespaced=True, status=True, short_names=("po",)),
        subresources=frozenset({"status", "binding", "log"}),
    ),
    dataclasses.replace(  # serviceaccounts/token: the TokenRequest API
        _builtin("v1", "serviceaccounts", "ServiceAccount", namespaced=True, short_names=("sa",)),
        subresources=frozenset({"token"}),
    ),
    _builtin("v1", "configmaps", "ConfigMap", namespaced=True, short_names=("cm",)),
    _builtin("v1", "secrets", "Secret", namespaced=True),
    _builtin("v1", "events", "Event", namespaced=True, short_names=("ev",)),
    _builtin("v1", "services", "Service", namespaced=True, status=True, short_names=("svc",)),
    _builtin("events.k8s.io/v1", "events", "Event", namespaced=True, short_names=("ev",)),
    _builtin("coordination.k8s.io/v1", "leases", "Lease", namespaced=True),
    _builtin(
        f"{_CRD_GROUP}/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status=True,
        short_names=("crd", "crds"),
    ),
    _builtin("rbac.authorization.k8s.io/v1", "roles", "Role", namespaced=True),
    _builtin("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", namespaced=True),
    _builtin("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _builtin(
        "admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        namespaced=False,
        status=True,
    ),
    _builtin(
        "admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        namespaced=False,
    ),
)


@dataclasses.dataclass(frozen=True)
class UserInfo:
    """An authenticated caller: its user name and groups (what admission sees as userInfo)."""

    name: str
    groups: tuple[str, ...] = ()

    def as_request_user(self) -> dict[str, Any]:
        """``request.userInfo`` of an admission request."""
        return {"username": self.name, "groups": list(self.groups)}


#: The cluster admin: whoever talks to the server without HTTP (the harness) acts as it.
ADMIN = UserInfo("admin", ("system:masters", "system:authenticated"))

#: The caller of the request being served (admission policies read it).
REQUEST_USER: contextvars.ContextVar[UserInfo] = contextvars.ContextVar("mabeam_request_user", default=ADMIN)


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One served resource request: who did what, and the HTTP status it got."""

    verb: str
    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None
    user: str
    code: int


class _ApiError(Exception):
    """A failure that becomes a Kubernetes ``Status`` response."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def _not_found(rtype: ResourceType, name: str) -> _ApiError:
    return _ApiError(
        404,
        "NotFound",
        f'{rtype.qualified} "{name}" not found',
        {"name": name, "group": rtype.group, "kind": rtype.plural},
    )


def _conflict(rtype: ResourceType, name: str, why: str) -> _ApiError:
    return _ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rtype.qualified} "{name}": {why}',
        {"name": name, "group": rtype.group, "kind": rtype.plural},
    )


_STALE = "the object has been modified; please apply your changes to the latest version and try again"


def _invalid(rtype: ResourceType, name: str, errors: list[crd_schema.SchemaError]) -> _ApiError:
    return _ApiError(
        422,
        "Invalid",
        crd_schema.format_invalid(rtype.qualified_kind, name, errors),
        {
            "name": name,
            "group": rtype.group,
            "kind": rtype.kind,
            "causes": [{"reason": e.reason, "message": e.message, "field": e.path} for e in errors],
        },
    )


def _json_response(payload: Any, code: int) -> aiohttp.web.Response:
    # Exactly "application/json" (no charset), as the API server sends: lightkube checks for it.
    body = json.dumps(payload).encode()
    return aiohttp.web.Response(body=body, status=code, content_type="application/json")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}
