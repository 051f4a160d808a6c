"""A fault-injecting HTTP proxy in front of the local API server (tests only).

The operator under test is given a kubeconfig that points here instead of at the API server;
every request is forwarded (watches streamed) unless the seeded schedule says to answer it with
a fault instead:

- ``"409"``: Conflict, as after a lost compare-and-swap;
- ``"429"``: TooManyRequests with ``Retry-After``, as API priority and fairness answers;
- ``"500"``: InternalError; ``"503"``: ServiceUnavailable;
- ``"slow"``: the request is forwarded after a delay;
- ``"kill-before"`` / ``"kill-after"``: the proxy's ``killer`` is called (the nemesis SIGKILLs the
  operator) before the request is forwarded (it never arrives) or after the API server answered
  it (the write is done, the operator never learns it).

Error answers are ``Status`` objects, as the API server writes them. The schedule is a list of
:class:`Rule`: the first rule whose method and path pattern match a request decides it, with
its explicit ``plan`` for the first matching requests and then a seeded draw. Every injected
fault is counted.

Watch streams get their own faults, each event with probability ``watch_rate`` (off by default):
``"watch-drop"`` (the connection is cut after the event), ``"watch-truncate"`` (half the event's
line is sent, then the connection is cut), ``"watch-duplicate"`` (the event is sent twice) and
``"watch-reorder"`` (the event is held back and sent after the next one).

:meth:`FaultProxy.partition` cuts the operator off: every request is held (no answer, no error,
as when packets are dropped) until :meth:`FaultProxy.heal`, which forwards the held requests
then, late, whether or not their client is still waiting.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

__all__ = ["FAULTS", "KILLS", "WATCH_FAULTS", "FaultProxy", "Rule"]

FAULTS = ("409", "429", "500", "503", "slow")
KILLS = ("kill-before", "kill-after")
WATCH_FAULTS = ("watch-drop", "watch-truncate", "watch-duplicate", "watch-reorder")
#: How long a reordered watch event waits for the next one before it is sent anyway.
REORDER_HOLD_SECONDS = 0.3

_REASONS = {
    "409": (409, "Conflict", "Operation cannot be fulfilled: the object has been modified (injected)"),
    "429": (429, "TooManyRequests", "the server has received too many requests (injected)"),
    "500": (500, "InternalError", "an error on the server prevented the request (injected)"),
    "503": (503, "ServiceUnavailable", "the server is currently unable to handle the request (injected)"),
}
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "keep-alive"}


@dataclass
class Rule:
    """Which requests get which faults.

    ``plan``: the faults (or None: forwarded) of the first matching requests, in order; after
    it, each matching request gets a fault with probability ``rate``, drawn from ``faults``,
    until ``limit`` faults were injected by this rule.
    """

    method: str
    path: str
    plan: list[str | None] = field(default_factory=list)
    rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    limit: int = 1_000_000
    matched: int = 0
    injected: int = 0

    def __post_init__(self) -> None:
        known = (*FAULTS, *KILLS)
        unknown = [f for f in (*self.plan, *self.faults) if f is not None and f not in known]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {known}")
        self._method = re.compile(self.method)
        self._path = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return bool(self._method.fullmatch(method) and self._path.search(path))

    def draw(self, rng: random.Random) -> str | None:
        index = self.matched
        self.matched += 1
        if self.injected >= self.limit:
            return None
        if index < len(self.plan):
            fault = self.plan[index]
        elif rng.random() < self.rate:
            fault = rng.choice(self.faults)
        else:
            fault = None
        if fault is not None:
            self.injected += 1
        return fault


class FaultProxy:
    """``async with FaultProxy(upstream, rules, seed=1) as proxy``: ``proxy.url`` forwards."""

    def __init__(
        self,
        upstream: str,
        rules: list[Rule],
        *,
        seed: int,
        slow_seconds: tuple[float, float] = (0.2, 1.0),
        watch_rate: float = 0.0,
        watch_faults: tuple[str, ...] = WATCH_FAULTS,
        killer: Callable[[str], Awaitable[bool]] | None = None,
        ssl: Any = None,
    ) -> None:
        """``killer(fault)``: kills the operator, True if it did (it may decline: one at a time).
        ``ssl``: for an https upstream, what aiohttp takes (an SSLContext)."""
        self.upstream = upstream.rstrip("/")
        self.rules = rules
        self.rng = random.Random(seed)
        self.slow_seconds = slow_seconds
        self.watch_rate = watch_rate
        self.watch_faults = watch_faults
        self.killer = killer
        self.ssl = ssl
        self._healed = asyncio.Event()
        self._healed.set()
        self._late: set[asyncio.Task[None]] = set()
        #: fault -> how many were injected.
        self.injected: Counter[str] = Counter()
        #: (method, path, fault) of every injected fault, in order.
        self.log: list[tuple[str, str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
            connector=aiohttp.TCPConnector(ssl=self.ssl) if self.ssl is not None else None,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.heal()
        if self._late:
            await asyncio.wait(self._late, timeout=10)
        # The upstream session first: that ends the watches still streamed, so that the
        # server's shutdown does not wait for them.
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, source: Path, target: Path) -> Path:
        """A copy of kubeconfig ``source`` (same credentials) whose server is this proxy."""
        config = yaml.safe_load(source.read_text())
        for cluster in config.get("clusters") or []:
            cluster["cluster"]["server"] = self.url
        target.write_text(yaml.safe_dump(config))
        return target

    def partition(self) -> None:
        """From now on hold every request (see the module docstring)."""
        self._healed.clear()

    def heal(self) -> None:
        """Forward the held requests, and the next ones at once."""
        self._healed.set()

    @property
    def partitioned(self) -> bool:
        return not self._healed.is_set()

    def count(self, fault: str, request: web.Request) -> None:
        self.injected[fault] += 1
        self.log.append((request.method, request.path, fault))

    def _decide(self, request: web.Request) -> str | None:
        if _is_watch(request):
            return None
        for rule in self.rules:
            if rule.matches(request.method, request.path):
                fault = rule.draw(self.rng)
                if fault in KILLS and self.killer is None:
                    return None
                return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle_faulty(request)
        except ConnectionResetError:  # the client went away (killed, or gave up): nobody to answer
            return web.Response(status=499)

    async def _handle_faulty(self, request: web.Request) -> web.StreamResponse:
        if self.partitioned:
            self.count("partition-held", request)
            data = await request.read()
            # Forwarded once healed even if the client gave up meanwhile: a packet that arrives
            # late. Shielded, so that the client's disconnection does not cancel it.
            late = asyncio.ensure_future(self._late_forward(request, data))
            self._late.add(late)
            late.add_done_callback(self._late.discard)
            await asyncio.shield(late)
            return web.Response(status=504, text="the client was partitioned; answered after healing")
        fault = self._decide(request)
        if fault in KILLS:
            assert self.killer is not None
            if fault == "kill-before":
                if await self.killer(fault):
                    self.count(fault, request)
                    await request.read()
                    return web.Response(status=503, text="the operator was killed before this request")
            else:
                response = await self._forward(request)
                if await self.killer(fault):
                    self.count(fault, request)
                return response
            fault = None
        if fault is not None:
            self.count(fault, request)
        if fault == "slow":
            await asyncio.sleep(self.rng.uniform(*self.slow_seconds))
        elif fault is not None:
            code, reason, message = _REASONS[fault]
            body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": reason, "code": code}  # fmt: skip
            headers = {"Retry-After": "1"} if fault == "429" else {}
            await request.read()
            # Exactly application/json, as the API server says (clients check it to parse a Status).
            return web.Response(
                body=json.dumps(body).encode(),
                status=code,
                headers={**headers, "Content-Type": "application/json"},
            )
        return await self._forward(request)

    async def _late_forward(self, request: web.Request, data: bytes) -> None:
        await self._healed.wait()
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        if _is_watch(request):
            return  # a watch held so long is of no use to anyone
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=data or None
            ) as upstream:
                await upstream.read()
                self.log.append((request.method, request.path, f"delivered-late:{upstream.status}"))
        except aiohttp.ClientError:
            pass  # the upstream went away meanwhile (the test is ending)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        data = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=data or None
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers[key] = value
            try:
                await response.prepare(request)
                if _is_watch(request) and upstream.status == 200 and self.watch_rate > 0:
                    await self._stream_watch(request, upstream, response)
                    return response
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # the client went away (a watch it closed): nothing more to forward
            return response

    async def _stream_watch(
        self, request: web.Request, upstream: aiohttp.ClientResponse, response: web.StreamResponse
    ) -> None:
        """Forward a watch event by event (one JSON line each), with the seeded watch faults."""
        held: bytes | None = None
        buffer = b""
        lines: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for chunk in upstream.content.iter_any():
                    await lines.put(chunk)
            finally:
                await lines.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(
                        lines.get(), timeout=REORDER_HOLD_SECONDS if held is not None else None
                    )
                except TimeoutError:
                    assert held is not None
                    await response.write(held)  # nothing came after it: sent anyway
                    held = None
                    continue
                if chunk is None:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    event = line + b"\n"
                    fault = (
                        self.rng.choice(self.watch_faults) if self.rng.random() < self.watch_rate else None
                    )
                    if fault is not None:
                        self.count(fault, request)
                    if fault == "watch-reorder" and held is None:
                        held = event
                        continue
                    if fault == "watch-truncate":
                        await response.write(event[: max(1, len(event) // 2)])
                        _cut(request)
                        return
                    await response.write(event)
                    if held is not None:
                        await response.write(held)
                        held = None
                    if fault == "watch-duplicate":
                        await response.write(event)
                    elif fault == "watch-drop":
                        _cut(request)
                        return
            if held is not None:
                await response.write(held)
            await response.write_eof()
        finally:
            reader.cancel()


def _is_watch(request: web.Request) -> bool:
    return request.query.get("watch") in ("true", "1")


def _cut(request: web.Request) -> None:
    """Close the client's connection abruptly (no end of the chunked stream)."""
    if request.transport is not None:
        request.transport.close()


def any_request(rate: float, faults: tuple[str, ...] = FAULTS, **kwargs: Any) -> list[Rule]:
    """Rules for every request of the operator's own kinds and the Variables' Leases.

    A read never gets a 409 (only writes are compared and swapped).
    """
    path = r"^/apis/(mabeam\.io|coordination\.k8s\.io)/"
    reads = tuple(f for f in faults if f != "409")
    return [
        Rule(method="POST|PUT|PATCH|DELETE", path=path, rate=rate, faults=faults, **kwargs),
        Rule(method="GET", path=path, rate=rate, faults=reads, **kwargs),
    ]
