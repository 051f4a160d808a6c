"""Protocol discovery: built-ins, a third-party distribution found through its entry point, and
broken plug-ins that must not stop the operator."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mabeam.core.protocols import (
    ENTRY_POINT_GROUP,
    Answer,
    Participant,
    builtin_protocols,
    discover,
    start,
    step,
)
from mabeam.errors import InvalidSpecError
from mabeam.models.coordination import CoordinationSpec
from tests.strategies import DEADLINE, T0, at

PLUGIN = '''
"""A third-party protocol: the earliest counted vote decides (ties by agent name)."""
from mabeam.core.protocols import Protocol, StepResult, collect, finish


class FirstAnswer(Protocol):
    name = "first-answer"

    def step(self, session, spec, status, answers, alive, now):
        collected = collect(
            status, answers, now, fields=lambda a: {"choice": a.choice},
            check=lambda a: None if a.choice in spec.options else ("UnknownOption", "not an option"),
        )
        status = collected.apply(status)
        if not collected.records:
            return StepResult(status=status, verdicts=tuple(collected.verdicts))
        first = min(collected.records.values(), key=lambda r: (r.received_at, r.agent))
        return finish(status, spec, session, phase="Decided", value=first.choice, reason="FirstAnswer",
                      message=f"{first.agent} answered first", now=now, verdicts=collected.verdicts)
'''


@pytest.fixture
def plugin_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed distribution (module + dist-info with an entry point) on sys.path."""
    (tmp_path / "mabeam_first_answer.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "mabeam_first_answer-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mabeam-first-answer\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nfirst-answer = mabeam_first_answer:FirstAnswer\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("mabeam_first_answer", None)


def test_builtin_protocols() -> None:
    assert sorted(builtin_protocols()) == ["consensus", "contract-net", "majority", "priority", "weighted"]


def test_unknown_protocol_names_the_available_ones() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        discover().get("raft")
    assert caught.value.path == "spec.protocol"
    assert "majority" in caught.value.message


def test_third_party_protocol_is_found_and_runs(plugin_distribution: Path) -> None:
    registry = discover()
    assert "first-answer" in registry.names()
    assert registry.problems == ()
    spec = CoordinationSpec.model_validate(
        {"protocol": "first-answer", "participants": {"agents": ["a", "b"]}, "options": ["x", "y"]}
    )
    opened = start("s1", spec, [Participant("a"), Participant("b")], T0, registry=registry)
    assert opened.status.phase == "Collecting"
    answers = {"a": Answer(at=at(5), choice="x"), "b": Answer(at=at(3), choice="y")}
    result = step("s1", spec, opened.status, answers, {}, at(6), registry=registry)
    assert result.status.result is not None
    assert (result.status.result.value, result.status.result.reason) == ("y", "FirstAnswer")


def test_broken_plugins_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint("gone", "no_such_module_for_mabeam:Thing", ENTRY_POINT_GROUP),
            importlib.metadata.EntryPoint("majority", "json:dumps", ENTRY_POINT_GROUP),
            importlib.metadata.EntryPoint("not-a-protocol", "json:dumps", ENTRY_POINT_GROUP),
        ]
    )

    def fake_entry_points(**params: object) -> importlib.metadata.EntryPoints:
        assert params == {"group": ENTRY_POINT_GROUP}
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    registry = discover()
    assert registry.names() == sorted(builtin_protocols())
    assert len(registry.problems) == 3
    assert any(p.startswith("majority: the name is taken") for p in registry.problems)
    assert any("not a mabeam Protocol" in p for p in registry.problems)
    assert registry.get("majority").name == "majority"


def test_unknown_protocol_fails_the_session_instead_of_crashing() -> None:
    spec = CoordinationSpec.model_validate(
        {"protocol": "first-answer", "participants": {"agents": ["a"]}, "options": ["x"]}
    )
    result = start("s1", spec, [Participant("a")], T0, registry=discover())
    assert result.status.phase == "Failed"
    assert result.status.result is not None and result.status.result.reason == "Invalid"
    assert "spec.protocol" in result.status.result.message
    assert step("s1", spec, result.status, {}, {}, DEADLINE).status == result.status
