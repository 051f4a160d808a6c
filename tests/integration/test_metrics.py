"""The operator's Prometheus metrics, scraped over HTTP as Prometheus would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mabeam import controller
from mabeam.controller._metrics import MetricsServer, serve_metrics
from mabeam.errors import ApiError
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT
from mabeam.local.cluster import LocalCluster
from tests.integration._util import eventually
from tests.integration.test_agent_lifecycle import agent_manifest, ready


class FailsFirstStatusWrite(Kube):
    """The API refuses the operator's first status write (as a flaky API server would)."""

    failed = False

    async def patch(self, res: Any, name: str, patch: Any, **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("status") and not FailsFirstStatusWrite.failed:
            FailsFirstStatusWrite.failed = True
            raise ApiError("patch Agent: the server is currently unable to handle the request", status=503)
        return await super().patch(res, name, patch, **kwargs)


@pytest.fixture
def runtime() -> Iterator[controller.Runtime]:
    FailsFirstStatusWrite.failed = False
    rt = controller.Runtime(kube_factory=FailsFirstStatusWrite)
    rt.settings.agents.retry_seconds = 0.1
    yield rt


@pytest.fixture
def endpoint(runtime: controller.Runtime) -> Iterator[MetricsServer]:
    server = serve_metrics(runtime.metrics.registry, 0, host="127.0.0.1")
    yield server
    server.close()


async def scrape(server: MetricsServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_agents_by_phase_reconcile_durations_and_api_errors(
    cluster: LocalCluster, kube: Kube, runtime: controller.Runtime, endpoint: MetricsServer
) -> None:
    await cluster.start_operator(runtime)
    await kube.create(AGENT, agent_manifest("m1"))
    await kube.create(AGENT, agent_manifest("m2"))
    await eventually(lambda: ready(kube, "m1"), what="m1 Ready")
    await eventually(lambda: ready(kube, "m2"), what="m2 Ready")

    async def ready_count() -> float | None:
        got = value(await scrape(endpoint), "mabeam_agents", namespace="default", phase="Ready")
        return got if got == 2 else None

    await eventually(ready_count, timeout=5, what="mabeam_agents Ready 2")
    samples = await scrape(endpoint)
    # Every phase is exported, at 0 when no agent is in it.
    assert value(samples, "mabeam_agents", namespace="default", phase="Failed") == 0
    assert value(samples, "mabeam_agents", namespace="default", phase="Pending") == 0
    reconciles = value(samples, "mabeam_reconcile_duration_seconds_count", kind="Agent")
    assert reconciles is not None and reconciles >= 2
    total = value(samples, "mabeam_reconcile_duration_seconds_sum", kind="Agent")
    assert total is not None and 0 < total < reconciles * 5  # seconds, not milliseconds
    assert value(samples, "mabeam_api_errors_total", kind="Agent") == 1
    assert value(samples, "mabeam_agent_container_restarts", namespace="default", agent="m1") == 0

    await kube.delete(AGENT, "m1", "default")

    async def one_ready() -> bool:
        return value(await scrape(endpoint), "mabeam_agents", namespace="default", phase="Ready") == 1

    await eventually(one_ready, timeout=10, what="mabeam_agents Ready 1 after a delete")
