"""Prometheus metrics of the operator (one registry per operator, so tests stay isolated).

``serve_metrics(registry, port)`` exposes a registry at ``/metrics`` from a background thread
(``mabeam run --metrics-port``; the demo and the tests can call it for a Runtime's registry).

Every registry also carries the client's default process, platform and garbage-collector
collectors (``process_*``, ``python_info``, ``python_gc_*``). A label whose value comes from a
user's spec (``protocol``: a Coordination's protocol, an Auction's or a Market's mechanism) is
bounded to the values the operator knows; anything else is counted as ``other``, so that a typo
in a manifest cannot create a new series. The operator's own answers to "which agents are
unhealthy", "what did auctions and markets earn, at what prices" and "which sessions are in
progress, in which phase" are ``mabeam_agent_ready``, ``mabeam_auction_revenue_total``,
``mabeam_auction_prices``, ``mabeam_market_volume_total``, ``mabeam_market_prices`` and
``mabeam_sessions_in_progress``.
"""

from __future__ import annotations

import threading
from collections import Counter as _Tally
from collections.abc import Iterator
from typing import Any, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

from ..core import protocols
from ..models.agent import AgentPhase
from ..models.auction import AuctionMechanism
from ..models.market import MarketMechanism

__all__ = ["AGENT_PHASES", "OTHER", "Metrics", "MetricsServer", "known_protocols", "serve_metrics"]

#: The Agent phases always exported (at 0 when no agent is in them), so that dashboards and
#: alerts see a series instead of nothing (the Literal of mabeam.models.agent.AgentPhase).
AGENT_PHASES: tuple[str, ...] = get_args(AgentPhase)
#: The value a bounded label takes for anything it does not know.
OTHER = "other"


def known_protocols() -> frozenset[str]:
    """The values of the ``protocol`` label: the installed coordination protocols and the
    auction and market mechanisms (what a session kind's label is)."""
    return frozenset(
        {*protocols.default_registry().names(), *get_args(AuctionMechanism), *get_args(MarketMechanism)}
    )


class _Bounded:
    """A labelled metric whose user-given labels take only known values (else ``other``)."""

    def __init__(self, metric: Any, **allowed: frozenset[str]) -> None:
        self._metric = metric
        self._allowed = allowed

    def labels(self, **labels: str) -> Any:
        for name, known in self._allowed.items():
            if labels.get(name) not in known:
                labels[name] = OTHER
        return self._metric.labels(**labels)


def _register_default_collectors(registry: CollectorRegistry) -> None:
    """The process, platform (Python) and GC collectors, as the client's default registry has."""
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)


_WRITE_RESULTS = frozenset({"applied", "refused", "invalid"})


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        _register_default_collectors(r)
        known = known_protocols()
        self.agents = Gauge("mabeam_agents", "Agents by phase.", ["namespace", "phase"], registry=r)
        self.pod_replacements = Counter(
            "mabeam_agent_pod_replacements_total", "Pods replaced after a loss.", ["namespace"], registry=r
        )
        self.api_errors = Counter(
            "mabeam_api_errors_total",
            "Kubernetes API calls that failed and were retried.",
            ["kind"],
            registry=r,
        )
        self.sessions = _Bounded(
            Counter(
                "mabeam_sessions_total",
                "Sessions (coordinations, auctions, markets) that ended, by protocol and outcome.",
                ["protocol", "outcome"],
                registry=r,
            ),
            protocol=known,
        )
        self.sessions_in_progress = Gauge(
            "mabeam_sessions_in_progress",
            "Sessions not yet ended, by kind and phase.",
            ["kind", "phase"],
            registry=r,
        )
        self.decision_latency = _Bounded(
            Histogram(
                "mabeam_decision_latency_seconds",
                "From a session's start to its decision.",
                ["protocol"],
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
                registry=r,
            ),
            protocol=known,
        )
        self.answers = _Bounded(
            Counter(
                "mabeam_answers_total",
                "Answers (votes, proposals, bids, orders) received, by protocol and result.",
                ["protocol", "result"],
                registry=r,
            ),
            protocol=known,
        )
        self.payments = _Bounded(
            Counter(
                "mabeam_payments_total",
                "Payments settled between Accounts, by mechanism.",
                ["mechanism"],
                registry=r,
            ),
            mechanism=known,
        )
        self.paid = _Bounded(
            Counter(
                "mabeam_paid_total",
                "Money settled between Accounts, in units (two decimals), by namespace and mechanism.",
                ["namespace", "mechanism"],
                registry=r,
            ),
            mechanism=known,
        )
        self.balance = Gauge(
            "mabeam_balance",
            "Each Account's balance and escrow, in units (one series per Account; gone with it).",
            ["namespace", "account", "part"],
            registry=r,
        )
        self.auction_revenue = _Bounded(
            Counter(
                "mabeam_auction_revenue_total",
                "What awarded auctions' winners pay, in the auctions' units, by mechanism.",
                ["mechanism"],
                registry=r,
            ),
            mechanism=frozenset(get_args(AuctionMechanism)),
        )
        self.auction_prices = _Bounded(
            Summary(
                "mabeam_auction_prices",
                "The price of each allocation of an awarded auction, by mechanism (_sum/_count: the mean).",
                ["mechanism"],
                registry=r,
            ),
            mechanism=frozenset(get_args(AuctionMechanism)),
        )
        self.market_volume = _Bounded(
            Counter(
                "mabeam_market_volume_total",
                "Units traded in cleared markets, by mechanism.",
                ["mechanism"],
                registry=r,
            ),
            mechanism=frozenset(get_args(MarketMechanism)),
        )
        self.market_prices = _Bounded(
            Summary(
                "mabeam_market_prices",
                "The clearing price of each cleared market, by mechanism (_sum/_count: the mean).",
                ["mechanism"],
                registry=r,
            ),
            mechanism=frozenset(get_args(MarketMechanism)),
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
        self.anomalies = _Bounded(
            Counter(
                "mabeam_anomalies_total",
                "Sessions whose outcome departed from their protocol's baseline, by signal "
                "(latency, failure_rate).",
                ["protocol", "signal"],
                registry=r,
            ),
            protocol=known,
        )
        self.leader = Gauge(
            "mabeam_leader",
            "1 while this replica holds the operator Lease (or runs without leader election).",
            registry=r,
        )
        self._agent_phases: dict[tuple[str, str], str] = {}
        #: Container restarts of each agent's current pod (while the agent exists).
        self._agent_restarts: dict[tuple[str, str], int] = {}
        #: Agents per (namespace, phase), kept with every change: a change costs O(1).
        self._phase_counts: _Tally[tuple[str, str]] = _Tally()
        self._agent_namespaces: set[str] = set()
        self._session_phases: dict[tuple[str, str, str], str] = {}
        self._session_counts: _Tally[tuple[str, str]] = _Tally()
        self._lock = threading.Lock()
        # The per-agent series are made from the records above when scraped: a labelled Gauge
        # keeps an object (with two locks) per agent and series, 1.4 KB an agent.
        r.register(_AgentSeries(self))

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
            if phase is None:
                self._agent_restarts.pop((namespace, name), None)
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

    def set_agent_restarts(self, namespace: str, name: str, restarts: int) -> None:
        """Record the container restarts of an agent's current pod (gone with the agent)."""
        with self._lock:
            self._agent_restarts[namespace, name] = restarts

    def agent_series(self) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]]]:
        """The samples of ``mabeam_agent_ready`` and ``mabeam_agent_container_restarts``:
        (namespace, agent, value). An agent being deleted has no readiness (not an outage)."""
        with self._lock:
            ready = [
                (ns, name, 1.0 if phase == "Ready" else 0.0)
                for (ns, name), phase in self._agent_phases.items()
                if phase != "Terminating"
            ]
            restarts = [(ns, name, float(n)) for (ns, name), n in self._agent_restarts.items()]
        return ready, restarts

    def set_session_phase(self, kind: str, namespace: str, name: str, phase: str | None) -> None:
        """Record a session's phase (None: it ended, or is gone); ``mabeam_sessions_in_progress``
        follows from these records as ``mabeam_agents`` does (O(1) a change)."""
        with self._lock:
            old = self._session_phases.get((kind, namespace, name))
            if old == phase:
                return
            if phase is None:
                del self._session_phases[(kind, namespace, name)]
            else:
                self._session_phases[(kind, namespace, name)] = phase
            for changed, step in ((old, -1), (phase, 1)):
                if changed is not None:
                    self._session_counts[kind, changed] += step
                    self.sessions_in_progress.labels(kind=kind, phase=changed).set(
                        self._session_counts[kind, changed]
                    )

    def observe_outcome(self, kind: str, mechanism: str, status: Any) -> None:
        """Count an ended auction's revenue and prices, or a market's volume and price."""
        result = getattr(status, "result", None)
        if result is None:
            return
        if kind == "Auction" and str(getattr(status, "phase", "")) == "Awarded":
            for allocation in getattr(result, "allocations", ()):
                self.auction_prices.labels(mechanism=mechanism).observe(float(allocation.price))
            self.auction_revenue.labels(mechanism=mechanism).inc(max(float(result.revenue), 0.0))
        elif kind == "Market" and str(getattr(status, "phase", "")) == "Cleared":
            if getattr(result, "price", None) is not None:
                self.market_prices.labels(mechanism=mechanism).observe(float(result.price))
            self.market_volume.labels(mechanism=mechanism).inc(max(float(result.volume), 0.0))

    def count_payment(self, namespace: str, mechanism: str, minor: int) -> None:
        """One transfer of ``minor`` minor units settled."""
        self.payments.labels(mechanism=mechanism).inc()
        self.paid.labels(namespace=namespace, mechanism=mechanism).inc(minor / 100)

    def set_balance(self, namespace: str, account: str, balance: int | None, escrow: int = 0) -> None:
        """An Account's balance and escrow (minor units); None: the Account is gone."""
        for part, value in (("balance", balance or 0), ("escrow", escrow)):
            if balance is None:
                try:
                    self.balance.remove(namespace, account, part)
                except KeyError:
                    pass
            else:
                self.balance.labels(namespace=namespace, account=account, part=part).set(value / 100)

    def count_variable_write(self, result: str) -> None:
        """One Variable write: ``applied``, ``refused`` (the writer may not, a lock, a conflict,
        the value broke a constraint) or ``invalid`` (a write that could not be read)."""
        self.variable_writes.labels(result=result if result in _WRITE_RESULTS else OTHER).inc()


class _AgentSeries:
    """The per-agent gauges (one series per agent), made from ``Metrics``' records when scraped."""

    _READY = (
        "mabeam_agent_ready",
        "1 if the agent is Ready, 0 if not (one series per agent; gone with the agent).",
    )
    _RESTARTS = ("mabeam_agent_container_restarts", "Container restarts of each agent's current pod.")

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(*named, labels=["namespace", "agent"])
            for named in (self._READY, self._RESTARTS)
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready, restarts = self._metrics.agent_series()
        for (name, doc), samples in ((self._READY, ready), (self._RESTARTS, restarts)):
            family = GaugeMetricFamily(name, doc, labels=["namespace", "agent"])
            for namespace, agent, value in samples:
                family.add_metric([namespace, agent], value)
            yield family


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
