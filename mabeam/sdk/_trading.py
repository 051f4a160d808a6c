"""Answering auctions and markets: the agent side of bids, clock rounds and orders.

The SDK watches the Auctions and Markets of the agent's namespace and answers what is asked of
this agent (it is among ``status.participants``):

- sealed auctions (first-price, second-price, combinatorial) while ``Bidding``:
  ``on_bid(auction)`` returns an amount, or for a combinatorial auction bundles (a mapping of
  item tuples to amounts, or a list of ``{"items": [...], "amount": ...}``), or None (no bid).
  The SDK seals the bid: it writes only the commitment (SHA-256 of the bid and a nonce), keeps
  the bid in memory, and reveals it when the auction moves to ``Revealing``. With a bid key
  (``MABEAM_BID_KEY``, e.g. from a Secret) the nonce is derived from it, so an agent restarted
  between commit and reveal can still reveal (``on_bid`` is asked again and must give the same
  bid). The key and the nonces are never logged.
- clock auctions (english, dutch), once per round: ``on_clock(auction)`` sees
  ``auction.price`` and returns True to stay in (english) or to buy (dutch).
- double-auction markets: ``on_order(market)`` returns ``{"side": "buy"|"sell", "price": ...,
  "quantity": ...}`` (or None).
- equilibrium markets: ``on_price(market, price)`` returns the agent's net demand at ``price``
  (positive buys, negative sells); the SDK asks it at every price of the market's grid and sends
  the schedule.

Answers are the Bid ``<auction>-<agent>`` and the Order ``<market>-<agent>``, written with the
agent's own credentials. A callback that raises or times out gives no answer (logged).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import inspect
import logging
import os
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pydantic

from ..core.economics import commitment
from ..kube.client import Kube
from ..kube.resources import AUCTION, BID, MARKET, ORDER, Res
from ..models._amount import dump_amount, parse_amount
from ..models.auction import SEALED_MECHANISMS, AuctionSpec, AuctionStatus, BidReveal, bid_name
from ..models.market import MarketSpec, MarketStatus, order_name
from ._sessions import Callback, watch_forever, write_answer

log = logging.getLogger("mabeam.sdk")

BID_KEY_ENV = "MABEAM_BID_KEY"


@dataclass(frozen=True)
class AuctionView:
    """An auction as a callback sees it (``on_bid``, ``on_clock``)."""

    name: str
    namespace: str
    mechanism: str
    items: tuple[str, ...]
    reserve_price: Decimal
    deadline: dt.datetime | None
    participants: tuple[str, ...]
    agent: str
    #: Clock mechanisms: the current round and its price.
    round: int | None = None
    price: Decimal | None = None
    agent_spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MarketView:
    """A market as a callback sees it (``on_order``, ``on_price``)."""

    name: str
    namespace: str
    mechanism: str
    good: str
    deadline: dt.datetime | None
    participants: tuple[str, ...]
    agent: str
    #: equilibrium: the prices the market may clear at, lowest first.
    prices: tuple[Decimal, ...] = ()
    agent_spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class TradingCallbacks:
    on_bid: Callback | None = None
    on_clock: Callback | None = None
    on_order: Callback | None = None
    on_price: Callback | None = None

    def wants_auctions(self) -> bool:
        return self.on_bid is not None or self.on_clock is not None

    def wants_markets(self) -> bool:
        return self.on_order is not None or self.on_price is not None


def bid_reveal(value: Any, nonce: str) -> BidReveal | None:
    """A callback's sealed bid as a reveal (None: no bid)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a bid is an amount or bundles, not a boolean")
    if isinstance(value, int | float):
        return BidReveal(amount=float(value), nonce=nonce)
    if isinstance(value, Mapping):
        bundles = [{"items": list(items), "amount": float(amount)} for items, amount in value.items()]
    else:
        bundles = list(value)
    return BidReveal.model_validate({"bundles": bundles, "nonce": nonce})


def order_fields(value: Any) -> dict[str, Any] | None:
    """A callback's order as the Order's spec fields (None: no order)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError("an order is a mapping with side, price and quantity")
    side = str(value["side"])
    if side not in ("buy", "sell"):
        raise ValueError(f"an order's side is buy or sell, not {side!r}")
    return {"side": side, "price": float(value["price"]), "quantity": int(value.get("quantity", 1))}


def compress_schedule(points: list[tuple[Decimal | float, float]]) -> list[dict[str, Any]]:
    """A step function from (price, quantity) samples, prices rising: only where it changes.

    Prices are written in an amount's wire form (:func:`mabeam.models._amount.dump_amount`)."""
    out: list[dict[str, Any]] = []
    for price, quantity in points:
        if not out or out[-1]["quantity"] != quantity:
            out.append({"price": dump_amount(parse_amount(price)), "quantity": quantity})
    return out


class TradeResponder:
    """Watches the namespace's Auctions and Markets and answers what is asked of ``agent``."""

    def __init__(
        self,
        kube: Kube,
        agent: str,
        namespace: str,
        callbacks: TradingCallbacks,
        *,
        agent_spec: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
        bid_key: bytes | None = None,
    ) -> None:
        self.kube = kube
        self.agent = agent
        self.namespace = namespace
        self.callbacks = callbacks
        self.agent_spec = dict(agent_spec or {})
        self.timeout = timeout
        key = os.environ.get(BID_KEY_ENV)
        self.bid_key = bid_key if bid_key is not None else (key.encode() if key else None)
        self._handled: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Auction uid -> the sealed bid committed to, until it is revealed.
        self._sealed: dict[str, BidReveal] = {}

    async def run(self) -> None:
        """Watch until cancelled; a broken watch is resumed after a short pause."""
        watches = []
        if self.callbacks.wants_auctions():
            watches.append(self._watch(AUCTION))
        if self.callbacks.wants_markets():
            watches.append(self._watch(MARKET))
        try:
            await asyncio.gather(*watches)
        finally:
            for task in self._tasks:
                task.cancel()

    async def _watch(self, res: Res) -> None:
        await watch_forever(self.kube, res, self.namespace, lambda obj: self.consider(res, obj))

    def consider(self, res: Res, obj: dict[str, Any]) -> None:
        """Start answering ``obj`` if it asks something of this agent not answered yet."""
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        if meta.get("deletionTimestamp") or not any(
            p.get("name") == self.agent for p in status.get("participants") or ()
        ):
            return
        try:
            request = self._auction(obj) if res == AUCTION else self._market(obj)
        except pydantic.ValidationError as exc:
            log.warning("%s %s cannot be answered: %s", res.kind, meta.get("name"), exc)
            return
        if request is None:
            return
        key, answer = request
        if key in self._handled:
            return
        self._handled.add(key)
        task = asyncio.ensure_future(answer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- auctions ----------------------------------------------------------------------------

    def _auction(
        self, obj: dict[str, Any]
    ) -> tuple[tuple[str, str], Callable[[], Coroutine[Any, Any, None]]] | None:
        meta = obj["metadata"]
        name, uid = str(meta["name"]), str(meta.get("uid", meta["name"]))
        spec = AuctionSpec.model_validate(obj.get("spec") or {})
        status = AuctionStatus.model_validate(obj.get("status") or {})
        view = AuctionView(
            name=name,
            namespace=self.namespace,
            mechanism=spec.mechanism,
            items=tuple(spec.items),
            reserve_price=spec.reserve_price,
            deadline=status.deadline,
            participants=tuple(p.name for p in status.participants),
            agent=self.agent,
            round=status.round,
            price=status.clock_price,
            agent_spec=self.agent_spec,
        )
        on_bid, on_clock = self.callbacks.on_bid, self.callbacks.on_clock
        if spec.mechanism in SEALED_MECHANISMS:
            if on_bid is None:
                return None
            if status.phase == "Bidding":
                return (uid, "commit"), lambda: self._commit(on_bid, view, uid, meta)
            mine = next((b for b in status.bids if b.agent == self.agent), None)
            if status.phase == "Revealing" and mine is not None and mine.commitment and not mine.revealed:
                return (uid, "reveal"), lambda: self._reveal(on_bid, view, uid, meta, str(mine.commitment))
            return None
        if on_clock is None or status.phase != "Bidding" or status.round is None:
            return None
        if spec.mechanism == "english" and self.agent not in status.active:
            return None
        return (uid, f"round-{status.round}"), lambda: self._clock(on_clock, view, meta)

    def _nonce(self, view: AuctionView, uid: str) -> str:
        if self.bid_key is None:
            return secrets.token_hex(16)
        message = f"{view.namespace}/{view.name}/{uid}/{self.agent}".encode()
        return hmac.new(self.bid_key, message, hashlib.sha256).hexdigest()

    async def _sealed_bid(self, fn: Callback, view: AuctionView, uid: str) -> BidReveal | None:
        ok, value = await self._ask(fn, (view,), "on_bid", view.name)
        if not ok:
            return None
        try:
            return bid_reveal(value, self._nonce(view, uid))
        except pydantic.ValidationError as exc:
            # Name the problems, never the input: it holds the nonce.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)
            )
            log.warning("on_bid for auction %s gave no valid bid: %s", view.name, problems)
            return None
        except (TypeError, ValueError) as exc:
            log.warning("on_bid for auction %s gave no valid bid: %s", view.name, exc)
            return None

    async def _commit(self, fn: Callback, view: AuctionView, uid: str, meta: Mapping[str, Any]) -> None:
        reveal = await self._sealed_bid(fn, view, uid)
        if reveal is None:
            return
        self._sealed[uid] = reveal
        await self._write(BID, AUCTION, meta, "auction", {"commitment": commitment(reveal)})
        log.info("committed a sealed bid in auction %s", view.name)

    async def _reveal(
        self, fn: Callback, view: AuctionView, uid: str, meta: Mapping[str, Any], committed: str
    ) -> None:
        reveal = self._sealed.get(uid)
        if reveal is None and self.bid_key is not None:
            reveal = await self._sealed_bid(fn, view, uid)  # restarted: derive it again
        if reveal is None or commitment(reveal) != committed:
            log.warning(
                "cannot reveal the bid in auction %s: the bid committed to is not known here "
                "(set %s so that a restarted agent can reveal)",
                view.name,
                BID_KEY_ENV,
            )
            return
        await self._write(
            BID, AUCTION, meta, "auction", {"reveal": reveal.model_dump(mode="json", exclude_none=True)}
        )
        self._sealed.pop(uid, None)
        log.info("revealed the sealed bid in auction %s", view.name)

    async def _clock(self, fn: Callback, view: AuctionView, meta: Mapping[str, Any]) -> None:
        ok, accept = await self._ask(fn, (view,), "on_clock", view.name)
        if ok and accept is not None:
            await self._write(BID, AUCTION, meta, "auction", {"round": view.round, "accept": bool(accept)})

    # --- markets -----------------------------------------------------------------------------

    def _market(
        self, obj: dict[str, Any]
    ) -> tuple[tuple[str, str], Callable[[], Coroutine[Any, Any, None]]] | None:
        meta = obj["metadata"]
        name, uid = str(meta["name"]), str(meta.get("uid", meta["name"]))
        spec = MarketSpec.model_validate(obj.get("spec") or {})
        status = MarketStatus.model_validate(obj.get("status") or {})
        if status.phase != "Collecting":
            return None
        view = MarketView(
            name=name,
            namespace=self.namespace,
            mechanism=spec.mechanism,
            good=spec.good,
            deadline=status.deadline,
            participants=tuple(p.name for p in status.participants),
            agent=self.agent,
            prices=tuple(spec.price_grid.prices()) if spec.price_grid is not None else (),
            agent_spec=self.agent_spec,
        )
        on_order, on_price = self.callbacks.on_order, self.callbacks.on_price
        if spec.mechanism == "double-auction" and on_order is not None:
            return (uid, "order"), lambda: self._order(on_order, view, meta)
        if spec.mechanism == "equilibrium" and on_price is not None:
            return (uid, "schedule"), lambda: self._schedule(on_price, view, meta)
        return None

    async def _order(self, fn: Callback, view: MarketView, meta: Mapping[str, Any]) -> None:
        ok, value = await self._ask(fn, (view,), "on_order", view.name)
        if not ok:
            return
        try:
            fields = order_fields(value)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("on_order for market %s gave no valid order: %s", view.name, exc)
            return
        if fields is not None:
            await self._write(ORDER, MARKET, meta, "market", fields)

    async def _schedule(self, fn: Callback, view: MarketView, meta: Mapping[str, Any]) -> None:
        points: list[tuple[Decimal | float, float]] = []
        for price in view.prices:
            ok, quantity = await self._ask(fn, (view, price), "on_price", view.name)
            if not ok or quantity is None:
                return
            try:
                points.append((price, float(quantity)))
            except (TypeError, ValueError):
                log.warning("on_price for market %s gave %r, not a number: no order", view.name, quantity)
                return
        if points:
            await self._write(ORDER, MARKET, meta, "market", {"schedule": compress_schedule(points)})

    # --- shared ------------------------------------------------------------------------------

    async def _ask(self, fn: Callback, args: tuple[Any, ...], what: str, session: str) -> tuple[bool, Any]:
        try:
            if inspect.iscoroutinefunction(fn):
                return True, await asyncio.wait_for(fn(*args), self.timeout)
            return True, await asyncio.wait_for(asyncio.to_thread(fn, *args), self.timeout)
        except TimeoutError:
            log.warning("%s callback for %s timed out after %gs: no answer", what, session, self.timeout)
        except Exception:
            log.exception("%s callback for %s failed: no answer", what, session)
        return False, None

    async def _write(
        self, res: Res, owner: Res, meta: Mapping[str, Any], field_name: str, fields: Mapping[str, Any]
    ) -> None:
        session = str(meta["name"])
        name = bid_name(session, self.agent) if res == BID else order_name(session, self.agent)
        await write_answer(
            self.kube,
            res,
            owner,
            name=name,
            namespace=self.namespace,
            session=session,
            session_uid=meta.get("uid"),
            agent=self.agent,
            spec={field_name: session, "agent": self.agent},
            fields=fields,
        )
