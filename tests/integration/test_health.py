"""GitOps health: Argo CD's Lua check (charts/mabeam/argocd/health.lua, run with lupa) and
kstatus (what Flux and kpt compute) on real objects the operator wrote on ``mabeam local``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, COORDINATION, VARIABLE
from mabeam.local.cluster import LocalCluster
from tests.integration._coordination import NS, AsAgents, agent_body, ended, suspended
from tests.integration._util import eventually

HEALTH_LUA = Path(__file__).parents[2] / "charts" / "mabeam" / "argocd" / "health.lua"


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the shipped health script as Argo CD does: ``obj`` in, a table {status, message} out."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    lua.globals().obj = to_lua(obj)
    result = lua.execute(HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"])


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's generic rules for a custom resource (sigs.k8s.io/cli-utils, pkg/kstatus):
    Terminating while deleted; InProgress while status.observedGeneration lags
    metadata.generation or a Reconciling condition is True; Failed while Stalled is True;
    otherwise Current."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != meta.get("generation"):
        return "InProgress"
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    if conditions.get("Reconciling") == "True":
        return "InProgress"
    if conditions.get("Stalled") == "True":
        return "Failed"
    return "Current"


def test_the_checks_on_made_up_objects() -> None:
    assert argocd_health({"metadata": {"generation": 1}}) == (
        "Progressing",
        "Waiting for the MABEAM operator",
    )
    lagging = {"metadata": {"generation": 2}, "status": {"observedGeneration": 1, "conditions": []}}
    assert argocd_health(lagging)[0] == "Progressing" and kstatus(lagging) == "InProgress"


async def test_health_of_what_the_operator_wrote(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    await kube.create(AGENT, agent_body("runner"))  # suspended: no command
    body = agent_body("worker", command=["sleep", "3600"])
    await kube.create(AGENT, body)
    await suspended(kube, ["ann", "ben"])
    spec = {"protocol": "majority", "participants": {"agents": ["ann", "ben"]}, "options": ["a", "b"]}
    await kube.create(
        COORDINATION, {"metadata": {"name": "pick", "namespace": NS}, "spec": {**spec, "answerSeconds": 30}}
    )
    await kube.create(
        COORDINATION, {"metadata": {"name": "broken", "namespace": NS}, "spec": {**spec, "options": []}}
    )

    async def get(res: Any, name: str) -> dict[str, Any]:
        obj = await kube.get(res, name, NS)
        assert obj is not None
        return obj

    async def worker_ready() -> dict[str, Any] | None:
        obj = await get(AGENT, "worker")
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    worker = await eventually(worker_ready, what="worker Ready")
    assert argocd_health(worker)[0] == "Healthy" and kstatus(worker) == "Current"
    runner = await eventually(lambda: _phase(kube, AGENT, "runner", "Suspended"), what="runner suspended")
    assert argocd_health(runner)[0] == "Suspended" and kstatus(runner) == "Current"
    # A session in progress, then decided.
    collecting = await eventually(
        lambda: _phase(kube, COORDINATION, "pick", "Collecting"), what="pick collecting"
    )
    assert argocd_health(collecting)[0] == "Progressing" and kstatus(collecting) == "InProgress"
    await as_agent.vote("pick", "ann", choice="a")
    await as_agent.vote("pick", "ben", choice="a")
    await ended(kube, "pick")
    decided = await get(COORDINATION, "pick")
    assert argocd_health(decided)[0] == "Healthy" and kstatus(decided) == "Current"
    conditions = {c["type"]: c for c in decided["status"]["conditions"]}
    assert conditions["Complete"]["status"] == "True" and "Reconciling" not in conditions
    assert all(c.get("observedGeneration") == decided["metadata"]["generation"] for c in conditions.values())
    # A session that cannot work: Failed, as a Job; Degraded for Argo CD, Failed for kstatus.
    broken = await eventually(lambda: _phase(kube, COORDINATION, "broken", "Failed"), what="broken failed")
    health, message = argocd_health(broken)
    assert health == "Degraded" and "spec.options" in message
    assert kstatus(broken) == "Failed"
    assert {c["type"] for c in broken["status"]["conditions"]} >= {"Failed", "Stalled", "Invalid"}

    # Variables: Ready once a value fits the spec; an invalid one is Degraded and stalled.
    good = {"type": "number", "value": 21, "constraints": {"minimum": 0, "maximum": 30}}
    await kube.create(VARIABLE, {"metadata": {"name": "temp", "namespace": NS}, "spec": good})
    await kube.create(VARIABLE, {"metadata": {"name": "hot", "namespace": NS}, "spec": {**good, "value": 99}})
    temp = await eventually(lambda: _phase(kube, VARIABLE, "temp", "Ready"), what="temp Ready")
    assert argocd_health(temp)[0] == "Healthy" and kstatus(temp) == "Current"
    assert {c["type"]: c["status"] for c in temp["status"]["conditions"]}["Ready"] == "True"
    hot = await eventually(lambda: _phase(kube, VARIABLE, "hot", "Invalid"), what="hot Invalid")
    assert argocd_health(hot)[0] == "Degraded" and kstatus(hot) == "Failed"
    assert {c["type"]: c["status"] for c in hot["status"]["conditions"]}["Ready"] == "False"


async def _phase(kube: Kube, res: Any, name: str, phase: str) -> dict[str, Any] | None:
    obj = await kube.get(res, name, NS)
    return obj if ((obj or {}).get("status") or {}).get("phase") == phase else None


pytestmark = pytest.mark.timeout(120)
