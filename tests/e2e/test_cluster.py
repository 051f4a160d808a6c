"""End-to-end tests against a real cluster where MABEAM is installed with the Helm chart.

They run only when MABEAM_E2E_KUBECONFIG names a kubeconfig, and MABEAM_E2E_AGENT_IMAGE an
image of agents/Dockerfile that the cluster can pull. See docs/install.md.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, POD

KUBECONFIG = os.environ.get("MABEAM_E2E_KUBECONFIG")
IMAGE = os.environ.get("MABEAM_E2E_AGENT_IMAGE", "")
NAMESPACE = os.environ.get("MABEAM_E2E_NAMESPACE", "default")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not KUBECONFIG,
        reason="needs a real cluster: set MABEAM_E2E_KUBECONFIG (and MABEAM_E2E_AGENT_IMAGE) "
        "after `helm install mabeam charts/mabeam`",
    ),
]


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    client = Kube.connect(KUBECONFIG)
    yield client
    await client.close()


async def _wait_phase(kube: Kube, name: str, phase: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        agent = await kube.get(AGENT, name, NAMESPACE)
        status = (agent or {}).get("status") or {}
        if status.get("phase") == phase:
            return status
        await asyncio.sleep(2)
    raise AssertionError(f"agent {name} did not reach {phase}; last status {status}")


async def test_agent_runs_and_is_replaced_on_a_real_cluster(kube: Kube) -> None:
    if not IMAGE:
        pytest.fail("MABEAM_E2E_AGENT_IMAGE must name an image built from agents/Dockerfile")
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    body = {
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "capabilities": ["vote"],
            "restart": {"initialDelaySeconds": 1, "maxDelaySeconds": 5},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "agent",
                            "image": IMAGE,
                            "command": ["python", "agents/voter.py"],
                            "readinessProbe": {
                                "exec": {"command": ["sh", "-c", 'test -f "$MABEAM_READY_FILE"']}
                            },
                        }
                    ]
                }
            },
        },
    }
    await kube.create(AGENT, body)
    try:
        status = await _wait_phase(kube, name, "Ready", 180)
        await kube.delete(POD, status["podName"], NAMESPACE)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            agent = await kube.get(AGENT, name, NAMESPACE)
            new = (agent or {}).get("status") or {}
            if new.get("phase") == "Ready" and new.get("podName") != status["podName"]:
                assert new["replacements"] >= 1
                break
            await asyncio.sleep(2)
        else:
            raise AssertionError("the deleted pod was not replaced")
    finally:
        await kube.delete(AGENT, name, NAMESPACE)
