"""The Helm chart and the images: what a cluster admin relies on when installing MABEAM.

The chart is rendered offline with helm-python-sdk (Helm as a library) for the default values
and each main option. Every rendered object is checked by an independent tool where one
exists: kubernetes-validate (the Kubernetes OpenAPI schemas, strict) for built-in kinds, and
hand checks for the Prometheus Operator's kinds. The operator's RBAC must equal
mabeam/kube/permissions.py exactly; the pod must pass the Pod Security Standard "restricted"
(checked by a reference implementation of its controls, itself tested on bad pods); the
Dockerfiles are parsed and checked for the properties the chart's securityContext assumes.
"""

from __future__ import annotations

import copy
import filecmp
import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mabeam.cli import build_parser
from mabeam.cli.delete_all import DELETION_ORDER, cmd_delete_all
from mabeam.cluster._install import render_chart
from mabeam.kube.permissions import (
    AGENT_RULES,
    CLEANUP_RULES,
    LEADER_RULES,
    OPERATOR_CLUSTER_RULES,
    OPERATOR_OWN_NAMESPACE_RULES,
    OPERATOR_RULES,
    Rule,
)

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "mabeam"
RELEASE = "mabeam"
NAMESPACE = "mabeam-system"
OPERATOR_SA = "mabeam"
# The floor of Chart.yaml's kubeVersion and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())

OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "cluster-wide": {"clusterWide": True},
    "replicas-2": {"replicas": 2},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "watch-namespaces-replicas-2": {"watchNamespaces": ["team-a"], "replicas": 2},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "prometheus-rule": {"prometheusRule": {"enabled": True}},
    "grafana-dashboard": {"grafanaDashboard": {"enabled": True}},
    "network-policy-off": {"networkPolicy": {"enabled": False}},
    "network-policy-restricted": {
        "networkPolicy": {
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
        }
    },
    "admission-off": {"admission": {"enabled": False}},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "ops-operator"}},
    "rbac-off": {"rbac": {"create": False}},
    "cleanup-off": {"cleanupOnUninstall": {"enabled": False}, "helmTest": {"enabled": False}},
    "openshift-like": {"podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None}},
    "relabelings": {
        "serviceMonitor": {
            "enabled": True,
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
            "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
        }
    },
    "everything": {
        "clusterWide": True,
        "replicas": 3,
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        "image": {"digest": "sha256:" + "a" * 64},
    },
}


@cache
def _render(values_json: str, chart_dir: Path = CHART_DIR) -> tuple[dict[str, Any], ...]:
    with helm_python.Chart.load(chart_dir) as chart:
        out = chart.render(values=json.loads(values_json), name=RELEASE, namespace=NAMESPACE)
    return tuple(
        doc
        for path, text in sorted(out.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    )


def render(values: dict[str, Any] | None = None, chart_dir: Path = CHART_DIR) -> list[dict[str, Any]]:
    return list(_render(json.dumps(values or {}, sort_keys=True), chart_dir))


def only(objs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return obj


def kinds(objs: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def deployment(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return only(render(values), "Deployment")


def operator_container(values: dict[str, Any] | None = None) -> dict[str, Any]:
    (container,) = deployment(values)["spec"]["template"]["spec"]["containers"]
    return container


# --- lint, schema, validity ---------------------------------------------------------------------


def test_lint_passes() -> None:
    report = helm_python.lint(CHART_DIR, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; infos ("icon is recommended") are fine.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", OPTIONS.values(), ids=OPTIONS.keys())
def test_options_pass_the_values_schema(values: dict[str, Any]) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(values)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        pytest.param({"replicas": "two"}, "at '/replicas': got string, want integer", id="replicas-string"),
        pytest.param({"replicas": 0}, "/replicas", id="replicas-zero"),
        pytest.param({"replica": 2}, "additional properties 'replica' not allowed", id="typo-top-level"),
        pytest.param({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0", id="bad-namespace-name"),
        pytest.param({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", id="bad-pull-policy"),
        pytest.param(
            {"admission": {"validationActions": ["Block"]}}, "/admission/validationActions/0", id="bad-action"
        ),
        pytest.param(
            {"prometheusRule": {"thresholds": {"failedSessionRatio": 2}}}, "failedSessionRatio", id="ratio"
        ),
        pytest.param(
            {"prometheusRule": {"alertLabels": {"severity": "page"}}},
            "/prometheusRule/alertLabels",
            id="severity",
        ),
        pytest.param(
            {"serviceMonitor": {"relabelings": [{"action": "delete"}]}},
            "/serviceMonitor/relabelings/0/action",
            id="relabel-action",
        ),
        pytest.param({"rbac": {"create": "no"}}, "/rbac/create", id="rbac-create-string"),
        pytest.param({"cleanupOnUninstall": {"timeoutSeconds": 0}}, "timeoutSeconds", id="cleanup-timeout"),
    ],
)
def test_values_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        with pytest.raises(helm_python.HelmValuesError) as check:
            chart.validate_schema(values)
        assert complaint in str(check.value)
        # `helm install` and `helm template` refuse the same values before rendering anything.
        with pytest.raises(helm_python.HelmValuesError, match=re.escape(complaint)):
            chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


# Values that would run the operator as root (or let it become root): refused before rendering.
ROOT_VALUES = {
    "pod-uid-0": ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    "container-uid-0": ({"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
    "pod-run-as-root": ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    "container-run-as-root": ({"securityContext": {"runAsNonRoot": False}}, "/securityContext/runAsNonRoot"),
    # null removes a default in Helm: without runAsNonRoot nothing stops a root USER image.
    "pod-run-as-non-root-removed": ({"podSecurityContext": {"runAsNonRoot": None}}, "runAsNonRoot"),
    "privileged": ({"securityContext": {"privileged": True}}, "/securityContext/privileged"),
    "escalation": (
        {"securityContext": {"allowPrivilegeEscalation": True}},
        "/securityContext/allowPrivilegeEscalation",
    ),
}


@pytest.mark.parametrize(("values", "complaint"), ROOT_VALUES.values(), ids=ROOT_VALUES.keys())
def test_values_schema_refuses_root(values: dict[str, Any], complaint: str) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        # Helm (the library `helm install` is built on) refuses them before rendering anything...
        with pytest.raises(helm_python.HelmValuesError, match=re.escape(complaint)):
            chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
        # ... and so does an independent JSON Schema validator, on the values Helm would use.
        merged = chart.merge_values(values)
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert list(validator.iter_errors(merged)), "jsonschema accepted it"
    with helm_python.Chart.load(CHART_DIR) as chart:
        assert list(validator.iter_errors(chart.merge_values({}))) == []


def test_values_schema_keeps_what_restricted_allows() -> None:
    # A platform that assigns the UID itself (OpenShift) drops runAsUser/runAsGroup/fsGroup; the
    # container may leave runAsNonRoot to the pod; non-root UIDs other than the image's are fine.
    for values in (
        OPTIONS["openshift-like"],
        {"securityContext": {"runAsNonRoot": None}},
        {"podSecurityContext": {"runAsUser": 1000}, "securityContext": {"runAsUser": 1000}},
    ):
        pod = deployment(values)["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], values


def test_cluster_wide_with_namespaces_is_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="watchNamespaces must be empty when clusterWide"):
        render({"clusterWide": True, "watchNamespaces": ["team-a"]})


PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", OPTIONS.values(), ids=OPTIONS.keys())
def test_built_in_objects_validate_strictly(values: dict[str, Any], kube_version: str) -> None:
    objs = [o for o in render(values) if o["kind"] not in PROMETHEUS_OPERATOR_KINDS]
    assert objs
    for obj in objs:
        assert not obj["apiVersion"].startswith("mabeam.io/"), "the chart renders no custom resource"
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_strict_validation_catches_an_unknown_field() -> None:
    # The check above is only worth something if kubernetes-validate refuses what the API would.
    bad = copy.deepcopy(deployment())  # not the cached render's
    bad["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)


def test_names_and_namespaces() -> None:
    for obj in render(OPTIONS["everything"]):
        meta = obj["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63
        cluster_scoped = obj["kind"].startswith("Cluster") or obj["kind"].startswith("ValidatingAdmission")
        assert ("namespace" in meta) is not cluster_scoped, obj["kind"]


# --- the CRDs -----------------------------------------------------------------------------------


def test_chart_carries_the_generated_crds() -> None:
    generated = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    carried = sorted(p.name for p in (CHART_DIR / "crds").iterdir())
    assert generated, "crds/ is empty"
    assert carried == generated, "run `make crds` and copy crds/*.yaml to charts/mabeam/crds/"
    _, mismatch, errors = filecmp.cmpfiles(ROOT / "crds", CHART_DIR / "crds", generated, shallow=False)
    assert (mismatch, errors) == ([], []), "charts/mabeam/crds/ is stale: copy crds/*.yaml again"


@pytest.mark.parametrize("path", sorted((CHART_DIR / "crds").glob("*.yaml")), ids=lambda p: p.name)
def test_crds_are_valid_custom_resource_definitions(path: Path) -> None:
    (crd,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == "mabeam.io"
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)


def test_helm_loads_the_crds_as_crds() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        loaded = sorted(Path(c["filename"]).name for c in chart.crds)
    assert loaded == sorted(p.name for p in (CHART_DIR / "crds").glob("*.yaml"))


# --- the operator's pod -------------------------------------------------------------------------

ALLOWED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The controls of the Pod Security Standard "restricted" (baseline included), as listed in
    the Kubernetes docs (concepts/security/pod-security-standards), for one pod spec."""
    out: list[str] = []
    psc = pod.get("securityContext", {})
    containers = [*pod.get("initContainers", []), *pod["containers"], *pod.get("ephemeralContainers", [])]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"{key} is set")
    for volume in pod.get("volumes", []):
        kind = set(volume) - {"name"}
        if not kind <= ALLOWED_VOLUME_TYPES:
            out.append(f"volume {volume['name']} is of type {sorted(kind)}")
    for sysctl in psc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            out.append(f"unsafe sysctl {sysctl['name']}")
    if psc.get("runAsUser") == 0:
        out.append("pod runs as UID 0")
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runs as UID 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile is {seccomp}")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount is {sc['procMount']}")
        if sc.get("seLinuxOptions", {}).get("type") not in (None, "", "container_t", "container_init_t"):
            out.append(f"{name}: seLinuxOptions.type")
        if any("hostPort" in p for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
    return out


@pytest.mark.parametrize("values", OPTIONS.values(), ids=OPTIONS.keys())
def test_pod_passes_restricted_pod_security(values: dict[str, Any]) -> None:
    pod = deployment(values)["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []


@pytest.mark.parametrize(
    ("pod_context", "container_context", "violation"),
    [
        ({}, {"allowPrivilegeEscalation": True}, "operator: allowPrivilegeEscalation is not false"),
        ({}, {"capabilities": {"drop": [], "add": ["NET_ADMIN"]}}, "operator: adds capabilities"),
        ({"runAsNonRoot": False}, {"runAsNonRoot": None}, "operator: runAsNonRoot is not true"),
        ({"seccompProfile": {"type": "Unconfined"}}, {}, "operator: seccompProfile is Unconfined"),
        ({"runAsUser": 0}, {}, "pod runs as UID 0"),
    ],
    ids=["escalation", "capabilities", "root", "seccomp", "uid0"],
)
def test_restricted_checker_catches_overrides(
    pod_context: dict[str, Any], container_context: dict[str, Any], violation: str
) -> None:
    # The schema refuses some of these values, so the rendered pod is changed after the fact.
    pod = copy.deepcopy(deployment()["spec"]["template"]["spec"])  # not the cached render's
    contexts = (
        (pod["securityContext"], pod_context),
        (pod["containers"][0]["securityContext"], container_context),
    )
    for context, change in contexts:
        context.update(change)
        for key in [k for k, v in change.items() if v is None]:
            del context[key]
    assert any(v.startswith(violation) for v in restricted_violations(pod)), restricted_violations(pod)


def test_read_only_root_and_tmp_emptydir() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume
    # The image's user (Dockerfile USER) and the pod's agree.
    uid, gid = dockerfile_user(ROOT / "Dockerfile")
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)


def test_no_resources_are_forced_by_default() -> None:
    assert "resources" not in operator_container()
    requests = {"requests": {"cpu": "50m", "memory": "128Mi"}}
    assert operator_container({"resources": requests})["resources"] == requests


def test_command_line_and_probes() -> None:
    c = operator_container()
    assert c["args"][:5] == ["run", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "9090"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    (env,) = [e for e in c["env"] if e["name"] == "POD_NAMESPACE"]
    assert env["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert c["image"] == "ghcr.io/mabeam/operator:0.1.0"
    digest = "sha256:" + "b" * 64
    assert operator_container({"image": {"digest": digest}})["image"] == f"ghcr.io/mabeam/operator@{digest}"


def watched(values: dict[str, Any]) -> list[str]:
    args = operator_container(values)["args"]
    return [args[i + 1] for i, a in enumerate(args) if a == "--namespace"]


def test_watched_namespaces() -> None:
    assert watched({}) == [NAMESPACE]
    assert watched({"watchNamespaces": ["team-a", "team-b"]}) == ["team-a", "team-b"]
    assert watched({"clusterWide": True}) == []


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_one_active_operator(replicas: int) -> None:
    objs = render({"replicas": replicas})
    dep = only(objs, "Deployment")
    args = operator_container({"replicas": replicas})["args"]
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert dep["spec"]["replicas"] == replicas
    if replicas == 1:
        # Without election two operators must never overlap, not even during a rollout.
        assert dep["spec"]["strategy"] == {"type": "Recreate"}
        assert "--leader-elect" not in args
        assert pdbs == []
    else:
        assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
        assert args.count("--leader-elect") == 1
        (pdb,) = pdbs
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"] == dep["spec"]["selector"]


# --- labels and selectors -----------------------------------------------------------------------


def chart_copy(tmp_path: Path, version: str, app_version: str) -> Path:
    dest = tmp_path / f"mabeam-{version}"
    shutil.copytree(CHART_DIR, dest)
    meta = yaml.safe_load((dest / "Chart.yaml").read_text())
    meta.update(version=version, appVersion=app_version)
    (dest / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return dest


def selectors(objs: list[dict[str, Any]]) -> dict[str, Any]:
    found = {"Deployment": only(objs, "Deployment")["spec"]["selector"]}
    found["Service"] = only(objs, "Service")["spec"]["selector"]
    operator = [o for o in objs if not o["metadata"]["name"].endswith("-agents")]  # not the agents'
    found["NetworkPolicy"] = only(operator, "NetworkPolicy")["spec"]["podSelector"]
    found["PodDisruptionBudget"] = only(objs, "PodDisruptionBudget")["spec"]["selector"]
    found["ServiceMonitor"] = only(objs, "ServiceMonitor")["spec"]["selector"]
    return found


def test_selector_labels_are_stable_across_chart_versions(tmp_path: Path) -> None:
    values = {"replicas": 2, "serviceMonitor": {"enabled": True}}
    before = render(values)
    after = render(values, chart_copy(tmp_path, "7.8.9", "9.9.9"))
    assert only(after, "Deployment")["metadata"]["labels"]["helm.sh/chart"] == "mabeam-7.8.9"
    assert selectors(after) == selectors(before)
    for selector in selectors(before).values():
        labels = selector.get("matchLabels", selector)
        assert not any(re.search(r"\d+\.\d+\.\d+", v) for v in labels.values()), labels


def test_pod_template_is_stable_across_chart_versions(tmp_path: Path) -> None:
    # A chart release that changes nothing in the pod must not restart the operator: the pod
    # template carries no chart version (helm.sh/chart), and no app version when the image is
    # pinned (then a new appVersion changes nothing that runs).
    pinned = {"image": {"tag": "1.2.3"}}
    before = only(render(pinned), "Deployment")["spec"]["template"]
    for version, app_version in (("7.8.9", "0.1.0"), ("7.8.10", "9.9.9")):
        after = only(render(pinned, chart_copy(tmp_path, version, app_version)), "Deployment")
        assert after["metadata"]["labels"]["helm.sh/chart"] == f"mabeam-{version}"  # the object's own
        assert after["spec"]["template"] == before, (version, app_version)
    labels = before["metadata"]["labels"]
    assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels
    assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"} <= set(
        labels
    )
    # The hook's pod template either.
    job = only(render(pinned), "Job")["spec"]["template"]["metadata"]["labels"]
    assert not any(re.search(r"\d+\.\d+\.\d+", v) for v in job.values()), job


def test_selectors_select_the_operator() -> None:
    objs = render({"replicas": 2, "serviceMonitor": {"enabled": True}})
    pod_labels = only(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = only(objs, "Service")
    for kind, selector in selectors(objs).items():
        labels = selector.get("matchLabels", selector)
        target = service["metadata"]["labels"] if kind == "ServiceMonitor" else pod_labels
        assert labels.items() <= target.items(), kind
    monitor = only(objs, "ServiceMonitor")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}


# --- RBAC ---------------------------------------------------------------------------------------

Atom = tuple[str, str, str, str]  # api group, resource, verb, resource name ("" for any)


def atoms_of_rule(
    group: str, resources: Iterable[str], verbs: Iterable[str], names: Iterable[str]
) -> set[Atom]:
    return {(group, r, v, n) for r in resources for v in verbs for n in (tuple(names) or ("",))}


def atoms(rules: Iterable[Rule]) -> set[Atom]:
    return set().union(*(atoms_of_rule(r.api_group, r.resources, r.verbs, r.resource_names) for r in rules))


def atoms_of_k8s_rules(rules: list[dict[str, Any]]) -> set[Atom]:
    out: set[Atom] = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        for group in rule["apiGroups"]:
            out |= atoms_of_rule(group, rule["resources"], rule["verbs"], rule.get("resourceNames", ()))
    return out


OPERATOR = atoms(OPERATOR_RULES)
OPERATOR_CLUSTER = atoms(OPERATOR_CLUSTER_RULES)
LEADER = atoms(LEADER_RULES)
SEALING = atoms(OPERATOR_OWN_NAMESPACE_RULES)
CLUSTER = "<cluster>"


def grants(objs: list[dict[str, Any]], namespace: str, sa: str) -> dict[str, set[Atom]]:
    """What the ServiceAccount may do, by namespace (CLUSTER: everywhere), from the rendered
    Roles, ClusterRoles and their bindings."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objs}
    out: dict[str, set[Atom]] = {}
    for binding in objs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": sa, "namespace": namespace}
        if subject not in binding["subjects"]:
            continue
        where = binding["metadata"].get("namespace", CLUSTER)
        ref = binding["roleRef"]
        role_ns = None if ref["kind"] == "ClusterRole" else where
        role = roles[(ref["kind"], role_ns, ref["name"])]  # a binding to a missing role is a bug
        out.setdefault(where, set()).update(atoms_of_k8s_rules(role["rules"]))
    return out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({}, {NAMESPACE: OPERATOR | SEALING, CLUSTER: OPERATOR_CLUSTER}, id="namespaced-default"),
        pytest.param(
            {"replicas": 2}, {NAMESPACE: OPERATOR | SEALING, CLUSTER: OPERATOR_CLUSTER}, id="replicas-2"
        ),
        pytest.param(
            {"clusterWide": True},
            {CLUSTER: OPERATOR | OPERATOR_CLUSTER, NAMESPACE: SEALING},
            id="cluster-wide",
        ),
        pytest.param(
            {"clusterWide": True, "replicas": 2},
            {CLUSTER: OPERATOR | OPERATOR_CLUSTER, NAMESPACE: SEALING},
            id="cluster-wide-2",
        ),
        pytest.param(
            {"watchNamespaces": ["team-a", "team-b"]},
            {"team-a": OPERATOR, "team-b": OPERATOR, NAMESPACE: SEALING, CLUSTER: OPERATOR_CLUSTER},
            id="watch-namespaces",
        ),
        pytest.param(
            {"watchNamespaces": ["team-a"], "replicas": 2},
            {"team-a": OPERATOR, NAMESPACE: LEADER | SEALING, CLUSTER: OPERATOR_CLUSTER},
            id="leader-lease-outside-watched",
        ),
    ],
)
def test_operator_rbac_equals_permissions(values: dict[str, Any], expected: dict[str, set[Atom]]) -> None:
    assert grants(render(values), NAMESPACE, OPERATOR_SA) == expected


def test_agent_cluster_role_equals_permissions() -> None:
    role = only(render(), "ClusterRole", "mabeam-agent")
    assert atoms_of_k8s_rules(role["rules"]) == atoms(AGENT_RULES)
    # The operator may bind exactly this ClusterRole, and no other.
    binds = {a for a in OPERATOR if a[2] == "bind"}
    assert binds == {("rbac.authorization.k8s.io", "clusterroles", "bind", role["metadata"]["name"])}


def service_accounts(objs: list[dict[str, Any]]) -> set[str]:
    return {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount" and not hook_of(o)}


def test_service_account_created_by_default() -> None:
    objs = render()
    assert service_accounts(objs) == {OPERATOR_SA}
    assert only(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == OPERATOR_SA
    named = render({"serviceAccount": {"name": "ops-operator", "annotations": {"a": "b"}}})
    assert service_accounts(named) == {"ops-operator"}
    assert only(named, "ServiceAccount", "ops-operator")["metadata"]["annotations"] == {"a": "b"}


def test_existing_service_account() -> None:
    objs = render(OPTIONS["existing-service-account"])
    assert service_accounts(objs) == set()  # not created: it exists
    assert only(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-operator"
    # The chart's RBAC and the admission policies name the given ServiceAccount.
    assert grants(objs, NAMESPACE, "ops-operator") == {
        NAMESPACE: OPERATOR | SEALING,
        CLUSTER: OPERATOR_CLUSTER,
    }
    assert grants(objs, NAMESPACE, OPERATOR_SA) == {}
    policies = json.dumps([o for o in objs if o["kind"].startswith("ValidatingAdmission")])
    assert f"system:serviceaccount:{NAMESPACE}:ops-operator" in policies
    assert f"system:serviceaccount:{NAMESPACE}:{OPERATOR_SA}" not in policies
    # Not created and not named: refused, rather than run the operator as "default".
    with pytest.raises(helm_python.HelmRenderError, match=r"serviceAccount\.name must name an existing"):
        render({"serviceAccount": {"create": False}})


RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


@pytest.mark.parametrize(
    "values", [{}, {"clusterWide": True}, {"watchNamespaces": ["team-a"], "replicas": 2}]
)
def test_rbac_create_false_renders_no_rbac(values: dict[str, Any]) -> None:
    assert set(kinds(render(values))) >= RBAC_KINDS
    objs = render({**values, "rbac": {"create": False}})
    assert RBAC_KINDS.isdisjoint(kinds(objs)), kinds(objs)
    # Everything else is still there, the operator's ServiceAccount included.
    assert {"Deployment", "ServiceAccount", "Service", "Job"} <= set(kinds(objs))
    assert service_accounts(objs) == {OPERATOR_SA}


@pytest.mark.parametrize("values", OPTIONS.values(), ids=OPTIONS.keys())
def test_secrets_only_the_sealing_key_in_the_release_namespace(values: dict[str, Any]) -> None:
    # Agents get no Secret rights; the operator reads only its sealing key, in its own namespace.
    assert not [a for a in atoms(AGENT_RULES) | OPERATOR | OPERATOR_CLUSTER if a[1] == "secrets"]
    for where, granted in grants(render(values), NAMESPACE, OPERATOR_SA).items():
        secrets = {a for a in granted if a[1] == "secrets"}
        assert secrets == (SEALING if where == NAMESPACE else set()), where
    assert {a for a in SEALING if a[2] == "get"} == {("", "secrets", "get", "mabeam-sealing-key")}


@pytest.mark.parametrize("values", OPTIONS.values(), ids=OPTIONS.keys())
def test_no_wildcards_in_rbac(values: dict[str, Any]) -> None:
    for obj in render(values):
        for rule in obj.get("rules", []) if obj["kind"] in ("Role", "ClusterRole") else []:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (obj["metadata"]["name"], rule)


def test_rbac_comparison_sees_an_extra_right(tmp_path: Path) -> None:
    # The equality above must notice a right the chart grants beyond _permissions.py.
    chart = chart_copy(tmp_path, "0.1.0", "0.1.0")
    tpl = chart / "templates" / "_rbac.tpl"
    text = tpl.read_text()
    assert text.index("configmaps") < text.index('verbs: ["get", "create", "update"]')
    tpl.write_text(
        text.replace(
            'verbs: ["get", "create", "update"]',
            'verbs: ["get", "create", "update", "delete"]',
            1,  # the first is the configmaps rule
        )
    )
    got = grants(render({}, chart), NAMESPACE, OPERATOR_SA)
    assert got[NAMESPACE] - OPERATOR - SEALING == {("", "configmaps", "delete", "")}


# --- monitoring ---------------------------------------------------------------------------------

DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d)$")


def declared_metric_series() -> set[str]:
    """Every series name the operator's metrics expose (counters as *_total, histograms'
    *_bucket/_sum/_count)."""
    from mabeam.controller._metrics import Metrics

    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def mabeam_series(expr: str) -> set[str]:
    return set(re.findall(r"\bmabeam_[a-z_]+", expr))


def test_service_monitor() -> None:
    objs = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    monitor = only(objs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
    assert "ServiceMonitor" not in kinds(render())
    assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout"}  # no relabelings by default
    relabeled = only(render(OPTIONS["relabelings"]), "ServiceMonitor")["spec"]["endpoints"][0]
    wanted = OPTIONS["relabelings"]["serviceMonitor"]
    assert relabeled["relabelings"] == wanted["relabelings"]
    assert relabeled["metricRelabelings"] == wanted["metricRelabelings"]


def runbook_anchors() -> set[str]:
    """The anchors GitHub gives the second-level headings of docs/runbooks.md."""
    headings = re.findall(r"^## (.+)$", (ROOT / "docs" / "runbooks.md").read_text(), re.M)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_has_a_runbook_and_routing_labels() -> None:
    values = {"enabled": True, "alertLabels": {"team": "platform", "route": "mabeam"}}
    rule = only(render({"prometheusRule": values}), "PrometheusRule")
    alerts = rule["spec"]["groups"][0]["rules"]
    anchors = runbook_anchors()
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == "https://github.com/mabeam/mabeam/blob/main/docs/runbooks.md", url
        assert anchor == alert["alert"].lower() and anchor in anchors, (alert["alert"], sorted(anchors))
        assert alert["labels"]["team"] == "platform" and alert["labels"]["route"] == "mabeam"
        assert alert["labels"]["severity"] in ("warning", "critical")
    # Every runbook section belongs to an alert: no stale ones.
    assert anchors == {a["alert"].lower() for a in alerts}
    moved = {"enabled": True, "runbookBaseUrl": "https://wiki.example.com/mabeam"}
    for alert in only(render({"prometheusRule": moved}), "PrometheusRule")["spec"]["groups"][0]["rules"]:
        assert (
            alert["annotations"]["runbook_url"] == f"https://wiki.example.com/mabeam#{alert['alert'].lower()}"
        )
    plain = only(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")["spec"]["groups"][0][
        "rules"
    ]
    assert all(set(a["labels"]) == {"severity"} for a in plain)


def test_prometheus_rule() -> None:
    rule = only(render({"prometheusRule": {"enabled": True, "alertLabels": {"team": "x"}}}), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    assert group["name"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "MabeamOperatorDown",
        "MabeamSessionsFailing",
        "MabeamDecisionLatencyHigh",
        "MabeamAgentPodsReplacedOften",
        "MabeamApiErrors",
        "MabeamAgentNotReady",
        "MabeamNoActiveLeader",
    }
    wanted = {
        "MabeamAgentNotReady": {"mabeam_agent_ready"},
        "MabeamNoActiveLeader": {"mabeam_leader"},
        "MabeamSessionsFailing": {"mabeam_sessions_total"},
        "MabeamDecisionLatencyHigh": {"mabeam_decision_latency_seconds_bucket"},
        "MabeamAgentPodsReplacedOften": {"mabeam_agent_pod_replacements_total"},
        "MabeamApiErrors": {"mabeam_api_errors_total"},
        "MabeamOperatorDown": set(),
    }
    for name, alert in alerts.items():
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert isinstance(alert["expr"], str) and DURATION.match(alert["for"])
        assert alert["expr"].count("(") == alert["expr"].count(")")
        assert alert["labels"]["severity"] in ("warning", "critical") and alert["labels"]["team"] == "x"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert mabeam_series(alert["expr"]) == wanted[name], name
    assert 'up{job="mabeam-metrics", namespace="mabeam-system"}' in alerts["MabeamOperatorDown"]["expr"]
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    headings = re.findall(r"^## (.+)$", runbooks, re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    for name in ("MabeamAgentNotReady", "MabeamNoActiveLeader"):
        url = alerts[name]["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base.endswith("/docs/runbooks.md") and anchor in anchors, url
    assert alerts["MabeamSessionsFailing"]["expr"].rstrip().endswith("> 0.25")
    assert 'outcome="Failed"' in alerts["MabeamSessionsFailing"]["expr"]
    custom = {"prometheusRule": {"enabled": True, "thresholds": {"decisionLatencyP95Seconds": 5}}}
    latency = only(render(custom), "PrometheusRule")["spec"]["groups"][0]["rules"][2]
    assert latency["alert"] == "MabeamDecisionLatencyHigh" and latency["expr"].rstrip().endswith("> 5")


def test_grafana_dashboard() -> None:
    cm = only(render({"grafanaDashboard": {"enabled": True}}), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["mabeam.json"])
    assert dashboard["uid"] and dashboard["title"] == "MABEAM"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs and all(e.count("(") == e.count(")") for e in exprs)
    assert "ConfigMap" not in kinds(render())


def test_alerts_and_dashboard_use_declared_metrics() -> None:
    rule = only(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    cm = only(render({"grafanaDashboard": {"enabled": True}}), "ConfigMap")
    used = set().union(*(mabeam_series(r["expr"]) for r in rule["spec"]["groups"][0]["rules"]))
    used |= set().union(
        *(
            mabeam_series(t["expr"])
            for p in json.loads(cm["data"]["mabeam.json"])["panels"]
            for t in p["targets"]
        )
    )
    assert used - declared_metric_series() == set()


# --- network policy -----------------------------------------------------------------------------


def test_network_policy() -> None:
    policy = only(render(), "NetworkPolicy", "mabeam")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {"health", "metrics"}
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")}
    restricted = only(render(OPTIONS["network-policy-restricted"]), "NetworkPolicy", "mabeam")["spec"]
    (api,) = [r for r in restricted["egress"] if "to" in r]
    assert api == {"ports": [{"port": 6443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}
    (metrics,) = [r for r in restricted["ingress"] if "from" in r]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    off = {"networkPolicy": {"enabled": False}, "agentNetworkPolicy": {"enabled": False}}
    assert "NetworkPolicy" not in kinds(render(off))


def test_agent_network_policy_per_agent_namespace() -> None:
    def agent_policies(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            o["metadata"]["namespace"]: o["spec"]
            for o in render(values)
            if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "mabeam-agents"
        }

    (spec,) = agent_policies({}).values()  # the release namespace, watched by default
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mabeam-agent"}}
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in spec
    egress = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")}
    assert set(agent_policies({"watchNamespaces": ["team-a", "team-b"]})) == {"team-a", "team-b"}
    assert agent_policies({"clusterWide": True}) == {}  # which namespaces: say so in the values
    listed = {"clusterWide": True, "agentNetworkPolicy": {"namespaces": ["team-c"]}}
    assert set(agent_policies(listed)) == {"team-c"}
    assert agent_policies({"agentNetworkPolicy": {"enabled": False}}) == {}
    # The operator's own labels never select agent pods, nor the reverse.
    operator = only(render(), "NetworkPolicy", "mabeam")["spec"]["podSelector"]["matchLabels"]
    assert operator.get("app.kubernetes.io/name") != "mabeam-agent"


# --- helm test and the uninstall hook -----------------------------------------------------------


def hook_of(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get("helm.sh/hook")


def test_helm_test_pod() -> None:
    objs = render()
    (pod,) = [o for o in objs if hook_of(o) == "test"]
    assert pod["kind"] == "Pod" and pod["spec"]["restartPolicy"] == "Never"
    assert restricted_violations(pod["spec"]) == []
    assert pod["spec"]["automountServiceAccountToken"] is False  # it needs no API access
    assert "serviceAccountName" not in pod["spec"]
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # It reads the metrics through the Service, at the Service's port.
    service = only(objs, "Service")
    url = container["command"][-1]
    port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["metrics"]
    assert url == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/metrics"
    # Its labels are not the operator's: no Service, PDB or NetworkPolicy of the operator selects it.
    assert not service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [o for o in render({"helmTest": {"enabled": False}}) if hook_of(o) == "test"] == []


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (b'# TYPE mabeam_leader gauge\nmabeam_leader 1.0\nmabeam_agents{phase="Ready"} 2.0\n', True),
        (b"# TYPE mabeam_leader gauge\nmabeam_leader 0.0\n", True),  # a standby serves too
        (b"# TYPE go_goroutines gauge\ngo_goroutines 8\n", False),  # something else answers
    ],
    ids=["leader", "standby", "not-mabeam"],
)
def test_helm_test_pod_command(body: bytes, ok: bool) -> None:
    # The pod's program, run as the pod runs it, against a server that answers like the operator.
    (container,) = next(o for o in render() if hook_of(o) == "test")["spec"]["containers"]
    program, flag, script, _ = container["command"]
    assert (program, flag) == ("python", "-c")
    handler = type("Handler", (_Metrics,), {"body": body})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
            done = subprocess.run(
                [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=60, check=False
            )
        finally:
            server.shutdown()
    assert (done.returncode == 0) is ok, done.stderr
    assert ("serves its metrics" in done.stdout) is ok
    assert ok or "without the mabeam_leader gauge" in done.stderr


def test_network_policy_admits_the_test_pod_to_metrics() -> None:
    values = {"networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "mon"}}}]}}
    objs = render(values)
    policy = only(objs, "NetworkPolicy", "mabeam")["spec"]
    (metrics,) = [r for r in policy["ingress"] if "from" in r]
    pod = next(o for o in objs if hook_of(o) == "test")
    admitted = [p["podSelector"]["matchLabels"] for p in metrics["from"] if "podSelector" in p]
    assert len(admitted) == 1 and admitted[0].items() <= pod["metadata"]["labels"].items()
    off = only(render({**values, "helmTest": {"enabled": False}}), "NetworkPolicy", "mabeam")["spec"]
    (metrics,) = [r for r in off["ingress"] if "from" in r]
    assert metrics["from"] == values["networkPolicy"]["metricsFrom"]


def test_install_applies_no_hooks() -> None:
    # `mabeam cluster` and the e2e suite install the rendered chart as `helm install` does: the
    # hooks (the uninstall cleanup, the helm test pod) are not part of the release's objects.
    values = {"watchNamespaces": ["team-a"]}
    release, hooks = (
        render_chart(values, namespace=NAMESPACE),
        render_chart(values, namespace=NAMESPACE, hooks=True),
    )
    assert not [o for o in release if hook_of(o)]
    assert {hook_of(o) for o in hooks} == {"pre-delete", "test"}
    assert sorted(map(json.dumps, release + hooks)) == sorted(map(json.dumps, render(values)))


CLEANUP = atoms(CLEANUP_RULES)


def cleanup_hook(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [o for o in render(values) if hook_of(o) == "pre-delete"]


def test_cleanup_hook_objects_and_order() -> None:
    hook = cleanup_hook()
    assert kinds(hook) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    weights = {o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in hook}
    # Its ServiceAccount and rights exist before the Job starts.
    assert max(w for k, w in weights.items() if k != "Job") < weights["Job"]
    for obj in hook:
        policy = set(obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(","))
        # Re-run cleanly on the next uninstall; gone once it succeeded; kept for its logs if not.
        assert policy == {"before-hook-creation", "hook-succeeded"}, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "cleanup"
    job = only(hook, "Job")
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["serviceAccountName"] == only(hook, "ServiceAccount")["metadata"]["name"] != OPERATOR_SA
    assert pod["restartPolicy"] == "Never"
    timeout = int(pod["containers"][0]["args"][-1])
    assert job["spec"]["activeDeadlineSeconds"] > timeout
    assert cleanup_hook({"cleanupOnUninstall": {"enabled": False}}) == []


@pytest.mark.parametrize(
    ("values", "namespaces", "expected"),
    [
        pytest.param({}, [NAMESPACE], {NAMESPACE: CLEANUP}, id="release-namespace"),
        pytest.param(
            {"watchNamespaces": ["team-a", "team-b"]},
            ["team-a", "team-b"],
            {"team-a": CLEANUP, "team-b": CLEANUP},
            id="watch-namespaces",
        ),
        pytest.param({"clusterWide": True}, None, {CLUSTER: CLEANUP}, id="cluster-wide"),
    ],
)
def test_cleanup_hook_empties_the_watched_namespaces_with_only_its_rights(
    values: dict[str, Any], namespaces: list[str] | None, expected: dict[str, set[Atom]]
) -> None:
    hook = cleanup_hook(values)
    sa = only(hook, "ServiceAccount")["metadata"]["name"]
    assert grants(render(values), NAMESPACE, sa) == expected
    assert not any(a[2] in ("create", "update", "patch", "*") for a in CLEANUP)
    # The Job's arguments are a `mabeam` command line (the image's ENTRYPOINT) that empties
    # exactly those namespaces.
    (container,) = only(hook, "Job")["spec"]["template"]["spec"]["containers"]
    assert "command" not in container
    assert json.loads(dict(dockerfile_stages(ROOT / "Dockerfile")[-1])["ENTRYPOINT"]) == ["mabeam"]
    args = build_parser().parse_args(container["args"])
    assert args.async_func is cmd_delete_all
    assert args.all_namespaces is (namespaces is None)
    assert args.namespace == namespaces and args.timeout == 240
    # Without rbac.create the hook's rights are the admin's to grant, like the operator's.
    assert kinds(cleanup_hook({**values, "rbac": {"create": False}})) == ["Job", "ServiceAccount"]


def test_cleanup_rules_cover_every_kind_the_command_deletes() -> None:
    plurals = {res.plural for res in DELETION_ORDER}
    assert plurals == {r for rule in CLEANUP_RULES for r in rule.resources}
    assert {(a[1], a[2]) for a in CLEANUP} == {(p, v) for p in plurals for v in ("list", "delete")}
    crds = {
        yaml.safe_load(p.read_text())["spec"]["names"]["plural"] for p in (CHART_DIR / "crds").glob("*.yaml")
    }
    assert plurals == crds, "delete-all must delete every MABEAM kind"


# --- images -------------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    """Each stage's instructions, with ${ARG} in FROM resolved from the global ARG defaults."""
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for word, rest in dockerfile_instructions(path):
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], rest)
            stages.append([(word, image)])
        else:
            stages[-1].append((word, rest))
    return stages


def dockerfile_user(path: Path) -> tuple[int, int]:
    users = [rest for word, rest in dockerfile_stages(path)[-1] if word == "USER"]
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid)


DOCKERFILES = [ROOT / "Dockerfile", ROOT / "agents" / "Dockerfile"]
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|make|build-essential|apt-get|apk|pip wheel|python3?-dev)\b")


@pytest.mark.parametrize("path", DOCKERFILES, ids=["operator", "agents"])
def test_dockerfile(path: Path) -> None:
    stages = dockerfile_stages(path)
    assert len(stages) >= 2, "multi-stage: build in one stage, run from a clean one"
    for stage in stages:
        image = stage[0][1].split()[0]
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name.startswith("python") and re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), image
    final = stages[-1]
    assert len(final[0][1].split()) == 1, "the final stage is unnamed and last"
    uid, gid = dockerfile_user(path)
    assert uid > 0 and gid > 0, "numeric non-root USER"
    body = " ".join(rest for word, rest in final if word == "RUN")
    assert not BUILD_TOOLS.search(body), body
    assert "pip uninstall --yes" in body and "pip setuptools wheel" in body, "the base's installers go"
    copies = [rest for word, rest in final if word == "COPY"]
    assert any(c.startswith("--from=builder /opt/venv") for c in copies), "only the built virtualenv"
    assert [w for w, _ in final].index("USER") > max(
        i for i, (w, _) in enumerate(final) if w in ("COPY", "RUN")
    )
    builder_runs = " ".join(rest for word, rest in stages[0] if word == "RUN")
    assert "--require-hashes --wheel-dir /wheels --requirement requirements/operator.txt" in builder_runs
    assert "--require-hashes --requirement requirements/build.txt" in builder_runs
    assert "--no-index --no-deps /wheels/*.whl" in builder_runs, "installs only the wheels built here"
    assert "/opt/venv/bin/pip check" in builder_runs, "and those wheels are a complete set"
    base = stages[0][0][1].split()[0]
    assert re.search(r"@sha256:[0-9a-f]{64}$", base), f"base image pinned by digest: {base}"
    assert stages[-1][0][1] == base, "both stages on the same pinned base"
    labels = " ".join(rest for word, rest in final if word == "LABEL")
    for key, arg in (("source", "SOURCE"), ("version", "VERSION"), ("revision", "REVISION")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels, key
        assert any(w == "ARG" and r.startswith(f"{arg}=") for w, r in final), f"ARG {arg} in the final stage"


def test_operator_image_entrypoint() -> None:
    final = dict(dockerfile_stages(ROOT / "Dockerfile")[-1])
    assert json.loads(final["ENTRYPOINT"]) == ["mabeam"]
    assert json.loads(final["CMD"]) == ["run"]
    ports = set(shlex.split(final["EXPOSE"]))
    assert ports == {"8080", "9090"}


def test_agents_image_layout() -> None:
    final = dockerfile_stages(ROOT / "agents" / "Dockerfile")[-1]
    assert ("WORKDIR", "/app") in final
    assert ("COPY", "agents/*.py ./agents/") in final
    assert json.loads(dict(final)["CMD"]) == ["python", "agents/voter.py"]
    assert (ROOT / "agents" / "voter.py").exists()


def pins(path: Path) -> dict[str, str]:
    """The exact pins of a hashed lock (pip-compile --generate-hashes); each pin needs a hash."""
    out = {}
    text = re.sub(r"\\\n", " ", path.read_text())  # join the continued lines
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement, *options = line.split(" --")
            req = Requirement(requirement)
            (spec,) = req.specifier
            assert spec.operator == "==" and not req.extras and not req.marker, line
            hashes = [o for o in options if o.strip()]
            assert hashes and all(re.fullmatch(r"hash=sha256:[0-9a-f]{64}", h.strip()) for h in hashes), line
            out[canonicalize_name(req.name)] = spec.version
    return out


def test_requirements_are_exact_pins_of_the_runtime_dependencies() -> None:
    pinned = pins(ROOT / "requirements" / "operator.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in map(Requirement, project["dependencies"]):
        name = canonicalize_name(dep.name)
        assert name in pinned, f"{name} is not pinned in requirements/operator.txt"
        assert dep.specifier.contains(pinned[name]), f"{name}=={pinned[name]} breaks {dep}"
    assert set(pins(ROOT / "requirements" / "build.txt")) == {"setuptools"}


def test_dockerignore_keeps_what_the_images_copy() -> None:
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "**", "deny by default"
    for needed in (
        "pyproject.toml",
        "LICENSE",
        "requirements/operator.txt",
        "requirements/build.txt",
        "mabeam/",
        "agents/*.py",
    ):
        assert f"!{needed}" in rules


def test_license_is_apache_2_with_our_copyright() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "Copyright 2026 The MABEAM authors" in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
    for path in DOCKERFILES:
        copies = [rest for word, rest in dockerfile_stages(path)[0] if word == "COPY"]
        assert any("LICENSE" in c.split() for c in copies), f"{path}: the wheel carries the LICENSE"
