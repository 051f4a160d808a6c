"""Helpers of the e2e suite: the cluster at hand, agents' own credentials, kubectl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mabeam.kube.client import Kube
from tests.integration._util import eventually as _eventually

REPO = Path(__file__).resolve().parents[2]


@dataclass
class E2E:
    """The cluster under test: its admin kubeconfig, and the control plane if we started it."""

    kubeconfig: Path
    plane: Any  # mabeam.cluster.ControlPlane | None

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("kubectl")
        assert exe, "the e2e suite needs kubectl"
        result = subprocess.run(
            [exe, f"--kubeconfig={self.kubeconfig}", *args], input=stdin, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount, with a token from TokenRequest."""
        token = self.kubectl("-n", namespace, "create", "token", account, "--duration=1h").stdout.strip()
        config = yaml.safe_load(self.kubeconfig.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
        out = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "sa",
                    "context": {"cluster": cluster["name"], "user": account, "namespace": namespace},
                }
            ],
            "current-context": "sa",
        }
        path.write_text(yaml.safe_dump(out))
        path.chmod(0o600)
        return path

    def as_service_account(self, namespace: str, account: str, tmp: Path) -> Kube:
        path = self.service_account_kubeconfig(namespace, account, tmp / f"{namespace}-{account}.kubeconfig")
        return Kube.connect(path, namespace=namespace)

    def audit_events(self) -> list[dict[str, Any]]:
        if self.plane is None or not self.plane.audit_log.exists():
            return []
        events = []
        for line in self.plane.audit_log.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
        return events


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 60.0, what: str = "") -> Any:
    """The integration tests' ``eventually``, with the longer default a real cluster needs."""
    return await _eventually(check, timeout=timeout, interval=0.2, what=what)


def leftover_processes(workdir: Path) -> list[str]:
    """Processes (other than zombies) whose command line or environment mentions ``workdir``."""
    needle = str(workdir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError):
            continue
        if needle in cmdline or needle in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command[:200]}")
    return found
