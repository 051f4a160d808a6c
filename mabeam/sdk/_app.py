"""AgentApp: the agent's event loop, its identity and its callbacks."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MabeamError
from ..kube.client import Kube
from ..kube.resources import AGENT
from ._sessions import SessionCallbacks, SessionResponder
from ._trading import TradeResponder, TradingCallbacks
from ._variables import Variables

log = logging.getLogger("mabeam.sdk")

Callback = Callable[..., Any]


def default_ready_file() -> str | None:
    """Where the SDK says "ready" for the readiness probe (the operator sets it per Pod)."""
    return os.environ.get("MABEAM_READY_FILE") or None


@dataclass
class Context:
    """What a callback can use: who it is, the API, and a logger."""

    name: str
    namespace: str
    kube: Kube
    log: logging.Logger
    spec: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def variables(self) -> Variables:
        """The namespace's Variables: cached reads, watches, writes, locks (made on first use)."""
        return Variables(self.kube, self.namespace, self.name, priority=int(self.spec.get("priority") or 0))


async def call(fn: Callback, *args: Any, timeout: float | None = None) -> Any:
    """Run a sync or async callback, in a thread if it is sync, with an optional time limit."""
    if inspect.iscoroutinefunction(fn):
        coro: Awaitable[Any] = fn(*args)
    else:
        coro = asyncio.to_thread(fn, *args)
    return await asyncio.wait_for(coro, timeout) if timeout else await coro


class AgentApp:
    """One agent program. Register callbacks with the decorators, then :meth:`run`."""

    def __init__(
        self,
        name: str | None = None,
        namespace: str | None = None,
        *,
        kubeconfig: str | None = None,
        ready_file: str | None = None,
        callback_timeout: float = 10.0,
    ) -> None:
        self.name = name or os.environ.get("MABEAM_AGENT", "")
        self.namespace = namespace or os.environ.get("MABEAM_NAMESPACE", "default")
        self.kubeconfig = kubeconfig
        self.ready_file = ready_file or default_ready_file()
        self._on_start: list[Callback] = []
        self._sessions = SessionCallbacks()
        self._trading = TradingCallbacks()
        #: How long a session callback (on_vote, ...) may run before it counts as no answer.
        self.callback_timeout = callback_timeout
        self._stop = asyncio.Event()
        if not self.name:
            raise MabeamError("The agent has no name: set MABEAM_AGENT (the operator sets it in the Pod).")

    def on_start(self, fn: Callback) -> Callback:
        """Called once the agent has reached the API and read its own Agent object."""
        self._on_start.append(fn)
        return fn

    def on_vote(self, fn: Callback) -> Callback:
        """``fn(session) -> option | None``: answer the votes this agent takes part in."""
        self._sessions.on_vote = fn
        return fn

    def on_call_for_proposals(self, fn: Callback) -> Callback:
        """``fn(task) -> cost | Proposal | None``: bid in contract-net sessions."""
        self._sessions.on_call_for_proposals = fn
        return fn

    def on_award(self, fn: Callback) -> Callback:
        """``fn(task) -> bool``: confirm (True) or decline an award won in a contract net."""
        self._sessions.on_award = fn
        return fn

    def on_bid(self, fn: Callback) -> Callback:
        """``fn(auction) -> amount | bundles | None``: bid in sealed auctions (sealed for you)."""
        self._trading.on_bid = fn
        return fn

    def on_clock(self, fn: Callback) -> Callback:
        """``fn(auction) -> bool``: each round of a clock auction, stay in (english) or buy (dutch)
        at ``auction.price``."""
        self._trading.on_clock = fn
        return fn

    def on_order(self, fn: Callback) -> Callback:
        """``fn(market) -> {"side", "price", "quantity"} | None``: trade in double auctions."""
        self._trading.on_order = fn
        return fn

    def on_price(self, fn: Callback) -> Callback:
        """``fn(market, price) -> net demand``: buy (positive) or sell (negative) at ``price``
        in equilibrium markets; asked at every price of the market's grid."""
        self._trading.on_price = fn
        return fn

    def stop(self) -> None:
        self._stop.set()

    async def run_async(self) -> None:
        kube = Kube.connect(self.kubeconfig, namespace=self.namespace)
        ctx: Context | None = None
        try:
            me = await kube.get(AGENT, self.name, self.namespace)
            if me is None:
                raise MabeamError(f"Agent {self.namespace}/{self.name} does not exist.")
            ctx = Context(self.name, self.namespace, kube, log, spec=me.get("spec", {}))
            for fn in self._on_start:
                await call(fn, ctx)
            responders: list[asyncio.Task[None]] = []
            if self._sessions:
                answers = SessionResponder(
                    kube,
                    self.name,
                    self.namespace,
                    self._sessions,
                    agent_spec=ctx.spec,
                    timeout=self.callback_timeout,
                )
                responders.append(asyncio.ensure_future(answers.run()))
            if self._trading.wants_auctions() or self._trading.wants_markets():
                trader = TradeResponder(
                    kube,
                    self.name,
                    self.namespace,
                    self._trading,
                    agent_spec=ctx.spec,
                    timeout=self.callback_timeout,
                )
                responders.append(asyncio.ensure_future(trader.run()))
            self._mark_ready()
            log.info("agent %s/%s is ready", self.namespace, self.name)
            await self._stop.wait()
            for responder in responders:
                responder.cancel()
            await asyncio.gather(*responders, return_exceptions=True)
        finally:
            if ctx is not None and "variables" in ctx.__dict__:
                await ctx.variables.close()
            await kube.close()

    def _mark_ready(self) -> None:
        if self.ready_file:
            Path(self.ready_file).write_text("ready\n")

    def run(self) -> None:
        """Run until SIGTERM or SIGINT (what the kubelet sends when the Pod stops)."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            await self.run_async()

        asyncio.run(main())
