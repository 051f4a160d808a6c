"""The command's errors are one line on stderr that says what to do, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mabeam.cli import main

ROOT = Path(__file__).parents[2]


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: ctx, context: {cluster: c, user: u}}]\ncurrent-context: ctx\n"
    )
    return path


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_missing_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["get", "agents"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("Error: Configuration file") and "--kubeconfig" in line and "mabeam local" in line


def test_an_unknown_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = kubeconfig(tmp_path, "http://127.0.0.1:9")
    assert main(["get", "agents", "--kubeconfig", str(path), "--context", "nope"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "nope" in line and "kubectl config get-contexts" in line


def test_an_unreachable_api_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = kubeconfig(tmp_path, f"http://127.0.0.1:{port}")
    for argv in (["get", "agents"], ["describe", "agent", "a"], ["vote", "s", "yes", "--as", "a"]):
        assert main([*argv, "--kubeconfig", str(path)]) == 1
        line = one_line(capsys.readouterr().err)
        assert line.startswith("Error: cannot reach the API server") and "running" in line, line


def test_delete_all_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))
    # An unreachable API server is retried until the timeout, then said in one line.
    assert main(["delete-all", "--kubeconfig", path, "--timeout", "0.2"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("Error: cannot reach the API server"), line
    for argv, complaint in (
        (["-A", "-n", "team-a"], "-A deletes in every namespace; leave out -n, or leave out -A"),
        (["--timeout", "0"], "--timeout must be more than 0 seconds"),
    ):
        assert main(["delete-all", "--kubeconfig", path, *argv]) == 1
        assert complaint in one_line(capsys.readouterr().err)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`mabeam validate -f many.yaml | head -c 1`: the reader goes away long before the output
    (a line for each of 3000 problems, written as the buffer fills) ends."""
    docs = "".join(
        f"---\napiVersion: mabeam.io/v1alpha1\nkind: Variable\nmetadata: {{name: v{i}}}\nspec: {{nope: 1}}\n"
        for i in range(3000)
    )
    (tmp_path / "many.yaml").write_text(docs)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mabeam.cli", "validate", "-f", str(tmp_path / "many.yaml")],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(write_end)
    assert os.read(read_end, 1)
    os.close(read_end)
    _, stderr = proc.communicate(timeout=120)
    err = stderr.decode()
    assert proc.returncode == 141
    assert err == "", err


def test_demo_from_a_wheel_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Installed from a wheel, in a directory without the source checkout's examples/ and
    agents/, or without the [local] extra: one line saying what to do."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "no manifests in examples/" in line and "git clone" in line, line
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "agents.yaml").write_text((ROOT / "examples" / "agents.yaml").read_text())
    assert main(["demo"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "agents/voter.py" in line and "source checkout" in line, line
    monkeypatch.setitem(sys.modules, "kmock", None)  # as if the [local] extra were not installed
    for argv in (["demo"], ["local"]):
        assert main(argv) == 1
        line = one_line(capsys.readouterr().err)
        assert "pip install 'mabeam[local]'" in line, line
