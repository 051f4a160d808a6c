"""Prometheus metrics of the operator (one registry per operator, so tests stay isolated)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


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
