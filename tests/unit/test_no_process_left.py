"""The session fixture of tests/conftest.py fails a run that leaves a process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LEAKY = """
import subprocess, sys

def test_leaks():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

def test_cleans_up():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    p.kill()
    p.wait()
"""

CLEAN = """
import subprocess, sys

def test_cleans_up():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""


def run_pytest(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_it.py").write_text(text)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MABEAM_TEST_PROCESS_GRACE": "0.5",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    argv = [
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.conftest",
        "--rootdir",
        str(tmp_path),
    ]
    return subprocess.run(
        [sys.executable, *argv, str(tmp_path / "test_it.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_process_left_running_fails_the_session(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, LEAKY)
    # the report may be printed twice (the error, then the summary at some terminal widths)
    leaked = sorted({int(pid) for pid in re.findall(r"^\s+(\d+): .*time\.sleep\(60\)", result.stdout, re.M)})
    for pid in leaked:  # started by this test (through the inner run): stopped by it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert result.returncode != 0, result.stdout
    assert "the tests left 1 process(es) running" in result.stdout, result.stdout
    assert len(leaked) == 1, result.stdout


def test_a_clean_session_passes(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, CLEAN)
    assert result.returncode == 0, result.stdout + result.stderr
