"""The operator's metrics: labels from user input are bounded, per-name series come and go."""

from __future__ import annotations

from types import SimpleNamespace

from mabeam.controller._metrics import OTHER, Metrics, known_protocols


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_a_protocol_typo_is_counted_as_other_not_as_a_new_series() -> None:
    m = Metrics()
    assert {"majority", "first-price", "double-auction"} <= known_protocols()
    m.sessions.labels(protocol="majorty", outcome="Failed").inc()
    m.sessions.labels(protocol="majority", outcome="Decided").inc()
    m.answers.labels(protocol="nonsense", result="counted").inc()
    m.decision_latency.labels(protocol="x" * 200).observe(1.0)
    m.anomalies.labels(protocol="typo", signal="latency").inc()
    assert sample(m, "mabeam_sessions_total", protocol=OTHER, outcome="Failed") == 1
    assert sample(m, "mabeam_sessions_total", protocol="majority", outcome="Decided") == 1
    assert sample(m, "mabeam_sessions_total", protocol="majorty", outcome="Failed") is None
    assert sample(m, "mabeam_answers_total", protocol=OTHER, result="counted") == 1
    assert sample(m, "mabeam_decision_latency_seconds_count", protocol=OTHER) == 1
    assert sample(m, "mabeam_anomalies_total", protocol=OTHER, signal="latency") == 1
    m.count_variable_write("applied")
    m.count_variable_write("whatever")
    assert sample(m, "mabeam_variable_writes_total", result="applied") == 1
    assert sample(m, "mabeam_variable_writes_total", result=OTHER) == 1


def test_unhealthy_agents_by_name() -> None:
    m = Metrics()
    m.set_agent_phase("ns", "a", "Ready")
    m.set_agent_phase("ns", "b", "CrashLoop")
    assert sample(m, "mabeam_agent_ready", namespace="ns", agent="a") == 1
    assert sample(m, "mabeam_agent_ready", namespace="ns", agent="b") == 0
    m.set_agent_phase("ns", "b", "Terminating")
    m.set_agent_phase("ns", "a", None)
    assert sample(m, "mabeam_agent_ready", namespace="ns", agent="a") is None
    assert sample(m, "mabeam_agent_ready", namespace="ns", agent="b") is None


def test_container_restarts_by_agent_are_gone_with_the_agent() -> None:
    m = Metrics()
    m.set_agent_restarts("ns", "a", 3)
    m.set_agent_phase("ns", "a", "Ready")
    m.set_agent_restarts("ns", "b", 0)
    m.set_agent_phase("ns", "b", "Ready")
    assert sample(m, "mabeam_agent_container_restarts", namespace="ns", agent="a") == 3
    assert sample(m, "mabeam_agent_container_restarts", namespace="ns", agent="b") == 0
    m.set_agent_phase("ns", "a", "Terminating")  # still counted while it is being deleted
    assert sample(m, "mabeam_agent_container_restarts", namespace="ns", agent="a") == 3
    m.set_agent_phase("ns", "a", None)
    assert sample(m, "mabeam_agent_container_restarts", namespace="ns", agent="a") is None
    assert sample(m, "mabeam_agent_container_restarts", namespace="ns", agent="b") == 0


def test_sessions_in_progress_by_phase() -> None:
    m = Metrics()
    m.set_session_phase("Auction", "ns", "a1", "Bidding")
    m.set_session_phase("Auction", "ns", "a2", "Bidding")
    m.set_session_phase("Auction", "ns", "a1", "Revealing")
    assert sample(m, "mabeam_sessions_in_progress", kind="Auction", phase="Bidding") == 1
    assert sample(m, "mabeam_sessions_in_progress", kind="Auction", phase="Revealing") == 1
    m.set_session_phase("Auction", "ns", "a1", None)
    m.set_session_phase("Auction", "ns", "a2", None)
    assert sample(m, "mabeam_sessions_in_progress", kind="Auction", phase="Bidding") == 0
    assert sample(m, "mabeam_sessions_in_progress", kind="Auction", phase="Revealing") == 0


def test_auction_revenue_and_prices_by_mechanism() -> None:
    m = Metrics()
    allocations = [SimpleNamespace(price=24), SimpleNamespace(price=26)]
    status = SimpleNamespace(phase="Awarded", result=SimpleNamespace(allocations=allocations, revenue=50))
    m.observe_outcome("Auction", "combinatorial", status)
    m.observe_outcome("Auction", "combinatorial", SimpleNamespace(phase="NoSale", result=None))
    market = SimpleNamespace(phase="Cleared", result=SimpleNamespace(price=16, volume=3))
    m.observe_outcome("Market", "equilibrium", market)
    assert sample(m, "mabeam_auction_revenue_total", mechanism="combinatorial") == 50
    assert sample(m, "mabeam_auction_prices_count", mechanism="combinatorial") == 2
    assert sample(m, "mabeam_auction_prices_sum", mechanism="combinatorial") == 50
    assert sample(m, "mabeam_market_prices_sum", mechanism="equilibrium") == 16
    assert sample(m, "mabeam_market_volume_total", mechanism="equilibrium") == 3


def test_default_process_and_python_collectors() -> None:
    m = Metrics()
    assert m.registry.get_sample_value("process_cpu_seconds_total") is not None
    names = {s.name for f in m.registry.collect() for s in f.samples}
    assert "python_info" in names and "python_gc_objects_collected_total" in names
