"""The Agents' in-memory view: the latest Agents and agent Pods seen (from the watches and from
our own writes), each kept as a summary of what the passes read, encoded as JSON bytes."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any

from ..core import agents as _agents
from ._loop import newer

Key = tuple[str, str]


#: An object as the view keeps it: its resourceVersion and its summary, encoded as JSON. A
#: pass decodes what it reads (tens of microseconds); kept as one bytes object, an Agent costs
#: one allocation instead of a hundred small dicts and strings, which after a burst of events
#: stay scattered over the allocator's pools (the process's RSS grew by twice what was live).
Stored = tuple[str | None, bytes]


def _store(summary: dict[str, Any]) -> Stored:
    version = summary["metadata"].get("resourceVersion")
    return version, json.dumps(summary, separators=(",", ":")).encode()


def _load(stored: Stored) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(stored[1])
    return obj


def _newer_than(stored: Stored | None, obj: dict[str, Any]) -> bool:
    return stored is None or newer({"metadata": {"resourceVersion": stored[0]}}, obj)


def _after(version: str | None, listed: str | None) -> bool:
    """Whether ``version`` is later than a list's ``listed`` version (unknown: no)."""
    try:
        return int(version or "") > int(listed or "")
    except ValueError:
        return False


@dataclass
class AgentView:
    """The latest Agents and agent Pods seen, from watch events and from our own writes."""

    _agents: dict[Key, Stored] = field(default_factory=dict)
    #: Per Agent, its Pods by name.
    _pods: dict[Key, dict[str, Stored]] = field(default_factory=dict)
    #: New Agents whose first status (Pending) is held back, and until when (loop time).
    held: dict[Key, float] = field(default_factory=dict)
    #: The Events of the passes that held it, posted with the status.
    held_events: dict[Key, list[tuple[str, str, str]]] = field(default_factory=dict)
    #: The number of Agents in the view per namespace.
    per_namespace: collections.Counter[str] = field(default_factory=collections.Counter)

    def agent(self, key: Key) -> dict[str, Any] | None:
        """What the view keeps of the Agent (a fresh copy), or None."""
        stored = self._agents.get(key)
        return None if stored is None else _load(stored)

    def pods(self, key: Key) -> list[dict[str, Any]]:
        """What the view keeps of the Pods labelled with the Agent's name (fresh copies)."""
        return [_load(stored) for stored in self._pods.get(key, {}).values()]

    def put_agent(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        stored = self._agents.get(key)
        if _newer_than(stored, obj):
            self._agents[key] = _store(_agent_summary(obj))
            if stored is None:
                self.per_namespace[key[0]] += 1

    def drop_agent(self, namespace: str, name: str) -> None:
        if self._agents.pop((namespace, name), None) is not None:
            self.per_namespace[namespace] -= 1
            if self.per_namespace[namespace] <= 0:
                del self.per_namespace[namespace]
        self.held.pop((namespace, name), None)
        self.held_events.pop((namespace, name), None)

    def replace_pods(self, namespace: str | None, listed: list[Listed], version: str | None) -> set[Key]:
        """The Pods of a (re)list of ``namespace`` (None: every namespace; each Pod as
        :func:`listed_pod` made it) in place of the view's: a Pod the list lacks is gone (its
        deletion fell in a gap of the watch), unless the view has it from a write after the list
        was taken. The Agents whose Pods changed."""
        by_agent: dict[Key, dict[str, Stored]] = {}
        for entry in listed:
            if entry is not None:
                key, name, stored = entry
                by_agent.setdefault(key, {})[name] = stored
        changed: set[Key] = set()
        for key in {k for k in self._pods if namespace is None or k[0] == namespace} | set(by_agent):
            old = self._pods.get(key, {})
            new = by_agent.get(key, {})
            for name, stored in old.items():
                if _after(stored[0], version):
                    new[name] = stored  # from our own write, after the list's snapshot
            if new != old:
                changed.add(key)
            if new:
                self._pods[key] = new
            else:
                self._pods.pop(key, None)
        return changed

    def put_pod(self, obj: dict[str, Any], *, deleted: bool = False) -> Key | None:
        meta = obj["metadata"]
        agent = (meta.get("labels") or {}).get(_agents.AGENT_LABEL)
        if not agent:
            return None
        key = (meta["namespace"], agent)
        pods = self._pods.setdefault(key, {})
        if deleted:
            pods.pop(meta["name"], None)
        elif _newer_than(pods.get(meta["name"]), obj):
            pods[meta["name"]] = _store(_pod_summary(obj))
        if not pods:
            self._pods.pop(key, None)
        return key


#: A listed Pod as the view keeps it: its Agent, its name, its summary (None: not an agent Pod).
Listed = tuple[Key, str, Stored] | None


def listed_pod(pod: dict[str, Any]) -> Listed:
    meta = pod["metadata"]
    agent = (meta.get("labels") or {}).get(_agents.AGENT_LABEL)
    if not agent:
        return None
    return (meta["namespace"], agent), meta["name"], _store(_pod_summary(pod))


#: What the view keeps of an Agent's metadata: what the passes read (the plan, the labels
#: write, the legacy finalizer's removal, Events: apiVersion, kind, name, namespace, uid) and
#: the version. Not kept: managedFields, annotations (kubectl's last-applied copy of the whole
#: spec), creationTimestamp, ownerReferences.
_AGENT_META = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "deletionTimestamp",
               "finalizers")  # fmt: skip
#: The annotations of a Pod the plan reads.
_POD_ANNOTATIONS = (_agents.HASH_ANNOTATION, _agents.INCARNATION_ANNOTATION)


def _agent_summary(agent: dict[str, Any]) -> dict[str, Any]:
    """The part of an Agent the passes read: all of its spec and status (the status is merged
    into, compared with and written whole), the metadata of ``_AGENT_META``."""
    meta = agent["metadata"]
    summary = {
        "apiVersion": agent.get("apiVersion"),
        "kind": agent.get("kind"),
        "metadata": {k: meta[k] for k in _AGENT_META if k in meta},
    }
    for part in ("spec", "status"):
        if part in agent:
            summary[part] = agent[part]
    return summary


def _pod_summary(pod: dict[str, Any]) -> dict[str, Any]:
    """The part of a Pod the Agent's plan and pass read: its name and version, our annotations,
    its owners' uids, whether it is being deleted, its node, its phase (reason, message), its
    Ready condition and its containers' restart counts and waiting states. The view holds one
    per Agent, and a whole Pod (its spec, managedFields, every condition and container status)
    is several times larger. ``tests/unit/test_agents_view.py`` checks that a plan from the
    summary is the plan from the whole Pod."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    summary = {
        "metadata": {
            "name": meta.get("name"),
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": {k: annotations[k] for k in _POD_ANNOTATIONS if k in annotations},
            "ownerReferences": [{"uid": o.get("uid")} for o in meta.get("ownerReferences") or []],
            **({"deletionTimestamp": meta["deletionTimestamp"]} if meta.get("deletionTimestamp") else {}),
        },
        "spec": {"nodeName": spec["nodeName"]} if "nodeName" in spec else {},
        "status": {
            **{k: status[k] for k in ("phase", "reason", "message") if k in status},
            "conditions": [
                {"type": c.get("type"), "status": c.get("status")}
                for c in status.get("conditions") or []
                if c.get("type") == "Ready"
            ],
            "containerStatuses": [_container_summary(c) for c in status.get("containerStatuses") or []],
        },
    }
    return summary


def _container_summary(container: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"restartCount": container.get("restartCount", 0)}
    waiting = (container.get("state") or {}).get("waiting")
    if waiting:
        summary["state"] = {"waiting": waiting}
    return summary
