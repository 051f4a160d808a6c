"""Prometheus metrics of the operator (one registry per operator, so tests stay isolated).

``serve_metrics(registry, port)`` exposes a registry at ``/metrics`` from a background thread
(``mabeam run --metrics-port``; the demo and the tests can call it for a Runtime's registry).
"""

from __future__ import annotations

import threading
from collections import Counter as _Tally
from typing import get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ..models.agent import AgentPhase

__all__ = ["AGENT_PHASES", "Metrics", "MetricsServer", "serve_metrics"]

#: The Agent phases always exported (at 0 when no agent is in them), so that dashboards and
#: alerts see a series instead of nothing (the Literal of mabeam.models.agent.AgentPhase).
AGENT_PHASES: tuple[str, ...] = get_args(AgentPhase)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.agents = Gauge("mabeam_agents", "Agents by phase.", ["namespace", "phase"], registry=r)
        self.pod_restarts = Gauge(
            "mabeam_agent_container_restarts",
            "Container restarts of each agent's current pod.",
            ["namespace", "agent"],
            registry=r,
        )
        self.pod_replacements = Counter(
            "mabeam_agent_pod_replacements_total", "Pods replaced after a loss.", ["namespace"], registry=r
        )
        self.api_errors = Counter(
            "mabeam_api_errors_total",
            "Kubernetes API calls that failed and were retried.",
            ["kind"],
            registry=r,
        )
        self.sessions = Counter(
            "mabeam_sessions_total",
            "Coordination sessions that ended, by protocol and outcome.",
            ["protocol", "outcome"],
            registry=r,
        )
        self.decision_latency = Histogram(
            "mabeam_decision_latency_seconds",
            "From a session's start to its decision.",
            ["protocol"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.answers = Counter(
            "mabeam_answers_total",
            "Answers (votes, proposals) received, by protocol and result.",
            ["protocol", "result"],
            registry=r,
        )
        self.variable_writes = Counter(
            "mabeam_variable_writes_total",
            "Variable writes, by result (applied, refused, invalid).",
            ["result"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "mabeam_reconcile_duration_seconds",
            "Time spent in one reconcile pass.",
            ["kind"],
            registry=r,
        )
        self.anomalies = Counter(
            "mabeam_anomalies_total",
            "Sessions whose outcome departed from their protocol's baseline, by signal "
            "(latency, failure_rate).",
            ["protocol", "signal"],
            registry=r,
        )
        self.leader = Gauge(
            "mabeam_leader",
            "1 while this replica holds the operator Lease (or runs without leader election).",
            registry=r,
        )
        self._agent_phases: dict[tuple[str, str], str] = {}
        #: Agents per (namespace, phase), kept with every change: a change costs O(1).
        self._phase_counts: _Tally[tuple[str, str]] = _Tally()
        self._agent_namespaces: set[str] = set()
        self._lock = threading.Lock()

    def set_agent_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record an agent's phase as the agent controller sees it (None: the agent is gone).

        ``mabeam_agents{namespace, phase}`` follows from these records: a change moves one agent
        from its old phase's count to its new one, so a gauge never drifts from the
        controller's view (a repeated record changes nothing).
        """
        with self._lock:
            if namespace not in self._agent_namespaces:  # every phase shows, from the first agent on
                self._agent_namespaces.add(namespace)
                for known in AGENT_PHASES:
                    self.agents.labels(namespace=namespace, phase=known).set(0)
            old = self._agent_phases.get((namespace, name))
            if old == phase:
                return
            if phase is None:
                del self._agent_phases[(namespace, name)]
            else:
                self._agent_phases[(namespace, name)] = phase
            for changed, step in ((old, -1), (phase, 1)):
                if changed is not None:
                    self._phase_counts[namespace, changed] += step
                    self.agents.labels(namespace=namespace, phase=changed).set(
                        self._phase_counts[namespace, changed]
                    )


class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`close` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` (port 0: any free port; see ``.port``)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
