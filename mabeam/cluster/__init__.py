"""A real Kubernetes control plane for the e2e suite, the demo and the benchmarks.

Built from Kubernetes' own Go modules by hack/build-cluster.sh (cached outside the
repository) and run on loopback: see :class:`ControlPlane` and docs/cluster.md. Its names are
imported on first use, so that ``mabeam --help`` does not need the ``local`` extra
(cryptography, helm-python-sdk).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BINARIES",
    "CONTROLLERS",
    "NODE_NAME",
    "BuildError",
    "ControlPlane",
    "ControlPlaneError",
    "InstallError",
    "build_binaries",
    "install",
    "render_chart",
    "stop_recorded",
]

_WHERE = {
    "BINARIES": "_build",
    "BuildError": "_build",
    "build_binaries": "_build",
    "CONTROLLERS": "_controlplane",
    "NODE_NAME": "_controlplane",
    "ControlPlane": "_controlplane",
    "ControlPlaneError": "_controlplane",
    "stop_recorded": "_controlplane",
    "InstallError": "_install",
    "install": "_install",
    "render_chart": "_install",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
