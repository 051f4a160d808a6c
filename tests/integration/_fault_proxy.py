"""A fault-injecting HTTP proxy in front of the local API server (tests only).

The operator under test is given a kubeconfig that points here instead of at the API server;
every request is forwarded (watches streamed) unless the seeded schedule says to answer it with
a fault instead:

- ``"409"``: Conflict, as after a lost compare-and-swap;
- ``"429"``: TooManyRequests with ``Retry-After``, as API priority and fairness answers;
- ``"500"``: InternalError; ``"503"``: ServiceUnavailable;
- ``"slow"``: the request is forwarded after a delay.

Error answers are ``Status`` objects, as the API server writes them. The schedule is a list of
:class:`Rule`: the first rule whose method and path pattern match a request decides it, with
its explicit ``plan`` for the first matching requests and then a seeded draw. Watches are
never faulted (their faults are another matter). Every injected fault is counted.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

__all__ = ["FAULTS", "FaultProxy", "Rule"]

FAULTS = ("409", "429", "500", "503", "slow")

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
        unknown = [f for f in (*self.plan, *self.faults) if f is not None and f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {FAULTS}")
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
        self, upstream: str, rules: list[Rule], *, seed: int, slow_seconds: tuple[float, float] = (0.2, 1.0)
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules = rules
        self.rng = random.Random(seed)
        self.slow_seconds = slow_seconds
        #: fault -> how many were injected.
        self.injected: Counter[str] = Counter()
        #: (method, path, fault) of every injected fault, in order.
        self.log: list[tuple[str, str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
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

    def _decide(self, request: web.Request) -> str | None:
        if request.query.get("watch") in ("true", "1"):
            return None
        for rule in self.rules:
            if rule.matches(request.method, request.path):
                return rule.draw(self.rng)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._decide(request)
        if fault is not None:
            self.injected[fault] += 1
            self.log.append((request.method, request.path, fault))
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
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # the client went away (a watch it closed): nothing more to forward
            return response


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
