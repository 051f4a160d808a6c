"""A short nemesis seed in ``make test``: one session of each kind under the seeded faults, the
agents paying from Accounts (``make nemesis`` runs long seeds; tests/e2e/test_nemesis.py the real
control plane)."""

from __future__ import annotations

from pathlib import Path

from mabeam.local.cluster import LocalCluster
from tests.integration.conftest import FAST_KUBELET
from tests.nemesis._run import Options, run_seed
from tests.nemesis._sessions import KINDS
from tests.nemesis._target import LocalTarget


async def test_a_short_nemesis_seed_violates_no_invariant(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, kubelet_options=FAST_KUBELET) as cluster:
        target = LocalTarget(cluster)
        try:
            report = await run_seed(target, 7, Options(sessions=len(KINDS), slack=60.0, money=True))
        finally:
            await target.admin.close()
    print(report.table())
    assert report.violations == []
    assert {(p.kind, p.label) for p in report.plans} == set(KINDS)
    # Faults of every family came: API errors and slowness, watch faults, agents misbehaving.
    assert report.faults >= 40, report.injected
    assert {"500", "503", "429"} & set(report.injected)
    assert any(f.startswith("watch-") for f in report.injected)
    assert any(f.startswith("agent-") for f in report.injected)
    assert "sessions paid" in report.money  # the Accounts were checked
