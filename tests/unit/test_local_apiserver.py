"""The local API server, over HTTP: the behaviours kopf, lightkube and kubectl rely on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yaml

from mabeam.errors import InvalidSpecError
from mabeam.local.apiserver import LocalApiServer
from mabeam.local.apiserver._selectors import parse_label_selector

WIDGETS = "/apis/test.mabeam.io/v1/namespaces/default/widgets"
CMS = "/api/v1/namespaces/default/configmaps"


def widget_crd(rule: str = "!has(self.limit) || self.size <= self.limit") -> dict[str, Any]:
    """A small CRD: typed fields, a default, a CEL rule, a status subresource."""
    spec_schema = {
        "type": "object",
        "required": ["size"],
        "x-kubernetes-validations": [{"rule": rule, "message": "size must not exceed limit"}],
        "properties": {
            "size": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer"},
            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
        },
    }
    status_schema = {
        "type": "object",
        "properties": {"phase": {"type": "string"}, "count": {"type": "integer"}},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.mabeam.io"},
        "spec": {
            "group": "test.mabeam.io",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
                "categories": ["toys"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec_schema, "status": status_schema},
                        }
                    },
                }
            ],
        },
    }


def widget(name: str, size: int = 2, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "test.mabeam.io/v1",
        "kind": "Widget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"size": size},
    }


@pytest.fixture
async def api() -> AsyncIterator[LocalApiServer]:
    async with LocalApiServer(watch_history=20, bookmark_interval=0.05) as server:
        server.install_crds([widget_crd()])
        yield server
        assert server.server_errors == []


@pytest.fixture
async def http(api: LocalApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the cluster admin (its bearer token)."""
    headers = {"Authorization": f"Bearer {api.issue_token()}"}
    async with aiohttp.ClientSession(api.url, headers=headers) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    **params: str,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body)
    headers = {"Content-Type": content_type}
    async with http.request(method, path, data=data, headers=headers, params=params) as response:
        return response.status, await response.json()


async def watch_events(
    http: aiohttp.ClientSession, path: str, count: int, **params: str
) -> tuple[aiohttp.ClientResponse, list[dict[str, Any]]]:
    response = await http.get(path, params={"watch": "true", **params})
    events = []
    async with asyncio.timeout(5):
        while len(events) < count:
            line = await response.content.readline()
            if not line:
                break
            events.append(json.loads(line))
    return response, events


# --- discovery ---------------------------------------------------------------------------------


async def test_core_discovery_declares_namespaces_and_pods_with_status(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "/api/v1")
    assert status == 200
    assert body["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in body["resources"]}
    assert {"namespaces", "pods", "pods/status", "configmaps", "secrets", "events", "services"} <= set(
        by_name
    )
    assert by_name["namespaces"]["namespaced"] is False
    assert {"list", "watch", "create", "patch"} <= set(by_name["pods"]["verbs"])


async def test_group_discovery_lists_crds_leases_rbac_and_admission(http: aiohttp.ClientSession) -> None:
    _, groups = await call(http, "GET", "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "events.k8s.io",
        "rbac.authorization.k8s.io",
        "admissionregistration.k8s.io",
    } <= names
    _, crds = await call(http, "GET", "/apis/apiextensions.k8s.io/v1")
    assert {"watch", "list"} <= set(crds["resources"][0]["verbs"])


async def test_default_namespace_exists(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "/api/v1/namespaces/default")
    assert status == 200
    assert body["status"]["phase"] == "Active"


async def test_creating_a_crd_over_http_makes_its_kind_discoverable(http: aiohttp.ClientSession) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "gadgets.other.mabeam.io"
    crd["spec"]["group"] = "other.mabeam.io"
    crd["spec"]["names"].update(plural="gadgets", singular="gadget", kind="Gadget", shortNames=["gd"])
    status, _ = await call(http, "GET", "/apis/other.mabeam.io/v1")
    assert status == 404
    status, created = await call(http, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201
    assert {c["type"] for c in created["status"]["conditions"]} == {"Established", "NamesAccepted"}
    _, body = await call(http, "GET", "/apis/other.mabeam.io/v1")
    by_name = {r["name"]: r for r in body["resources"]}
    assert set(by_name) == {"gadgets", "gadgets/status"}
    assert by_name["gadgets"]["kind"] == "Gadget"
    assert by_name["gadgets"]["namespaced"] is True
    assert by_name["gadgets"]["shortNames"] == ["gd"]
    assert by_name["gadgets"]["categories"] == ["toys"]
    status, _ = await call(http, "POST", "/apis/other.mabeam.io/v1/namespaces/default/gadgets", widget("g1"))
    assert status == 400  # the body says kind Widget, the URL says gadgets
    gadget = {**widget("g1"), "apiVersion": "other.mabeam.io/v1", "kind": "Gadget"}
    status, _ = await call(http, "POST", "/apis/other.mabeam.io/v1/namespaces/default/gadgets", gadget)
    assert status == 201


async def test_deleting_a_crd_removes_its_kind_and_objects(
    api: LocalApiServer, http: aiohttp.ClientSession
) -> None:
    await call(http, "POST", WIDGETS, widget("w1"))
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.mabeam.io"
    status, _ = await call(http, "DELETE", path)
    assert status == 200
    status, _ = await call(http, "GET", WIDGETS)
    assert status == 404
    api.install_crds([widget_crd()])
    status, _ = await call(http, "GET", f"{WIDGETS}/w1")
    assert status == 404


async def test_a_crd_with_an_uncompilable_cel_rule_is_rejected_clearly(http: aiohttp.ClientSession) -> None:
    crd = widget_crd(rule="self.size <")
    crd["metadata"]["name"] = "bads.test.mabeam.io"
    crd["spec"]["names"].update(plural="bads", singular="bad", kind="Bad", shortNames=[])
    status, body = await call(http, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 422
    (cause,) = body["details"]["causes"]
    assert cause["field"] == (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    )
    assert "compilation failed" in cause["message"]


def test_install_crds_raises_invalid_spec_for_a_bad_rule() -> None:
    server = LocalApiServer()
    crd = widget_crd(rule="self.size <")
    with pytest.raises(InvalidSpecError, match="compilation failed") as info:
        server.install_crds([crd])
    assert info.value.path.endswith("x-kubernetes-validations[0].rule")


# --- resourceVersion, generation, writes -------------------------------------------------------


async def test_resource_version_is_global_and_strictly_increasing(http: aiohttp.ClientSession) -> None:
    versions = []
    _, cm = await call(http, "POST", CMS, {"metadata": {"name": "c1"}, "data": {"a": "1"}})
    versions.append(int(cm["metadata"]["resourceVersion"]))
    _, w = await call(http, "POST", WIDGETS, widget("w1"))
    versions.append(int(w["metadata"]["resourceVersion"]))
    _, cm = await call(http, "PATCH", f"{CMS}/c1", {"data": {"a": "2"}}, "application/merge-patch+json")
    versions.append(int(cm["metadata"]["resourceVersion"]))
    _, w = await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 3}}, "application/merge-patch+json")
    versions.append(int(w["metadata"]["resourceVersion"]))
    assert versions == sorted(set(versions))
    _, listing = await call(http, "GET", CMS)
    assert int(listing["metadata"]["resourceVersion"]) == versions[-1]


async def test_create_sets_identity_and_rejects_a_duplicate(http: aiohttp.ClientSession) -> None:
    status, w = await call(http, "POST", WIDGETS, widget("w1"))
    assert status == 201
    meta = w["metadata"]
    assert meta["namespace"] == "default"
    assert meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    status, body = await call(http, "POST", WIDGETS, widget("w1"))
    assert status == 409
    assert body["reason"] == "AlreadyExists"


async def test_numbers_are_stored_as_a_real_api_server_stores_them(http: aiohttp.ClientSession) -> None:
    # Go decodes 16.0 to a float64 and encodes it back as 16: integral floats read back as
    # integers (found by running the demo on kube-apiserver); fractions and huge values stay.
    body = widget("w-numbers", size=3)
    body["metadata"]["annotations"] = {"note": "16.0"}
    body["spec"]["limit"] = 4.0
    status, created = await call(http, "POST", WIDGETS, body)
    assert status == 201, created
    status, w = await call(http, "GET", f"{WIDGETS}/w-numbers")
    assert w["spec"]["limit"] == 4 and isinstance(w["spec"]["limit"], int)
    assert w["metadata"]["annotations"]["note"] == "16.0"  # strings are strings
    status, w = await call(
        http, "PATCH", f"{WIDGETS}/w-numbers/status", {"status": {"count": 2.0}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    assert status == 200 and w["status"]["count"] == 2 and isinstance(w["status"]["count"], int)


async def test_stale_put_is_a_conflict(http: aiohttp.ClientSession) -> None:
    _, w = await call(http, "POST", WIDGETS, widget("w1"))
    fresh = {**w, "spec": {"size": 4}}
    status, updated = await call(http, "PUT", f"{WIDGETS}/w1", fresh)
    assert status == 200
    assert updated["spec"]["size"] == 4
    stale = {**w, "spec": {"size": 5}}  # carries the first resourceVersion
    status, body = await call(http, "PUT", f"{WIDGETS}/w1", stale)
    assert status == 409
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


async def test_put_of_a_custom_resource_needs_a_resource_version(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", WIDGETS, widget("w1"))
    status, body = await call(http, "PUT", f"{WIDGETS}/w1", widget("w1", size=3))
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.resourceVersion"


async def test_patch_with_a_stale_resource_version_is_a_conflict(http: aiohttp.ClientSession) -> None:
    _, w = await call(http, "POST", WIDGETS, widget("w1"))
    rv = w["metadata"]["resourceVersion"]
    patch = {"metadata": {"resourceVersion": rv}, "spec": {"size": 3}}
    status, patched = await call(http, "PATCH", f"{WIDGETS}/w1", patch, "application/merge-patch+json")
    assert status == 200
    assert patched["spec"]["size"] == 3
    status, body = await call(http, "PATCH", f"{WIDGETS}/w1", patch, "application/merge-patch+json")
    assert status == 409
    assert body["reason"] == "Conflict"


async def test_merge_patch_null_deletes_a_key(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "c1"}, "data": {"a": "1", "b": "2"}})
    patch = {"data": {"a": None, "c": "3"}}
    _, cm = await call(http, "PATCH", f"{CMS}/c1", patch, "application/merge-patch+json")
    assert cm["data"] == {"b": "2", "c": "3"}


async def test_json_patch_applies_ops_and_a_failing_test_op_rejects_all(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "c1"}, "data": {"a": "1"}})
    ops = [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "remove", "path": "/data/a"},
    ]
    status, cm = await call(http, "PATCH", f"{CMS}/c1", ops, "application/json-patch+json")
    assert status == 200
    assert cm["data"] == {"b": "2"}
    ops = [{"op": "test", "path": "/data/b", "value": "9"}, {"op": "add", "path": "/data/z", "value": "x"}]
    status, body = await call(http, "PATCH", f"{CMS}/c1", ops, "application/json-patch+json")
    assert status == 422
    assert "testing value /data/b failed" in body["message"]
    _, cm = await call(http, "GET", f"{CMS}/c1")
    assert cm["data"] == {"b": "2"}


async def test_unknown_patch_type_is_415(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "c1"}})
    status, _ = await call(http, "PATCH", f"{CMS}/c1", {"data": {}}, "text/plain")
    assert status == 415


async def test_generation_moves_on_spec_changes_only(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", WIDGETS, widget("w1"))
    merge = "application/merge-patch+json"
    _, w = await call(http, "PATCH", f"{WIDGETS}/w1", {"metadata": {"labels": {"x": "y"}}}, merge)
    assert w["metadata"]["generation"] == 1
    _, w = await call(http, "PATCH", f"{WIDGETS}/w1/status", {"status": {"phase": "Ready"}}, merge)
    assert w["metadata"]["generation"] == 1
    _, w = await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 5}}, merge)
    assert w["metadata"]["generation"] == 2
    rv = w["metadata"]["resourceVersion"]
    _, w = await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 5}}, merge)
    assert w["metadata"]["generation"] == 2
    assert w["metadata"]["resourceVersion"] == rv  # a no-op write changes nothing


async def test_status_subresource_writes_only_status(http: aiohttp.ClientSession) -> None:
    _, w = await call(http, "POST", WIDGETS, widget("w1"))
    body = {
        **w,
        "spec": {"size": 9},
        "status": {"phase": "Ready"},
        "metadata": {**w["metadata"], "labels": {"a": "b"}},
    }
    status, w2 = await call(http, "PUT", f"{WIDGETS}/w1/status", body)
    assert status == 200
    assert w2["status"] == {"phase": "Ready"}
    assert w2["spec"]["size"] == 2
    assert not w2["metadata"].get("labels")


async def test_main_resource_writes_ignore_status(http: aiohttp.ClientSession) -> None:
    created = widget("w1")
    created["status"] = {"phase": "Forged"}
    _, w = await call(http, "POST", WIDGETS, created)
    assert "status" not in w
    merge = "application/merge-patch+json"
    await call(http, "PATCH", f"{WIDGETS}/w1/status", {"status": {"phase": "Ready"}}, merge)
    _, w = await call(
        http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 3}, "status": {"phase": "Hacked"}}, merge
    )
    assert w["status"] == {"phase": "Ready"}
    assert w["spec"]["size"] == 3


async def test_without_a_status_subresource_status_is_an_ordinary_field(http: aiohttp.ClientSession) -> None:
    _, cm = await call(http, "POST", CMS, {"metadata": {"name": "c1"}, "status": {"x": 1}})
    assert cm["status"] == {"x": 1}
    status, _ = await call(http, "PATCH", f"{CMS}/c1/status", {"status": {}}, "application/merge-patch+json")
    assert status == 404


async def test_pod_status_subresource_and_initial_phase(http: aiohttp.ClientSession) -> None:
    pod = {"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    _, created = await call(http, "POST", "/api/v1/namespaces/default/pods", pod)
    assert created["status"] == {"phase": "Pending"}
    merge = "application/merge-patch+json"
    path = "/api/v1/namespaces/default/pods/p1"
    _, p = await call(http, "PATCH", f"{path}/status", {"status": {"phase": "Running"}}, merge)
    assert p["status"]["phase"] == "Running"
    assert p["metadata"]["generation"] == 1


# --- deletion ----------------------------------------------------------------------------------


async def test_delete_with_finalizers_waits_until_they_are_removed(
    api: LocalApiServer, http: aiohttp.ClientSession
) -> None:
    obj = widget("w1")
    obj["metadata"]["finalizers"] = ["test/keep"]
    await call(http, "POST", WIDGETS, obj)
    status, marked = await call(http, "DELETE", f"{WIDGETS}/w1")
    assert status == 200
    assert marked["metadata"]["deletionTimestamp"]
    assert api.get("widgets.test.mabeam.io", "w1", "default") is not None
    patch = {"metadata": {"finalizers": ["test/keep", "test/new"]}}
    status, _ = await call(http, "PATCH", f"{WIDGETS}/w1", patch, "application/merge-patch+json")
    assert status == 422  # no new finalizers while deleting
    patch = {"metadata": {"finalizers": None}}
    status, _ = await call(http, "PATCH", f"{WIDGETS}/w1", patch, "application/merge-patch+json")
    assert status == 200
    status, _ = await call(http, "GET", f"{WIDGETS}/w1")
    assert status == 404


async def test_delete_precondition_on_resource_version(http: aiohttp.ClientSession) -> None:
    _, w = await call(http, "POST", WIDGETS, widget("w1"))
    await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 3}}, "application/merge-patch+json")
    options = {"preconditions": {"resourceVersion": w["metadata"]["resourceVersion"]}}
    status, body = await call(http, "DELETE", f"{WIDGETS}/w1", options)
    assert status == 409
    assert "Precondition failed" in body["message"]
    status, _ = await call(http, "DELETE", f"{WIDGETS}/w1")
    assert status == 200
    status, body = await call(http, "DELETE", f"{WIDGETS}/w1")
    assert status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'widgets.test.mabeam.io "w1" not found'


def _owned(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"]}
    return {"metadata": {"name": name, "ownerReferences": [{**ref, "uid": owner["metadata"]["uid"]}]}}


async def test_deletion_cascades_to_dependents_two_levels_deep(
    api: LocalApiServer, http: aiohttp.ClientSession
) -> None:
    _, root = await call(http, "POST", WIDGETS, widget("root"))
    _, child = await call(http, "POST", CMS, _owned("child", root))
    _, grandchild = await call(
        http, "POST", "/api/v1/namespaces/default/secrets", _owned("grandchild", child)
    )
    await call(http, "POST", CMS, {"metadata": {"name": "bystander"}})
    status, _ = await call(http, "DELETE", f"{WIDGETS}/root")
    assert status == 200
    assert api.get("v1/configmaps", "child", "default") is None
    assert api.get("v1/secrets", "grandchild", "default") is None
    assert api.get("v1/configmaps", "bystander", "default") is not None
    assert grandchild["metadata"]["uid"]


async def test_orphan_propagation_keeps_dependents_and_strips_the_reference(
    api: LocalApiServer, http: aiohttp.ClientSession
) -> None:
    _, root = await call(http, "POST", WIDGETS, widget("root"))
    await call(http, "POST", CMS, _owned("child", root))
    await call(http, "DELETE", f"{WIDGETS}/root", {"propagationPolicy": "Orphan"})
    child = api.get("v1/configmaps", "child", "default")
    assert child is not None
    assert "ownerReferences" not in child["metadata"]


async def test_namespaces_must_exist_and_deleting_one_deletes_its_content(
    api: LocalApiServer, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, "POST", "/api/v1/namespaces/team/configmaps", {"metadata": {"name": "c"}})
    assert status == 404
    assert body["message"] == 'namespaces "team" not found'
    await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
    status, _ = await call(http, "POST", "/api/v1/namespaces/team/configmaps", {"metadata": {"name": "c"}})
    assert status == 201
    await call(http, "DELETE", "/api/v1/namespaces/team")
    assert api.get("v1/configmaps", "c", "team") is None
    assert api.get("v1/namespaces", "team") is None


# --- selectors and lists -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=front", ["a", "c"]),
        ("tier==front", ["a", "c"]),
        ("tier!=front", ["b", "d"]),
        ("tier in (back, db)", ["b"]),
        ("tier notin (front)", ["b", "d"]),
        ("zone", ["a", "b"]),
        ("!zone", ["c", "d"]),
        ("tier=front,zone=eu", ["a"]),
        ("tier in (front),!zone", ["c"]),
    ],
    ids=["eq", "eqeq", "neq", "in", "notin", "exists", "not-exists", "and", "set-and-not"],
)
async def test_label_selectors_on_list(
    http: aiohttp.ClientSession, selector: str, expected: list[str]
) -> None:
    labels = {
        "a": {"tier": "front", "zone": "eu"},
        "b": {"tier": "back", "zone": "us"},
        "c": {"tier": "front"},
        "d": {},
    }
    for name, its_labels in labels.items():
        await call(http, "POST", CMS, {"metadata": {"name": name, "labels": its_labels}})
    status, body = await call(http, "GET", CMS, labelSelector=selector)
    assert status == 200
    assert [item["metadata"]["name"] for item in body["items"]] == expected


async def test_a_malformed_label_selector_is_a_bad_request(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", CMS, labelSelector="a in b")
    assert status == 400
    assert body["reason"] == "BadRequest"


async def test_field_selectors_on_name_and_namespace(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    await call(http, "POST", CMS, {"metadata": {"name": "b"}})
    await call(http, "POST", "/api/v1/namespaces/other/configmaps", {"metadata": {"name": "a"}})
    _, body = await call(http, "GET", "/api/v1/configmaps", fieldSelector="metadata.name=a")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]] == [
        ("default", "a"),
        ("other", "a"),
    ]
    _, body = await call(http, "GET", "/api/v1/configmaps", fieldSelector="metadata.namespace!=default")
    assert [i["metadata"]["namespace"] for i in body["items"]] == ["other"]


async def test_list_pages_with_limit_and_continue(http: aiohttp.ClientSession) -> None:
    for index in range(5):
        await call(http, "POST", CMS, {"metadata": {"name": f"c{index}"}})
    _, first = await call(http, "GET", CMS, limit="2")
    assert [i["metadata"]["name"] for i in first["items"]] == ["c0", "c1"]
    assert first["metadata"]["remainingItemCount"] == 3
    _, second = await call(http, "GET", CMS, limit="4", **{"continue": first["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in second["items"]] == ["c2", "c3", "c4"]
    assert "continue" not in second["metadata"]


def test_label_selector_parser_matches_a_hand_checked_table() -> None:
    obj = {"metadata": {"labels": {"n": "5", "x": "y"}}}
    assert parse_label_selector("n>3")(obj)
    assert not parse_label_selector("n<3")(obj)
    assert parse_label_selector("")(obj)
    assert parse_label_selector("x in (y,z),n notin (1, 2)")(obj)


# --- watch -------------------------------------------------------------------------------------


async def test_watch_sends_current_objects_then_changes_filtered_by_labels(
    http: aiohttp.ClientSession,
) -> None:
    await call(http, "POST", WIDGETS, widget("w1", app="x"))
    await call(http, "POST", WIDGETS, widget("w2", app="other"))
    response = await http.get(WIDGETS, params={"watch": "true", "labelSelector": "app=x"})
    merge = "application/merge-patch+json"
    async with asyncio.timeout(5):
        first = json.loads(await response.content.readline())
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "w1")
        await call(http, "PATCH", f"{WIDGETS}/w2", {"spec": {"size": 3}}, merge)  # not selected
        await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 4}}, merge)
        event = json.loads(await response.content.readline())
        assert (event["type"], event["object"]["spec"]["size"]) == ("MODIFIED", 4)
        await call(http, "PATCH", f"{WIDGETS}/w2", {"metadata": {"labels": {"app": "x"}}}, merge)
        event = json.loads(await response.content.readline())
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "w2")
        await call(http, "PATCH", f"{WIDGETS}/w1", {"metadata": {"labels": {"app": "y"}}}, merge)
        event = json.loads(await response.content.readline())
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "w1")
        await call(http, "DELETE", f"{WIDGETS}/w2")
        event = json.loads(await response.content.readline())
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "w2")
    response.close()


async def test_watch_from_a_resource_version_sends_only_later_events(http: aiohttp.ClientSession) -> None:
    _, w1 = await call(http, "POST", WIDGETS, widget("w1"))
    await call(http, "POST", WIDGETS, widget("w2"))
    await call(http, "DELETE", f"{WIDGETS}/w1")
    response, events = await watch_events(http, WIDGETS, 2, resourceVersion=w1["metadata"]["resourceVersion"])
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w2"),
        ("DELETED", "w1"),
    ]
    deleted_rv = int(events[1]["object"]["metadata"]["resourceVersion"])
    assert deleted_rv > int(events[0]["object"]["metadata"]["resourceVersion"])
    response.close()


async def test_watch_from_an_expired_resource_version_gets_410(http: aiohttp.ClientSession) -> None:
    _, first = await call(http, "POST", CMS, {"metadata": {"name": "c0"}})
    for index in range(25):  # the history keeps 20 events
        await call(http, "PATCH", f"{CMS}/c0", {"data": {"i": str(index)}}, "application/merge-patch+json")
    response, events = await watch_events(http, CMS, 2, resourceVersion=first["metadata"]["resourceVersion"])
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"
    response.close()


async def test_watch_ends_after_timeout_seconds(http: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(3):
        response = await http.get(
            CMS, params={"watch": "true", "timeoutSeconds": "0.2", "resourceVersion": "1"}
        )
        assert await response.read() == b""
    assert response.status == 200


async def test_watch_sends_bookmarks_when_asked(http: aiohttp.ClientSession) -> None:
    params = {"resourceVersion": "1", "allowWatchBookmarks": "true"}
    response, events = await watch_events(http, CMS, 1, **params)
    assert events[0]["type"] == "BOOKMARK"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= 1
    response.close()


async def test_watch_of_a_single_object_by_name(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    await call(http, "POST", CMS, {"metadata": {"name": "b"}})
    response, events = await watch_events(http, f"{CMS}/b", 1)
    assert [e["object"]["metadata"]["name"] for e in events] == ["b"]
    response.close()


# --- validation of custom resources ------------------------------------------------------------


async def test_invalid_custom_resource_is_422_with_the_field_path(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "POST", WIDGETS, widget("w1", size=0))
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Widget.test.mabeam.io "w1" is invalid: spec.size: Invalid value: 0: '
        "spec.size in body should be greater than or equal to 1"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: spec.size in body should be greater than or equal to 1",
            "field": "spec.size",
        }
    ]


async def test_cel_rule_violation_is_422_with_its_message(http: aiohttp.ClientSession) -> None:
    obj = widget("w1", size=5)
    obj["spec"]["limit"] = 3
    status, body = await call(http, "POST", WIDGETS, obj)
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec"
    assert body["message"].endswith('spec: Invalid value: "object": size must not exceed limit')


async def test_defaults_are_applied_and_unknown_fields_pruned(http: aiohttp.ClientSession) -> None:
    obj = widget("w1")
    obj["spec"]["bogus"] = 1
    status, w = await call(http, "POST", WIDGETS, obj)
    assert status == 201
    assert w["spec"] == {"size": 2, "color": "red"}
    status, body = await call(
        http, "POST", WIDGETS, {**obj, "metadata": {"name": "w2"}}, fieldValidation="Strict"
    )
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec.bogus"


async def test_status_writes_are_validated_too(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", WIDGETS, widget("w1"))
    patch = {"status": {"count": "many"}}
    status, body = await call(http, "PATCH", f"{WIDGETS}/w1/status", patch, "application/merge-patch+json")
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "status.count"


async def test_invalid_names_are_rejected(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "POST", CMS, {"metadata": {"name": "Not_Valid"}})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_dry_run_validates_without_storing(api: LocalApiServer, http: aiohttp.ClientSession) -> None:
    status, w = await call(http, "POST", WIDGETS, widget("w1"), dryRun="All")
    assert status == 201
    assert w["spec"]["color"] == "red"
    assert api.get("widgets.test.mabeam.io", "w1", "default") is None


async def test_server_side_apply_creates_then_merges(http: aiohttp.ClientSession) -> None:
    apply = "application/apply-patch+yaml"
    status, w = await call(http, "PATCH", f"{WIDGETS}/w1", widget("w1"), apply, fieldManager="t")
    assert status == 201
    assert w["spec"]["size"] == 2
    assert [(m["manager"], m["operation"]) for m in w["metadata"]["managedFields"]] == [("t", "Apply")]
    status, w = await call(http, "PATCH", f"{WIDGETS}/w1", widget("w1", size=3), apply, fieldManager="t")
    assert status == 200
    assert w["spec"]["size"] == 3
    status, body = await call(http, "PATCH", f"{WIDGETS}/w1", widget("w1", size=4), apply)
    assert status == 422 and "fieldManager: Required value" in body["message"]


# --- pods/binding -------------------------------------------------------------------------------

PODS = "/api/v1/namespaces/default/pods"


def pod_binding(name: str, node: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, **meta},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


async def test_a_binding_assigns_a_pod_to_a_node_once(
    api: LocalApiServer, http: aiohttp.ClientSession
) -> None:
    pod = {"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    status, created = await call(http, "POST", PODS, pod)
    assert status == 201
    annotated = pod_binding("p1", "n1", uid=created["metadata"]["uid"], annotations={"why": "test"})
    status, body = await call(http, "POST", f"{PODS}/p1/binding", annotated)
    assert (status, body["kind"], body["status"]) == (201, "Status", "Success")
    response, events = await watch_events(
        http, PODS, 1, resourceVersion=created["metadata"]["resourceVersion"]
    )
    response.close()
    assert events[0]["type"] == "MODIFIED" and events[0]["object"]["spec"]["nodeName"] == "n1"
    _, bound = await call(http, "GET", f"{PODS}/p1")
    assert bound["spec"]["nodeName"] == "n1"
    assert bound["metadata"]["annotations"] == {"why": "test"}
    assert [c["status"] for c in bound["status"]["conditions"] if c["type"] == "PodScheduled"] == ["True"]

    # A real API server refuses to move a bound pod, to the same node or to another.
    for node in ("n2", "n1"):
        status, refused = await call(http, "POST", f"{PODS}/p1/binding", pod_binding("p1", node))
        assert (status, refused["reason"]) == (409, "Conflict")
        assert refused["message"] == (
            'Operation cannot be fulfilled on pods/binding "p1": pod p1 is already assigned to node "n1"'
        )
    _, still = await call(http, "GET", f"{PODS}/p1")
    assert still["spec"]["nodeName"] == "n1"
    assert still["metadata"]["resourceVersion"] == bound["metadata"]["resourceVersion"]


async def test_a_binding_is_checked_like_a_real_one(api: LocalApiServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", PODS, {"metadata": {"name": "p2"}, "spec": {"containers": [{"name": "c"}]}})
    url = f"{PODS}/p2/binding"
    status, body = await call(http, "POST", url, pod_binding("p2", "n1", uid="not-the-uid"))
    assert status == 409 and "Precondition failed: UID in precondition: not-the-uid" in body["message"]
    status, body = await call(http, "POST", url, pod_binding("other", "n1"))
    assert (status, body["message"]) == (400, "name in URL does not match name in Binding object")
    status, body = await call(
        http, "POST", url, {**pod_binding("p2", "n1"), "target": {"kind": "Pod", "name": "x"}}
    )
    assert status == 422 and "target.kind" in body["message"]
    status, body = await call(http, "POST", url, {**pod_binding("p2", ""), "target": {"kind": "Node"}})
    assert status == 422 and "target.name: Required value" in body["message"]
    status, _ = await call(http, "POST", f"{PODS}/nobody/binding", pod_binding("nobody", "n1"))
    assert status == 404
    status, _ = await call(http, "POST", url, pod_binding("p2", "n1"), dryRun="All")
    assert status == 201
    _, pod = await call(http, "GET", f"{PODS}/p2")
    assert "nodeName" not in pod["spec"]  # refused or dry: nothing was bound


async def test_binding_needs_create_on_pods_binding(api: LocalApiServer, http: aiohttp.ClientSession) -> None:
    api.create(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p3", "namespace": "default"}, "spec": {}}
    )
    rbac_v1 = "rbac.authorization.k8s.io/v1"
    pods_rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}
    binding_rule = {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]}
    for name, rules in (("pods", [pods_rule]), ("scheduler", [binding_rule])):
        api.create(
            {
                "apiVersion": rbac_v1,
                "kind": "Role",
                "metadata": {"name": name, "namespace": "default"},
                "rules": rules,
            }
        )
        api.create(
            {
                "apiVersion": rbac_v1,
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": "default"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}],
            }
        )

    async def bind_as(account: str) -> int:
        headers = {"Authorization": f"Bearer {api.issue_token(f'system:serviceaccount:default:{account}')}"}
        async with http.post(f"{PODS}/p3/binding", json=pod_binding("p3", "n1"), headers=headers) as response:
            return response.status

    assert await bind_as("pods") == 403  # every verb on pods, but not the subresource
    assert await bind_as("scheduler") == 201
    assert api.get("v1/pods", "p3", "default")["spec"]["nodeName"] == "n1"


# --- identity, accessors, kubeconfig -----------------------------------------------------------


async def test_the_caller_identity_is_recorded(api: LocalApiServer, http: aiohttp.ClientSession) -> None:
    agent = api.issue_token("system:serviceaccount:team:agent-1")
    async with aiohttp.ClientSession(api.url) as bare:
        async with bare.get(CMS, headers={"Authorization": f"Bearer {agent}"}):
            pass
        async with http.get(CMS, headers={"Impersonate-User": "alice"}):  # the admin may impersonate
            pass
        async with bare.get(CMS):
            pass
        async with bare.get(CMS, headers={"Authorization": "Bearer sa:team:agent-1"}) as response:
            assert response.status == 401  # a name is not a token
    users = [(record.user, record.code) for record in api.audit if record.verb == "list"]
    assert users == [
        ("system:serviceaccount:team:agent-1", 403),
        ("alice", 403),
        ("system:anonymous", 403),
        ("", 401),
    ]
    assert api.request_counts["list"] == 4


async def test_history_lists_every_version_and_the_deletion(
    api: LocalApiServer, http: aiohttp.ClientSession
) -> None:
    await call(http, "POST", WIDGETS, widget("w1"))
    await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 7}}, "application/merge-patch+json")
    await call(http, "DELETE", f"{WIDGETS}/w1")
    history = api.history("test.mabeam.io/v1/widgets", "w1", "default")
    assert [None if v is None else v["spec"]["size"] for v in history] == [2, 7, None]
    assert api.objects("wd", "default") == []


async def test_direct_create_and_objects_with_label_selector(api: LocalApiServer) -> None:
    api.create(widget("w1", app="x"))
    api.create(widget("w2", app="y"))
    assert [o["metadata"]["name"] for o in api.objects("Widget", label_selector="app=x")] == ["w1"]
    with pytest.raises(InvalidSpecError, match="already exists"):
        api.create(widget("w1"))


async def test_kubeconfig_points_at_the_server(api: LocalApiServer, tmp_path: Any) -> None:
    path = api.kubeconfig(tmp_path / "kubeconfig", user="system:serviceaccount:default:op")
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == api.url
    token = config["users"][0]["user"]["token"]
    assert "op" not in token and len(token) >= 32  # a secret, not a name
    assert (
        api.emulator.authenticate({"Authorization": f"Bearer {token}"}).name
        == "system:serviceaccount:default:op"
    )
    assert api.url.startswith("http://127.0.0.1:")


def test_threaded_server_serves_and_stops() -> None:
    async def fetch(url: str, token: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(f"{url}/api/v1/namespaces/default") as r,
        ):
            return r.status

    with LocalApiServer.start_in_thread() as threaded:
        assert asyncio.run(fetch(threaded.url)) == 403  # anonymous
        token = threaded.call(threaded.api.issue_token)
        assert asyncio.run(fetch(threaded.url, token)) == 200
        assert threaded.call(lambda: threaded.api.get("v1/namespaces", "default")) is not None
