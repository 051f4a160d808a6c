"""The Agent lifecycle with the real operator, kubelet and API server (all local, in-process)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from mabeam.core import agents as _agents
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, POD, SERVICE_ACCOUNT
from mabeam.local.cluster import LocalCluster
from tests.integration._util import eventually

NS = "default"


def agent_manifest(name: str, *, command: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "agent",
        "image": "example/agent:1",
        # A process that runs until it is stopped; its pid is in its log (first line).
        "command": command
        or [sys.executable, "-c", "import os,time; print(os.getpid(), flush=True); time.sleep(3600)"],
    }
    body = {
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "capabilities": ["vote"],
            "template": {"spec": {"containers": [container]}},
            "restart": {"initialDelaySeconds": 0.5, "maxDelaySeconds": 2, "resetAfterSeconds": 600},
            **spec,
        },
    }
    return body


async def status_of(kube: Kube, name: str) -> dict[str, Any]:
    agent = await kube.get(AGENT, name, NS)
    return (agent or {}).get("status") or {}


async def ready(kube: Kube, name: str) -> dict[str, Any] | None:
    status = await status_of(kube, name)
    return status if status.get("phase") == "Ready" else None


async def pods_of(kube: Kube, name: str) -> list[dict[str, Any]]:
    return await kube.list(POD, NS, labels={_agents.AGENT_LABEL: name})


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_agent_gets_pod_service_account_and_becomes_ready(cluster: LocalCluster, kube: Kube) -> None:
    await cluster.start_operator()
    await kube.create(AGENT, agent_manifest("a1"))
    status = await eventually(lambda: ready(kube, "a1"), what="a1 Ready")

    pods = await pods_of(kube, "a1")
    assert [p["metadata"]["name"] for p in pods] == [status["podName"]] == ["a1-1"]
    pod = pods[0]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Agent"
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mabeam"
    assert pod["spec"]["serviceAccountName"] == status["serviceAccount"] == "mabeam-agent-a1"
    assert await kube.get(SERVICE_ACCOUNT, "mabeam-agent-a1", NS) is not None
    assert status["node"] == "local"
    assert status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["status"] == "False"
    agent = await kube.get(AGENT, "a1", NS)
    assert agent is not None and agent["metadata"]["labels"]["capability.mabeam.io/vote"] == "true"
    # Every lifecycle step is a Kubernetes Event on the Agent.
    events = cluster.api.objects("events", NS)
    # A pod Ready before the first status is written (pending_status_seconds) is one Event.
    mine = [e for e in events if e["involvedObject"]["name"] == "a1"]
    assert [(e["reason"], e["message"]) for e in mine] == [
        ("Ready", "Created pod a1-1 (ServiceAccount mabeam-agent-a1); it is ready.")
    ]


async def test_deleted_pod_is_replaced_with_backoff(cluster: LocalCluster, kube: Kube) -> None:
    await cluster.start_operator()
    await kube.create(AGENT, agent_manifest("a2"))
    await eventually(lambda: ready(kube, "a2"), what="a2 Ready")

    await kube.delete(POD, "a2-1", NS)
    lost = await eventually(
        lambda: _with(status_of(kube, "a2"), lambda s: s if s.get("replacements") == 1 else None),
        what="the loss recorded",
    )
    assert lost["backoffSeconds"] == 0.5
    status = await eventually(lambda: ready(kube, "a2"), what="a2 Ready again")
    assert status["podName"] == "a2-2"
    assert [p["metadata"]["name"] for p in await pods_of(kube, "a2")] == ["a2-2"]

    # A second loss soon after doubles the backoff.
    await kube.delete(POD, "a2-2", NS)
    lost = await eventually(
        lambda: _with(status_of(kube, "a2"), lambda s: s if s.get("replacements") == 2 else None),
        what="the second loss recorded",
    )
    assert lost["backoffSeconds"] == 1.0
    await eventually(lambda: ready(kube, "a2"), what="a2 Ready a third time")


async def test_evicted_pod_is_replaced(cluster: LocalCluster, kube: Kube) -> None:
    await cluster.start_operator()
    await kube.create(AGENT, agent_manifest("a3"))
    await eventually(lambda: ready(kube, "a3"), what="a3 Ready")
    assert cluster.kubelet is not None
    await cluster.kubelet.evict(NS, "a3-1")
    status = await eventually(
        lambda: _with(ready(kube, "a3"), lambda s: s if s and s["podName"] == "a3-2" else None),
        what="a3 on a new pod",
    )
    assert status["replacements"] == 1
    events = cluster.api.objects("events", NS)
    assert any(e["reason"] == "PodFailed" and "Evicted" in e["message"] for e in events)


async def test_crashing_container_restarts_are_counted(cluster: LocalCluster, kube: Kube) -> None:
    await cluster.start_operator()
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    await kube.create(AGENT, agent_manifest("a4", command=crash))
    status = await eventually(
        lambda: _with(status_of(kube, "a4"), lambda s: s if s.get("restarts", 0) >= 2 else None),
        what="restarts counted",
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Degraded"]["status"] == "True"
    assert status["podName"] == "a4-1"  # the kubelet restarts the container; the pod stays


async def test_template_change_replaces_pod(cluster: LocalCluster, kube: Kube) -> None:
    await cluster.start_operator()
    await kube.create(AGENT, agent_manifest("a5"))
    await eventually(lambda: ready(kube, "a5"), what="a5 Ready")
    env = [{"name": "GREETING", "value": "hello"}]
    await kube.patch(
        AGENT,
        "a5",
        [{"op": "add", "path": "/spec/template/spec/containers/0/env", "value": env}],
        namespace=NS,
        json_patch=True,
    )
    status = await eventually(
        lambda: _with(ready(kube, "a5"), lambda s: s if s and s["podName"] == "a5-2" else None),
        what="a5 on its new pod",
    )
    assert status["observedGeneration"] == 2
    assert status.get("replacements", 0) == 0
    pods = await pods_of(kube, "a5")
    assert [p["metadata"]["name"] for p in pods] == ["a5-2"]
    assert {"name": "GREETING", "value": "hello"} in pods[0]["spec"]["containers"][0]["env"]


async def test_invalid_template_sets_invalid_condition_and_operator_keeps_running(
    cluster: LocalCluster, kube: Kube
) -> None:
    await cluster.start_operator()
    bad = agent_manifest("bad")
    bad["spec"]["template"]["spec"]["containers"][0]["name"] = "Not_A_Label"
    await kube.create(AGENT, bad)
    status = await eventually(
        lambda: _with(status_of(kube, "bad"), lambda s: s if s.get("conditions") else None),
        what="the Invalid condition",
    )
    invalid = {c["type"]: c for c in status["conditions"]}["Invalid"]
    assert invalid["status"] == "True"
    assert "spec.template.spec.containers[0].name" in invalid["message"]
    assert await pods_of(kube, "bad") == []
    # The operator still serves other agents.
    await kube.create(AGENT, agent_manifest("good"))
    await eventually(lambda: ready(kube, "good"), what="good Ready")


async def test_operator_killed_after_creating_pod_adopts_it(cluster: LocalCluster, kube: Kube) -> None:
    """SIGKILLed between creating the Pod and recording it: the restart adopts it, no duplicate."""
    await cluster.start_operator_process("-m", "tests.integration._faulty_operator")
    await kube.create(AGENT, agent_manifest("a6"))
    process = cluster._process
    assert process is not None
    assert await asyncio.wait_for(process.wait(), 20) == -9  # killed itself after the create
    await cluster.kill_operator()
    assert (await status_of(kube, "a6")).get("podName") is None  # never recorded
    assert len(await pods_of(kube, "a6")) == 1

    await cluster.start_operator()
    status = await eventually(lambda: ready(kube, "a6"), what="a6 Ready after restart")
    assert status["podName"] == "a6-1"
    assert [p["metadata"]["name"] for p in await pods_of(kube, "a6")] == ["a6-1"]
    # No pod was ever created twice: the API server saw exactly one pod creation.
    creations = [
        r
        for r in cluster.api.audit
        if r.verb == "create" and r.resource == "/v1/pods" and r.subresource is None and r.code < 300
    ]
    assert len(creations) == 1, creations


async def test_operator_restarts_mid_life_same_end_state(cluster: LocalCluster, kube: Kube) -> None:
    await cluster.start_operator_process()
    for name in ("b1", "b2", "b3"):
        await kube.create(AGENT, agent_manifest(name))
    # SIGKILL as soon as the first pod exists: the others are somewhere mid-reconcile.
    await eventually(lambda: pods_of(kube, "b1"), what="the first pod")
    await cluster.kill_operator()
    await cluster.start_operator()
    for name in ("b1", "b2", "b3"):
        status = await eventually(lambda n=name: ready(kube, n), what=f"{name} Ready")
        assert status["podName"] == f"{name}-1"
        assert len(await pods_of(kube, name)) == 1


# --- small helpers --------------------------------------------------------------------------


async def _with(awaitable: Any, fn: Any) -> Any:
    return fn(await awaitable)


async def _done(event: Any) -> bool:
    return bool(event.is_set())


async def test_deleting_agent_removes_pod_and_service_account(cluster: LocalCluster, kube: Kube) -> None:
    await cluster.start_operator()
    await kube.create(AGENT, agent_manifest("gone"))
    status = await eventually(lambda: ready(kube, "gone"), what="gone Ready")
    log = cluster.kubelet.log_path(NS, status["podName"], "agent") if cluster.kubelet else None
    assert log is not None
    pid = int((await eventually(lambda: _read(log), what="the pid in the log")).split()[0])
    assert pid_alive(pid)

    await kube.delete(AGENT, "gone", NS)
    await eventually(lambda: _absent(kube, AGENT, "gone"), what="the Agent gone")
    await eventually(lambda: _absent(kube, POD, status["podName"]), what="its Pod gone")
    await eventually(
        lambda: _absent(kube, SERVICE_ACCOUNT, "mabeam-agent-gone"), what="its ServiceAccount gone"
    )
    await eventually(lambda: _async(not pid_alive(pid)), what="its process ended")


async def _read(path: Any) -> str:
    return path.read_text() if path.exists() else ""


async def _absent(kube: Kube, res: Any, name: str) -> bool:
    return await kube.get(res, name, NS) is None


async def _async(value: bool) -> bool:
    return value


async def test_a_pod_refused_by_the_api_server_sets_invalid(cluster: LocalCluster, kube: Kube) -> None:
    """What the schema cannot check in a pod template, the API server does (422): Invalid."""
    from mabeam.controller import Runtime
    from mabeam.errors import ApiError

    class RefusesPods(Kube):  # the local API does not validate Pod specs; a real one does
        async def create(self, res: Any, body: Any) -> dict[str, Any]:
            if res is POD:
                raise ApiError('Pod "x" is invalid: spec.containers[0].ports: Invalid value', status=422)
            return await super().create(res, body)

    await cluster.start_operator(Runtime(kube_factory=RefusesPods))
    await kube.create(AGENT, agent_manifest("refused"))

    async def invalid() -> dict[str, Any] | None:
        status = await status_of(kube, "refused")
        conds = {c["type"]: c for c in status.get("conditions", [])}
        return conds.get("Invalid") if conds.get("Invalid", {}).get("status") == "True" else None

    condition = await eventually(invalid, what="Invalid=True")
    assert condition["reason"] == "PodRejected" and "containers[0].ports" in condition["message"]
    assert (await status_of(kube, "refused"))["phase"] == "Failed"
    assert await pods_of(kube, "refused") == []


async def test_a_pod_not_ready_in_time_shows_pending_and_its_creation(
    cluster: LocalCluster, kube: Kube, monkeypatch: Any
) -> None:
    """The first status is held only for pending_status_seconds: a pod that does not turn Ready
    by then is shown (Running, not ready), with its PodCreated Event."""
    monkeypatch.setenv("MABEAM_AGENT_PENDING_STATUS_SECONDS", "0.3")
    await cluster.start_operator()
    manifest = agent_manifest("a9")
    manifest["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "exec": {"command": ["false"]}, "periodSeconds": 1,
    }  # fmt: skip
    await kube.create(AGENT, manifest)
    status = await eventually(
        lambda: _with(status_of(kube, "a9"), lambda s: s if s.get("phase") == "Running" else None),
        what="a9 Running",
    )
    assert status["podName"] == "a9-1" and status["incarnation"] == 1

    def created() -> list[dict[str, Any]]:
        events = cluster.api.objects("events", NS)
        return [e for e in events if e["involvedObject"]["name"] == "a9" and e["reason"] == "PodCreated"]

    async def one_created() -> list[dict[str, Any]] | None:
        return created() or None

    [event] = await eventually(one_created, what="the PodCreated Event")
    assert event["message"] == "Created pod a9-1 (ServiceAccount mabeam-agent-a9)."
    assert len(await pods_of(kube, "a9")) == 1
