"""examples/variables.yaml with agents/thermostat.py: pods that read one Variable and write another."""

from __future__ import annotations

from pathlib import Path

import yaml

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, VARIABLE
from mabeam.local.cluster import LocalCluster
from tests.integration._util import eventually

ROOT = Path(__file__).resolve().parents[2]


def logs_mention(cluster: LocalCluster, text: str) -> bool:
    return any(text in p.read_text(errors="replace") for p in (cluster.workdir / "pods").rglob("*.log"))


async def test_thermostats_claim_the_heater_once_and_follow_the_target(
    cluster: LocalCluster, kube: Kube
) -> None:
    await cluster.start_operator()
    for doc in yaml.safe_load_all((ROOT / "examples" / "variables.yaml").read_text()):
        await kube.create(AGENT if doc["kind"] == "Agent" else VARIABLE, doc)

    async def claimed() -> dict | None:
        obj = await kube.get(VARIABLE, "heater-owner", "default")
        status = (obj or {}).get("status") or {}
        return status if status.get("value") in ("thermostat-1", "thermostat-2") else None

    status = await eventually(claimed, timeout=15, what="a thermostat owns the heater")
    assert status["version"] == 2 and status["changedBy"]["kind"] == "Agent"
    await eventually(
        lambda: _async(logs_mention(cluster, "target temperature 21")), timeout=10, what="the target is read"
    )
    await kube.patch(VARIABLE, "target-temperature", {"spec": {"value": 23}}, namespace="default")
    await eventually(
        lambda: _async(logs_mention(cluster, "target temperature 23 (version 2)")),
        timeout=10,
        what="the change",
    )
    # The other thermostat saw the owner and left it alone: one agent write in all.
    obj = await kube.get(VARIABLE, "heater-owner", "default")
    assert obj is not None and [h["changedBy"]["kind"] for h in obj["status"]["history"]] == ["User", "Agent"]


async def _async(value: bool) -> bool:
    return value
