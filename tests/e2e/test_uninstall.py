"""The chart's hooks on a real API server: the server accepts them (server-side dry run), and the
uninstall cleanup (the pre-delete hook) empties a watched namespace with its own rights only.

`helm uninstall` creates the hook's ServiceAccount, Role and RoleBinding, then its Job; the
control plane here runs no Job controller, so the test creates the Job's pod itself, from the
Job's pod template, as the Job controller would.
"""

from __future__ import annotations

import uuid
from typing import Any

import yaml

from mabeam.cli.delete_all import DELETION_ORDER
from mabeam.cluster._install import render_chart
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, POD, SERVICE_ACCOUNT, VARIABLE
from tests.e2e._helpers import E2E, eventually

RELEASE_NS = "mabeam-system"


def hooks(values: dict[str, Any]) -> list[dict[str, Any]]:
    return render_chart(values, namespace=RELEASE_NS, hooks=True)


def test_the_hooks_pass_the_servers_validation(e2e: E2E, ns: str) -> None:
    for values in ({"clusterWide": True}, {"watchNamespaces": [ns]}):
        objects = hooks(values)
        assert {o["kind"] for o in objects} >= {"Job", "Pod", "ServiceAccount"}, values
        e2e.kubectl(
            "apply", "--dry-run=server", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(o) for o in objects)
        )


async def test_the_cleanup_hook_empties_its_namespace_while_the_operator_runs(
    e2e: E2E, kube: Kube, ns: str
) -> None:
    sleeper = {"name": "agent", "image": "example/agent:1", "command": ["sleep", "3600"]}
    await kube.create(
        AGENT,
        {
            "metadata": {"name": "doomed", "namespace": ns},
            "spec": {"capabilities": ["vote"], "template": {"spec": {"containers": [sleeper]}}},
        },
    )
    await kube.create(VARIABLE, {"metadata": {"name": "v", "namespace": ns}, "spec": {"type": "number"}})

    async def finalized() -> bool:
        obj = await kube.get(VARIABLE, "v", ns)
        return obj is not None and "mabeam.io/finalizer" in (obj["metadata"].get("finalizers") or [])

    await eventually(finalized, what="the Variable carries the operator's finalizer")

    objects = [
        o
        for o in hooks({"watchNamespaces": [ns]})
        if o["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    ]
    job = next(o for o in objects if o["kind"] == "Job")
    rights = [o for o in objects if o["kind"] != "Job"]
    assert {o["kind"] for o in rights} == {"ServiceAccount", "Role", "RoleBinding"}
    pod_name = f"mabeam-cleanup-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**job["spec"]["template"]["metadata"], "name": pod_name, "namespace": RELEASE_NS},
        "spec": job["spec"]["template"]["spec"],
    }
    e2e.kubectl("apply", "--server-side", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(o) for o in rights))
    account = next(o for o in rights if o["kind"] == "ServiceAccount")["metadata"]["name"]
    try:
        e2e.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(pod))

        async def ended() -> str | None:
            obj = await kube.get(POD, pod_name, RELEASE_NS)
            phase = ((obj or {}).get("status") or {}).get("phase")
            return phase if phase in ("Succeeded", "Failed") else None

        phase = await eventually(ended, timeout=180, what="the cleanup pod ended")
        logs = e2e.kubectl("-n", RELEASE_NS, "logs", pod_name, check=False)
        assert phase == "Succeeded", logs.stdout + logs.stderr
        for res in DELETION_ORDER:
            assert await kube.list(res, ns) == [], res.kind
    finally:
        await kube.delete(POD, pod_name, RELEASE_NS)
        await kube.delete(SERVICE_ACCOUNT, account, RELEASE_NS)  # the Role and binding go with ns
