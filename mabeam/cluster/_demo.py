"""``mabeam demo --cluster``: the demo on a real control plane, MABEAM installed by its chart."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from ..errors import MabeamError
from ..kube.client import Kube
from ..local import demo as local_demo

__all__ = ["main"]


async def main(
    examples: Path, *, timeout: float = 180.0, workdir: Path = Path(".mabeam-cluster-demo")
) -> int:
    from . import ControlPlane, build_binaries, install
    from ._cli import operator_values
    from ._install import OPERATOR_IMAGE

    local_demo.quiet_logs()
    docs = local_demo.load_manifests(examples)
    if not docs:
        print(f"No MABEAM manifests in {examples}/")
        return 1
    bin_dir = await asyncio.to_thread(build_binaries)
    started = time.monotonic()
    plane = ControlPlane(
        workdir,
        bin_dir=bin_dir,
        images={OPERATOR_IMAGE: [sys.executable, "-m", "mabeam.cli"]},
        kubelet_args=["--probe-period=1", "--backoff-base=1"],
    )
    ok = False
    try:
        await asyncio.to_thread(plane.start)
        values = operator_values()
        await asyncio.to_thread(install, plane.admin_kubeconfig, values=values)
        print(f"Kubernetes API at {plane.url} (etcd, kube-apiserver, kube-controller-manager, local kubelet)")
        print(
            "MABEAM installed from its Helm chart; the operator runs as its pod. "
            f"Logs in {plane.workdir / 'logs'}"
        )
        metrics_url = f"http://127.0.0.1:{values['ports']['metrics']}/metrics"
        kube = Kube.connect(plane.admin_kubeconfig)
        try:
            ok = await local_demo.play(kube, docs, time.monotonic() + timeout)
        except MabeamError as exc:
            print(f"Demo failed: {exc}")
        finally:
            await kube.close()
        if ok:
            print(await local_demo.metrics_summary(metrics_url))
    finally:
        await asyncio.to_thread(plane.stop)
    print(f"{'Done' if ok else 'Failed'} in {time.monotonic() - started:.1f}s.")
    return 0 if ok else 1
