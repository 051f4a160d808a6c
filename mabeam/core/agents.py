"""The Agent lifecycle, decided purely: (agent, its pods, now) -> (status, actions).

The operator's handler reads the Agent and the Pods labelled ``mabeam.io/agent=<name>``, calls
:func:`plan`, and carries out the actions in order. Nothing here reads the clock or talks to
the API, so every decision is a plain function test away.

Resumability rests on two facts. The Pod list (by label) is the truth about which Pods exist;
a Pod is created under the deterministic name ``<agent>-<incarnation>`` *before* the status
records it, so an operator killed in between finds and adopts that Pod instead of creating a
second one. A lost Pod is recorded in status (podName cleared, nextRestartAt set) in one
patch, so a restart does not count the same loss twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidSpecError
from ..models._base import API_VERSION, progress_conditions, rfc3339, set_condition
from ..models.agent import AgentSpec

__all__ = [
    "AGENT_LABEL",
    "CAPABILITY_PREFIX",
    "Plan",
    "agent_labels",
    "build_pod",
    "build_role_binding",
    "build_service_account",
    "merge_events",
    "parse_spec",
    "plan",
    "reject_pod",
    "says_more",
    "secure_by_default",
    "service_account_name",
    "template_hash",
]

AGENT_LABEL = "mabeam.io/agent"
CAPABILITY_PREFIX = "capability.mabeam.io/"
HASH_ANNOTATION = "mabeam.io/template-hash"
INCARNATION_ANNOTATION = "mabeam.io/incarnation"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mabeam"}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


# --- parsing and validation -------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_spec(spec: Any) -> AgentSpec:
    """Parse an Agent's spec, or raise InvalidSpecError naming the field and what is allowed."""
    try:
        parsed = AgentSpec.model_validate(spec or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidSpecError(first["msg"], path=_path(tuple(first["loc"]))) from exc
    _check_pod_spec(parsed.template.spec)
    return parsed


def _check_pod_spec(pod: dict[str, Any]) -> None:
    """What the schema cannot say about a PodSpec, checked before any Pod is created."""
    base = "spec.template.spec"
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        raise InvalidSpecError("must list at least one container", path=f"{base}.containers")
    policy = pod.get("restartPolicy", "Always")
    if policy != "Always":
        raise InvalidSpecError(
            f"is {policy!r}; only 'Always' is allowed (the operator supervises the pod)",
            path=f"{base}.restartPolicy",
        )
    seen: set[str] = set()
    for i, container in enumerate(containers):
        where = f"{base}.containers[{i}]"
        if not isinstance(container, dict):
            raise InvalidSpecError("must be an object", path=where)
        name = container.get("name")
        if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
            raise InvalidSpecError(
                f"name {name!r} must be a DNS label (lower case letters, digits, '-'; at most 63)",
                path=f"{where}.name",
            )
        if name in seen:
            raise InvalidSpecError(f"duplicate container name {name!r}", path=f"{where}.name")
        seen.add(name)
        if not isinstance(container.get("image"), str) or not container["image"]:
            raise InvalidSpecError("image is required", path=f"{where}.image")
        for key in ("command", "args"):
            value = container.get(key)
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                raise InvalidSpecError("must be a list of strings", path=f"{where}.{key}")
        env = container.get("env", [])
        if not isinstance(env, list):
            raise InvalidSpecError("must be a list", path=f"{where}.env")
        for j, var in enumerate(env):
            if not isinstance(var, dict) or not isinstance(var.get("name"), str):
                raise InvalidSpecError("each entry needs a name", path=f"{where}.env[{j}]")
            if not _ENV_NAME.match(var["name"]):
                raise InvalidSpecError(
                    f"{var['name']!r} is not a valid environment variable name",
                    path=f"{where}.env[{j}].name",
                )
            if "value" in var and not isinstance(var["value"], str):
                raise InvalidSpecError("value must be a string", path=f"{where}.env[{j}].value")


# --- building the children --------------------------------------------------------------------


def service_account_name(agent: str) -> str:
    """The agent's identity: deterministic, unique per Agent, a valid DNS subdomain."""
    name = f"mabeam-agent-{agent}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(agent.encode()).hexdigest()[:10]
    return f"{name[:242].rstrip('.-')}-{digest}"  # a DNS label ends with a letter or digit


def agent_labels(name: str, spec: AgentSpec) -> dict[str, str]:
    labels = {
        AGENT_LABEL: name,
        "app.kubernetes.io/name": "mabeam-agent",
        "app.kubernetes.io/instance": name,
        **MANAGED_BY,
    }
    labels.update({f"{CAPABILITY_PREFIX}{cap}": "true" for cap in spec.capabilities})
    return labels


def template_hash(spec: AgentSpec) -> str:
    """What a Pod depends on: a change in it replaces the Pod."""
    material = {
        "template": spec.template.model_dump(by_alias=True, mode="json"),
        "capabilities": sorted(spec.capabilities),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def _owner(agent: dict[str, Any]) -> dict[str, Any]:
    meta = agent["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "Agent",
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_service_account(agent: dict[str, Any]) -> dict[str, Any]:
    meta = agent["metadata"]
    return {
        "metadata": {
            "name": service_account_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {AGENT_LABEL: meta["name"], **MANAGED_BY},
            "ownerReferences": [_owner(agent)],
        },
    }


#: The ClusterRole with AGENT_RULES (the chart and the local cluster create it).
AGENT_CLUSTER_ROLE = "mabeam-agent"


def build_role_binding(agent: dict[str, Any]) -> dict[str, Any]:
    """Binds the agent's ServiceAccount to the ClusterRole mabeam-agent in its namespace."""
    meta = agent["metadata"]
    account = service_account_name(meta["name"])
    return {
        "metadata": {
            "name": account,
            "namespace": meta["namespace"],
            "labels": {AGENT_LABEL: meta["name"], **MANAGED_BY},
            "ownerReferences": [_owner(agent)],
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": AGENT_CLUSTER_ROLE,
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": meta["namespace"]}],
    }


def pod_name(agent: str, incarnation: int) -> str:
    suffix = f"-{incarnation}"
    return agent[: 253 - len(suffix)] + suffix


#: What every agent pod gets unless its template says otherwise, so that it passes the Pod
#: Security Standard "restricted": pod-wide, then per container (init containers too).
POD_SECURITY_DEFAULTS: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_DEFAULTS: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}
#: The user (and group) an agent runs as when its template names none: "nonroot" of distroless.
NON_ROOT_ID = 65532
#: A read-only root still needs a writable /tmp (the SDK's readiness file lives there).
TMP_VOLUME = "mabeam-tmp"


def secure_by_default(pod_spec: dict[str, Any]) -> None:
    """Fill in the restricted security settings a pod template leaves out (in place).

    A setting the template makes (in the pod's or a container's ``securityContext``) always
    wins. Without a ``runAsUser`` anywhere, the pod runs as :data:`NON_ROOT_ID`, since
    ``runAsNonRoot`` alone refuses images whose default user is root. A container whose root
    filesystem is read-only and that mounts nothing at ``/tmp`` gets an ``emptyDir`` there.
    """
    pod_context = pod_spec.setdefault("securityContext", {})
    for key, value in POD_SECURITY_DEFAULTS.items():
        pod_context.setdefault(key, json.loads(json.dumps(value)))
    containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
    if "runAsUser" not in pod_context and not all(
        "runAsUser" in (c.get("securityContext") or {}) for c in containers
    ):
        pod_context["runAsUser"] = NON_ROOT_ID
        pod_context.setdefault("runAsGroup", NON_ROOT_ID)
    needs_tmp = False
    for container in containers:
        context = container.setdefault("securityContext", {})
        for key, value in CONTAINER_SECURITY_DEFAULTS.items():
            context.setdefault(key, json.loads(json.dumps(value)))
        mounts = container.setdefault("volumeMounts", [])
        if context.get("readOnlyRootFilesystem") and not any(m.get("mountPath") == "/tmp" for m in mounts):
            mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})
            needs_tmp = True
        if not mounts:
            del container["volumeMounts"]
    volumes = pod_spec.setdefault("volumes", [])
    if needs_tmp and not any(v.get("name") == TMP_VOLUME for v in volumes):
        volumes.append({"name": TMP_VOLUME, "emptyDir": {}})
    if not volumes:
        del pod_spec["volumes"]


def build_pod(agent: dict[str, Any], spec: AgentSpec, incarnation: int) -> dict[str, Any]:
    """The Pod for one incarnation of the agent, with its identity and environment."""
    meta = agent["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    pod_spec = json.loads(json.dumps(spec.template.spec))
    pod_spec["restartPolicy"] = "Always"
    pod_spec["serviceAccountName"] = service_account_name(name)
    identity = [
        {"name": "MABEAM_AGENT", "value": name},
        {"name": "MABEAM_NAMESPACE", "value": namespace},
        {"name": "MABEAM_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MABEAM_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        # The SDK touches this file once it has reached the API; the readiness probe tests it
        # (`test -f "$MABEAM_READY_FILE"`: a shell builtin, cheap enough to run every second).
        {"name": "MABEAM_READY_FILE", "value": "/tmp/mabeam-ready-$(MABEAM_POD_UID)"},
    ]
    for container in pod_spec["containers"]:
        own = [v for v in container.get("env", []) if v.get("name") not in {e["name"] for e in identity}]
        container["env"] = identity + own
    secure_by_default(pod_spec)
    labels = {**spec.template.metadata.labels, **agent_labels(name, spec)}
    annotations = {
        **spec.template.metadata.annotations,
        HASH_ANNOTATION: template_hash(spec),
        INCARNATION_ANNOTATION: str(incarnation),
    }
    return {
        "metadata": {
            "name": pod_name(name, incarnation),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [_owner(agent)],
        },
        "spec": pod_spec,
    }


# --- the decision -----------------------------------------------------------------------------


@dataclass
class Plan:
    """What the handler must do, in this order: delete, create, then write status."""

    status: dict[str, Any]
    delete_pods: list[str] = field(default_factory=list)
    create_pod: dict[str, Any] | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    wake_at: dt.datetime | None = None
    agent_labels: dict[str, str] | None = None  # labels to merge into the Agent itself


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _pod_ready(pod: dict[str, Any]) -> bool:
    for cond in pod.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _restarts(pod: dict[str, Any]) -> int:
    return sum(
        int(c.get("restartCount", 0)) for c in pod.get("status", {}).get("containerStatuses", []) or []
    )


def _waiting_reason(pod: dict[str, Any]) -> tuple[str, str] | None:
    for cs in pod.get("status", {}).get("containerStatuses", []) or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "", "ContainerCreating", "PodInitializing"):
            return str(waiting.get("reason")), str(waiting.get("message", ""))
    return None


def _is_dead(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") in ("Failed", "Succeeded")


def _terminating(pod: dict[str, Any]) -> bool:
    return bool(pod.get("metadata", {}).get("deletionTimestamp"))


def _backoff(spec: AgentSpec, status: dict[str, Any], now: dt.datetime) -> float:
    """The delay before replacing a lost Pod: doubling, capped, reset after a stable run."""
    policy = spec.restart
    previous = status.get("backoffSeconds")
    ready_since = _parse_time(status.get("readySince"))
    stable = ready_since is not None and (now - ready_since).total_seconds() >= policy.reset_after_seconds
    if previous is None or stable:
        delay = policy.initial_delay_seconds
    else:
        delay = max(float(previous) * 2, policy.initial_delay_seconds)
    return float(min(delay, policy.max_delay_seconds))


def plan(agent: dict[str, Any], pods: list[dict[str, Any]], now: dt.datetime) -> Plan:
    """Decide the next step for one Agent given the Pods that carry its label."""
    meta = agent["metadata"]
    name = meta["name"]
    generation = meta.get("generation")
    old_status: dict[str, Any] = dict(agent.get("status") or {})
    status = dict(old_status)
    status["observedGeneration"] = generation
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    events: list[tuple[str, str, str]] = []

    def cond(type_: str, value: str, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions,
            type=type_,
            status=value,  # type: ignore[arg-type]
            reason=reason,
            message=message,
            now=now,
            observed_generation=generation,
        )

    try:
        spec = parse_spec(agent.get("spec"))
    except InvalidSpecError as exc:
        cond("Invalid", "True", "InvalidSpec", str(exc))
        status["conditions"] = conditions
        if not _had_condition(old_status, "Invalid", "True", str(exc)):
            events.append(("Warning", "InvalidSpec", f"Agent spec rejected: {exc}"))
        return Plan(status=status, events=events)
    cond("Invalid", "False", "Valid", "The spec is valid.")
    status["serviceAccount"] = service_account_name(name)

    desired_hash = template_hash(spec)
    live = [p for p in pods if not _terminating(p)]
    result = Plan(status=status, agent_labels=agent_labels(name, spec))
    incarnation = int(status.get("incarnation") or 0)

    # Dead pods (Failed, Succeeded) and pods of an old template are deleted.
    current: dict[str, Any] | None = None
    for pod in sorted(
        live, key=lambda p: int(p["metadata"].get("annotations", {}).get(INCARNATION_ANNOTATION, 0))
    ):
        pod_ann = pod["metadata"].get("annotations", {})
        pname = pod["metadata"]["name"]
        if spec.suspend:
            result.delete_pods.append(pname)
            events.append(("Normal", "Suspended", f"Stopping pod {pname}: the agent is suspended."))
        elif _is_dead(pod):
            result.delete_pods.append(pname)
            reason = pod.get("status", {}).get("reason") or pod.get("status", {}).get("phase")
            message = pod.get("status", {}).get("message", "")
            events.append(("Warning", "PodFailed", f"Pod {pname} is {reason}: {message}".rstrip(": ")))
        elif pod_ann.get(HASH_ANNOTATION) != desired_hash:
            result.delete_pods.append(pname)
            events.append(("Normal", "TemplateChanged", f"Replacing pod {pname}: the template changed."))
        elif current is None:
            current = pod
        else:  # a second live pod of the same template: keep the newer, drop the older
            result.delete_pods.append(current["metadata"]["name"])
            current = pod
        incarnation = max(incarnation, int(pod_ann.get(INCARNATION_ANNOTATION, 0)))
    status["incarnation"] = incarnation
    status["templateHash"] = desired_hash

    if spec.suspend:
        status.update(phase="Suspended", podName=None, node=None, nextRestartAt=None)
        cond("Ready", "False", "Suspended", "The agent is suspended (spec.suspend).")
        cond("Degraded", "False", "Suspended", "The agent is suspended on purpose.")
        return _finish(result, status, conditions, old_status, events, now)

    if current is not None:
        _observe(current, status, now, cond, events, old_status)
        return _finish(result, status, conditions, old_status, events, now)

    # No live pod of the current template: was one lost, or is this the first / a replacement?
    recorded = status.get("podName")
    recorded_lost = recorded is not None and (
        recorded in result.delete_pods or recorded not in {p["metadata"]["name"] for p in live}
    )
    replaced_for_template = any(
        p["metadata"]["name"] == recorded
        and p["metadata"].get("annotations", {}).get(HASH_ANNOTATION) != desired_hash
        for p in live
    )
    if recorded_lost and not replaced_for_template:
        delay = _backoff(spec, status, now)
        status["replacements"] = int(status.get("replacements") or 0) + 1
        status["backoffSeconds"] = delay
        status["nextRestartAt"] = rfc3339(now + dt.timedelta(seconds=delay))
        status["readySince"] = None
        events.append(("Warning", "PodLost", f"Pod {recorded} is gone; replacing it in {delay:g}s."))
    status["podName"] = None
    status["node"] = None
    status["restarts"] = 0

    wait_until = _parse_time(status.get("nextRestartAt"))
    if wait_until is not None and now < wait_until:
        status["phase"] = "Pending"
        cond("Ready", "False", "BackingOff", f"Waiting until {rfc3339(wait_until)} to replace the pod.")
        cond("Degraded", "True", "BackingOff", f"The pod was lost; next attempt at {rfc3339(wait_until)}.")
        result.wake_at = wait_until
        return _finish(result, status, conditions, old_status, events, now)

    incarnation += 1
    pod = build_pod(agent, spec, incarnation)
    result.create_pod = pod
    status["incarnation"] = incarnation
    status["podName"] = pod["metadata"]["name"]
    status["nextRestartAt"] = None
    status["phase"] = "Pending"
    cond("Ready", "False", "PodCreated", f"Pod {pod['metadata']['name']} was created and is starting.")
    if not any(c.get("type") == "Degraded" for c in conditions):
        # What observing the new pod will say: written now, so that seeing it is no new status.
        cond("Degraded", "False", "AsExpected", "The agent runs as expected.")
    account = pod["spec"].get("serviceAccountName")
    events.append(
        ("Normal", "PodCreated", f"Created pod {pod['metadata']['name']} (ServiceAccount {account}).")
    )
    return _finish(result, status, conditions, old_status, events, now)


def reject_pod(agent: dict[str, Any], plan: Plan, message: str, now: dt.datetime) -> Plan:
    """The API server refused the Pod the plan made (400/422): what the schema could not say
    about the pod template. Record it as ``Invalid`` instead of retrying the same create."""
    old = dict(agent.get("status") or {})
    status = dict(plan.status)
    status.update(
        phase="Failed",
        podName=old.get("podName"),
        incarnation=old.get("incarnation", 0),
        nextRestartAt=old.get("nextRestartAt"),
    )
    text = f"spec.template: the API server refused the Pod: {message}"
    conditions = set_condition(
        list(status.get("conditions") or []),
        type="Invalid", status="True", reason="PodRejected", message=text, now=now,
        observed_generation=agent["metadata"].get("generation"),
    )  # fmt: skip
    conditions = set_condition(
        conditions, type="Ready", status="False", reason="PodRejected", message=text, now=now,
        observed_generation=agent["metadata"].get("generation"),
    )  # fmt: skip
    status["conditions"] = progress_conditions(
        conditions, reconciling=None, stalled=text, reason="PodRejected", now=now,
        observed_generation=agent["metadata"].get("generation"),
    )  # fmt: skip
    events = [e for e in plan.events if e[1] not in ("PodCreated", "PhaseChanged")]
    if not _had_condition(old, "Invalid", "True", text):
        events.append(("Warning", "PodRejected", text))
    if old.get("phase") != "Failed":
        events.append(("Normal", "PhaseChanged", f"Phase {old.get('phase') or 'None'} -> Failed."))
    return Plan(status=status, events=events, agent_labels=plan.agent_labels)


def merge_events(
    held: list[tuple[str, str, str]], new: list[tuple[str, str, str]]
) -> list[tuple[str, str, str]]:
    """The Events of passes whose status was held, then those of the pass that writes it.

    A status is held only while an Agent's first pod starts (see the operator's ``_hold``), so
    a held PodCreated and a Ready of the writing pass are about the same pod: they are told in
    one Ready Event ("Created pod X (ServiceAccount Y); it is ready."). A held PodCreated also
    tells the first phase: the writing pass's PhaseChanged is dropped.
    """
    created = next((e for e in held if e[1] == "PodCreated"), None)
    if created is not None:  # "Phase None -> Pending" says less than the PodCreated held
        new = [e for e in new if e[1] != "PhaseChanged"]
    ready = next((e for e in new if e[1] == "Ready"), None)
    if created is None or ready is None:
        return [*held, *new]
    merged = ("Normal", "Ready", created[2].removesuffix(".") + "; it is ready.")
    return [*(e for e in held if e is not created), *(merged if e is ready else e for e in new)]


def says_more(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the status ``new`` tells a reader more than ``old`` does.

    It does not when both are ``Pending`` with the same pod, incarnation and template, and every
    condition has the same truth value: only the wording (the Ready condition's "created" becomes
    "pending"), the node the pod was bound to, or timestamps differ. Such a status is written
    with the next change that matters (the pod Ready or failed), not on its own.
    """
    if old.get("phase") != "Pending" or new.get("phase") != "Pending":
        return True
    words = {"phase", "node", "conditions"}
    if any(old.get(k) != new.get(k) for k in (set(old) | set(new)) - words):
        return True

    def truth(status: dict[str, Any]) -> dict[str, Any]:
        return {c.get("type"): c.get("status") for c in status.get("conditions") or []}

    return truth(old) != truth(new)


def _had_condition(status: dict[str, Any], type_: str, value: str, message: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == value and c.get("message") == message
        for c in status.get("conditions") or []
    )


def _observe(
    pod: dict[str, Any],
    status: dict[str, Any],
    now: dt.datetime,
    cond: Any,
    events: list[tuple[str, str, str]],
    old_status: dict[str, Any],
) -> None:
    """Reflect a live Pod of the current template in the Agent's status."""
    name = pod["metadata"]["name"]
    pod_status = pod.get("status") or {}
    status["podName"] = name
    status["node"] = (pod.get("spec") or {}).get("nodeName")
    status["restarts"] = _restarts(pod)
    status["nextRestartAt"] = None
    waiting = _waiting_reason(pod)
    ready = _pod_ready(pod)
    if ready:
        status["phase"] = "Ready"
        if old_status.get("phase") != "Ready" or not status.get("readySince"):
            status["readySince"] = rfc3339(now)
            events.append(("Normal", "Ready", f"Pod {name} is ready."))
        cond("Ready", "True", "PodReady", f"Pod {name} is ready.")
        _degraded_by_restarts(status, cond)
        return
    status["readySince"] = None
    if waiting is not None:
        reason, message = waiting
        status["phase"] = "Failed"
        cond("Ready", "False", reason, f"Pod {name}: {message or reason}")
        cond("Degraded", "True", reason, f"Pod {name} cannot run its container: {message or reason}")
        if old_status.get("phase") != "Failed":
            events.append(("Warning", reason, f"Pod {name}: {message or reason}"))
        return
    phase = pod_status.get("phase") or "Pending"
    status["phase"] = "Running" if phase == "Running" else "Pending"
    if old_status.get("phase") == "Ready":
        events.append(("Warning", "NotReady", f"Pod {name} is no longer ready."))
    cond("Ready", "False", f"Pod{phase}", f"Pod {name} is {phase} and not ready yet.")
    _degraded_by_restarts(status, cond)


def _degraded_by_restarts(status: dict[str, Any], cond: Any) -> None:
    """A pod whose containers have restarted is degraded even while it is ready again."""
    restarts = int(status.get("restarts") or 0)
    if restarts:
        cond(
            "Degraded",
            "True",
            "ContainerRestarted",
            f"Containers of the current pod restarted {restarts} times.",
        )
    else:
        cond("Degraded", "False", "AsExpected", "The agent runs as expected.")


def _finish(
    result: Plan,
    status: dict[str, Any],
    conditions: list[dict[str, Any]],
    old_status: dict[str, Any],
    events: list[tuple[str, str, str]],
    now: dt.datetime,
) -> Plan:
    phase = status.get("phase")
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    conditions = progress_conditions(
        conditions,
        reconciling=f"The agent is {phase}: {ready.get('message', '')}"
        if phase in ("Pending", "Running")
        else None,
        stalled=str(ready.get("message") or "The agent failed.") if phase == "Failed" else None,
        reason=str(ready.get("reason") or phase or "Unknown"),
        now=now,
        observed_generation=status.get("observedGeneration"),
    )
    status["conditions"] = conditions
    # A phase change is an Event of its own only when no other Event of the pass tells it.
    if status.get("phase") != old_status.get("phase") and status.get("phase") and not events:
        events.append(
            ("Normal", "PhaseChanged", f"Phase {old_status.get('phase') or 'None'} -> {status['phase']}.")
        )
    result.status = status
    result.events = events
    return result
