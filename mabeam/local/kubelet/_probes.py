"""Readiness probes: ``exec`` (a command in the container's environment) and ``httpGet`` on
127.0.0.1; a container with a probe is ready once it passes, and not ready after it fails
``failureThreshold`` times in a row. ``tcpSocket`` and ``grpc`` probes never pass."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import aiohttp

from ._pods import POD_IP, Container, Pod
from ._process import kill_group, killpg, start_group

__all__ = ["Prober"]


class Prober:
    """Probes containers: ``python`` replaces a leading ``python``/``python3`` of an exec probe;
    ``period`` overrides every probe's periodSeconds; ``report`` is called when readiness changes."""

    def __init__(self, *, python: str, period: float | None, report: Callable[[Pod], None]) -> None:
        self.python = python
        self.period = period
        self.report = report
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def run(
        self,
        rt: Pod,
        c: Container,
        probe: dict[str, Any],
        env: dict[str, str],
        cwd: str | None,
        proc: asyncio.subprocess.Process,
    ) -> None:
        """Probe until the container's process ends (the loop also stops by itself: a
        cancellation can be lost inside ``asyncio.wait_for`` on Python 3.11)."""
        period = self.period if self.period is not None else float(probe.get("periodSeconds", 10))
        timeout = float(probe.get("timeoutSeconds", 1))
        success_threshold = int(probe.get("successThreshold", 1))
        failure_threshold = int(probe.get("failureThreshold", 3))
        successes = failures = 0
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        while proc.returncode is None and not rt.terminating:
            ok = await self.once(c, probe, env, cwd, timeout)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and not c.ready and successes >= success_threshold:
                c.ready = True
                self.report(rt)
            elif not ok and c.ready and failures >= failure_threshold:
                c.ready = False
                self.report(rt)
            await asyncio.sleep(period)

    async def once(
        self, c: Container, probe: dict[str, Any], env: dict[str, str], cwd: str | None, timeout: float
    ) -> bool:
        if "exec" in probe:
            return await self._exec(probe, env, cwd, timeout)
        if "httpGet" in probe:
            return await self._http_get(c, probe, timeout)
        return False  # tcpSocket, grpc: not supported, never ready

    async def _exec(
        self, probe: dict[str, Any], env: dict[str, str], cwd: str | None, timeout: float
    ) -> bool:
        command = [str(a) for a in (probe["exec"] or {}).get("command") or []]
        if command and command[0] in ("python", "python3"):
            command[0] = self.python
        try:
            proc = await start_group(command, env=env, cwd=cwd, output=None)
        except (OSError, ValueError):
            return False
        try:
            return await asyncio.wait_for(proc.wait(), timeout) == 0
        except TimeoutError:
            return False
        finally:
            killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            await kill_group(proc.pid)

    async def _http_get(self, c: Container, probe: dict[str, Any], timeout: float) -> bool:
        get = probe["httpGet"] or {}
        port = get.get("port")
        if isinstance(port, str) and not port.isdigit():
            named = [p for p in c.spec.get("ports") or [] if p.get("name") == port]
            port = named[0].get("containerPort") if named else None
        if port is None or self._session is None:
            return False
        scheme = str(get.get("scheme", "HTTP")).lower()
        url = f"{scheme}://{get.get('host') or POD_IP}:{port}{get.get('path') or '/'}"
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
        try:
            async with self._session.get(
                url, headers=headers, ssl=False, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                return 200 <= resp.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False
