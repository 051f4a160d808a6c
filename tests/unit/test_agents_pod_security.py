"""Agent pods pass the Pod Security Standard "restricted" unless their template says otherwise.

The checker below follows the published profile (kubernetes.io/docs/concepts/security/
pod-security-standards, "Baseline" and "Restricted"), written from its text rather than from
our defaults; the e2e suite checks the same against the real API server's PodSecurity
admission (tests/e2e/test_agents.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mabeam.core import agents

EXAMPLES = Path(__file__).parents[2] / "examples"
_RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
}  # fmt: skip
_BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """What in a pod spec the "restricted" profile forbids (empty: it passes)."""
    found: list[str] = []
    pod = pod_spec.get("securityContext") or {}
    containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            found.append(f"spec.{field}")
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {sorted(kinds - _RESTRICTED_VOLUMES)}")
    if (pod.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("pod seccompProfile Unconfined")
    if pod.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    for c in containers:
        sc = c.get("securityContext") or {}
        where = f"container {c['name']}"
        if sc.get("privileged"):
            found.append(f"{where}: privileged")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{where}: hostPort")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation must be false")
        if not (
            sc.get("runAsNonRoot") is True
            or (pod.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)
        ):
            found.append(f"{where}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}: capabilities must drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: may add only NET_BIND_SERVICE")
        if set(capabilities.get("add") or []) - _BASELINE_CAPABILITIES:
            found.append(f"{where}: adds capabilities beyond baseline")
    return found


def example_agents() -> list[dict[str, Any]]:
    docs = [d for p in sorted(EXAMPLES.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    return [d for d in docs if d.get("kind") == "Agent"]


def pod_of(agent: dict[str, Any]) -> dict[str, Any]:
    agent = {**agent, "metadata": {"namespace": "default", "uid": "u1", **agent["metadata"]}}
    return agents.build_pod(agent, agents.parse_spec(agent["spec"]), 1)


def test_the_checker_finds_what_the_profile_forbids() -> None:
    bare = {
        "containers": [{"name": "c", "image": "i"}],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    }
    found = restricted_violations(bare)
    assert any("hostPath" in v for v in found) and any("allowPrivilegeEscalation" in v for v in found)
    assert any("runAsNonRoot" in v for v in found) and any("drop ALL" in v for v in found)


@pytest.mark.parametrize("agent", example_agents(), ids=lambda a: a["metadata"]["name"])
def test_every_example_agents_pod_is_restricted(agent: dict[str, Any]) -> None:
    spec = pod_of(agent)["spec"]
    assert restricted_violations(spec) == []
    assert spec["securityContext"]["runAsUser"] == agents.NON_ROOT_ID
    for container in spec["containers"]:
        assert {"name": agents.TMP_VOLUME, "mountPath": "/tmp"} in container["volumeMounts"]


def test_the_template_wins_over_the_defaults() -> None:
    template = {
        "securityContext": {
            "runAsUser": 1000,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "p"},
        },
        "containers": [
            {
                "name": "c",
                "image": "i",
                "securityContext": {
                    "readOnlyRootFilesystem": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }
        ],
    }
    agent = {"metadata": {"name": "a"}, "spec": {"template": {"spec": template}}}
    spec = pod_of(agent)["spec"]
    assert spec["securityContext"]["runAsUser"] == 1000 and "runAsGroup" not in spec["securityContext"]
    assert spec["securityContext"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": "p"}
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    assert "volumeMounts" not in container and "volumes" not in spec  # a writable root needs no /tmp
    assert restricted_violations(spec) == []


def test_a_template_that_asks_for_root_keeps_it_and_fails_the_profile() -> None:
    template = {
        "containers": [
            {"name": "c", "image": "i", "securityContext": {"runAsUser": 0, "runAsNonRoot": False}}
        ]
    }
    agent = {"metadata": {"name": "a"}, "spec": {"template": {"spec": template}}}
    spec = pod_of(agent)["spec"]
    assert "runAsUser" not in spec["securityContext"]  # the container's own choice stands
    assert any("runAsUser 0" in v for v in restricted_violations(spec))
