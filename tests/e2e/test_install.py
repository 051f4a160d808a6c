"""The chart installs on a real API server, and kubectl works with our kinds as with built-ins."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT
from tests.e2e._helpers import E2E, REPO, eventually

KINDS = ("agents", "variables", "coordinations", "votes", "auctions", "bids", "markets", "orders")


def test_every_crd_is_established_with_its_schema_and_cel_rules(e2e: E2E) -> None:
    for plural in KINDS:
        crd = json.loads(e2e.kubectl("get", "crd", f"{plural}.mabeam.io", "-o", "json").stdout)
        conditions = {c["type"]: c for c in crd["status"]["conditions"]}
        assert conditions["Established"]["status"] == "True", conditions
        assert conditions["NamesAccepted"]["status"] == "True", conditions
        assert conditions.get("NonStructuralSchema", {}).get("status") != "True", conditions
        version = crd["spec"]["versions"][0]
        assert version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    # Our CEL rules were compiled and are enforced (not merely stored): a rule of ours refuses.
    rules = e2e.kubectl(
        "get", "crd", "auctions.mabeam.io", "-o", "jsonpath={..x-kubernetes-validations}"
    ).stdout
    assert "rule" in rules


def test_kubectl_get_shows_the_printer_columns(e2e: E2E, ns: str) -> None:
    manifest = {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Variable",
        "metadata": {"name": "temperature", "namespace": ns},
        "spec": {"type": "number", "value": 21.5},
    }
    e2e.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(manifest))
    out = e2e.kubectl("-n", ns, "get", "variables").stdout
    header = out.splitlines()[0].split()
    assert header[0] == "NAME" and len(header) > 2, out  # a Table from the server, not NAME/AGE only
    out = (
        e2e.kubectl("-n", ns, "get", "agents").stdout
        + e2e.kubectl("-n", ns, "get", "agents", "-o", "wide", check=False).stderr
    )
    assert "No resources found" in out


def test_kubectl_explain_reads_our_schema(e2e: E2E) -> None:
    out = e2e.kubectl("explain", "agents.spec").stdout
    assert "capabilities" in out and "template" in out, out
    out = e2e.kubectl("explain", "auctions.spec.mechanism").stdout
    assert "second-price" in out, out


def test_server_side_apply_owns_fields_and_removes_dropped_ones(e2e: E2E, ns: str) -> None:
    def apply(spec: dict[str, object]) -> None:
        manifest = {
            "apiVersion": "mabeam.io/v1alpha1",
            "kind": "Variable",
            "metadata": {"name": "limits", "namespace": ns, "labels": {"team": "a"}},
            "spec": spec,
        }
        e2e.kubectl(
            "apply", "--server-side", "--field-manager=gitops", "-f", "-", stdin=yaml.safe_dump(manifest)
        )

    apply({"type": "integer", "value": 3, "description": "max workers"})
    apply({"type": "integer", "value": 4})
    obj = json.loads(
        e2e.kubectl("-n", ns, "get", "variable", "limits", "--show-managed-fields", "-o", "json").stdout
    )
    assert obj["spec"]["value"] == 4
    assert obj["spec"].get("description", "") == ""  # dropped: back to the schema default
    assert any(m["manager"] == "gitops" for m in obj["metadata"]["managedFields"])


async def test_kubectl_wait_for_a_condition(e2e: E2E, kube: Kube, ns: str, tmp_path: Path) -> None:
    manifest = {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "waiter", "namespace": ns},
        "spec": {
            "capabilities": ["vote"],
            "template": {
                "spec": {
                    "containers": [
                        {"name": "agent", "image": "example/agent:1", "command": ["sleep", "3600"]}
                    ]
                }
            },
        },
    }
    e2e.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(manifest))
    e2e.kubectl("-n", ns, "wait", "--for=condition=Ready", "agent/waiter", "--timeout=90s")

    async def ready() -> bool:
        agent = await kube.get(AGENT, "waiter", ns)
        return ((agent or {}).get("status") or {}).get("phase") == "Ready"

    await eventually(ready, what="agent waiter Ready")


def test_the_examples_pass_the_servers_validation(e2e: E2E) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        e2e.kubectl("apply", "--dry-run=server", "-f", str(path))
