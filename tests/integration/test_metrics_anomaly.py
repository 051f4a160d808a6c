"""Anomaly reports on a session: the Anomalous condition, a Warning Event and the counter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mabeam import controller
from mabeam.controller._anomaly import observe_session
from mabeam.core.anomaly import DetectorConfig
from mabeam.kube.client import Kube
from mabeam.kube.resources import COORDINATION, EVENT
from mabeam.local.cluster import LocalCluster


@pytest.fixture
async def runtime(cluster: LocalCluster) -> AsyncIterator[controller.Runtime]:
    rt = controller.Runtime(detector=DetectorConfig(min_samples=5, min_latency_delta=1.0))
    rt.kube = Kube.connect(cluster.operator_kubeconfig)  # the operator's identity and RBAC
    yield rt
    await rt.kube.close()


async def session(kube: Kube, name: str) -> dict[str, Any]:
    return await kube.create(
        COORDINATION,
        {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"protocol": "majority", "participants": {"agents": ["a", "b"]}, "options": ["x", "y"]},
        },
    )


def sample(rt: controller.Runtime, name: str, **labels: str) -> float | None:
    return rt.metrics.registry.get_sample_value(name, labels)


async def test_a_slow_decision_is_reported_on_the_session(runtime: controller.Runtime, kube: Kube) -> None:
    normal = await session(kube, "s-normal")
    for _ in range(6):
        normal = await observe_session(runtime, normal, "majority", "Decided", 2.0)
    assert not (normal.get("status") or {}).get("conditions")  # nothing to report yet

    slow = await session(kube, "s-slow")
    slow = await observe_session(runtime, slow, "majority", "Decided", 9.5)
    [condition] = slow["status"]["conditions"]
    assert condition["type"] == "Anomalous" and condition["status"] == "True"
    assert condition["reason"] == "SlowDecision"
    assert "Decision latency 9.5s is 7.5s above the majority baseline (mean 2s" in condition["message"]
    assert "kubectl mabeam describe coordination s-slow -n default" in condition["message"]
    stored = await kube.get(COORDINATION, "s-slow", "default")
    assert stored is not None and stored["status"]["conditions"] == [condition]

    [event] = [e for e in await kube.list(EVENT, "default") if e["involvedObject"]["name"] == "s-slow"]
    assert event["type"] == "Warning" and event["reason"] == "SlowDecision"
    assert event["involvedObject"]["kind"] == "Coordination"
    assert event["message"] == condition["message"]
    assert sample(runtime, "mabeam_anomalies_total", protocol="majority", signal="latency") == 1
    # Other protocols have baselines of their own: the same latency there is just a first sample.
    other = await session(kube, "s-other")
    other = await observe_session(runtime, other, "consensus", "Decided", 9.5)
    assert not (other.get("status") or {}).get("conditions")


async def test_a_condition_written_meanwhile_is_kept(runtime: controller.Runtime, kube: Kube) -> None:
    """The write carries the resourceVersion read; on a race it re-reads and keeps the other's work."""
    body = await session(kube, "s-race")
    for _ in range(5):
        await observe_session(runtime, body, "weighted", "Decided", 1.0)
    await kube.patch(
        COORDINATION,
        "s-race",
        {
            "status": {
                "phase": "Decided",
                "conditions": [{"type": "Complete", "status": "True", "reason": "Done"}],
            }
        },
        namespace="default",
        status=True,
    )
    result = await observe_session(runtime, body, "weighted", "Decided", 30.0)  # body is stale
    types = {c["type"]: c for c in result["status"]["conditions"]}
    assert set(types) == {"Complete", "Anomalous"} and result["status"]["phase"] == "Decided"
