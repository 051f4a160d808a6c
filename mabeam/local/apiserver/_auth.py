"""Authentication, impersonation, RBAC and the audit log: who the caller is and whether it may.

As in a cluster, a caller is who its bearer token says, never what a field or a guessable
string says:

* tokens are unguessable secrets issued by this server: static ones for people and programs
  that the harness names (:meth:`Authorization.issue_token`, what a real API server reads from
  ``--token-auth-file``), and ServiceAccount tokens from the TokenRequest API
  (``serviceaccounts/<name>/token``), bound to the ServiceAccount and optionally to a Pod: such a
  token stops working when its Pod or ServiceAccount is deleted (or replaced) or it expires;
* an unknown, expired or revoked token is 401 Unauthorized; no token at all is
  ``system:anonymous`` (group ``system:unauthenticated``), which may read ``/version`` and the
  health paths and whatever RBAC grants it, nothing else;
* ``Impersonate-User`` / ``Impersonate-Group`` are honoured only if RBAC lets the caller
  ``impersonate`` that user (``users``, or ``serviceaccounts`` for a ServiceAccount's name) and
  those groups;
* every caller is authorised by RBAC (:mod:`mabeam.local.rbac`), except members of
  ``system:masters``.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterator
from typing import Any

import attrs
import kmock

from .. import rbac
from ._types import AuditRecord, UserInfo, _ApiError, _meta, _not_found
from ._watch import Watches

__all__ = ["ANONYMOUS", "Authorization", "UserInfo", "service_account_user"]

ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))
#: Paths anybody may read, as the ClusterRole ``system:public-info-viewer`` grants.
PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")
_TOKEN_MIN_SECONDS = 600
_TOKEN_DEFAULT_SECONDS = 3600


def service_account_user(namespace: str, name: str) -> UserInfo:
    """The user a ServiceAccount's token authenticates as, with the groups Kubernetes gives it."""
    return UserInfo(
        f"{rbac.SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
    )


@attrs.frozen
class _Token:
    user: UserInfo
    expires: datetime.datetime | None = None
    #: (plural, namespace, name, uid) of each object the token dies with.
    bound: tuple[tuple[str, str, str, str], ...] = ()


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.define(kw_only=True)
class Authorization(Watches):
    """Authentication by token, impersonation, authorization by RBAC, and audit records."""

    _tokens: dict[str, _Token] = attrs.field(factory=dict, init=False)
    _decisions: dict[rbac.Request, bool] = attrs.field(factory=dict, init=False)
    _decisions_generation: int = attrs.field(default=-1, init=False)

    # ---- authentication ----

    def issue_token(self, user: UserInfo) -> str:
        """A new static token for ``user`` (like a line of a token file): an unguessable secret."""
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(user)
        return token

    def authenticate(self, headers: Any) -> UserInfo:
        """The caller of a request: from its bearer token (401 if unknown), else anonymous."""
        lowered = {str(k).lower(): v for k, v in dict(headers).items()}
        auth = str(lowered.get("authorization", ""))
        if not auth:
            return ANONYMOUS
        scheme, _, token = auth.partition(" ")
        found = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if found is None or not self._token_alive(found):
            raise _ApiError(401, "Unauthorized", "Unauthorized")
        return found.user

    def _token_alive(self, token: _Token) -> bool:
        if token.expires is not None and _utcnow() >= token.expires:
            return False
        for plural, namespace, name, uid in token.bound:
            obj = self.load(
                self._by_kind("v1", "Pod" if plural == "pods" else "ServiceAccount"), namespace, name
            )
            if obj is None or _meta(obj).get("uid") != uid or _meta(obj).get("deletionTimestamp"):
                return False
        return True

    def request_token(self, namespace: str, account: str, body: Any) -> dict[str, Any]:
        """The TokenRequest API: a token for a ServiceAccount, optionally bound to a Pod."""
        sa_type = self._by_kind("v1", "ServiceAccount")
        sa = self.load(sa_type, namespace, account)
        if sa is None:
            raise _not_found(sa_type, account)
        spec = body.get("spec") if isinstance(body, dict) else None
        spec = spec if isinstance(spec, dict) else {}
        seconds = spec.get("expirationSeconds") or _TOKEN_DEFAULT_SECONDS
        if not isinstance(seconds, int) or seconds < _TOKEN_MIN_SECONDS:
            raise _ApiError(
                422,
                "Invalid",
                f'TokenRequest.authentication.k8s.io "{account}" is invalid: spec.expirationSeconds: '
                f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
            )
        bound = [("serviceaccounts", namespace, account, str(_meta(sa)["uid"]))]
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict) and ref:
            if ref.get("kind") != "Pod":
                raise _ApiError(
                    422,
                    "Invalid",
                    f"spec.boundObjectRef.kind: Unsupported value: {ref.get('kind')!r}: "
                    'supported values: "Pod"',
                )
            pod_type = self._by_kind("v1", "Pod")
            pod = self.load(pod_type, namespace, str(ref.get("name")))
            if pod is None or (ref.get("uid") and ref["uid"] != _meta(pod).get("uid")):
                raise _ApiError(
                    404, "NotFound", f'the bound object reference (Pod "{ref.get("name")}") was not found'
                )
            if (pod.get("spec") or {}).get("serviceAccountName", "default") != account:
                raise _ApiError(
                    400,
                    "BadRequest",
                    f'cannot bind a token of ServiceAccount "{account}" to Pod "{ref.get("name")}", '
                    "which runs as another ServiceAccount",
                )
            bound.append(("pods", namespace, str(ref["name"]), str(_meta(pod)["uid"])))
        expires = _utcnow().replace(microsecond=0) + datetime.timedelta(seconds=seconds)
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(service_account_user(namespace, account), expires, tuple(bound))
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": account, "namespace": namespace},
            "spec": {**spec, "expirationSeconds": seconds},
            "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }

    # ---- impersonation ----

    def impersonate(self, user: UserInfo, raw_headers: Any) -> UserInfo:
        """The user a request acts as: ``user``, or whom it impersonates if RBAC lets it."""
        names = list(_all_values(raw_headers, "Impersonate-User"))
        groups = tuple(_all_values(raw_headers, "Impersonate-Group"))
        if not names:
            if groups:
                raise _ApiError(
                    500, "InternalError", "requested impersonation of groups without a user"
                )  # as Kubernetes answers
            return user
        target = names[0]
        if target.startswith(rbac.SERVICE_ACCOUNT_PREFIX):
            namespace, _, account = target[len(rbac.SERVICE_ACCOUNT_PREFIX) :].partition(":")
            self._may_impersonate(user, "serviceaccounts", account, namespace)
            as_user = service_account_user(namespace, account)
        else:
            self._may_impersonate(user, "users", target, None)
            as_user = UserInfo(target, ("system:authenticated",))
        for group in groups:
            self._may_impersonate(user, "groups", group, None)
        if groups:
            as_user = UserInfo(as_user.name, (*groups, "system:authenticated"))
        return as_user

    def _may_impersonate(self, user: UserInfo, resource: str, name: str, namespace: str | None) -> None:
        asked = rbac.Request(
            user=user.name,
            groups=user.groups,
            verb="impersonate",
            api_group="",
            resource=resource,
            namespace=namespace,
            name=name,
        )
        if not self._allows(asked):
            raise _ApiError(
                403,
                "Forbidden",
                f'{resource} "{name}" is forbidden: User "{user.name}" cannot impersonate resource '
                f'"{resource}" in API group ""'
                + (f' in the namespace "{namespace}"' if namespace else " at the cluster scope"),
                {"name": name, "kind": resource},
            )

    # ---- authorization ----

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

    def _allows(self, asked: rbac.Request) -> bool:
        """RBAC's decision, remembered until a Role, ClusterRole or binding changes."""
        if self._decisions_generation != self._rbac_generation or len(self._decisions) > 100_000:
            self._decisions.clear()
            self._decisions_generation = self._rbac_generation
        decision = self._decisions.get(asked)
        if decision is None:
            decision = self._decisions[asked] = rbac.Authorizer(self._rbac_objects).allows(asked)
        return decision

    def _rbac_objects(self, kind: str, namespace: str | None) -> Iterator[dict[str, Any]]:
        return self.live(self._by_kind("rbac.authorization.k8s.io/v1", kind), namespace)

    def _authorize(self, user: UserInfo, verb: str, request: kmock.Request) -> None:
        """403 Forbidden unless RBAC allows the request (members of system:masters pass)."""
        if not self.authorize or rbac.MASTERS in user.groups:
            return
        res = request.resource
        assert res is not None  # a resource request
        asked = rbac.Request(
            user=user.name,
            groups=user.groups,
            verb=verb,
            api_group=res.group or "",
            resource=res.plural or "",
            subresource=request.subresource,
            namespace=request.namespace,
            name=request.name or self._selected_name(verb, request),
        )
        if not self._allows(asked):
            details = {"name": request.name or "", "group": asked.api_group, "kind": asked.resource}
            raise _ApiError(403, "Forbidden", asked.describe(), details)

    def _authorize_path(self, user: UserInfo, path: str) -> None:
        """Non-resource paths: public ones for anybody, discovery for authenticated callers."""
        if any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS):
            return
        if "system:authenticated" in user.groups or rbac.MASTERS in user.groups:
            return
        raise _ApiError(403, "Forbidden", f'forbidden: User "{user.name}" cannot get path "{path}"')

    @staticmethod
    def _selected_name(verb: str, request: kmock.Request) -> str | None:
        """A list/watch restricted to one name by its field selector is a request for that name."""
        if verb not in ("list", "watch"):
            return None
        return rbac.name_from_field_selector(str(request.params.get("fieldSelector") or ""))


def _all_values(headers: Any, name: str) -> Iterator[str]:
    """Every value of a (possibly repeated) header, case-insensitively."""
    if hasattr(headers, "getall"):
        yield from (str(v) for v in headers.getall(name, []))
        return
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            yield str(value)
