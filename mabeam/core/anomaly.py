"""Anomaly detection on ended sessions, per protocol: pure (state, observation) -> (state, alarms).

Two signals, each against a rolling baseline of the same protocol's earlier sessions:

**Decision latency** (sessions that ended ``Decided``): an exponentially weighted mean ``m`` and
variance ``v`` (weight ``alpha`` on the newest value; West's update
``d = x - m; m += alpha*d; v = (1-alpha)*(v + alpha*d*d)``). Once at least ``min_samples``
latencies are in the baseline, a latency ``x`` is anomalous when

    x > m + sigmas * sqrt(v)   and   x - m > min_latency_delta

(the absolute floor keeps a near-constant baseline from alarming on tiny jitter). The value is
folded into the baseline after the test, so a lasting change becomes the new normal.

**Failure rate** (``Failed`` and ``NoDecision`` count as failures; ``Cancelled`` is a user's
choice and is ignored): the share of failures among the last ``window`` sessions, against a
baseline that is an exponentially weighted share (weight ``failure_alpha``) of the sessions that
have left that window. Once the window is full and the baseline holds at least
``min_samples`` sessions, a failed session is anomalous when

    window_rate > baseline_rate + failure_margin

and the alarm is raised once per episode: it re-arms when the window rate is back at or below
``baseline_rate + failure_margin``.

Everything here is pure: no clock, no I/O; the operator glue lives in
``mabeam.controller._anomaly``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = ["FAILURE_OUTCOMES", "Anomaly", "Baseline", "DetectorConfig", "observe"]

#: Session phases that count as failures for the failure-rate signal.
FAILURE_OUTCOMES = frozenset({"Failed", "NoDecision"})
#: Session phases that count at all (Cancelled sessions are ignored).
_COUNTED = frozenset({"Decided", *FAILURE_OUTCOMES})


@dataclass(frozen=True)
class DetectorConfig:
    #: Weight of the newest latency in the running mean and variance.
    alpha: float = 0.1
    #: How many standard deviations above the mean a latency must be to alarm.
    sigmas: float = 3.0
    #: Baseline size (latencies, or sessions beyond the window) before anything can alarm.
    min_samples: int = 20
    #: A latency must also exceed the mean by this many seconds.
    min_latency_delta: float = 1.0
    #: How many recent sessions the failure rate is taken over.
    window: int = 20
    #: How far (as a share, 0-1) the recent failure rate must exceed the baseline to alarm.
    failure_margin: float = 0.3
    #: Weight of each session leaving the window in the baseline failure rate.
    failure_alpha: float = 0.05


@dataclass(frozen=True)
class Baseline:
    """What one protocol's sessions looked like so far."""

    latency_mean: float = 0.0
    latency_var: float = 0.0
    latency_samples: int = 0
    #: The last ``window`` counted outcomes (True: failure), oldest first.
    recent: tuple[bool, ...] = ()
    failure_rate: float = 0.0
    failure_samples: int = 0
    failure_alarmed: bool = False


@dataclass(frozen=True)
class Anomaly:
    """A departure from the baseline, with the numbers a user needs to judge it."""

    signal: Literal["latency", "failure_rate"]
    observed: float
    baseline: float
    threshold: float
    samples: int
    spread: float = 0.0
    details: dict[str, float] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return "SlowDecision" if self.signal == "latency" else "FailureRateHigh"

    def describe(self, protocol: str) -> str:
        """One sentence: what departed, by how much, from which baseline."""
        if self.signal == "latency":
            return (
                f"Decision latency {self.observed:.3g}s is {self.observed - self.baseline:.3g}s above the "
                f"{protocol} baseline (mean {self.baseline:.3g}s, standard deviation {self.spread:.3g}s "
                f"over {self.samples} decided sessions; alarm above {self.threshold:.3g}s)."
            )
        return (
            f"{self.observed:.0%} of the last {int(self.details.get('window', 0))} {protocol} sessions "
            f"failed or reached no decision, against a baseline of {self.baseline:.0%} "
            f"(over {self.samples} earlier sessions; alarm above {self.threshold:.0%})."
        )


def observe(
    baseline: Baseline, outcome: str, latency_seconds: float | None, config: DetectorConfig | None = None
) -> tuple[Baseline, tuple[Anomaly, ...]]:
    """Fold one ended session into ``baseline``; return the new baseline and any anomalies.

    ``outcome`` is the session's final phase; ``latency_seconds`` its time from start to the
    end (used for Decided sessions only; None or a negative/non-finite value is ignored).
    """
    cfg = config or DetectorConfig()
    if outcome not in _COUNTED:
        return baseline, ()
    anomalies: list[Anomaly] = []
    state = baseline
    if (
        outcome == "Decided"
        and latency_seconds is not None
        and math.isfinite(latency_seconds)
        and latency_seconds >= 0
    ):
        state, found = _observe_latency(state, latency_seconds, cfg)
        anomalies.extend(found)
    state, found = _observe_failure(state, outcome in FAILURE_OUTCOMES, cfg)
    anomalies.extend(found)
    return state, tuple(anomalies)


def _observe_latency(state: Baseline, x: float, cfg: DetectorConfig) -> tuple[Baseline, list[Anomaly]]:
    found: list[Anomaly] = []
    if state.latency_samples == 0:
        return replace(state, latency_mean=x, latency_var=0.0, latency_samples=1), found
    mean, var = state.latency_mean, state.latency_var
    spread = math.sqrt(var)
    threshold = max(mean + cfg.sigmas * spread, mean + cfg.min_latency_delta)
    if state.latency_samples >= cfg.min_samples and x > threshold:
        found.append(Anomaly("latency", x, mean, threshold, state.latency_samples, spread))
    d = x - mean
    mean += cfg.alpha * d
    var = (1 - cfg.alpha) * (var + cfg.alpha * d * d)
    return replace(
        state, latency_mean=mean, latency_var=var, latency_samples=state.latency_samples + 1
    ), found


def _observe_failure(state: Baseline, failed: bool, cfg: DetectorConfig) -> tuple[Baseline, list[Anomaly]]:
    recent = (*state.recent, failed)
    rate, samples = state.failure_rate, state.failure_samples
    if len(recent) > cfg.window:
        leaving, recent = recent[0], recent[1:]
        value = 1.0 if leaving else 0.0
        rate = value if samples == 0 else rate + cfg.failure_alpha * (value - rate)
        samples += 1
    window_rate = sum(recent) / len(recent)
    threshold = rate + cfg.failure_margin
    ready = len(recent) == cfg.window and samples >= cfg.min_samples
    above = ready and window_rate > threshold
    found: list[Anomaly] = []
    if above and failed and not state.failure_alarmed:
        found.append(
            Anomaly("failure_rate", window_rate, rate, threshold, samples, details={"window": cfg.window})
        )
    alarmed = (state.failure_alarmed or bool(found)) and above
    return replace(
        state, recent=recent, failure_rate=rate, failure_samples=samples, failure_alarmed=alarmed
    ), found
