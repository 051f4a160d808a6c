"""RBAC in the local API server: service accounts get what their bindings grant, nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mabeam.local.apiserver import LocalApiServer
from mabeam.local.apiserver._server import user_info
from mabeam.local.rbac import Authorizer, Request, name_from_field_selector, rule_covers

SA = "system:serviceaccount:team:bot"
CM_RULE = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update"]}


def role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules}


def binding(
    kind: str,
    name: str,
    ref_kind: str,
    ref: str,
    subjects: list[dict[str, Any]],
    namespace: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref},
        "subjects": subjects,
    }


def sa_subject(name: str = "bot", namespace: str = "team") -> dict[str, Any]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def store(*objs: dict[str, Any]) -> Authorizer:
    def lookup(kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return [o for o in objs if o["kind"] == kind and o["metadata"].get("namespace") == namespace]

    return Authorizer(lookup)


def req(
    verb: str,
    resource: str = "configmaps",
    name: str | None = "c1",
    namespace: str | None = "team",
    group: str = "",
    subresource: str | None = None,
    user: str = SA,
    groups: tuple[str, ...] | None = None,
) -> Request:
    """A request; by default in the groups the API server gives ``user`` (see user_info)."""
    if groups is None:
        groups = user_info(user).groups if user != "admin" else ("system:authenticated",)
    return Request(user, verb, group, resource, subresource, namespace, name, groups)


# --- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[LocalApiServer]:
    async with LocalApiServer() as server:
        server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
        yield server


async def status_of(http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_the_server_refuses_a_service_account_with_a_kubernetes_status(api: LocalApiServer) -> None:
    url = f"{api.url}/api/v1/namespaces/team/configmaps"
    body = {"metadata": {"name": "c1"}, "data": {"a": "1"}}
    bot, admin = api.issue_token("system:serviceaccount:team:bot"), api.issue_token()
    async with aiohttp.ClientSession() as http:
        code, status = await status_of(http, "POST", url, bot, body)
        assert code == 403
        assert status["kind"] == "Status" and status["reason"] == "Forbidden"
        assert (
            'User "system:serviceaccount:team:bot" cannot create resource "configmaps"' in status["message"]
        )
        assert api.get("v1/configmaps", "c1", "team") is None
        # The admin is not restricted; then a Role lets the service account read (only) c1.
        code, _ = await status_of(http, "POST", url, admin, body)
        assert code == 201
        api.create(role("Role", "cm", [{**CM_RULE, "verbs": ["get"], "resourceNames": ["c1"]}], "team"))
        api.create(binding("RoleBinding", "b", "Role", "cm", [sa_subject()], "team"))
        code, cm = await status_of(http, "GET", f"{url}/c1", bot)
        assert (code, cm["data"]) == (200, {"a": "1"})
        code, _ = await status_of(http, "GET", url, bot)
        assert code == 403
    assert [r.code for r in api.audit if r.user == "system:serviceaccount:team:bot"] == [403, 200, 403]


async def test_authorization_can_be_switched_off() -> None:
    async with LocalApiServer(authorize=False) as api, aiohttp.ClientSession() as http:
        token = api.issue_token("system:serviceaccount:default:x")
        code, _ = await status_of(http, "GET", f"{api.url}/api/v1/namespaces/default/configmaps", token)
        assert code == 200


# --- the rules, without a server ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "request_", "expected"),
    [
        (CM_RULE, req("get"), True),
        (CM_RULE, req("delete"), False),
        (CM_RULE, req("get", resource="secrets"), False),
        (CM_RULE, req("get", group="apps"), False),
        ({**CM_RULE, "resourceNames": ["c1"]}, req("update"), True),
        ({**CM_RULE, "resourceNames": ["c1"]}, req("update", name="c2"), False),
        ({**CM_RULE, "verbs": ["list"], "resourceNames": ["c1"]}, req("list", name=None), False),
        ({**CM_RULE, "verbs": ["create"], "resourceNames": ["c1"]}, req("create", name="c1"), False),
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, req("delete", group="x.io"), True),
        (CM_RULE, req("update", subresource="status"), False),
        ({**CM_RULE, "resources": ["configmaps/status"]}, req("update", subresource="status"), True),
    ],
    ids=[
        "verb",
        "other-verb",
        "other-resource",
        "other-group",
        "named",
        "other-name",
        "names-no-list",
        "names-no-create",
        "wildcards",
        "subresource-apart",
        "subresource-named",
    ],
)
def test_a_rule_covers_exactly_its_groups_resources_verbs_and_names(
    rule: dict[str, Any], request_: Request, expected: bool
) -> None:
    assert rule_covers(rule, request_) is expected


def test_a_role_binding_grants_only_in_its_namespace_and_only_to_its_subjects() -> None:
    authz = store(
        role("Role", "cm", [CM_RULE], "team"),
        binding("RoleBinding", "b", "Role", "cm", [sa_subject()], "team"),
    )
    assert authz.allows(req("get"))
    assert not authz.allows(req("get", namespace="other"))
    assert not authz.allows(req("get", user="system:serviceaccount:team:other"))
    assert not authz.allows(req("get", user="system:serviceaccount:other:bot"))


def test_cluster_roles_via_role_bindings_are_namespaced_and_via_cluster_bindings_global() -> None:
    cluster_role = role("ClusterRole", "reader", [{**CM_RULE, "verbs": ["get"]}])
    local = store(cluster_role, binding("RoleBinding", "b", "ClusterRole", "reader", [sa_subject()], "team"))
    assert local.allows(req("get")) and not local.allows(req("get", namespace="other"))
    everywhere = store(
        cluster_role, binding("ClusterRoleBinding", "b", "ClusterRole", "reader", [sa_subject()])
    )
    assert everywhere.allows(req("get", namespace="other"))
    ns_rule = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}
    cluster_scoped = store(
        role("ClusterRole", "ns", [ns_rule]),
        binding("ClusterRoleBinding", "b", "ClusterRole", "ns", [sa_subject()]),
    )
    assert cluster_scoped.allows(req("list", resource="namespaces", name=None, namespace=None))


def test_groups_match_and_only_masters_are_not_checked() -> None:
    authz = store(
        role("Role", "cm", [CM_RULE], "team"),
        binding(
            "RoleBinding",
            "b",
            "Role",
            "cm",
            [{"kind": "Group", "name": "system:serviceaccounts:team"}],
            "team",
        ),
    )
    assert authz.allows(req("get", user="system:serviceaccount:team:anyone"))
    assert not authz.allows(req("get", user="system:serviceaccount:else:anyone", namespace="else"))
    assert store().allows(req("delete", user="admin", groups=("system:masters",)))
    assert not Authorizer(lambda kind, ns: []).allows(req("get", user="admin"))


@pytest.mark.parametrize(
    ("selector", "name"),
    [
        ("metadata.name=mabeam-variables", "mabeam-variables"),
        ("metadata.name==mabeam-variables", "mabeam-variables"),
        ("status.phase=Running,metadata.name=x", "x"),
        ("metadata.name!=x", None),
        ("metadata.namespace=x", None),
        ("", None),
    ],
)
def test_a_list_is_named_by_an_equality_on_metadata_name(selector: str, name: str | None) -> None:
    # As Kubernetes' request-info resolver: only then can resourceNames cover a list or watch.
    assert name_from_field_selector(selector) == name
