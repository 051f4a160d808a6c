"""The nemesis against the real control plane (kube-apiserver and etcd), as ``make e2e`` runs it.

The chart's operator is scaled to zero for the run; the nemesis runs its own operator process,
under the chart's ServiceAccount (a token from TokenRequest), through the fault proxy in front
of the real API server, so that it can SIGKILL it at any request. The agents answer with their
own ServiceAccounts' tokens. Every version of the sessions and Variables is recorded by a watch
started before the first session (the real API server keeps no history). Seeds and size:
MABEAM_NEMESIS_SEEDS (default "11 12 13"), MABEAM_NEMESIS_SESSIONS (default 39 per seed) and the
faults required in all, MABEAM_NEMESIS_MIN_FAULTS (default 500; ``make e2e`` runs one short seed
and requires none, ``make e2e-heavy`` the defaults); the last seed runs with money (Accounts for
the agents).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mabeam.kube.client import Kube
from mabeam.kube.resources import ROLE_BINDING, SERVICE_ACCOUNT, Res
from tests.e2e._helpers import E2E
from tests.nemesis._run import Options, run_seed
from tests.nemesis._target import Recorder, Target

OPERATOR_NAMESPACE = "mabeam-system"


class RealTarget(Target):
    def __init__(self, e2e: E2E, namespace: str, workdir: Path, operator_account: str) -> None:
        self.e2e = e2e
        self.namespace = namespace
        self.workdir = workdir
        self.admin = Kube.connect(e2e.kubeconfig)
        self.operator_namespace = OPERATOR_NAMESPACE
        self.operator_env = {"POD_NAMESPACE": OPERATOR_NAMESPACE}
        self.operator_kubeconfig = e2e.service_account_kubeconfig(
            OPERATOR_NAMESPACE, operator_account, workdir / "operator.kubeconfig"
        )
        config = yaml.safe_load(e2e.kubeconfig.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])["cluster"]
        self.upstream = cluster["server"]
        if "certificate-authority-data" in cluster:
            self.ssl = ssl.create_default_context(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
        elif "certificate-authority" in cluster:
            self.ssl = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.recorder = Recorder(self.admin, namespace)

    async def agent_client(self, name: str) -> Kube:
        return self.e2e.as_service_account(self.namespace, f"mabeam-agent-{name}", self.workdir)

    def history(self, res: Res, name: str) -> list[dict[str, Any]]:
        return list(self.recorder.versions.get((res.plural, name), []))

    async def prepare_agents(self, names: list[str]) -> None:
        self.recorder.start()
        for name in names:
            await self.admin.create(SERVICE_ACCOUNT, {"metadata": {"name": f"mabeam-agent-{name}",
                                                                   "namespace": self.namespace}})  # fmt: skip
        subjects = [{"kind": "ServiceAccount", "name": f"mabeam-agent-{n}", "namespace": self.namespace}
                    for n in names]  # fmt: skip
        role = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mabeam-agent"}
        await self.admin.create(ROLE_BINDING, {
            "metadata": {"name": "nemesis-agents", "namespace": self.namespace},
            "roleRef": role, "subjects": subjects,
        })  # fmt: skip


@pytest.fixture
def chart_operator_stopped(e2e: E2E) -> Iterator[str]:
    """The chart's operator scaled to zero for the test (restored after); yields its account."""
    deployments = json.loads(e2e.kubectl("-n", OPERATOR_NAMESPACE, "get", "deployments", "-o", "json").stdout)
    (deployment,) = deployments["items"]
    name = deployment["metadata"]["name"]
    replicas = int(deployment["spec"].get("replicas", 1))
    account = deployment["spec"]["template"]["spec"].get("serviceAccountName") or "default"

    def scaled(ready: int) -> bool:
        out = e2e.kubectl("-n", OPERATOR_NAMESPACE, "get", "deployment", name, "-o", "json").stdout
        status = json.loads(out).get("status") or {}
        if ready == 0:
            return int(status.get("replicas", 0)) == 0
        return int(status.get("readyReplicas", 0)) >= ready

    def wait_until(ready: int) -> None:
        deadline = time.monotonic() + 120
        while not scaled(ready):
            assert time.monotonic() < deadline, f"deployment {name} never reached {ready} replicas"
            time.sleep(0.5)

    e2e.kubectl("-n", OPERATOR_NAMESPACE, "scale", f"deployment/{name}", "--replicas=0")
    wait_until(0)
    try:
        yield account
    finally:
        e2e.kubectl("-n", OPERATOR_NAMESPACE, "scale", f"deployment/{name}", f"--replicas={replicas}")
        wait_until(replicas)


@pytest.mark.timeout(3600)
async def test_the_nemesis_on_the_real_control_plane(
    e2e: E2E, kube: Kube, ns: str, chart_operator_stopped: str, tmp_path: Path
) -> None:
    seeds = [int(s) for s in os.environ.get("MABEAM_NEMESIS_SEEDS", "11 12 13").split()]
    sessions = int(os.environ.get("MABEAM_NEMESIS_SESSIONS", "39"))
    min_faults = int(os.environ.get("MABEAM_NEMESIS_MIN_FAULTS", "500"))
    total = 0
    violations: list[str] = []
    for seed in seeds:
        # A namespace per seed: the fixture's for the first, new ones (deleted after) for the rest.
        namespace = ns if seed == seeds[0] else f"{ns}-{seed}"
        if namespace != ns:
            e2e.kubectl("create", "namespace", namespace)
        (tmp_path / str(seed)).mkdir()
        target = RealTarget(e2e, namespace, tmp_path / str(seed), chart_operator_stopped)
        try:
            # The last seed with the agents paying from Accounts.
            report = await run_seed(target, seed, Options(sessions=sessions, money=seed == seeds[-1]))
        finally:
            await target.recorder.stop()
            await target.admin.close()
            if namespace != ns:
                e2e.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        print(report.table())
        total += report.faults
        violations += report.violations
    assert violations == []
    assert total >= min_faults, f"only {total} faults injected (at least {min_faults} wanted)"
