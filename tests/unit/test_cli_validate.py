"""``mabeam validate -f``: offline, strict, CEL rules included; one line per problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mabeam.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD_VOTE = """\
apiVersion: mabeam.io/v1alpha1
kind: Vote
metadata: {name: s1-alice, namespace: default}
spec: {session: s1, agent: alice, choice: "yes"}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_examples_validate(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-f", str(EXAMPLES))
    assert (code, out) == (0, "")
    assert "0 problem(s)" in err and " 0 MABEAM" not in err


def test_bad_manifests_give_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        GOOD_VOTE
        + "---\n"
        + textwrap.dedent(
            """\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            ---
            apiVersion: mabeam.io/v1alpha1
            kind: Agent
            metadata: {name: a1}
            spec:
              weight: -1
              colour: blue
              template: {spec: {containers: [{name: agent, image: x}]}}
            ---
            apiVersion: mabeam.io/v1alpha1
            kind: Vote
            metadata: {name: s1-bob}
            spec: {session: s1, agent: bob}
            """
        )
    )
    code, out, err = run(capsys, "-f", str(bad))
    assert code == 1
    lines = out.splitlines()
    assert f'{bad}:2: Agent/a1: spec.colour: Unsupported value: unknown field "spec.colour"' in lines
    assert any(line.startswith(f"{bad}:2: Agent/a1: spec.weight: Invalid value: -1") for line in lines), lines
    # The CEL rule of Vote (one of choice, proposal, accept or claim).
    assert any(
        line.startswith(f"{bad}:3: Vote/s1-bob: spec:") and "must set one of" in line for line in lines
    ), lines
    assert not any(":0:" in line or ":1:" in line for line in lines)  # the good ones are fine
    assert f"{bad}:1: Deployment/web: skipped (apps/v1 is not a mabeam.io kind)" in err
    assert len(lines) == 3


def test_unknown_kinds_and_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.yml").write_text(GOOD_VOTE)
    (tmp_path / "sub" / "notes.txt").write_text("not: [yaml")
    (tmp_path / "odd.yaml").write_text("apiVersion: mabeam.io/v1alpha1\nkind: Ballot\nmetadata: {name: b}\n")
    code, out, _ = run(capsys, "-f", str(tmp_path))
    assert code == 1
    assert (
        out == f"{tmp_path / 'odd.yaml'}:0: Ballot/b: unknown mabeam.io/v1alpha1 kind 'Ballot' "
        "(known: Agent, Coordination, Variable, Vote)\n"
    )
    assert run(capsys, "-f", str(tmp_path / "sub"))[0] == 0
    assert run(capsys, "-f", str(tmp_path / "missing.yaml"))[0] == 2
