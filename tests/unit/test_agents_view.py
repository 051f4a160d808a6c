"""The Agents' in-memory view keeps only what the passes read: a plan made from what it keeps
is the plan made from the whole objects."""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.controller import _agent_view as _view
from mabeam.controller._runtime import allow_deep_json
from mabeam.core import agents as _agents

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
UID = "0b8c5b1e-1111-2222-3333-000000000001"


def whole_agent(status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """An Agent as the API server returns it (managedFields, annotations and all)."""
    return {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Agent",
        "metadata": {
            "name": "a-1",
            "namespace": "fleet",
            "uid": UID,
            "resourceVersion": "41",
            "generation": 2,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"team": "x", "capability.mabeam.io/vote": "true"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 500 + "}"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
            **meta,
        },
        "spec": {
            "capabilities": ["vote", "bid"],
            "template": {
                "metadata": {"labels": {"tier": "a"}, "annotations": {"note": "n"}},
                "spec": {"containers": [{"name": "agent", "image": "img:1", "command": ["run"]}]},
            },
            "restart": {"initialDelaySeconds": 1, "maxDelaySeconds": 8, "resetAfterSeconds": 60},
        },
        "status": status or {},
    }


def whole_pod(agent: dict[str, Any], incarnation: int = 1) -> dict[str, Any]:
    """The Pod the plan makes for ``agent``, as the API server and kubelet fill it in."""
    spec = _agents.parse_spec(agent["spec"])
    pod = copy.deepcopy(_agents.build_pod(agent, spec, incarnation))
    pod["metadata"].update(
        uid=f"pod-uid-{incarnation}",
        resourceVersion=str(100 + incarnation),
        creationTimestamp="2026-01-01T00:00:01Z",
        managedFields=[{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
    )
    pod["spec"].update(nodeName="node-1", dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    pod["status"] = {
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "podIP": "10.64.0.7",
        "qosClass": "BestEffort",
        "startTime": "2026-01-01T00:00:02Z",
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:03Z"}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
        "containerStatuses": [
            {
                "name": "agent",
                "ready": True,
                "restartCount": 0,
                "image": "img:1",
                "imageID": "docker://sha256:abc",
                "containerID": "containerd://def",
                "started": True,
                "state": {"running": {"startedAt": "2026-01-01T00:00:03Z"}},
                "lastState": {},
            }
        ],
    }
    return pod


@st.composite
def pod_variants(draw: st.DrawFn, agent: dict[str, Any]) -> dict[str, Any]:
    """A Pod of ``agent`` in one of the states the plan tells apart."""
    pod = whole_pod(agent, draw(st.integers(1, 3)))
    status = pod["status"]
    status["phase"] = draw(st.sampled_from(["Pending", "Running", "Failed", "Succeeded", "Unknown"]))
    ready = draw(st.booleans())
    for cond in status["conditions"]:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond["status"] = "True" if ready else "False"
    if draw(st.booleans()):
        status["conditions"] = [c for c in status["conditions"] if c["type"] != "Ready"]
    container = status["containerStatuses"][0]
    container["restartCount"] = draw(st.integers(0, 5))
    waiting = draw(st.sampled_from([None, "ContainerCreating", "CrashLoopBackOff", "ErrImagePull", ""]))
    if waiting is not None:
        container["state"] = {
            "waiting": {"reason": waiting, "message": draw(st.sampled_from(["", "back-off"]))}
        }
    if draw(st.booleans()):
        status["containerStatuses"].append({**container, "name": "sidecar", "restartCount": 1})
    if draw(st.booleans()):
        status.update(reason="Evicted", message="The node was low on memory.")
    if draw(st.booleans()):
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    if draw(st.booleans()):
        pod["metadata"]["annotations"][_agents.HASH_ANNOTATION] = "stale"
    if draw(st.booleans()):
        del pod["spec"]["nodeName"]
    return pod


@settings(max_examples=300, deadline=None)
@given(data=st.data(), phase=st.sampled_from([None, "Pending", "Running", "Ready", "Failed"]))
def test_a_plan_from_the_view_is_the_plan_from_the_whole_objects(
    data: st.DataObject, phase: str | None
) -> None:
    status = {} if phase is None else {"phase": phase, "podName": "a-1-1", "incarnation": 1}
    agent = whole_agent(status)
    pods = data.draw(st.lists(pod_variants(agent), max_size=3, unique_by=lambda p: p["metadata"]["name"]))
    now = T0 + dt.timedelta(seconds=data.draw(st.integers(0, 120)))
    whole = _agents.plan(copy.deepcopy(agent), copy.deepcopy(pods), now)
    viewed = _agents.plan(_view._agent_summary(agent), [_view._pod_summary(p) for p in pods], now)
    assert viewed == whole


def test_the_view_keeps_what_the_pass_reads_of_an_agent() -> None:
    agent = whole_agent({"phase": "Ready"}, deletionTimestamp="2026-01-01T00:02:00Z", finalizers=["f"])
    kept = _view._agent_summary(agent)
    assert kept["spec"] == agent["spec"] and kept["status"] == agent["status"]
    assert (kept["apiVersion"], kept["kind"]) == (agent["apiVersion"], agent["kind"])  # Events
    meta = kept["metadata"]
    for field in ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "finalizers"):
        assert meta[field] == agent["metadata"][field]
    assert meta["deletionTimestamp"] == "2026-01-01T00:02:00Z"
    assert not {"managedFields", "annotations", "creationTimestamp"} & set(meta)
    assert _agents.build_service_account(kept) == _agents.build_service_account(agent)
    assert _agents.build_role_binding(kept) == _agents.build_role_binding(agent)


def test_the_view_keeps_the_owners_of_a_pod() -> None:
    pod = whole_pod(whole_agent())
    kept = _view._pod_summary(pod)
    assert [o["uid"] for o in kept["metadata"]["ownerReferences"]] == [UID]
    assert kept["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]


def test_the_view_holds_the_newest_version_of_each_object() -> None:
    view = _view.AgentView()
    agent = whole_agent({"phase": "Ready"})
    view.put_agent(agent)
    view.put_agent({**agent, "metadata": {**agent["metadata"], "resourceVersion": "40"}, "status": {}})
    assert view.agent(("fleet", "a-1")) == _view._agent_summary(agent)
    pod = whole_pod(agent)
    assert view.put_pod(pod) == ("fleet", "a-1")
    older = copy.deepcopy(pod)
    older["metadata"]["resourceVersion"] = "1"
    older["status"]["phase"] = "Pending"
    view.put_pod(older)
    assert [p["status"]["phase"] for p in view.pods(("fleet", "a-1"))] == ["Running"]
    view.put_pod(pod, deleted=True)
    assert view.pods(("fleet", "a-1")) == []
    view.drop_agent("fleet", "a-1")
    assert view.agent(("fleet", "a-1")) is None


def test_a_pass_gets_its_own_copy() -> None:
    view = _view.AgentView()
    view.put_agent(whole_agent({"phase": "Ready"}))
    first = view.agent(("fleet", "a-1"))
    assert first is not None
    first["status"]["phase"] = "Failed"
    second = view.agent(("fleet", "a-1"))
    assert second is not None and second["status"]["phase"] == "Ready"


def test_a_deeply_nested_value_is_kept() -> None:
    deep: Any = "leaf"
    for _ in range(10_000):  # the API server accepts 10 000 levels in a free-form field
        deep = {"x": [deep]}
    agent = whole_agent()
    agent["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1", "deep": deep}]
    limit = sys.getrecursionlimit()
    allow_deep_json()  # as the operator does
    try:
        view = _view.AgentView()
        view.put_agent(agent)
        kept = view.agent(("fleet", "a-1"))
        assert kept is not None
        assert json.dumps(kept["spec"]) == json.dumps(agent["spec"])
    finally:
        sys.setrecursionlimit(limit)
