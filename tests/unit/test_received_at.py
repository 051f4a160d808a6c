"""received_at: an answer's time is bounded by the API server's creationTimestamp (whole seconds)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mabeam.controller._session import received_at

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def answer(generation: int | None = 1, created: Any = "2026-01-02T03:04:05Z") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "s-ann", "uid": "u1", "creationTimestamp": created}
    if generation is not None:
        meta["generation"] = generation
    return {"metadata": meta}


def test_a_first_version_seen_late_counts_at_the_end_of_its_second() -> None:
    seen = T0 + dt.timedelta(seconds=30)
    assert received_at(answer(), seen) == T0 + dt.timedelta(seconds=1)


def test_a_first_version_seen_promptly_keeps_the_time_it_was_seen() -> None:
    seen = T0 + dt.timedelta(milliseconds=250)
    assert received_at(answer(), seen) == seen
    assert received_at(answer(generation=None), seen) == seen


@pytest.mark.parametrize(
    "obj",
    [
        answer(generation=2),
        answer(created=None),
        answer(created="yesterday"),
        answer(created="2026-01-02T03:04:05"),
    ],
    ids=["edited", "no-timestamp", "unreadable", "no-zone"],
)
def test_without_a_trustworthy_acceptance_time_it_is_when_the_operator_saw_it(obj: dict[str, Any]) -> None:
    seen = T0 + dt.timedelta(seconds=30)
    assert received_at(obj, seen) == seen


@given(
    accepted_ms=st.integers(min_value=0, max_value=999),
    lag_ms=st.integers(min_value=0, max_value=60_000),
    deadline_ms=st.integers(min_value=-3_000, max_value=3_000),
)
def test_late_stays_late_and_on_time_before_the_deadlines_second_stays_on_time(
    accepted_ms: int, lag_ms: int, deadline_ms: int
) -> None:
    """Against the true acceptance instant A (in the second of the timestamp) and a deadline D:
    the time is never before A (an answer after D is never counted), and an answer accepted
    before D's whole second counts however late the operator saw it."""
    accepted = T0 + dt.timedelta(milliseconds=accepted_ms)
    seen = accepted + dt.timedelta(milliseconds=lag_ms)
    deadline = T0 + dt.timedelta(milliseconds=deadline_ms)
    at = received_at(answer(), seen)
    assert accepted <= at <= seen
    if accepted > deadline:
        assert at > deadline
    if T0 + dt.timedelta(seconds=1) <= deadline:
        assert at <= deadline
