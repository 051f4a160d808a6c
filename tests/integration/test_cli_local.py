"""`mabeam local` serves the local control plane until it is stopped; kubectl-style clients work.

However it is stopped (SIGTERM, SIGINT, SIGHUP, the death of the process that started it), it
stops its agent pods cleanly (each gets SIGTERM) and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT
from tests.integration._util import eventually

ROOT = Path(__file__).parents[2]

# An agent that says when it gets SIGTERM, so that a clean stop is told apart from a kill.
TRAP = (
    "import signal, sys, time\n"
    "def stop(*_):\n"
    "    print('got SIGTERM', flush=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('running', flush=True)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)

# The parent that dies: it starts `mabeam local`, says its pid, and waits to be killed.
PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(3600)\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has ended; only its parent reaps it


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def trap_agent() -> dict[str, Any]:
    container = {"name": "agent", "image": "example/agent:1", "command": [sys.executable, "-c", TRAP]}
    return {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "trap", "namespace": "default"},
        "spec": {"capabilities": ["vote"], "template": {"spec": {"containers": [container]}}},
    }


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "SIGHUP", "parent killed"])
async def test_mabeam_local_runs_agents_and_stops_every_pod(tmp_path: Path, stop: str) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    local = [
        *("-m", "mabeam.cli", "local", "--port", str(port), "--operator"),
        *("--workdir", str(tmp_path / "wd"), "--write-kubeconfig", str(kubeconfig)),
    ]
    argv = ["-c", PARENT, sys.executable, *local] if stop == "parent killed" else local
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    output: list[bytes] = []

    async def read_until(text: bytes) -> None:
        assert process.stdout is not None
        while not output or text not in output[-1]:
            output.append(await asyncio.wait_for(process.stdout.readline(), 30))
            assert output[-1], f"mabeam local ended early: {b''.join(output).decode()}"

    try:
        pid = process.pid
        if stop == "parent killed":
            pid = int(await asyncio.wait_for(process.stdout.readline(), 30))
        await read_until(b"Local Kubernetes API")
        assert f"127.0.0.1:{port}" in output[-1].decode()
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"].endswith(f":{port}")

        kube = Kube.connect(kubeconfig)
        try:
            body = next(yaml.safe_load_all((ROOT / "examples" / "agents.yaml").read_text()))
            body["metadata"]["name"] = "solo"
            await kube.create(AGENT, body)
            await kube.create(AGENT, trap_agent())

            async def ready(name: str) -> dict[str, Any] | None:
                status = ((await kube.get(AGENT, name, "default")) or {}).get("status") or {}
                return status if status.get("phase") == "Ready" else None

            await eventually(lambda: ready("solo"), timeout=30, what="solo Ready under `mabeam local`")
            trap = await eventually(lambda: ready("trap"), timeout=30, what="trap Ready")
        finally:
            await kube.close()
        trap_log = tmp_path / "wd" / "pods" / f"default_{trap['podName']}_agent.log"
        await eventually(
            lambda: asyncio.to_thread(lambda: "running" in trap_log.read_text()), what="the trap running"
        )
        pods = descendants(pid)
        assert len(pods) >= 2, pods  # the two agents at least

        if stop == "parent killed":
            process.kill()
        else:
            process.send_signal(getattr(signal, stop))
        await read_until(b"Stopped on")
        assert (stop if stop.startswith("SIG") else "SIGTERM").encode() in output[-1]  # PDEATHSIG: SIGTERM
    except BaseException:
        process.kill()  # the parent, or mabeam local itself (its pods die with it)
        raise
    finally:
        output.append((await asyncio.wait_for(process.communicate(), 60))[0])

    if stop != "parent killed":
        assert process.returncode == 0, b"".join(output).decode()
    await eventually(lambda: asyncio.to_thread(lambda: not alive(pid)), what="mabeam local gone")
    await eventually(
        lambda: asyncio.to_thread(lambda: not [p for p in pods if alive(p)]),
        what="no process of mabeam local left",
    )
    assert "got SIGTERM" in trap_log.read_text()  # stopped cleanly, not killed with its parent


async def test_kubectl_works_against_mabeam_local(tmp_path: Path) -> None:
    """The printed hint works as on a cluster: kubectl apply (validated on the server), get with
    our printer columns, explain and logs, with the kubeconfig `mabeam local` writes (TLS)."""
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "mabeam.cli", "local", "--port", str(port), "--operator"),
        *("--workdir", str(tmp_path / "wd"), "--write-kubeconfig", str(kubeconfig)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}

    async def kubectl(*args: str, stdin: str | None = None) -> str:
        run = await asyncio.create_subprocess_exec(
            "kubectl",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(run.communicate(stdin.encode() if stdin else None), 60)
        assert run.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
        return out.decode()

    try:
        line = b""
        while b"Local Kubernetes API" not in line:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "mabeam local ended early"
        assert f"https://127.0.0.1:{port}" in line.decode()
        assert "agent.mabeam.io/trap created" in await kubectl(
            "apply", "-f", "-", stdin=yaml.safe_dump(trap_agent())
        )

        async def ready() -> list[str] | None:
            rows = [r.split() for r in (await kubectl("get", "agents")).splitlines()]
            return rows[1] if rows[1][1] == "Ready" else None

        row = await eventually(ready, timeout=30, what="trap Ready in kubectl get agents")
        assert (await kubectl("get", "agents")).split()[:5] == ["NAME", "PHASE", "POD", "RESTARTS", "AGE"]
        assert row[0] == "trap" and row[2].startswith("trap")
        await eventually(
            lambda: _contains(kubectl("logs", row[2]), "running"), what="kubectl logs of the trap"
        )
        assert "Voting weight" in await kubectl("explain", "agent.spec.weight")
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0


async def _contains(output: Any, text: str) -> bool:
    return text in await output
