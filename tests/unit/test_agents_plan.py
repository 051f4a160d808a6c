"""The Agent lifecycle decisions, on hand-built Agents and Pods (no API)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from mabeam.core import agents as _agents

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def agent(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "template": {"spec": {"containers": [{"name": "main", "image": "img", "command": ["run"]}]}},
        "capabilities": ["vote"],
        "restart": {"initialDelaySeconds": 1, "maxDelaySeconds": 8, "resetAfterSeconds": 60},
    }
    base.update(spec)
    return {
        "metadata": {"name": "a1", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": base,
        "status": {},
    }


def apply(obj: dict[str, Any], plan: _agents.Plan) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["status"] = plan.status
    return obj


def pod_from(plan: _agents.Plan, *, phase: str = "Running", ready: bool = True) -> dict[str, Any]:
    assert plan.create_pod is not None
    pod = copy.deepcopy(plan.create_pod)
    pod["status"] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "main", "restartCount": 0, "state": {"running": {}}}],
    }
    pod["spec"]["nodeName"] = "local"
    return pod


def test_first_pass_creates_pod_with_identity_labels_and_owner() -> None:
    plan = _agents.plan(agent(), [], T0)
    pod = plan.create_pod
    assert pod is not None
    assert pod["metadata"]["name"] == "a1-1"
    assert pod["metadata"]["labels"]["mabeam.io/agent"] == "a1"
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mabeam"
    assert pod["metadata"]["labels"]["capability.mabeam.io/vote"] == "true"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pod["spec"]["serviceAccountName"] == "mabeam-agent-a1"
    assert pod["spec"]["restartPolicy"] == "Always"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["MABEAM_AGENT"] == "a1" and env["MABEAM_NAMESPACE"] == "ns"
    assert plan.status["phase"] == "Pending"
    assert plan.agent_labels is not None and plan.agent_labels["capability.mabeam.io/vote"] == "true"


def test_ready_pod_makes_agent_ready_and_second_pass_changes_nothing() -> None:
    a = agent()
    first = _agents.plan(a, [], T0)
    pods = [pod_from(first)]
    a = apply(a, first)
    second = _agents.plan(a, pods, T0 + dt.timedelta(seconds=2))
    assert second.status["phase"] == "Ready"
    assert second.status["node"] == "local"
    assert second.create_pod is None and second.delete_pods == []
    a = apply(a, second)
    third = _agents.plan(a, pods, T0 + dt.timedelta(seconds=3))
    assert third.status == second.status
    assert third.events == []


def test_lost_pod_is_replaced_after_exponential_capped_backoff() -> None:
    a = agent()
    now = T0
    delays = []
    plan = _agents.plan(a, [], now)
    for _ in range(5):
        a = apply(a, plan)
        pods = [pod_from(plan, ready=False)]
        a = apply(a, _agents.plan(a, pods, now))
        # the pod vanishes
        lost = _agents.plan(a, [], now)
        assert lost.create_pod is None
        assert lost.wake_at is not None
        delays.append((lost.wake_at - now).total_seconds())
        a = apply(a, lost)
        # same loss seen again before the deadline: not counted twice
        again = _agents.plan(a, [], now + dt.timedelta(milliseconds=10))
        assert again.status["replacements"] == lost.status["replacements"]
        now = lost.wake_at
        plan = _agents.plan(a, [], now)
        assert plan.create_pod is not None
    assert delays == [1, 2, 4, 8, 8]
    assert plan.status["replacements"] == 5
    assert plan.create_pod["metadata"]["name"] == "a1-6"


def test_backoff_resets_after_a_stable_ready_run() -> None:
    a = agent()
    plan = _agents.plan(a, [], T0)
    a = apply(a, plan)
    for _ in range(2):  # two quick losses: 1 s, then 2 s
        pods = [pod_from(plan)]
        a = apply(a, _agents.plan(a, pods, T0))
        lost = _agents.plan(a, [], T0)
        a = apply(a, lost)
        plan = _agents.plan(a, [], lost.wake_at)
        a = apply(a, plan)
    assert a["status"]["backoffSeconds"] == 2
    ready_at = T0 + dt.timedelta(seconds=100)
    a = apply(a, _agents.plan(a, [pod_from(plan)], ready_at))
    lost = _agents.plan(a, [], ready_at + dt.timedelta(seconds=61))
    assert lost.status["backoffSeconds"] == 1


def test_failed_or_evicted_pod_is_deleted_and_replaced_with_backoff() -> None:
    a = agent()
    plan = _agents.plan(a, [], T0)
    a = apply(a, plan)
    evicted = pod_from(plan, phase="Failed", ready=False)
    evicted["status"]["reason"] = "Evicted"
    out = _agents.plan(a, [evicted], T0)
    assert out.delete_pods == ["a1-1"]
    assert out.create_pod is None and out.status["replacements"] == 1
    assert any(reason == "PodFailed" for _, reason, _ in out.events)


def test_template_change_replaces_pod_at_once() -> None:
    a = agent()
    plan = _agents.plan(a, [], T0)
    a = apply(a, plan)
    pods = [pod_from(plan)]
    a = apply(a, _agents.plan(a, pods, T0))
    a["spec"]["template"]["spec"]["containers"][0]["image"] = "img:v2"
    a["metadata"]["generation"] = 2
    out = _agents.plan(a, pods, T0)
    assert out.delete_pods == ["a1-1"]
    assert out.create_pod is not None and out.create_pod["metadata"]["name"] == "a1-2"
    assert out.status.get("replacements", 0) == 0
    assert out.status["observedGeneration"] == 2


def test_pod_created_before_a_crash_is_adopted_not_duplicated() -> None:
    a = agent()
    plan = _agents.plan(a, [], T0)
    # the operator died after creating the pod, before writing status
    out = _agents.plan(a, [pod_from(plan)], T0)
    assert out.create_pod is None
    assert out.status["podName"] == "a1-1"
    assert out.status["incarnation"] == 1


def test_suspend_deletes_pod_and_creates_none() -> None:
    a = agent()
    plan = _agents.plan(a, [], T0)
    a = apply(a, plan)
    a["spec"]["suspend"] = True
    out = _agents.plan(a, [pod_from(plan)], T0)
    assert out.delete_pods == ["a1-1"] and out.create_pod is None
    assert out.status["phase"] == "Suspended"


def test_crash_looping_container_shows_failed_and_degraded() -> None:
    a = agent()
    plan = _agents.plan(a, [], T0)
    a = apply(a, plan)
    pod = pod_from(plan, ready=False)
    pod["status"]["containerStatuses"] = [
        {
            "name": "main",
            "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "x"}},
        }
    ]
    out = _agents.plan(a, [pod], T0)
    assert out.status["phase"] == "Failed" and out.status["restarts"] == 4
    degraded = next(c for c in out.status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "CrashLoopBackOff"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"weight": -1}, "spec.weight"),
        ({"colour": "red"}, "spec.colour"),
        ({"template": {"spec": {"containers": []}}}, "spec.template.spec.containers"),
        ({"template": {"spec": {"containers": [{"name": "Bad_Name", "image": "x"}]}}}, "containers[0].name"),
        ({"template": {"spec": {"containers": [{"name": "m"}]}}}, "containers[0].image"),
        (
            {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}}},
            "restartPolicy",
        ),
    ],
    ids=["negative-weight", "unknown-field", "no-containers", "bad-container-name", "no-image", "never"],
)
def test_invalid_spec_sets_invalid_condition_and_creates_nothing(change: dict[str, Any], path: str) -> None:
    out = _agents.plan(agent(**change), [], T0)
    assert out.create_pod is None
    invalid = next(c for c in out.status["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True"
    assert path in invalid["message"]
    assert [e[1] for e in out.events] == ["InvalidSpec"]


def test_a_pod_the_api_server_refuses_makes_the_agent_invalid_once() -> None:
    a = agent()
    first = _agents.plan(a, [], T0)
    rejected = _agents.reject_pod(a, first, 'Pod "a1-1" is invalid: spec.containers[0].ports: Invalid', T0)
    invalid = next(c for c in rejected.status["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True" and invalid["reason"] == "PodRejected"
    assert "containers[0].ports" in invalid["message"]
    assert rejected.status["phase"] == "Failed"
    assert rejected.status.get("podName") is None and rejected.status["incarnation"] == 0
    assert [e[1] for e in rejected.events] == ["PodRejected", "PhaseChanged"]
    # The next pass tries again (the API decides); the same refusal posts no second Warning.
    a = apply(a, rejected)
    again = _agents.reject_pod(a, _agents.plan(a, [], T0), invalid["message"].split(": ", 2)[-1], T0)
    assert [e[1] for e in again.events if e[0] == "Warning"] == []


def test_the_created_pod_seen_pending_says_nothing_new() -> None:
    """The status written when the pod is created is what observing the pending pod says,
    but for the wording and the node: no second write while it starts."""
    a = agent()
    created = _agents.plan(a, [], T0)
    seen = _agents.plan(apply(a, created), [pod_from(created, phase="Pending", ready=False)], T0)
    assert seen.status["phase"] == "Pending" and seen.status["node"] == "local"
    assert not _agents.says_more(created.status, seen.status)
    ready = _agents.plan(apply(a, created), [pod_from(created)], T0)
    assert _agents.says_more(created.status, ready.status)
    # A restart of the container while pending is news (the restart count).
    restarted = pod_from(created, phase="Pending", ready=False)
    restarted["status"]["containerStatuses"][0]["restartCount"] = 1
    assert _agents.says_more(created.status, _agents.plan(apply(a, created), [restarted], T0).status)
    # Anything that is not Pending on both sides is written.
    assert _agents.says_more({}, created.status)


def test_merge_events_tells_created_and_ready_once() -> None:
    created = ("Normal", "PodCreated", "Created pod a1-1 (ServiceAccount mabeam-agent-a1).")
    ready = ("Normal", "Ready", "Pod a1-1 is ready.")
    assert _agents.merge_events([created], [ready]) == [
        ("Normal", "Ready", "Created pod a1-1 (ServiceAccount mabeam-agent-a1); it is ready.")
    ]
    pending = ("Normal", "PhaseChanged", "Phase None -> Pending.")
    assert _agents.merge_events([created], [pending]) == [created]
    assert _agents.merge_events([], [pending]) == [pending]
    assert _agents.merge_events([], [ready]) == [ready]
