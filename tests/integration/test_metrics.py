"""The operator's Prometheus metrics, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
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


#: Declared metrics that only failures move, each proven to move by its own test.
FAILURE_ONLY = {
    "mabeam_agent_pod_replacements_total": "tests/integration/test_agent_lifecycle.py (a lost pod)",
    "mabeam_anomalies_total": "tests/integration/test_metrics_anomaly.py",
}
#: Families of the default collectors that a process always has.
DEFAULT_COLLECTORS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info")


@pytest.mark.slow
async def test_every_declared_metric_moves_in_the_demo(
    cluster: LocalCluster, kube: Kube, runtime: controller.Runtime, endpoint: MetricsServer
) -> None:
    """The demo's examples (agents, Variables, a coordination, auctions, markets) through an
    in-process operator whose first status write fails: every counter, histogram and summary
    the operator declares counts something, every gauge has a series."""
    from prometheus_client.parser import text_string_to_metric_families as parse

    from mabeam.local import demo

    examples = Path(__file__).parents[2] / "examples"
    await cluster.start_operator(runtime)
    assert await demo.play(kube, demo.load_manifests(examples), asyncio.get_running_loop().time() + 240)
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{endpoint.port}/metrics") as r:
        families = {f.name: f for f in parse(await r.text())}
    declared = {n: f for n, f in families.items() if n.startswith("mabeam_")}
    assert {"mabeam_variable_writes", "mabeam_agent_ready", "mabeam_sessions_in_progress"} <= set(declared)
    assert {"mabeam_auction_revenue", "mabeam_auction_prices", "mabeam_market_prices"} <= set(declared)
    for name, family in declared.items():
        if f"{name}_total" in FAILURE_ONLY or name in FAILURE_ONLY:
            continue
        if family.type == "gauge":
            assert family.samples, f"{name}: no series"
        else:
            moved = [s for s in family.samples if s.name.endswith(("_total", "_count")) and s.value > 0]
            assert moved, f"{name} never moved in the demo"
    for name in DEFAULT_COLLECTORS:
        assert any(s.name == name for f in families.values() for s in f.samples), name
    ready = {s.labels["agent"]: s.value for s in declared["mabeam_agent_ready"].samples}
    agents = {d["metadata"]["name"] for d in demo.load_manifests(examples) if d["kind"] == "Agent"}
    assert ready == dict.fromkeys(agents, 1.0), ready
    # Every session ended: none is in progress any more, and each kind had a series.
    in_progress = declared["mabeam_sessions_in_progress"].samples
    assert {s.labels["kind"] for s in in_progress} >= {"Coordination", "Auction", "Market"}
    assert all(s.value == 0 for s in in_progress), in_progress
    writes = {s.labels["result"]: s.value for s in declared["mabeam_variable_writes"].samples}
    assert writes.get("applied", 0) >= 1, writes
