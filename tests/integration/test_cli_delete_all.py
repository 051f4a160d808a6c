"""`mabeam delete-all`, what the chart's pre-delete hook runs on `helm uninstall`, against the
local control plane: as a ServiceAccount holding exactly the hook's rights (CLEANUP_RULES, in a
Role of the emptied namespace), with the operator running (it finishes the objects that carry
its finalizer) and without it (the command fails after its timeout, naming what is left).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mabeam.cli.delete_all import DELETION_ORDER
from mabeam.kube.client import Kube
from mabeam.kube.permissions import CLEANUP_RULES
from mabeam.kube.resources import AGENT, COORDINATION, POD, VARIABLE, VOTE, Res
from mabeam.local.cluster import LocalCluster
from tests.integration._coordination import NS, AsAgents, agent_body, collecting, create_session, suspended
from tests.integration._util import eventually

HOOK_USER = "system:serviceaccount:mabeam-system:mabeam-cleanup"
FINALIZER = "mabeam.io/finalizer"
OTHER = "other"


def hook_kubeconfig(cluster: LocalCluster, *, granted: bool = True) -> Path:
    """A kubeconfig of the hook's ServiceAccount; with ``granted``, the chart's Role in NS."""
    if granted:
        rbac = "rbac.authorization.k8s.io/v1"
        meta = {"name": "mabeam-cleanup", "namespace": NS}
        rules = [
            {"apiGroups": [r.api_group], "resources": list(r.resources), "verbs": list(r.verbs)}
            for r in CLEANUP_RULES
        ]
        cluster.api.create({"apiVersion": rbac, "kind": "Role", "metadata": meta, "rules": rules})
        cluster.api.create({
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mabeam-cleanup"},
            "subjects": [{"kind": "ServiceAccount", "name": "mabeam-cleanup", "namespace": "mabeam-system"}],
        })  # fmt: skip
    return cluster.api.kubeconfig(cluster.workdir / "cleanup.kubeconfig", user=HOOK_USER)


async def delete_all(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "mabeam.cli", "delete-all", "--kubeconfig", str(kubeconfig), *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def left(kube: Kube, namespace: str) -> list[str]:
    return [
        f"{res.kind}/{obj['metadata']['name']}"
        for res in DELETION_ORDER
        for obj in await kube.list(res, namespace)
    ]


async def no_pods(kube: Kube, agent: str) -> bool:
    return not await kube.list(POD, NS, labels={"mabeam.io/agent": agent})


async def has_finalizer(kube: Kube, res: Res, name: str) -> bool:
    obj = await kube.get(res, name, NS)
    return obj is not None and FINALIZER in (obj["metadata"].get("finalizers") or [])


async def test_delete_all_empties_the_namespace_while_the_operator_runs(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    await kube.create(
        AGENT, agent_body("runner", command=[sys.executable, "-c", "import time; time.sleep(3600)"])
    )
    await suspended(kube, ["voter"])
    await kube.create(VARIABLE, {"metadata": {"name": "v", "namespace": NS}, "spec": {"type": "number"}})
    await create_session(
        kube, "pick", "majority", participants={"agents": ["voter"]}, options=["a", "b"], answerSeconds=600
    )
    await collecting(kube, "pick")
    await as_agent.vote("pick", "voter", choice="a")
    await eventually(lambda: kube.list(POD, NS, labels={"mabeam.io/agent": "runner"}), what="runner's pod")
    # The session and the Variable carry the operator's finalizer: deleting them needs it.
    await eventually(lambda: has_finalizer(kube, COORDINATION, "pick"), what="the session's finalizer")
    await eventually(lambda: has_finalizer(kube, VARIABLE, "v"), what="the Variable's finalizer")
    # Another namespace, not named: left alone (the hook has no rights there anyway).
    cluster.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER}})
    await kube.create(
        AGENT, {**agent_body("elsewhere"), "metadata": {"name": "elsewhere", "namespace": OTHER}}
    )
    assert sorted(await left(kube, NS)) == [
        "Agent/runner",
        "Agent/voter",
        "Coordination/pick",
        "Variable/v",
        "Vote/" + (await kube.list(VOTE, NS))[0]["metadata"]["name"],
    ]

    code, out, err = await delete_all(hook_kubeconfig(cluster), "-n", NS, "--timeout", "60")

    assert code == 0, err
    assert await left(kube, NS) == []
    assert 'coordination.mabeam.io "pick" deleted in default' in out
    assert 'agent.mabeam.io "runner" deleted in default' in out
    assert out.rstrip().endswith("5 deleted; no MABEAM objects left in namespace default.")
    # Sessions went before the agents they name.
    assert out.index('"pick" deleted') < out.index('"voter" deleted')
    await eventually(lambda: no_pods(kube, "runner"), what="runner's pod gone")
    assert [o["metadata"]["name"] for o in await kube.list(AGENT, OTHER)] == ["elsewhere"]
    # Nothing left: a second run (helm uninstall retried) succeeds at once.
    code, out, err = await delete_all(hook_kubeconfig(cluster, granted=False), "-n", NS, "--timeout", "5")
    assert code == 0, err
    assert "0 deleted" in out


async def test_delete_all_without_the_operator_names_what_is_stranded(
    cluster: LocalCluster, kube: Kube
) -> None:
    await cluster.start_operator()
    await kube.create(VARIABLE, {"metadata": {"name": "v", "namespace": NS}, "spec": {"type": "number"}})
    await eventually(lambda: has_finalizer(kube, VARIABLE, "v"), what="the Variable's finalizer")
    await cluster.stop_operator()

    code, out, err = await delete_all(hook_kubeconfig(cluster), "-n", NS, "--timeout", "1")

    assert code == 1
    (line,) = err.splitlines()  # one line, no traceback
    assert line.startswith("Error: 1 MABEAM objects are still there after 1s: variable default/v")
    assert f"(finalizers: {FINALIZER})" in line and "is it running" in line
    assert 'variable.mabeam.io "v" deleted' in out
    # Back with the operator, the same command finishes the job.
    await cluster.start_operator()
    code, out, err = await delete_all(hook_kubeconfig(cluster, granted=False), "-n", NS, "--timeout", "60")
    assert code == 0, err
    assert await left(kube, NS) == []


async def test_delete_all_without_rights_is_one_line(cluster: LocalCluster) -> None:
    code, _, err = await delete_all(hook_kubeconfig(cluster, granted=False), "-n", NS, "--timeout", "5")
    assert code == 1
    (line,) = err.splitlines()
    assert line.startswith("Error: list coordinations") and "forbidden" in line.lower(), line
