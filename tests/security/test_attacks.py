"""The attack suite on ``mabeam local``: every attack refused, as on a cluster (tests/e2e)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mabeam.kube.client import Kube
from mabeam.kube.resources import NAMESPACE
from mabeam.local.cluster import LocalCluster
from tests.security._plane import Plane
from tests.security.attacks import ATTACKS, Attack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    async with LocalCluster(tmp_path / "cluster") as cluster:
        await cluster.start_operator()
        admin = Kube.connect(cluster.admin_kubeconfig)
        await admin.create(NAMESPACE, {"metadata": {"name": "attacked"}})
        attacked = Plane(cluster.admin_kubeconfig, "attacked", tmp_path, admin)
        try:
            yield attacked
        finally:
            await attacked.close()
            await admin.close()
            await cluster.stop_operator()
        assert cluster.api.server_errors == []


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__.removeprefix("attack_"))
async def test_attack_is_refused(plane: Plane, attack: Attack) -> None:
    await attack(plane)
