"""`mabeam local` serves the local control plane until interrupted; kubectl-style clients work."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import yaml

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT
from tests.integration._util import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_mabeam_local_serves_crds_and_runs_agents_with_operator(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mabeam.cli",
        "local",
        "--port",
        str(port),
        "--workdir",
        str(tmp_path / "wd"),
        "--write-kubeconfig",
        str(kubeconfig),
        "--operator",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        line = b""
        while b"Local Kubernetes API" not in line:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "mabeam local ended before it served"
        assert f"127.0.0.1:{port}" in line.decode()
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"].endswith(f":{port}")

        kube = Kube.connect(kubeconfig)
        try:
            path = Path(__file__).parents[2] / "examples" / "agents.yaml"
            body = next(yaml.safe_load_all(path.read_text()))
            body["metadata"]["name"] = "solo"
            await kube.create(AGENT, body)

            async def ready() -> bool:
                agent = await kube.get(AGENT, "solo", "default")
                return bool(agent and (agent.get("status") or {}).get("phase") == "Ready")

            await eventually(ready, timeout=30, what="the agent Ready under `mabeam local --operator`")
        finally:
            await kube.close()
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, out.decode()
    assert "Stopped" in out.decode()
