"""Where the control plane's binaries come from: hack/build-cluster.sh, which builds them once
from Kubernetes' Go modules into a cache folder outside the repository, or a folder named by
$MABEAM_CLUSTER_BIN (binaries built elsewhere)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["BINARIES", "BuildError", "build_binaries", "build_script"]

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kwok")


class BuildError(RuntimeError):
    """The binaries could not be built (the message says why and what to install)."""


def build_script() -> Path | None:
    """hack/build-cluster.sh of the source checkout this package runs from, if any."""
    script = Path(__file__).resolve().parents[2] / "hack" / "build-cluster.sh"
    return script if script.is_file() else None


def build_binaries(*, quiet: bool = False) -> Path:
    """The folder holding the four binaries, building them first if needed."""
    given = os.environ.get("MABEAM_CLUSTER_BIN")
    if given:
        folder = Path(given)
        missing = [b for b in BINARIES if not (folder / b).is_file()]
        if missing:
            raise BuildError(f"MABEAM_CLUSTER_BIN={folder} lacks {', '.join(missing)}")
        return folder
    script = build_script()
    if script is None:
        raise BuildError(
            "the control plane is built from a source checkout of MABEAM (hack/build-cluster.sh); "
            "or set MABEAM_CLUSTER_BIN to a folder with etcd, kube-apiserver, "
            "kube-controller-manager and kwok"
        )
    if shutil.which("go") is None:
        raise BuildError("building the control plane needs Go >= 1.26 (https://go.dev/dl/)")
    result = subprocess.run(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"{script} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])
