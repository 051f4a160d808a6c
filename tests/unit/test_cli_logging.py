"""``--log-format json``: one JSON object per line, with the session and agent where known."""

from __future__ import annotations

import json
import logging

from mabeam.cli._logging import JsonFormatter, log_context


def record(message: str, **extra: object) -> dict[str, object]:
    rec = logging.LogRecord("mabeam.test", logging.WARNING, __file__, 1, message, None, None)
    rec.__dict__.update(extra)
    parsed: dict[str, object] = json.loads(JsonFormatter().format(rec))
    return parsed


def test_plain_record() -> None:
    entry = record("hello %s")
    assert entry["level"] == "WARNING" and entry["logger"] == "mabeam.test" and entry["message"] == "hello %s"
    assert str(entry["time"]).endswith("+00:00")
    assert "session" not in entry and "agent" not in entry


def test_kopf_object_loggers_name_the_session_or_agent() -> None:
    ref = {"kind": "Coordination", "name": "s1", "namespace": "team-a", "apiVersion": "mabeam.io/v1alpha1"}
    entry = record("tally changed", k8s_ref=ref)
    assert (entry["session"], entry["namespace"], entry["kind"], entry["name"]) == (
        "s1",
        "team-a",
        "Coordination",
        "s1",
    )
    entry = record("pod lost", k8s_ref={**ref, "kind": "Agent", "name": "alice"})
    assert entry["agent"] == "alice" and "session" not in entry


def test_context_and_extras() -> None:
    with log_context(session="s9", agent="bob"):
        entry = record("inside")
        assert (entry["session"], entry["agent"]) == ("s9", "bob")
        assert record("explicit", agent="carol")["agent"] == "carol"  # an extra wins
    assert "session" not in record("outside")
