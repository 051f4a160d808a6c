"""The anomaly detector against hand-computed references and bounds derived by hand.

Bounds used (from the update rules in mabeam/core/anomaly.py): the running mean is a convex
combination of past latencies, so it stays inside any band [a, a+w] that holds them all; the
running variance then stays at or below (1 - alpha) * w**2 (induction on
v' = (1-alpha)(v + alpha d^2) with d^2 <= w^2), so the standard deviation is at most w.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.core.anomaly import Baseline, DetectorConfig, observe


def feed(outcomes: list[tuple[str, float | None]], cfg: DetectorConfig) -> list[tuple[int, str]]:
    state, alarms = Baseline(), []
    for i, (outcome, latency) in enumerate(outcomes):
        state, found = observe(state, outcome, latency, cfg)
        alarms.extend((i, a.signal) for a in found)
    return alarms


def test_latency_mean_and_variance_by_hand() -> None:
    cfg = DetectorConfig(alpha=0.5, sigmas=2.0, min_samples=3, min_latency_delta=0.1)
    state = Baseline()
    for x in (1.0, 3.0, 2.0):
        state, found = observe(state, "Decided", x, cfg)
        assert found == ()
    # 1 -> m=1, v=0; 3 -> d=2, m=2, v=0.5*(0+0.5*4)=1; 2 -> d=0, m=2, v=0.5*(1+0)=0.5
    assert state.latency_mean == pytest.approx(2.0)
    assert state.latency_var == pytest.approx(0.5)
    threshold = 2.0 + 2.0 * math.sqrt(0.5)  # 3.414...
    assert observe(state, "Decided", threshold - 0.01, cfg)[1] == ()
    _, (anomaly,) = observe(state, "Decided", 3.5, cfg)
    assert anomaly.signal == "latency" and anomaly.reason == "SlowDecision"
    assert anomaly.threshold == pytest.approx(threshold)
    assert anomaly.baseline == pytest.approx(2.0) and anomaly.spread == pytest.approx(math.sqrt(0.5))
    message = anomaly.describe("majority")
    assert "3.5s" in message and "1.5s above the majority baseline" in message
    assert "mean 2s" in message and "over 3 decided sessions" in message and "alarm above 3.41s" in message


def test_the_absolute_floor_applies_when_the_baseline_is_flat() -> None:
    cfg = DetectorConfig(min_samples=5, min_latency_delta=1.0)
    flat = [("Decided", 2.0)] * 10
    assert feed([*flat, ("Decided", 2.9)], cfg) == []
    assert feed([*flat, ("Decided", 3.1)], cfg) == [(10, "latency")]


@given(
    a=st.floats(0, 100),
    w=st.floats(0, 1.0),
    fractions=st.lists(st.floats(0, 1), min_size=1, max_size=80),
)
def test_no_latency_alarm_inside_a_band_narrower_than_the_floor(
    a: float, w: float, fractions: list[float]
) -> None:
    cfg = DetectorConfig(min_samples=3, min_latency_delta=1.0)
    series = [("Decided", a + f * w) for f in fractions]
    assert feed(series, cfg) == []


@given(
    a=st.floats(0, 100),
    w=st.floats(0, 10),
    fractions=st.lists(st.floats(0, 1), min_size=20, max_size=60),
    jump=st.floats(0.001, 100),
    sigmas=st.floats(1, 5),
)
def test_a_clear_latency_shift_alarms(
    a: float, w: float, fractions: list[float], jump: float, sigmas: float
) -> None:
    cfg = DetectorConfig(min_samples=20, min_latency_delta=1.0, sigmas=sigmas)
    series = [("Decided", a + f * w) for f in fractions]
    # mean <= a + w and standard deviation <= w, so this is above every possible threshold.
    shifted = a + w + max(sigmas * w, cfg.min_latency_delta) + jump
    # (values inside a band wider than the floor may alarm too; the shift must.)
    assert feed([*series, ("Decided", shifted)], cfg)[-1:] == [(len(series), "latency")]


@given(st.lists(st.floats(0, 1000), max_size=19))
def test_nothing_alarms_before_the_baseline_has_enough_samples(values: list[float]) -> None:
    assert feed([("Decided", v) for v in values], DetectorConfig(min_samples=20)) == []


def window_shares(failed: list[bool], window: int) -> list[float]:
    return [sum(failed[i - window + 1 : i + 1]) / window for i in range(window - 1, len(failed))]


@given(st.lists(st.booleans(), max_size=120))
def test_no_failure_alarm_when_every_window_stays_within_the_margin(failed: list[bool]) -> None:
    cfg = DetectorConfig(window=10, failure_margin=0.3, min_samples=5)
    # Reference: brute-force every window's share; the baseline is never negative.
    if any(share > cfg.failure_margin for share in window_shares(failed, cfg.window)):
        return
    outcomes = [("Failed" if f else "Decided", None) for f in failed]
    assert feed(outcomes, cfg) == []


def test_a_run_of_failures_alarms_once_per_episode() -> None:
    cfg = DetectorConfig(window=10, failure_margin=0.3, min_samples=5)
    ok, bad = ("Decided", None), ("NoDecision", None)
    # 15 good sessions: 5 have left the window, baseline 0. Failures 1-3 keep the window at
    # <= 30%; the 4th makes it 40% > 0% + 30%: one alarm, then none while the run lasts.
    first = [ok] * 15 + [bad] * 6
    assert feed(first, cfg) == [(18, "failure_rate")]
    # Ten good sessions empty the window of failures (re-arm); a new run alarms again. The
    # failures that left the window raised the baseline to 1-(0.95**6) = 0.265, so the alarm
    # needs > 56.5% of the window: the 6th failure of the new run.
    again = [*first, *([ok] * 10), *([bad] * 7)]
    assert feed(again, cfg) == [(18, "failure_rate"), (36, "failure_rate")]


def test_cancelled_sessions_are_ignored_and_failures_only_alarm_on_a_failed_session() -> None:
    cfg = DetectorConfig(window=4, failure_margin=0.2, min_samples=2)
    state = Baseline()
    for outcome in ["Decided"] * 6 + ["Cancelled"] * 5:
        state, found = observe(state, outcome, 1.0, cfg)
        assert found == ()
    assert state.recent == (False,) * 4 and state.failure_samples == 2
    state, (anomaly,) = observe(state, "Failed", None, cfg)  # window 25% > 0% + 20%
    assert anomaly.signal == "failure_rate" and anomaly.reason == "FailureRateHigh"
    assert anomaly.describe("consensus") == (
        "25% of the last 4 consensus sessions failed or reached no decision, against a baseline "
        "of 0% (over 3 earlier sessions; alarm above 20%)."
    )
