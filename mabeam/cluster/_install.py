"""Install MABEAM on a control plane exactly as the Helm chart deploys it.

The chart (charts/mabeam) is rendered with helm-python-sdk (Helm as a library), its CRDs are
applied first and waited for, then every rendered object with ``kubectl apply --server-side``.
The operator then runs as the chart's Deployment: the local kubelet starts its pod as a
process (the image's entrypoint is ``mabeam``) under the chart's ServiceAccount, with a token
from the TokenRequest API, holding exactly the RBAC rights that the chart grants.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CHART_DIR", "OPERATOR_IMAGE", "InstallError", "apply", "install", "render_chart"]

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "mabeam"
OPERATOR_IMAGE = "ghcr.io/mabeam/operator"


class InstallError(RuntimeError):
    """kubectl refused something, or the operator did not become ready."""


def render_chart(
    values: Mapping[str, Any],
    *,
    release: str = "mabeam",
    namespace: str = "mabeam-system",
    hooks: bool = False,
) -> list[dict[str, Any]]:
    """The chart's templates rendered with ``values`` (CRDs excluded), as objects.

    As ``helm install`` does, the release's objects leave out the hooks (annotation
    ``helm.sh/hook``: the uninstall cleanup Job and its rights, the ``helm test`` pod), which
    Helm creates only at their event; ``hooks=True`` returns the hooks instead.
    """
    import helm_python

    with helm_python.Chart.load(CHART_DIR) as chart:
        out = chart.render(values=dict(values), name=release, namespace=namespace)
    objects: list[dict[str, Any]] = []
    for path in sorted(out):
        if path.endswith("NOTES.txt"):
            continue
        for obj in yaml.safe_load_all(out[path]):
            if isinstance(obj, dict):
                hook = "helm.sh/hook" in ((obj.get("metadata") or {}).get("annotations") or {})
                if hook is hooks:
                    objects.append(obj)
    return objects


def crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((CHART_DIR / "crds").glob("*.yaml"))]


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        raise InstallError("kubectl is not installed (https://kubernetes.io/docs/tasks/tools/)")
    result = subprocess.run(
        [exe, f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise InstallError(f"kubectl {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def apply(kubeconfig: Path, objects: Iterable[Mapping[str, Any]], *, manager: str = "mabeam-install") -> None:
    docs = "\n---\n".join(yaml.safe_dump(dict(o)) for o in objects)
    kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={manager}",
        "-f",
        "-",
        stdin=docs,
    )


def install(
    kubeconfig: Path,
    *,
    namespace: str = "mabeam-system",
    release: str = "mabeam",
    values: Mapping[str, Any] | None = None,
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    """CRDs, then the namespace, then the chart; waits for the operator's Deployment."""
    apply(kubeconfig, crds())
    kubectl(
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{c['metadata']['name']}" for c in crds()),
    )
    kubectl(kubeconfig, "create", "namespace", namespace, check=False)
    objects = render_chart(values or {}, release=release, namespace=namespace)
    apply(kubeconfig, objects)
    deployment = next(o for o in objects if o.get("kind") == "Deployment")
    name = deployment["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while True:
        out = kubectl(kubeconfig, "-n", namespace, "get", "deployment", name, "-o", "json")
        status = json.loads(out).get("status") or {}
        if status.get("readyReplicas", 0) >= 1:
            return objects
        if time.monotonic() > deadline:
            pods = kubectl(kubeconfig, "-n", namespace, "get", "pods", "-o", "wide", check=False)
            raise InstallError(f"the operator Deployment {namespace}/{name} is not ready: {status}\n{pods}")
        time.sleep(0.5)
