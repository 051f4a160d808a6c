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
    # Each problem on the line of its field in the file (counted from 1).
    assert f'{bad}:15: Agent/a1: spec.colour: Unsupported value: unknown field "spec.colour"' in lines
    weight = f"{bad}:14: Agent/a1: spec.weight: Invalid value: -1"
    assert any(line.startswith(weight) for line in lines), lines
    # The CEL rule of Vote (one of choice, proposal, accept or claim), on the line of spec.
    assert any(
        line.startswith(f"{bad}:21: Vote/s1-bob: spec:") and "must set one of" in line for line in lines
    ), lines
    assert f"{bad}:6: Deployment/web: skipped (apps/v1 is not a mabeam.io kind)" in err
    assert len(lines) == 3  # the good Vote has none


def test_unknown_kinds_and_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.yml").write_text(GOOD_VOTE)
    (tmp_path / "sub" / "notes.txt").write_text("not: [yaml")
    (tmp_path / "odd.yaml").write_text("apiVersion: mabeam.io/v1alpha1\nkind: Ballot\nmetadata: {name: b}\n")
    code, out, _ = run(capsys, "-f", str(tmp_path))
    assert code == 1
    assert (
        out == f"{tmp_path / 'odd.yaml'}:1: Ballot/b: unknown mabeam.io/v1alpha1 kind 'Ballot' "
        "(known: Account, Agent, Auction, Bid, Coordination, Market, Order, Variable, Vote)\n"
    )
    assert run(capsys, "-f", str(tmp_path / "sub"))[0] == 0
    assert run(capsys, "-f", str(tmp_path / "missing.yaml"))[0] == 2


def _variable(spec: str) -> str:
    return f"apiVersion: mabeam.io/v1alpha1\nkind: Variable\nmetadata: {{name: v}}\nspec:\n{spec}"


SEMANTIC_CASES = {
    # What the schema lets through but the operator refuses; lines count the good Vote (5) before.
    "value-outside-its-range": (
        _variable("  type: integer\n  constraints: {minimum: 0, maximum: 10}\n  value: 11\n"),
        ":12: Variable/v: spec.value: must be",
    ),
    "value-not-allowed": (
        _variable("  type: enum\n  constraints:\n    allowedValues: [a, b]\n  value: c\n"),
        ":13: Variable/v: spec.value: must be",
    ),
    "unknown-protocol": (
        "apiVersion: mabeam.io/v1alpha1\nkind: Coordination\nmetadata: {name: s}\nspec:\n"
        "  protocol: lottery\n  participants: {agents: [a]}\n",
        ":10: Coordination/s: spec.protocol: unknown protocol 'lottery'; available: ",
    ),
}


@pytest.mark.parametrize("case", list(SEMANTIC_CASES))
def test_the_operators_own_checks_run_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    text, expected = SEMANTIC_CASES[case]
    manifest = tmp_path / "m.yaml"
    manifest.write_text(GOOD_VOTE + "---\n" + text)
    code, out, _ = run(capsys, "-f", str(manifest))
    assert code == 1
    (line,) = out.splitlines()
    assert line.startswith(f"{manifest}{expected}"), line


def test_a_protocol_refuses_a_spec_that_does_not_fit_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "apiVersion: mabeam.io/v1alpha1\nkind: Coordination\nmetadata: {name: s}\nspec:\n"
        "  protocol: majority\n  participants: {agents: [a]}\n"
    )
    code, out, _ = run(capsys, "-f", str(manifest))
    assert code == 1
    (line,) = out.splitlines()
    assert line.startswith(f"{manifest}:") and "Coordination/s: spec.options" in line, line


def test_a_fitting_value_and_a_known_protocol_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        _variable("  type: integer\n  constraints: {minimum: 0, maximum: 10}\n  value: 10\n")
        + "---\napiVersion: mabeam.io/v1alpha1\nkind: Coordination\nmetadata: {name: s}\nspec:\n"
        "  protocol: majority\n  participants: {agents: [a]}\n  options: [x, \"y\"]\n"
    )
    code, out, err = run(capsys, "-f", str(manifest))
    assert (code, out) == (0, "")
    assert "2 MABEAM object(s) checked, 0 problem(s)." in err


def test_every_error_at_once_with_exact_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Schema errors, name errors, the model's whole-spec rules, the pod template and YAML 1.1
    booleans of one file, all in one run, each at its own field (never just ``spec``)."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        textwrap.dedent(
            """\
            apiVersion: mabeam.io/v1alpha1
            kind: Auction
            metadata: {name: Bad_Name}
            spec:
              mechanism: english
              items: [gpu-0]
              participants: {agents: [a]}
            ---
            apiVersion: mabeam.io/v1alpha1
            kind: Agent
            metadata: {name: a.b}
            spec:
              template:
                spec:
                  restartPolicy: Never
                  containers: [{name: agent, image: x}]
            ---
            apiVersion: mabeam.io/v1alpha1
            kind: Vote
            metadata: {name: s1-alice}
            spec: {session: s1, agent: alice, choice: yes}
            ---
            apiVersion: mabeam.io/v1alpha1
            kind: Coordination
            metadata: {name: s}
            spec:
              protocol: majority
              participants: {agents: [a]}
              options: [on, n]
            """
        )
    )
    code, out, _ = run(capsys, "-f", str(manifest))
    assert code == 1
    lines = [line.removeprefix(f"{manifest}:") for line in out.splitlines()]
    expected = [
        ("3: Auction/Bad_Name: metadata.name: Invalid value: 'Bad_Name'", True),
        ("Auction/Bad_Name: spec.increment: ", False),
        ("11: Agent/a.b: metadata.name: Invalid value: 'a.b': an Agent's name must be a DNS label", True),
        ("Agent/a.b: spec.template.spec.restartPolicy: ", False),
        ("21: Vote/s1-alice: spec.choice: ", True),
        ("21: Vote/s1-alice: spec.choice: plain yes is a YAML 1.1 boolean (kubectl reads true)", True),
        ("Coordination/s: spec.options[0]: plain on is a YAML 1.1 boolean (kubectl reads true)", False),
        ("Coordination/s: spec.options[1]: plain n is a YAML 1.1 boolean (kubectl reads false)", False),
    ]
    for text, at_start in expected:
        assert any((line.startswith(text) if at_start else text in line) for line in lines), (text, lines)
    assert not any(": spec: " in line for line in lines), lines


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD_VOTE + "---\n" + GOOD_VOTE.replace("s1-alice", "")))
    code, out, err = run(capsys, "-f", "-")
    assert code == 1
    assert out == "<stdin>:8: Vote/<no name>: metadata.name: Required value\n"
    assert "2 MABEAM object(s) checked, 1 problem(s)." in err


def test_validate_needs_nothing_from_the_local_extra() -> None:
    """`pip install mabeam` (no [local] extra) runs validate: the modules it imports come from
    the base dependencies."""
    import subprocess
    import sys
    import tomllib

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    local_only = {Requirement(r).name for r in project["optional-dependencies"]["local"]}
    base = {Requirement(r).name for r in project["dependencies"]}
    assert "cel-python" in base
    probe = (
        "import sys; from mabeam.cli import validate, get, answer; from mabeam.cli import main; "
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                                cwd=root).stdout.split())  # fmt: skip
    import_names = {"kmock": "kmock", "jsonschema": "jsonschema", "cryptography": "cryptography"}
    assert not {import_names[n] for n in local_only if n in import_names} & loaded, loaded
