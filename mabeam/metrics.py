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
        self.reconcile_seconds = Histogram(
            "mabeam_reconcile_duration_seconds",
            "Time spent in one reconcile pass.",
            ["kind"],
            registry=r,
        )
