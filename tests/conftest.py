"""Fixtures for every test directory: the suite leaves no process behind.

At the start of the session pytest becomes a *child subreaper* (Linux ``prctl``): a process
that a test started and whose parent exits (an agent process whose kubelet went away, a
``mabeam local`` server started with ``setsid``) is re-parented to pytest instead of to init, so
that it stays visible as a descendant. At the end of the session every descendant still running
is a leak: the session fails, naming each one with its command line.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_PR_SET_CHILD_SUBREAPER = 36
#: How long processes that are being stopped (SIGTERM sent, grace period running) may take.
_GRACE_SECONDS = float(os.environ.get("MABEAM_TEST_PROCESS_GRACE", "10"))


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out.update(int(c) for c in task.read_text().split())
        except OSError:
            continue  # the thread ended meanwhile
    return out


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return stat.rsplit(")", 1)[1].split()[0]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def living_descendants(root: int) -> dict[int, str]:
    """Every running (not zombie) descendant of ``root``: pid -> command line."""
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in _children(todo.pop()):
            if child in found:
                continue
            todo.append(child)
            if _state(child) not in ("Z", "X"):
                found[child] = _cmdline(child)
    return found


def _reap_zombies() -> None:
    """Collect the exit status of orphans re-parented to pytest that have ended."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    before = set(living_descendants(os.getpid()))
    yield
    deadline = time.monotonic() + _GRACE_SECONDS
    while True:
        if subreaper:
            _reap_zombies()
        left = {p: c for p, c in living_descendants(os.getpid()).items() if p not in before}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # processes being stopped get their grace period; nothing to wait on
    if left:
        listing = "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(left.items()))
        pytest.fail(f"the tests left {len(left)} process(es) running:\n{listing}", pytrace=False)
