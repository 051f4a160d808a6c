"""What the kubelet knows of a pod it runs: its containers' states, their environment, the phase
and the status it reports. Pure: no process, no I/O."""

from __future__ import annotations

import asyncio
import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mabeam.models._base import rfc3339

__all__ = [
    "POD_IP",
    "TERMINAL",
    "Container",
    "Pod",
    "StartError",
    "container_env",
    "expand",
    "image_repository",
    "pod_phase",
    "pod_status",
    "service_account",
    "should_restart",
]

POD_IP = "127.0.0.1"
TERMINAL = ("Succeeded", "Failed")
_FIELD_REFS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.hostIP",
)
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class StartError(Exception):
    """A container that cannot be started here: a waiting reason and a message for the user."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


@dataclass
class Container:
    spec: dict[str, Any]
    name: str
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    restart_count: int = 0
    ready: bool = False


@dataclass
class Pod:
    obj: dict[str, Any]
    namespace: str
    name: str
    uid: str
    containers: dict[str, Container] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    start_time: str = ""
    conditions: dict[str, dict[str, str]] = field(default_factory=dict)
    failure: tuple[str, str] | None = None  # (reason, message) of an eviction
    terminating: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def image_repository(image: str) -> str:
    """``registry/repo:tag@sha256:...`` -> ``registry/repo``."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def service_account(pod: Mapping[str, Any]) -> str:
    spec = pod.get("spec", {})
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def _field(pod: Mapping[str, Any], path: str) -> str:
    """The value of a supported ``fieldRef`` (one of ``_FIELD_REFS``)."""
    if path in ("status.podIP", "status.hostIP"):
        return POD_IP
    if path == "spec.serviceAccountName":
        return service_account(pod)
    section, key = path.split(".")
    return str((pod.get(section) or {}).get(key) or "")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REF.sub(sub, text)


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
    """The variables a container declares, resolved as Kubernetes would (raises ``StartError``)."""
    cname = container.get("name", "?")
    if container.get("envFrom"):
        raise StartError(
            "CreateContainerConfigError",
            f"container {cname}: envFrom is not supported by the local kubelet; list variables in env",
        )
    entries = container.get("env") or []
    if not isinstance(entries, list):
        raise StartError("CreateContainerConfigError", f"container {cname}: env must be a list")
    env: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = f"container {cname}: env[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise StartError("CreateContainerConfigError", f"{where} must be an object with a name")
        if "valueFrom" in entry:
            ref = (entry["valueFrom"] or {}).get("fieldRef") or {}
            path = ref.get("fieldPath") if isinstance(ref, dict) else None
            if path not in _FIELD_REFS:
                raise StartError(
                    "CreateContainerConfigError",
                    f"{where} ({entry['name']}).valueFrom is not supported by the local kubelet: "
                    f"only fieldRef to {', '.join(sorted(_FIELD_REFS))} is",
                )
            env[entry["name"]] = _field(pod, path)
        else:
            env[entry["name"]] = expand(str(entry.get("value", "")), env)
    return env


def pod_phase(containers: list[Container], restart_policy: str) -> str:
    """The pod phase from its containers' states, following the kubelet's ``getPhase``."""
    running = waiting = stopped = succeeded = 0
    for c in containers:
        if "running" in c.state:
            running += 1
        elif "terminated" in c.state:
            stopped += 1
            succeeded += c.state["terminated"]["exitCode"] == 0
        elif c.last_state.get("terminated"):
            stopped += 1  # waiting to be restarted: it ran before
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped and restart_policy == "Always":
        return "Running"
    if stopped and stopped == succeeded:
        return "Succeeded"
    if stopped and restart_policy == "Never":
        return "Failed"
    return "Running" if stopped else "Pending"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def pod_status(rt: Pod, now: _dt.datetime) -> dict[str, Any]:
    """The pod's ``status`` as the kubelet reports it (keeps each condition's transition time)."""
    policy = (rt.obj.get("spec") or {}).get("restartPolicy") or "Always"
    containers = list(rt.containers.values())
    phase = "Failed" if rt.failure else pod_phase(containers, policy)
    all_ready = bool(containers) and all(c.ready for c in containers)
    readiness = (
        ("True", "")
        if all_ready
        else ("False", "PodCompleted" if phase in TERMINAL else "ContainersNotReady")
    )
    wanted = {
        "PodScheduled": ("True", ""),
        "Initialized": ("True", "") if containers else ("False", "NoContainers"),
        "ContainersReady": readiness,
        "Ready": readiness,
    }
    if rt.failure:
        wanted["DisruptionTarget"] = ("True", "TerminationByKubelet")
    for ctype, (cstatus, reason) in wanted.items():
        old = rt.conditions.get(ctype, {})
        since = old["lastTransitionTime"] if old.get("status") == cstatus else rfc3339(now)
        rt.conditions[ctype] = {
            "type": ctype,
            "status": cstatus,
            "lastTransitionTime": since,
            **({"reason": reason} if reason else {}),
        }
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": list(rt.conditions.values()),
        "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": rt.start_time,
        "containerStatuses": [
            {
                "name": c.name,
                "image": c.spec.get("image", ""),
                "imageID": "",
                **({"containerID": f"local://{c.process.pid}"} if c.process else {}),
                "ready": c.ready,
                "restartCount": c.restart_count,
                "started": "running" in c.state,
                "state": c.state,
                "lastState": c.last_state,
            }
            for c in containers
        ],
    }
    if rt.failure:
        status["reason"], status["message"] = rt.failure
    return status
