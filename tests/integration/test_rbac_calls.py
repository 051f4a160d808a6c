"""Every API call the operator makes is allowed by the RBAC rules we ship (mabeam/kube/permissions.py).

The operator runs a realistic scenario against the local cluster; the API server's audit log
then lists every request made under the operator's ServiceAccount, and each one must be granted
by OPERATOR_RULES + OPERATOR_CLUSTER_RULES, or in the operator's own namespace by
OPERATOR_OWN_NAMESPACE_RULES (the rules the Helm chart renders). The check is
written here from the RBAC semantics, independently of the local server's own authorizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from mabeam.core.agents import service_account_name
from mabeam.core.variables_wire import writer_role_name
from mabeam.kube import permissions as _permissions
from mabeam.kube.client import Kube
from mabeam.kube.permissions import Rule
from mabeam.kube.resources import AGENT, BID, ORDER, POD, ROLE_BINDING, VOTE
from mabeam.local.apiserver import AuditRecord
from mabeam.local.cluster import LocalCluster
from tests.integration._util import eventually
from tests.integration.test_agent_lifecycle import NS, agent_manifest, pods_of, ready

OPERATOR_NAMESPACE = "mabeam-system"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:mabeam-operator"


def rbac_request(record: AuditRecord) -> tuple[str, str, str, str | None]:
    """(apiGroup, resource[/subresource], verb, name) as RBAC sees the request."""
    group = record.resource.split("/")[0]  # "mabeam.io/v1alpha1/agents" or "/v1/pods"
    plural = record.resource.rsplit("/", 1)[1]
    resource = f"{plural}/{record.subresource}" if record.subresource else plural
    return group, resource, record.verb, record.name


def allowed(request: tuple[str, str, str, str | None], rules: Iterable[Rule]) -> bool:
    group, resource, verb, name = request
    for rule in rules:
        if rule.api_group not in (group, "*") or (verb not in rule.verbs and "*" not in rule.verbs):
            continue
        if resource not in rule.resources and "*" not in rule.resources:
            continue
        if rule.resource_names and name not in rule.resource_names:
            continue
        return True
    return False


def uncovered(records: Sequence[AuditRecord], rules: Iterable[Rule]) -> set[tuple[str, str, str]]:
    """The requests no rule grants; OPERATOR_OWN_NAMESPACE_RULES count in that namespace only."""
    rules = tuple(rules)
    own = tuple(r for r in rules if r in _permissions.OPERATOR_OWN_NAMESPACE_RULES)
    everywhere = tuple(r for r in rules if r not in own)
    return {
        rbac_request(record)[:3]
        for record in records
        if not allowed(rbac_request(record), everywhere)
        and not (record.namespace == OPERATOR_NAMESPACE and allowed(rbac_request(record), own))
    }


async def test_every_operator_request_is_granted_by_the_shipped_rules(
    cluster: LocalCluster, kube: Kube
) -> None:
    await cluster.start_operator()
    await kube.create(AGENT, agent_manifest("r1"))
    await eventually(lambda: ready(kube, "r1"), what="r1 Ready")
    await kube.delete(POD, "r1-1", NS)  # lost pod: replaced

    async def on_pod(name: str) -> bool:
        status = await ready(kube, "r1")
        return bool(status and status.get("podName") == name)

    await eventually(lambda: on_pod("r1-2"), what="r1 on a replacement pod")
    env = [{"name": "GREETING", "value": "hello"}]  # template change: the pod is recreated
    await kube.patch(
        AGENT,
        "r1",
        [{"op": "add", "path": "/spec/template/spec/containers/0/env", "value": env}],
        namespace=NS,
        json_patch=True,
    )
    await eventually(lambda: on_pod("r1-3"), what="r1 on a pod with the new template")
    await kube.delete(AGENT, "r1", NS)

    async def gone() -> bool:
        return await kube.get(AGENT, "r1", NS) is None and not await pods_of(kube, "r1")

    await eventually(gone, what="r1 and its pods gone")
    await cluster.stop_operator()

    records = [r for r in cluster.api.audit if r.user == OPERATOR_USER]
    seen = {rbac_request(r)[:3] for r in records}
    # The scenario exercised what it should (or the check below would prove nothing).
    for wanted in [
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods", "watch"),
        ("", "serviceaccounts", "create"),
        ("mabeam.io", "agents/status", "patch"),
        ("mabeam.io", "agents", "watch"),
        ("mabeam.io", "agents", "get"),  # a lost pod: is its Agent still there?
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("", "secrets", "get"),  # the sealing key, read at startup
    ]:
        assert wanted in seen, f"the scenario made no {wanted} request; seen: {sorted(seen)}"
    rules = (
        *_permissions.OPERATOR_RULES,
        *_permissions.OPERATOR_CLUSTER_RULES,
        *_permissions.OPERATOR_OWN_NAMESPACE_RULES,
    )
    assert uncovered(records, rules) == set()
    assert [r for r in records if r.code == 403] == []

    # The check can fail: without the pods rule, the pod calls are reported as not granted.
    reduced = [r for r in rules if r.resources != ("pods",)]
    assert uncovered(records, reduced) >= {
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods", "list"),
    }
    # ... and without patch on agents/status, the status writes are.
    no_status = [r for r in rules if "agents/status" not in r.resources]
    assert ("mabeam.io", "agents/status", "patch") in uncovered(records, no_status)
    # ... and the sealing key's Secret is read in the operator's namespace, nowhere else.
    secrets = [r for r in records if rbac_request(r)[1] == "secrets"]
    assert {r.namespace for r in secrets} == {OPERATOR_NAMESPACE}
    assert {r.name for r in secrets if r.verb == "get"} == {_permissions.SEALING_KEY_SECRET}


def atoms(rules: Iterable[Rule]) -> set[tuple[str, str, str]]:
    return {(r.api_group, res, verb) for r in rules for res in r.resources for verb in r.verbs}


# Granted but not requested in the scenario below, each for a stated reason.
NOT_REQUESTED_HERE = {
    # Leader election (--leader-elect; tests/integration/test_leader.py) updates its Lease, and
    # the writer Roles grant update on a Variable's lock Lease (held by whoever grants it).
    # (create is used here: the operator creates each Variable's lock Lease.)
    ("coordination.k8s.io", "leases", "update"): "leader election, writer Roles",
    # Never a request: the API server checks it when the operator binds an agent's
    # ServiceAccount to the mabeam-agent ClusterRole (RBAC's escalation check).
    ("rbac.authorization.k8s.io", "clusterroles", "bind"): "RoleBinding to mabeam-agent",
    # Never a request: the operator grants writers update on their Variable, which RBAC allows
    # only to whoever holds it.
    ("mabeam.io", "variables", "update"): "writer Roles",
    # The writer Role's rules never change by themselves; the patch repairs a hand-edited Role.
    ("rbac.authorization.k8s.io", "roles", "patch"): "repairing a writer Role",
    # A session pass reads its session from the watch; it reads the API only after a failed pass
    # (a 409 from a stale view, an API error): tests/integration/test_faults.py.
    ("mabeam.io", "coordinations", "get"): "a pass after a failure",
    ("mabeam.io", "auctions", "get"): "a pass after a failure",
    ("mabeam.io", "markets", "get"): "a pass after a failure",
}


# This scenario once hung about one run in five at its teardown (the operator's log normal to
# the end): the local kubelet's shutdown waited for a readiness prober whose cancellation
# Python 3.11 had swallowed inside asyncio.wait_for (the demo's hang too). Probes now stop with
# their process and cancellation is retried (mabeam/local/kubelet.py, _cancel and _probe_loop),
# so the test is back in `make test`. Its waits are on conditions; the bounds are for a busy
# machine, where starting 14 agent processes alone took half a minute (the demo's own sessions
# last tens of seconds by their windows).
@pytest.mark.timeout(360)
async def test_the_shipped_rules_grant_nothing_the_operator_does_not_use(tmp_path: Path) -> None:
    """The reverse direction: every right we ask for is used by the whole demo scenario."""
    from mabeam.local import demo

    examples = Path(__file__).parents[2] / "examples"
    async with LocalCluster(tmp_path, kubelet_options={"probe_period": 0.5}) as cluster:
        await cluster.start_operator_process()  # `mabeam run`, as deployed
        kube = cluster.client()
        try:
            loop = asyncio.get_running_loop()
            assert await demo.play(kube, demo.load_manifests(examples), loop.time() + 240)
            # Deletions: a pod (replaced), then a whole Agent.
            await kube.delete(POD, "alice-1", "default")
            await eventually(lambda: _on_new_pod(kube, "alice"), what="alice replaced", timeout=90)
            # A template change: the operator deletes the old pod itself.
            env = [{"name": "GREETING", "value": "hi"}]
            patch = [{"op": "add", "path": "/spec/template/spec/containers/0/env", "value": env}]
            await kube.patch(AGENT, "carol", patch, namespace="default", json_patch=True)
            await eventually(lambda: _on_new_pod(kube, "carol"), what="carol replaced", timeout=90)
            # bob gains the compute capability: the Variables' writer RoleBindings now name him.
            caps = [{"op": "add", "path": "/spec/capabilities/-", "value": "compute"}]
            await kube.patch(AGENT, "bob", caps, namespace="default", json_patch=True)
            await eventually(
                lambda: _writes(kube, "target-temperature", "bob"), what="bob a writer", timeout=90
            )
            await kube.delete(AGENT, "bob", "default")
            await eventually(lambda: _gone(kube, AGENT, "bob"), what="bob gone", timeout=90)
            # An answer of each kind from someone who is no participant, after the session
            # ended: refused, with the verdict on the answer itself (a counted answer's verdict
            # is in its session's status).
            order = (await kube.list(ORDER, "default"))[0]
            for res, session, fields in (
                (VOTE, "release-vote", {"session": "release-vote", "choice": "stable"}),
                (BID, "gpu-1-clock", {"auction": "gpu-1-clock", "round": 1, "accept": True}),
                (ORDER, order["spec"]["market"], {"market": order["spec"]["market"],
                                                  "sealed": order["spec"]["sealed"]}),
            ):  # fmt: skip
                await kube.create(res, {
                    "metadata": {"name": f"{session}-zed", "namespace": "default",
                                 "labels": {"mabeam.io/session": session}},
                    "spec": {"agent": "zed", **fields},
                })  # fmt: skip
                await eventually(
                    lambda r=res, n=f"{session}-zed": _refused(kube, r, n), what=f"{session}-zed refused"
                )
        finally:
            await kube.close()
        await cluster.stop_operator()
        records = [r for r in cluster.api.audit if r.user == OPERATOR_USER]

    rules = (
        *_permissions.OPERATOR_RULES,
        *_permissions.OPERATOR_CLUSTER_RULES,
        *_permissions.OPERATOR_OWN_NAMESPACE_RULES,
    )
    assert uncovered(records, rules) == set()
    used = {rbac_request(r)[:3] for r in records}
    unused = atoms(rules) - used - set(NOT_REQUESTED_HERE)
    assert unused == set(), f"granted but never used (drop them from _permissions.py and the chart): {unused}"


async def _on_new_pod(kube: Kube, agent: str) -> bool:
    status = await ready(kube, agent)
    return bool(status and status.get("podName") != f"{agent}-1")


async def _writes(kube: Kube, variable: str, agent: str) -> bool:
    binding = await kube.get(ROLE_BINDING, writer_role_name(variable), "default")
    subjects = (binding or {}).get("subjects") or []
    return any(s.get("name") == service_account_name(agent) for s in subjects)


async def _refused(kube: Kube, res: Any, name: str) -> bool:
    obj = await kube.get(res, name, "default")
    return (obj or {}).get("status", {}).get("accepted") is False


async def _gone(kube: Kube, res: Any, name: str) -> bool:
    return await kube.get(res, name, "default") is None
