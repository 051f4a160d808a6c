"""Integration fixtures: the real operator, in-process, against the local control plane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mabeam.kube.client import Kube
from mabeam.local.cluster import LocalCluster
from tests.integration._coordination import AsAgents

FAST_KUBELET = {"probe_period": 0.2, "backoff_base": 0.2, "backoff_cap": 1.0, "grace_period": 1.0}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster(tmp_path, kubelet_options=FAST_KUBELET) as c:
        yield c


@pytest.fixture
async def kube(cluster: LocalCluster) -> AsyncIterator[Kube]:
    client = cluster.client()
    yield client
    await client.close()


@pytest.fixture
async def as_agent(cluster: LocalCluster) -> AsyncIterator[AsAgents]:
    """Votes, Bids and Orders written with each agent's own credentials."""
    agents = AsAgents(cluster)
    yield agents
    await agents.close()
