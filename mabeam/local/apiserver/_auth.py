"""Authentication and RBAC: who the caller is, whether RBAC lets it, and the audit log.

Callers are identified by ``Impersonate-User`` or a bearer token ``sa:<namespace>:<name>`` (a
service account) or ``user:<name>``. Service accounts are authorised by RBAC from the stored
Roles, ClusterRoles and bindings (:mod:`mabeam.local.rbac`; 403 Forbidden otherwise); other
users are not restricted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import kmock

from .. import rbac
from ._types import AuditRecord, _ApiError
from ._watch import Watches


@attrs.define(kw_only=True)
class Authorization(Watches):
    """Authorization of service accounts' requests by RBAC, and audit records."""

    @staticmethod
    def _audit_record(request: kmock.Request, verb: str, user: str, code: int) -> AuditRecord:
        res = request.resource
        assert res is not None  # only resource requests are audited
        return AuditRecord(
            verb=verb,
            resource=f"{res.group}/{res.version}/{res.plural}",
            namespace=request.namespace,
            name=request.name,
            subresource=request.subresource,
            user=user,
            code=code,
        )

    def _rbac_objects(self, kind: str, namespace: str | None) -> Iterator[dict[str, Any]]:
        return self.live(self._by_kind("rbac.authorization.k8s.io/v1", kind), namespace)

    def _authorize(self, user: str, verb: str, request: kmock.Request) -> None:
        """403 Forbidden unless RBAC allows a service account's request (others pass)."""
        if not self.authorize_service_accounts or not user.startswith(rbac.SERVICE_ACCOUNT_PREFIX):
            return
        res = request.resource
        assert res is not None  # a resource request
        asked = rbac.Request(
            user=user,
            verb=verb,
            api_group=res.group or "",
            resource=res.plural or "",
            subresource=request.subresource,
            namespace=request.namespace,
            name=request.name or self._selected_name(verb, request),
        )
        if not rbac.Authorizer(self._rbac_objects).allows(asked):
            details = {"name": request.name or "", "group": asked.api_group, "kind": asked.resource}
            raise _ApiError(403, "Forbidden", asked.describe(), details)

    @staticmethod
    def _selected_name(verb: str, request: kmock.Request) -> str | None:
        """A list/watch restricted to one name by its field selector is a request for that name."""
        if verb not in ("list", "watch"):
            return None
        return rbac.name_from_field_selector(str(request.params.get("fieldSelector") or ""))


def identify(headers: Any) -> str:
    """The caller's user name: ``Impersonate-User``, or from a ``Bearer`` token, or anonymous."""
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    if lowered.get("impersonate-user"):
        return str(lowered["impersonate-user"])
    auth = str(lowered.get("authorization", ""))
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
        if token.startswith("sa:") and token.count(":") == 2:
            _, namespace, name = token.split(":")
            return f"system:serviceaccount:{namespace}:{name}"
        if token.startswith("user:"):
            return token[5:]
    return "system:anonymous"
