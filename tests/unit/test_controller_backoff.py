"""The reconcile loops' backoff after failed passes."""

from __future__ import annotations

from mabeam.controller._loop import Backoff


def test_the_delay_doubles_up_to_the_cap_and_a_success_resets_it() -> None:
    backoff = Backoff(0.5, 30.0)
    assert [backoff.failed() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # 16 x base
    backoff.succeeded()
    assert backoff.failed() == 0.5


def test_a_longer_retry_after_is_honoured_and_a_shorter_one_is_not() -> None:
    backoff = Backoff(1.0, 10.0)
    assert backoff.failed(retry_after=3.0) == 3.0
    assert backoff.failed(retry_after=0.5) == 2.0
    assert Backoff(1.0, 2.0).failed() == 1.0
