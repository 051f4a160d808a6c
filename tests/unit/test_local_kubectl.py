"""The real ``kubectl`` against the local API server: get (Tables), explain (OpenAPI), logs,
server-side apply."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mabeam.kube import crdgen
from mabeam.local.apiserver import LocalApiServer, ThreadedApiServer
from mabeam.local.apiserver._apply import field_paths, fields_v1, from_fields_v1
from mabeam.local.apiserver._tables import human_duration, simple_jsonpath, table_version

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def agent(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "capabilities": ["vote"],
            "weight": 2,
            "priority": 5,
            "template": {"spec": {"containers": [{"name": "agent", "image": "a:1", "command": ["true"]}]}},
            **spec,
        },
    }


class Kubectl:
    def __init__(self, server: ThreadedApiServer, config: pathlib.Path, home: pathlib.Path) -> None:
        self.server, self.config, self.home = server, config, home

    KUBECTL_PATH = KUBECTL

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), "KUBECONFIG": str(self.config)}

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        argv = [KUBECTL, *args]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=self.env, timeout=60, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    @property
    def api(self) -> LocalApiServer:
        return self.server.api


@pytest.fixture
def kubectl(tmp_path: pathlib.Path) -> Iterator[Kubectl]:
    with LocalApiServer.start_in_thread(tls=True) as server:
        server.call(lambda: server.api.install_crds(crdgen.generate_crds()))
        config = server.kubeconfig(tmp_path / "kubeconfig")
        yield Kubectl(server, config, tmp_path)
        assert server.call(lambda: server.api.server_errors) == []


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_get_agents_prints_the_crd_printer_columns(kubectl: Kubectl) -> None:
    kubectl.server.call(lambda: kubectl.api.create(agent("alice")))
    kubectl.server.call(lambda: kubectl.api.create(agent("bob", weight=3)))
    table = rows(kubectl("get", "agents").stdout)
    assert table[0] == ["NAME", "PHASE", "POD", "RESTARTS", "AGE"]
    assert [r[0] for r in table[1:]] == ["alice", "bob"]
    assert all(r[-1].endswith("s") for r in table[1:])  # an age such as "0s", not a timestamp
    wide = rows(kubectl("get", "agents", "-o", "wide").stdout)
    assert wide[0] == ["NAME", "PHASE", "POD", "RESTARTS", "WEIGHT", "PRIORITY", "AGE"]
    assert wide[2][-3:-1] == ["3", "5"]
    one = rows(kubectl("get", "agent", "alice").stdout)
    assert one[0][0] == "NAME" and [r[0] for r in one[1:]] == ["alice"]
    everywhere = rows(kubectl("get", "agents", "-A").stdout)
    assert everywhere[0][:2] == ["NAMESPACE", "NAME"] and everywhere[1][:2] == ["default", "alice"]


def test_get_builtin_kinds_prints_kubernetes_columns(kubectl: Kubectl) -> None:
    namespaces = rows(kubectl("get", "namespaces").stdout)
    assert namespaces[0] == ["NAME", "STATUS", "AGE"] and namespaces[1][:2] == ["default", "Active"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "1", "b": "2"}}
    kubectl.server.call(lambda: kubectl.api.create(cm))
    table = rows(kubectl("get", "configmaps").stdout)
    assert table[0] == ["NAME", "DATA", "AGE"] and table[1][:2] == ["c1", "2"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {"kind": "Agent", "name": "alice", "namespace": "default"},
        "type": "Normal",
        "reason": "Started",
        "message": "pod alice-1 started",
        "source": {"component": "mabeam"},
        "count": 2,
    }
    kubectl.server.call(lambda: kubectl.api.create(event))
    events = kubectl("get", "events").stdout.splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert events[1].split()[1:] == ["Normal", "Started", "agent/alice", "pod", "alice-1", "started"]
    kubectl.server.call(lambda: kubectl.api.create(pod("p1", "agent")))
    kubectl.server.call(lambda: kubectl.api.create(pod("p2", "agent")))
    status = {
        "phase": "Running",
        "containerStatuses": [{"name": "agent", "ready": True, "restartCount": 1, "state": {"running": {}}}],
    }
    kubectl.server.call(lambda: set_status(kubectl.api, "p1", status))
    pods = rows(kubectl("get", "pods").stdout)
    assert pods[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert pods[1][:4] == ["p1", "1/1", "Running", "1"] and pods[2][:4] == ["p2", "0/1", "Pending", "0"]
    crds = rows(kubectl("get", "crds").stdout)
    assert crds[0] == ["NAME", "CREATED", "AT"]  # the default table: Name, Created At
    assert "agents.mabeam.io" in [r[0] for r in crds[1:]]


def pod(name: str, *containers: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "local", "containers": [{"name": c, "image": "x"} for c in containers]},
    }


def set_status(api: LocalApiServer, name: str, status: dict[str, Any]) -> None:
    """Write a pod's status, as its kubelet would."""
    obj = api.get("v1/pods", name, "default")
    assert obj is not None
    pods = api.emulator.resolve("v1/pods")
    api.emulator.replace_object(pods, "default", name, {**obj, "status": status}, subresource="status")


def finish(api: LocalApiServer, name: str) -> None:
    """The pod's containers have exited."""
    set_status(api, name, {"phase": "Succeeded"})


def test_logs_prints_a_pod_log_from_the_kubelet_files(kubectl: Kubectl, tmp_path: pathlib.Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    kubectl.server.call(lambda: kubectl.api.serve_logs(lambda ns, p, c: logs / f"{ns}_{p}_{c}.log"))
    kubectl.server.call(lambda: kubectl.api.create(pod("p1", "agent")))
    kubectl.server.call(lambda: kubectl.api.create(pod("p2", "agent", "side")))
    (logs / "default_p1_agent.log").write_text("one\ntwo\nthree\n")
    (logs / "default_p2_side.log").write_text("side car\n")
    assert kubectl("logs", "p1").stdout == "one\ntwo\nthree\n"
    assert kubectl("logs", "p1", "--tail=2").stdout == "two\nthree\n"
    assert kubectl("logs", "pod/p1", "-c", "agent", "--limit-bytes=5").stdout == "one\nt"
    assert kubectl("logs", "p2", "-c", "side").stdout == "side car\n"
    waiting = kubectl("logs", "p2", check=False)  # kubectl picks the first container; no log yet
    assert waiting.returncode != 0 and 'Defaulted container "agent"' in waiting.stderr
    assert 'container "agent" in pod "p2" is waiting to start' in waiting.stderr
    unknown = kubectl("logs", "p2", "-c", "nope", check=False)
    assert unknown.returncode != 0 and "container nope is not valid for pod p2" in unknown.stderr
    # follow: what is there, then what is appended, until the pod ends.
    assert kubectl.KUBECTL_PATH is not None
    argv = [kubectl.KUBECTL_PATH, "logs", "-f", "p1"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=kubectl.env) as follow:
        assert follow.stdout is not None
        assert [follow.stdout.readline() for _ in range(3)] == ["one\n", "two\n", "three\n"]
        with (logs / "default_p1_agent.log").open("a") as handle:
            handle.write("four\n")
        assert follow.stdout.readline() == "four\n"
        kubectl.server.call(lambda: finish(kubectl.api, "p1"))
        assert follow.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("seconds", "printed"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (9 * 60 + 59, "9m59s"),
        (10 * 60 + 30, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (7 * 3600 + 59 * 60, "7h59m"),
        (47 * 3600 + 59 * 60, "47h"),
        (48 * 3600, "2d"),
        (7 * 86400 + 23 * 3600, "7d23h"),
        (8 * 86400, "8d"),
        (2 * 365 * 86400 + 5 * 86400, "2y5d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_ages_are_printed_as_kubernetes_prints_them(seconds: int, printed: str) -> None:
    assert human_duration(seconds) == printed


def test_simple_jsonpath_and_table_negotiation() -> None:
    obj = {"status": {"result": {"winners": ["a", "b"]}, "lock": {"holder": "x"}}, "m": {"a.b": 1}}
    assert simple_jsonpath(obj, ".status.result.winners") == (True, ["a", "b"])
    assert simple_jsonpath(obj, ".status.result.winners[1]") == (True, "b")
    assert simple_jsonpath(obj, "{.status.lock.holder}") == (True, "x")
    assert simple_jsonpath(obj, ".m['a.b']") == (True, 1)
    assert simple_jsonpath(obj, ".status.missing.deeper") == (False, None)
    assert simple_jsonpath(obj, ".status.result.winners[5]") == (False, None)
    with pytest.raises(ValueError, match="unsupported"):
        simple_jsonpath(obj, ".status[?(@.x)]")
    kubectl_accept = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
        "application/json"
    )
    assert table_version(kubectl_accept) == "v1"
    assert table_version("application/json") is None
    assert table_version("application/json;as=Table;v=v2;g=meta.k8s.io") is None


def test_explain_prints_the_crd_schema_docs(kubectl: Kubectl) -> None:
    spec = kubectl("explain", "agent.spec").stdout
    assert "KIND:       Agent" in spec and "VERSION:    v1alpha1" in spec
    assert "weight\t<number>" in spec and "Voting weight in weighted protocols." in spec
    assert "template\t<Object> -required-" in spec
    field = kubectl("explain", "auctions.spec.mechanism").stdout
    assert "FIELD: mechanism <string>" in field
    assert "KIND:       Pod" in kubectl("explain", "pods").stdout  # built-ins have a (minimal) schema


def test_apply_validates_on_the_server_without_validate_false(kubectl: Kubectl) -> None:
    manifest = yaml.safe_dump_all([agent("alice"), agent("bob", weight=4)])
    assert "agent.mabeam.io/alice created" in kubectl("apply", "-f", "-", stdin=manifest).stdout
    assert "agent.mabeam.io/bob unchanged" in kubectl("apply", "-f", "-", stdin=manifest).stdout
    bad = agent("carol", bogus=1)
    refused = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0 and "spec.bogus" in refused.stderr  # fieldValidation=Strict
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "1"}}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(cm))
    cm["data"] = {"a": "2"}
    assert "configmap/c1 configured" in kubectl("apply", "-f", "-", stdin=yaml.safe_dump(cm)).stdout
    assert kubectl("get", "cm", "c1", "-o", "jsonpath={.data.a}").stdout == "2"


def test_server_side_apply_owns_fields_and_removes_the_dropped_ones(kubectl: Kubectl) -> None:
    def apply(obj: dict[str, Any], *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl("apply", "--server-side", *flags, "-f", "-", stdin=yaml.safe_dump(obj), check=check)

    variable = {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Variable",
        "metadata": {"name": "limits", "namespace": "default", "labels": {"team": "a", "tier": "x"}},
        "spec": {"type": "integer", "value": 3, "description": "max workers"},
    }
    apply(variable, "--field-manager=gitops")
    variable["spec"] = {"type": "integer", "value": 4}
    del variable["metadata"]["labels"]["tier"]
    apply(variable, "--field-manager=gitops")
    shown = kubectl("get", "variable", "limits", "--show-managed-fields", "-o", "json").stdout
    obj = yaml.safe_load(shown)
    apply(variable, "--field-manager=gitops")  # again, unchanged: a no-op on the server
    again = yaml.safe_load(kubectl("get", "variable", "limits", "--show-managed-fields", "-o", "json").stdout)
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert obj["spec"]["value"] == 4
    assert obj["spec"].get("description", "") == ""  # dropped: back to the schema default
    assert obj["metadata"]["labels"] == {"team": "a"}
    (entry,) = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["fieldsType"]) == ("gitops", "Apply", "FieldsV1")
    assert entry["fieldsV1"]["f:spec"] == {"f:type": {}, "f:value": {}}
    # Another manager changing an applied field is a conflict, unless forced; then it owns it.
    other = {**variable, "spec": {"type": "integer", "value": 5}}
    refused = apply(other, "--field-manager=ops", check=False)
    assert refused.returncode != 0
    assert 'conflict with "gitops"' in refused.stderr and ".spec.value" in refused.stderr
    apply(other, "--field-manager=ops", "--force-conflicts")
    obj = yaml.safe_load(kubectl("get", "variable", "limits", "--show-managed-fields", "-o", "json").stdout)
    owners = {e["manager"]: e["fieldsV1"] for e in obj["metadata"]["managedFields"]}
    assert obj["spec"]["value"] == 5
    assert "f:value" in owners["ops"]["f:spec"] and "f:value" not in owners["gitops"]["f:spec"]
    # gitops no longer owns spec.value: dropping it from its configuration leaves the value alone.
    apply({**variable, "spec": {"type": "integer"}}, "--field-manager=gitops")
    assert kubectl("get", "variable", "limits", "-o", "jsonpath={.spec.value}").stdout == "5"
    # A non-apply write (kubectl edit / patch) takes the field: the next apply conflicts with it.
    kubectl("patch", "variable", "limits", "--type=merge", "-p", '{"metadata":{"labels":{"team":"b"}}}')
    refused = apply(variable, "--field-manager=gitops", check=False)
    assert refused.returncode != 0 and 'conflict with "kubectl-patch"' in refused.stderr


def test_field_sets_and_their_fields_v1_form() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "d", "labels": {"a": "1"}, "annotations": {}},
        "data": {"x": "1", "y": "2"},
        "list": [1, 2],
        "status": {"phase": "Ready"},
    }
    main = {("metadata", "labels", "a"), ("metadata", "annotations"), ("data", "x"), ("data", "y"), ("list",)}
    assert field_paths(obj) == main  # identity and status are not the main resource's to own
    assert field_paths(obj, "status") == {("status", "phase")}
    tree = fields_v1(main)
    assert tree["f:data"] == {"f:x": {}, "f:y": {}} and tree["f:list"] == {}
    assert from_fields_v1(tree) == main
