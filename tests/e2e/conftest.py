"""The e2e suite runs against a real Kubernetes API server.

By default it builds (or reuses, see hack/build-cluster.sh) etcd, kube-apiserver and
kube-controller-manager from Kubernetes' Go modules, starts them on loopback with the local
kubelet, and installs MABEAM from charts/mabeam exactly as `helm install` would: the operator
runs as the chart's Deployment, under its ServiceAccount, with the chart's RBAC and admission
policies. With MABEAM_E2E_KUBECONFIG it uses that cluster instead, where MABEAM must already be
installed by the chart (and agent pods must be able to run `python agents/*.py`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mabeam.kube.client import Kube
from mabeam.kube.resources import NAMESPACE as NAMESPACE_RES
from tests.e2e._helpers import E2E, leftover_processes

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
            # The first test also waits for the control plane to start and MABEAM to install.
            item.add_marker(pytest.mark.timeout(600))


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    given = os.environ.get("MABEAM_E2E_KUBECONFIG")
    if given:
        yield E2E(kubeconfig=Path(given), plane=None)
        return
    from mabeam.cluster import ControlPlane, build_binaries, install
    from mabeam.cluster._cli import operator_values
    from mabeam.cluster._install import OPERATOR_IMAGE

    workdir = Path(tempfile.mkdtemp(prefix="mabeam-e2e-"))
    plane = ControlPlane(
        workdir,
        bin_dir=build_binaries(),
        audit=True,
        images={OPERATOR_IMAGE: [sys.executable, "-m", "mabeam.cli"]},
        kubelet_args=["--probe-period=0.2", "--backoff-base=0.2", "--backoff-cap=1", "--grace-period=2"],
        pod_cwd=REPO,
    )
    failed = True
    try:
        plane.start()
        install(plane.admin_kubeconfig, values=operator_values())
        yield E2E(kubeconfig=plane.admin_kubeconfig, plane=plane)
        failed = False
    finally:
        plane.stop()
        left = leftover_processes(workdir)
        if not failed and os.environ.get("MABEAM_E2E_KEEP") is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\ne2e control plane folder kept: {workdir}", file=sys.stderr)
        assert not left, f"processes left behind by the control plane: {left}"


@pytest.fixture
async def kube(e2e: E2E) -> AsyncIterator[Kube]:
    client = Kube.connect(e2e.kubeconfig)
    yield client
    await client.close()


@pytest.fixture
async def ns(kube: Kube) -> AsyncIterator[str]:
    """A fresh namespace per test, deleted (with everything in it) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACE_RES, {"metadata": {"name": name}})
    yield name
    await kube.delete(NAMESPACE_RES, name)
