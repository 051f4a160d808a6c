"""``mabeam watch`` in-process, for the tests that count its frames."""

from __future__ import annotations

import asyncio
import io

from mabeam.cli import build_parser
from mabeam.local.cluster import LocalCluster
from tests.integration._util import eventually


def watching(cluster: LocalCluster, *argv: str) -> tuple[asyncio.Task[tuple[int, str]], io.StringIO]:
    """``mabeam watch ...`` started: its task (exit code, output) and its output so far."""
    args = build_parser().parse_args(["watch", *argv, "--kubeconfig", str(cluster.admin_kubeconfig)])
    out = io.StringIO()

    async def run() -> tuple[int, str]:
        code = await args.async_func(args, out)
        return code, out.getvalue()

    return asyncio.create_task(run()), out


async def drawn(watch: asyncio.Task[tuple[int, str]], out: io.StringIO, frames: int) -> None:
    """Until the watch has drawn ``frames`` frames (each ends with a blank line); it still runs."""

    async def check() -> bool:
        return out.getvalue().count("\n\n") >= frames

    await eventually(check, timeout=30, interval=0.02, what=f"{frames} frames drawn")
    assert not watch.done()
