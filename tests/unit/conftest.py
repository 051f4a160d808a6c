"""Unit fixtures: a local control plane (API server and kubelet) for the commands that talk to one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mabeam.kube.client import Kube
from mabeam.local.cluster import LocalCluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster(tmp_path) as c:
        yield c


@pytest.fixture
async def kube(cluster: LocalCluster) -> AsyncIterator[Kube]:
    client = cluster.client()
    yield client
    await client.close()
