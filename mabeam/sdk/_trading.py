"""Answering auctions and markets: the agent side of bids, clock rounds and orders.

The SDK watches the Auctions and Markets of the agent's namespace and answers what is asked of
this agent (it is among ``status.participants``):

- sealed auctions (first-price, second-price, combinatorial) while ``Bidding``:
  ``on_bid(auction)`` returns an amount, or for a combinatorial auction bundles (a mapping of
  item tuples to amounts, or a list of ``{"items": [...], "amount": ...}``), or None (no bid).
  The SDK seals the bid (:func:`seal_bid`): it encrypts it to the operator's public key that
  the Auction publishes in ``status.sealing``, bound to the Auction's uid and this agent's name,
  and writes only the ciphertext (``spec.sealed``). Only the operator can open it, when bidding
  closes; there is nothing to reveal afterwards. Amounts are never logged.
- clock auctions (english, dutch), once per round: ``on_clock(auction)`` sees
  ``auction.price`` and returns True to stay in (english) or to buy (dutch).
- double-auction markets: ``on_order(market)`` returns ``{"side": "buy"|"sell", "price": ...,
  "quantity": ...}`` (or None).
- fisher markets: ``on_order(market)`` returns ``{"budget": ..., "utilities": {good: value}}``
  (or None): the money to spend and the utility of one unit of each good wanted (the goods are
  in ``market.goods``, their supplies in ``market.supplies``).
- equilibrium markets: ``on_price(market, price)`` returns the agent's net demand at ``price``
  (positive buys, negative sells); the SDK asks it at every price of the market's grid and sends
  the schedule.

Orders are sealed like bids (:func:`seal_order`, to the Market's ``status.sealing``).

Answers are the Bid ``<auction>-<agent>`` and the Order ``<market>-<agent>``, written with the
agent's own credentials. A callback that raises or times out gives no answer (logged).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import pydantic

from ..core.economics.sealing import seal
from ..errors import ApiError
from ..kube.client import Kube
from ..kube.resources import ACCOUNT, AUCTION, BID, MARKET, ORDER, Res
from ..models._amount import dump_amount, parse_amount
from ..models._sealed import SealedEnvelope, SealingInfo
from ..models.account import GOODS_UNITS, MINOR_UNITS, AccountStatus
from ..models.auction import SEALED_MECHANISMS, AuctionSpec, AuctionStatus, BidContent, bid_name
from ..models.market import MarketSpec, MarketStatus, OrderContent, order_name
from ._sessions import Answering, Callback, Requests, watch_forever, write_answer

log = logging.getLogger("mabeam.sdk")


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
    #: Ledger when the auction is paid from Accounts, None or "None" when not.
    payment: str | None = None
    #: Paid from Accounts (``status.payment`` Ledger): what this agent may commit here, its free
    #: balance plus what this auction already holds for it. A bid whose most it can cost is
    #: above it is refused (OverBudget). None when the auction is not paid from Accounts.
    balance: Decimal | None = None


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
    #: fisher: the goods on sale (in the spec's order) and the supply of each.
    goods: tuple[str, ...] = ()
    supplies: Mapping[str, Decimal] = field(default_factory=dict)
    agent_spec: Mapping[str, Any] = field(default_factory=dict)
    #: As :attr:`AuctionView.payment`.
    payment: str | None = None
    #: As :attr:`AuctionView.balance`: what a buy order may cost at most (None: not paid).
    balance: Decimal | None = None
    #: Paid from Accounts, a double auction or an equilibrium: how much of :attr:`good` this
    #: agent may sell here (its free holding plus what this market already holds of it); a sell
    #: order beyond it is refused (NotHeld). None when the market is not paid from Accounts.
    holding: Decimal | None = None


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


def bid_content(value: Any) -> BidContent | None:
    """A callback's sealed bid as the content to seal (None: no bid)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a bid is an amount or bundles, not a boolean")
    if isinstance(value, int | float | Decimal | str):
        return BidContent.model_validate({"amount": value})
    if isinstance(value, Mapping):
        bundles = [{"items": list(items), "amount": amount} for items, amount in value.items()]
    else:
        bundles = list(value)
    return BidContent.model_validate({"bundles": bundles})


def _seal(
    info: SealingInfo, kind: str, session_uid: str, agent: str, content: pydantic.BaseModel
) -> SealedEnvelope:
    """``content`` sealed to the operator's key ``info`` with fresh randomness, bound to the
    kind of answer, the session's uid and the agent; ValueError for a bad key."""
    payload = content.model_dump(mode="json", exclude_none=True)
    return seal(info, kind, session_uid, agent, payload, ephemeral=os.urandom(32), nonce=os.urandom(12))


def seal_bid(info: SealingInfo, auction_uid: str, agent: str, content: BidContent) -> SealedEnvelope:
    """``agent``'s bid in the auction ``auction_uid``, sealed to the Auction's ``status.sealing``."""
    return _seal(info, "Bid", auction_uid, agent, content)


def seal_order(info: SealingInfo, market_uid: str, agent: str, content: OrderContent) -> SealedEnvelope:
    """``agent``'s order in the market ``market_uid``, sealed to the Market's ``status.sealing``."""
    return _seal(info, "Order", market_uid, agent, content)


def order_fields(value: Any) -> dict[str, Any] | None:
    """A callback's order as the Order's spec fields (None: no order): a limit order (side, price,
    quantity) or a fisher order (budget, utilities)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError("an order is a mapping with side, price and quantity (or budget and utilities)")
    if "budget" in value:
        utilities = value.get("utilities")
        if not isinstance(utilities, Mapping):
            raise TypeError("a fisher order's utilities map each good to its utility per unit")
        budget = dump_amount(parse_amount(value["budget"]))
        return {"budget": budget, "utilities": {str(g): float(u) for g, u in utilities.items()}}
    side = str(value["side"])
    if side not in ("buy", "sell"):
        raise ValueError(f"an order's side is buy or sell, not {side!r}")
    price = dump_amount(parse_amount(value["price"]))
    return {"side": side, "price": price, "quantity": int(value.get("quantity", 1))}


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
    ) -> None:
        self.kube = kube
        self.agent = agent
        self.namespace = namespace
        self.callbacks = callbacks
        self.agent_spec = dict(agent_spec or {})
        self.timeout = timeout
        self.requests = Requests()  # by (session uid, what)

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
            await self.requests.cancel()

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
        if request is not None:
            self.requests.answer(*request)

    # --- auctions ----------------------------------------------------------------------------

    def _auction(self, obj: dict[str, Any]) -> tuple[tuple[str, str], Answering] | None:
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
            payment=status.payment,
        )
        on_bid, on_clock = self.callbacks.on_bid, self.callbacks.on_clock
        if spec.mechanism in SEALED_MECHANISMS:
            if on_bid is None:
                return None
            sealing = status.sealing
            if status.phase != "Bidding" or sealing is None:
                return None
            bound = str(meta.get("uid") or "")  # what the sealed bid names: the Auction's uid
            return (uid, "bid"), lambda: self._bid(on_bid, view, bound, sealing, meta)
        if on_clock is None or status.phase != "Bidding" or status.round is None:
            return None
        if spec.mechanism == "english" and self.agent not in status.active:
            return None
        return (uid, f"round-{status.round}"), lambda: self._clock(on_clock, view, meta)

    async def _bid(
        self, fn: Callback, view: AuctionView, uid: str, sealing: SealingInfo, meta: Mapping[str, Any]
    ) -> None:
        view = replace(view, balance=await self._balance(AUCTION, meta, view.payment))
        ok, value = await self._ask(fn, (view,), "on_bid", view.name)
        if not ok:
            return
        try:
            content = bid_content(value)
        except pydantic.ValidationError as exc:
            # Name the problems, never the input: it is the sealed bid.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)
            )
            log.warning("on_bid for auction %s gave no valid bid: %s", view.name, problems)
            return
        except (TypeError, ValueError) as exc:
            log.warning("on_bid for auction %s gave no valid bid: %s", view.name, exc)
            return
        if content is None:
            return
        try:
            sealed = seal_bid(sealing, uid, self.agent, content)
        except ValueError as exc:
            log.warning("cannot seal a bid in auction %s: %s", view.name, exc)
            return
        await self._write(BID, AUCTION, meta, "auction", {"sealed": sealed.to_wire()})
        log.info("sent a sealed bid in auction %s (key %s)", view.name, sealing.key_id)

    async def _clock(self, fn: Callback, view: AuctionView, meta: Mapping[str, Any]) -> None:
        view = replace(view, balance=await self._balance(AUCTION, meta, view.payment))
        ok, accept = await self._ask(fn, (view,), "on_clock", view.name)
        if ok and accept is not None:
            await self._write(BID, AUCTION, meta, "auction", {"round": view.round, "accept": bool(accept)})

    # --- markets -----------------------------------------------------------------------------

    def _market(self, obj: dict[str, Any]) -> tuple[tuple[str, str], Answering] | None:
        meta = obj["metadata"]
        name, uid = str(meta["name"]), str(meta.get("uid", meta["name"]))
        spec = MarketSpec.model_validate(obj.get("spec") or {})
        status = MarketStatus.model_validate(obj.get("status") or {})
        sealing = status.sealing
        if status.phase != "Collecting" or sealing is None:
            return None
        bound = str(meta.get("uid") or "")  # what the sealed order names: the Market's uid
        view = MarketView(
            name=name,
            namespace=self.namespace,
            mechanism=spec.mechanism,
            good=spec.good,
            deadline=status.deadline,
            participants=tuple(p.name for p in status.participants),
            agent=self.agent,
            prices=tuple(spec.price_grid.prices()) if spec.price_grid is not None else (),
            goods=tuple(g.name for g in spec.goods or ()),
            supplies={g.name: g.supply for g in spec.goods or ()},
            agent_spec=self.agent_spec,
            payment=status.payment,
        )
        on_order, on_price = self.callbacks.on_order, self.callbacks.on_price
        if spec.mechanism in ("double-auction", "fisher") and on_order is not None:
            return (uid, "order"), lambda: self._order(on_order, view, meta, sealing, bound)
        if spec.mechanism == "equilibrium" and on_price is not None:
            return (uid, "schedule"), lambda: self._schedule(on_price, view, meta, sealing, bound)
        return None

    async def _send_order(
        self,
        view: MarketView,
        meta: Mapping[str, Any],
        sealing: SealingInfo,
        uid: str,
        fields: dict[str, Any],
    ) -> None:
        try:
            sealed = seal_order(sealing, uid, self.agent, OrderContent.model_validate(fields))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)
            )
            log.warning("the order for market %s is not valid: %s", view.name, problems)
            return
        except ValueError as exc:
            log.warning("cannot seal an order in market %s: %s", view.name, exc)
            return
        await self._write(ORDER, MARKET, meta, "market", {"sealed": sealed.to_wire()})
        log.info("sent a sealed order in market %s (key %s)", view.name, sealing.key_id)

    async def _order(
        self, fn: Callback, view: MarketView, meta: Mapping[str, Any], sealing: SealingInfo, uid: str
    ) -> None:
        view = await self._market_means(view, meta)
        ok, value = await self._ask(fn, (view,), "on_order", view.name)
        if not ok:
            return
        try:
            fields = order_fields(value)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("on_order for market %s gave no valid order: %s", view.name, exc)
            return
        if fields is not None:
            await self._send_order(view, meta, sealing, uid, fields)

    async def _schedule(
        self, fn: Callback, view: MarketView, meta: Mapping[str, Any], sealing: SealingInfo, uid: str
    ) -> None:
        points: list[tuple[Decimal | float, float]] = []
        view = await self._market_means(view, meta)
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
            await self._send_order(view, meta, sealing, uid, {"schedule": compress_schedule(points)})

    # --- shared ------------------------------------------------------------------------------

    async def _balance(self, res: Res, meta: Mapping[str, Any], payment: str | None) -> Decimal | None:
        """What this agent may commit in the session (None if it is not paid from Accounts, or
        the agent cannot read its Account)."""
        status = await self._account(payment)
        if status is None:
            return None
        sid = f"{res.kind.lower()}/{meta['name']}:{meta.get('uid', '')}"
        held = sum((h.amount for h in status.holds if h.session == sid), 0)
        return Decimal(status.free + held) / MINOR_UNITS

    async def _market_means(self, view: MarketView, meta: Mapping[str, Any]) -> MarketView:
        """``view`` with what this agent may spend (``balance``) and sell (``holding``) here."""
        status = await self._account(view.payment)
        if status is None:
            return view
        sid = f"market/{meta['name']}:{meta.get('uid', '')}"
        held = sum((h.amount for h in status.holds if h.session == sid), 0)
        holding = None
        if view.mechanism != "fisher":
            stock = next((s for s in status.goods if s.good == view.good), None)
            mine = sum((h.quantity for h in stock.holds if h.session == sid), 0) if stock else 0
            holding = Decimal((stock.free if stock else 0) + mine) / GOODS_UNITS
        return replace(view, balance=Decimal(status.free + held) / MINOR_UNITS, holding=holding)

    async def _account(self, payment: str | None) -> AccountStatus | None:
        """This agent's Account's status (None if the session is not paid from Accounts, or the
        agent cannot read its Account)."""
        if payment != "Ledger":
            return None
        try:
            obj = await self.kube.get(ACCOUNT, self.agent, self.namespace)
        except ApiError as exc:
            log.warning("cannot read my Account %s: %s", self.agent, exc)
            return None
        if obj is None:
            return None
        return AccountStatus.model_validate(obj.get("status") or {})

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
