"""The Agent lifecycle on a real API server: its own ServiceAccount and token, a pod that is
replaced when it dies, and garbage collection on delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, POD, ROLE_BINDING, SERVICE_ACCOUNT
from tests.e2e._helpers import E2E, eventually


def sleeper(name: str, ns: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "capabilities": ["vote"],
            "restart": {"initialDelaySeconds": 0.5, "maxDelaySeconds": 2},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "agent", "image": "example/agent:1", "command": ["sleep", "3600"]}
                    ]
                }
            },
        },
    }


async def agent_status(kube: Kube, name: str, ns: str) -> dict[str, Any]:
    return ((await kube.get(AGENT, name, ns)) or {}).get("status") or {}


async def test_an_agent_runs_under_its_own_service_account_and_token(e2e: E2E, kube: Kube, ns: str) -> None:
    await kube.create(AGENT, sleeper("solo", ns))

    async def ready() -> dict[str, Any] | None:
        s = await agent_status(kube, "solo", ns)
        return s if s.get("phase") == "Ready" else None

    status = await eventually(ready, what="agent solo Ready")
    pod = await kube.get(POD, status["podName"], ns)
    assert pod is not None
    assert pod["spec"]["serviceAccountName"] == "mabeam-agent-solo"
    assert pod["spec"]["nodeName"]  # bound through the binding subresource
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("Agent", "solo", True)
    assert await kube.get(SERVICE_ACCOUNT, "mabeam-agent-solo", ns) is not None
    # The kubelet gave the pod a TokenRequest token: the API server knows it as the agent.
    if e2e.plane is not None:
        kubeconfig = e2e.plane.pods_dir / "kubeconfigs" / f"{ns}_{pod['metadata']['name']}.yaml"
        who = json.loads(e2e.kubectl(f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "json").stdout)
        assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:mabeam-agent-solo"
        extra = who["status"]["userInfo"].get("extra") or {}
        assert extra.get("authentication.kubernetes.io/pod-name") == [pod["metadata"]["name"]]


async def test_a_deleted_pod_is_replaced_and_a_deleted_agent_leaves_nothing(kube: Kube, ns: str) -> None:
    await kube.create(AGENT, sleeper("phoenix", ns))

    async def ready_pod() -> str | None:
        s = await agent_status(kube, "phoenix", ns)
        return s.get("podName") if s.get("phase") == "Ready" else None

    first = await eventually(ready_pod, what="agent phoenix Ready")
    await kube.delete(POD, first, ns)

    async def replaced() -> str | None:
        pod = await ready_pod()
        return pod if pod and pod != first else None

    await eventually(replaced, what="a new pod for phoenix")
    assert (await agent_status(kube, "phoenix", ns)).get("incarnation", 0) >= 2

    await kube.delete(AGENT, "phoenix", ns)

    async def gone() -> bool:
        pods = await kube.list(POD, ns, labels={"mabeam.io/agent": "phoenix"})
        return (
            await kube.get(AGENT, "phoenix", ns) is None
            and not [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            and await kube.get(SERVICE_ACCOUNT, "mabeam-agent-phoenix", ns) is None
        )

    await eventually(gone, what="phoenix, its pods and its ServiceAccount gone")
    bindings = await kube.list(ROLE_BINDING, ns)
    assert not [b for b in bindings if "phoenix" in b["metadata"]["name"]]


async def test_namespace_deletion_ends_with_the_agents_in_it(e2e: E2E, kube: Kube, tmp_path: Path) -> None:
    ns = "e2e-doomed"
    e2e.kubectl("create", "namespace", ns)
    await kube.create(AGENT, sleeper("last", ns))
    e2e.kubectl("-n", ns, "wait", "--for=condition=Ready", "agent/last", "--timeout=90s")
    e2e.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s")
    assert "NotFound" in e2e.kubectl("get", "namespace", ns, check=False).stderr


async def test_an_agent_runs_in_a_namespace_that_enforces_the_restricted_profile(
    e2e: E2E, kube: Kube, ns: str
) -> None:
    # The API server's PodSecurity admission refuses a pod that is not "restricted": the agent
    # would turn Failed with PodRejected. The operator's defaults make it pass.
    e2e.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    await kube.create(AGENT, sleeper("strict", ns))

    async def ready() -> dict[str, Any] | None:
        s = await agent_status(kube, "strict", ns)
        assert s.get("phase") != "Failed", s
        return s if s.get("phase") == "Ready" else None

    status = await eventually(ready, what="agent strict Ready")
    pod = await kube.get(POD, status["podName"], ns)
    assert pod is not None and pod["spec"]["securityContext"]["runAsNonRoot"] is True
