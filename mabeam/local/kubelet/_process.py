"""Process groups: dying with the parent, signalling a group, waiting until none of it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["cancel", "die_with_parent", "group_alive", "kill_group", "killpg", "start_group"]

logger = logging.getLogger(__name__)


def _load_prctl() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # looked up here: a forked child must not import or dlopen


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Be sent ``sig`` when the parent dies (Linux only; elsewhere a no-op).

    In a child before exec (``preexec_fn``): killed with the parent. A process that must stop
    cleanly instead asks for SIGTERM and handles it.
    """
    if _PRCTL is not None:
        _PRCTL(1, sig)  # PR_SET_PDEATHSIG


async def start_group(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, output: IO[bytes] | None
) -> asyncio.subprocess.Process:
    """Start ``argv`` as the leader of a new process group (its own session) that dies with us;
    its output (stdout and stderr) goes to ``output``, or nowhere."""
    return await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output if output is not None else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.STDOUT if output is not None else asyncio.subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def group_alive(pgid: int) -> bool:
    """Whether a process group still has a member that is not a zombie (Linux: read /proc)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                return True
    return False  # only zombies, which their new parent (init) reaps


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait for it, cancelling again if a cancellation was swallowed."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        logger.debug("a cancelled task ended with %r", task.exception())


async def kill_group(pgid: int, timeout: float = 2.0) -> None:
    """SIGKILL a process group and wait (a bounded time) until none of its members runs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    killpg(pgid, signal.SIGKILL)
    while group_alive(pgid) and loop.time() < deadline:
        await asyncio.sleep(0.01)
        killpg(pgid, signal.SIGKILL)
