"""``mabeam vote``, ``mabeam bid`` and ``mabeam order``: answer a session by hand, as an agent.

``vote`` writes the agent's Vote ``<coordination>-<agent>`` with the chosen option.

``bid`` and ``order`` answer an Auction or a Market (bids and orders sealed to the operator's
key in the session's ``status.sealing``): they read the session,
check that the options fit its mechanism and phase, and write the agent's Bid
``<auction>-<agent>`` or Order ``<market>-<agent>`` (labels ``mabeam.io/session`` and
``mabeam.io/agent``, owned by the session) with the same create-or-update logic as the SDK.

Sealed bids (first-price, second-price, combinatorial) are sent while the auction is
``Bidding``: the command encrypts the bid to the operator's public key in the Auction's
``status.sealing``, bound to the Auction's uid and the agent (see docs/security.md), and writes
only the ciphertext. Nothing is revealed later: the operator opens the bids when bidding closes.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TextIO

import pydantic

from ..errors import MabeamError
from ..kube.resources import AUCTION, BID, MARKET, ORDER
from ..models._amount import dump_amount, parse_amount
from ..models.auction import AuctionSpec, AuctionStatus, BidContent, Bundle, bid_name
from ..models.market import MarketSpec, MarketStatus, OrderContent, SchedulePoint, order_name
from ..sdk._sessions import write_answer
from ..sdk._trading import seal_bid, seal_order
from ._common import (
    AUCTION_TERMINAL,
    CLOCK_MECHANISMS,
    MARKET_TERMINAL,
    add_connection_options,
    connect,
    namespace_of,
)
from ._vote import cmd_vote

__all__ = [
    "BidOptions",
    "OrderOptions",
    "Planned",
    "add_commands",
    "bid_fields",
    "cmd_bid",
    "cmd_order",
    "cmd_vote",
    "order_fields",
]

_MAX_AMOUNT = 1e15

_SNAP = Decimal("0.000001")  # a schedule price within this many steps of a grid price is that grid price


# --- parsing the options -----------------------------------------------------------------------


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{what} {text!r} must be a finite number")
    return value


def _amount(text: str, what: str = "amount") -> Decimal:
    """An exact amount (mabeam.models._amount): an integer or a decimal such as 12.50."""
    try:
        value = parse_amount(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: {error}") from None
    if not 0 <= value <= _MAX_AMOUNT:
        raise argparse.ArgumentTypeError(f"{what} {text!r} must be between 0 and {_MAX_AMOUNT:g}")
    return value


def _price(text: str) -> Decimal:
    return _amount(text, "price")


def _quantity(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"quantity {text!r} is not a whole number") from None
    if not 1 <= value <= 10000:
        raise argparse.ArgumentTypeError(f"quantity {text!r} must be between 1 and 10000")
    return value


def _bundle(text: str) -> Bundle:
    """``ITEM[,ITEM...]=AMOUNT`` as a Bundle."""
    items_text, sep, amount_text = text.rpartition("=")
    items = [item.strip() for item in items_text.split(",")] if sep else []
    if not items or not all(items):
        raise argparse.ArgumentTypeError(f"a bundle is ITEM[,ITEM...]=AMOUNT, not {text!r}")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"bundle {text!r} names an item twice")
    return Bundle(items=items, amount=_amount(amount_text))


def _utilities(text: str) -> dict[str, float]:
    """``GOOD=U[,GOOD=U...]`` as a fisher order's utilities (each good once, 0 to 1e12)."""
    utilities: dict[str, float] = {}
    for part in text.split(","):
        good, sep, value_text = part.partition("=")
        good = good.strip()
        if not sep or not good:
            raise argparse.ArgumentTypeError(f"utilities are GOOD=U[,GOOD=U...], not {text!r}")
        if good in utilities:
            raise argparse.ArgumentTypeError(f"the utilities name the good {good!r} twice")
        value = _number(value_text, "utility")
        if not 0 <= value <= 1e12:
            raise argparse.ArgumentTypeError(f"{part!r}: a utility goes from 0 to 1e12")
        utilities[good] = float(value)
    return utilities


def _schedule(text: str) -> list[SchedulePoint]:
    """``PRICE=QTY[,PRICE=QTY...]`` as schedule points, prices rising."""
    points = []
    for part in text.split(","):
        price_text, sep, quantity_text = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"a schedule is PRICE=QTY[,PRICE=QTY...], not {text!r}")
        price = _number(price_text, "price")
        quantity = _number(quantity_text, "quantity")
        if not 0 <= price <= _MAX_AMOUNT or abs(quantity) > 1e12:
            raise argparse.ArgumentTypeError(
                f"{part!r}: prices go from 0 to {_MAX_AMOUNT:g}, quantities from -1e12 to 1e12"
            )
        points.append(SchedulePoint(price=price, quantity=quantity))
    points.sort(key=lambda p: p.price)
    for low, high in itertools.pairwise(points):
        if low.price == high.price:
            raise argparse.ArgumentTypeError(f"the schedule names the price {_exact(low.price)} twice")
        if high.quantity > low.quantity:
            raise argparse.ArgumentTypeError(
                f"net demand must not rise with the price: {_exact(high.quantity)} at "
                f"{_exact(high.price)} is more than {_exact(low.quantity)} at {_exact(low.price)}"
            )
    return points


def _exact(value: float | Decimal) -> str:
    """A number as text that reads back as the same number (no trailing ``.0``)."""
    if isinstance(value, Decimal):
        return str(dump_amount(value))
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


# --- what to write -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BidOptions:
    """What ``mabeam bid`` was told."""

    agent: str
    amount: Decimal | None = None
    bundles: tuple[Bundle, ...] = ()
    accept: bool | None = None


@dataclass(frozen=True)
class Planned:
    """The spec fields to write, and what to tell the user on stderr (or "")."""

    fields: dict[str, Any]
    note: str = ""


def _participant(agent: str, names: Sequence[str], what: str, session: str) -> None:
    if agent not in names:
        shown = ", ".join(names) or "nobody"
        raise MabeamError(f"{agent} is not a participant of {what} {session} (participants: {shown})")


def _sealed_content(spec: AuctionSpec, auction: str, options: BidOptions) -> BidContent:
    if options.accept is not None:
        raise MabeamError(f"--accept and --decline are for clock auctions; {auction} is {spec.mechanism}")
    if spec.mechanism == "combinatorial":
        if options.amount is not None or not options.bundles:
            raise MabeamError(
                f"{auction} is a combinatorial auction: bid with --bundle ITEM[,ITEM...]=AMOUNT "
                f"(repeatable; items: {', '.join(spec.items)}), not --amount"
            )
        for bundle in options.bundles:
            unknown = [item for item in bundle.items if item not in spec.items]
            if unknown:
                raise MabeamError(
                    f"{auction} does not sell {', '.join(unknown)} (items: {', '.join(spec.items)})"
                )
        return BidContent(bundles=list(options.bundles))
    if options.bundles or options.amount is None:
        raise MabeamError(f"{auction} is a {spec.mechanism} auction: bid with --amount A, not --bundle")
    return BidContent(amount=options.amount)


def bid_fields(
    auction: str, spec: AuctionSpec, status: AuctionStatus, options: BidOptions, *, uid: str
) -> Planned:
    """The Bid spec fields ``options`` stand for, given the auction's mechanism and phase
    (``uid``: the Auction's metadata.uid, which a sealed bid names).

    Raises MabeamError with a message the user can act on when the options do not fit the
    auction as it is now.
    """
    phase = status.phase or "Pending"
    if phase != "Bidding":
        when = "has ended" if phase in AUCTION_TERMINAL else "has not opened yet"
        raise MabeamError(f"auction {auction} {when} (phase {phase}); it takes bids while Bidding")
    _participant(options.agent, [p.name for p in status.participants], "auction", auction)
    if spec.mechanism in CLOCK_MECHANISMS:
        if options.amount is not None or options.bundles:
            raise MabeamError(
                f"{auction} is a {spec.mechanism} (clock) auction: answer the round with --accept or "
                "--decline, not --amount or --bundle"
            )
        if options.accept is None:
            raise MabeamError(f"{auction} is a {spec.mechanism} auction: answer with --accept or --decline")
        if status.round is None:
            raise MabeamError(f"auction {auction} has no round open yet; try again in a moment")
        if spec.mechanism == "english" and options.agent not in status.active:
            raise MabeamError(
                f"{options.agent} is out of auction {auction}: it did not stay in an earlier round"
            )
        return Planned({"round": status.round, "accept": options.accept})
    content = _sealed_content(spec, auction, options)
    if status.sealing is None:
        raise MabeamError(
            f"auction {auction} publishes no sealing key (status.sealing) yet; try again in a moment"
        )
    try:
        sealed = seal_bid(status.sealing, uid, options.agent, content)
    except ValueError as exc:
        raise MabeamError(f"auction {auction}: cannot seal the bid: {exc}") from None
    note = (
        f"Sealed bid sent: encrypted to key {status.sealing.key_id}; the operator opens it when "
        "bidding closes (nothing to reveal)."
    )
    return Planned({"sealed": sealed.to_wire()}, note)


@dataclass(frozen=True)
class OrderOptions:
    """What ``mabeam order`` was told."""

    agent: str
    side: str | None = None
    price: Decimal | None = None
    quantity: int | None = None
    schedule: tuple[SchedulePoint, ...] = ()
    budget: Decimal | None = None
    utilities: Mapping[str, float] | None = None


def order_fields(
    market: str, spec: MarketSpec, status: MarketStatus, options: OrderOptions, *, uid: str
) -> Planned:
    """The Order spec fields ``options`` stand for, sealed to the Market's key (``uid``: the
    Market's metadata.uid, which a sealed order names); MabeamError when they do not fit."""
    content = _order_content(market, spec, status, options)
    if status.sealing is None:
        raise MabeamError(
            f"market {market} publishes no sealing key (status.sealing) yet; try again in a moment"
        )
    try:
        sealed = seal_order(status.sealing, uid, options.agent, content)
    except ValueError as exc:
        raise MabeamError(f"market {market}: cannot seal the order: {exc}") from None
    return Planned(
        {"sealed": sealed.to_wire()}, f"Sealed order sent: encrypted to key {status.sealing.key_id}."
    )


def _order_content(
    market: str, spec: MarketSpec, status: MarketStatus, options: OrderOptions
) -> OrderContent:
    phase = status.phase or "Pending"
    if phase != "Collecting":
        when = "has ended" if phase in MARKET_TERMINAL else "has not opened yet"
        raise MabeamError(f"market {market} {when} (phase {phase}); it takes orders while Collecting")
    _participant(options.agent, [p.name for p in status.participants], "market", market)
    fisher = options.budget is not None or options.utilities is not None
    if spec.mechanism == "fisher":
        if (
            options.budget is None
            or not options.utilities
            or options.schedule
            or options.side
            or options.price
        ):
            raise MabeamError(
                f"{market} is a fisher market: order with --budget B --utilities GOOD=U[,GOOD=U...], "
                "not --side, --price or --schedule"
            )
        if options.budget <= 0:
            raise MabeamError("--budget must be above 0")
        goods = [g.name for g in spec.goods or ()]
        unknown = sorted(set(options.utilities) - set(goods))
        if unknown:
            raise MabeamError(f"{unknown[0]!r} is not a good of market {market} ({', '.join(goods)})")
        return OrderContent(budget=options.budget, utilities=dict(options.utilities))
    if fisher:
        raise MabeamError(f"--budget and --utilities are for fisher markets; {market} is {spec.mechanism}")
    if spec.mechanism == "double-auction":
        if options.schedule or options.side is None or options.price is None:
            raise MabeamError(
                f"{market} is a double auction: order with --side buy|sell --price P [--quantity Q], "
                "not --schedule"
            )
        return OrderContent(side=options.side, price=options.price, quantity=options.quantity or 1)
    if not options.schedule or options.side is not None or options.price is not None or options.quantity:
        raise MabeamError(
            f"{market} is an equilibrium market: order with --schedule PRICE=QTY[,PRICE=QTY...] "
            "(net demand: positive buys, negative sells), not --side, --price or --quantity"
        )
    grid = spec.price_grid
    if grid is not None:
        prices = grid.prices()
        for point in options.schedule:
            index = round((point.price - grid.min) / grid.step)
            if not (0 <= index < len(prices) and abs(point.price - prices[index]) <= _SNAP * grid.step):
                raise MabeamError(
                    f"price {_exact(point.price)} is not on market {market}'s price grid "
                    f"({_exact(grid.min)} to {_exact(prices[-1])} in steps of {_exact(grid.step)})"
                )
    return OrderContent(schedule=list(options.schedule))


# --- commands ----------------------------------------------------------------------------------


async def _answer(
    args: argparse.Namespace,
    out: TextIO,
    *,
    kind: str,
    session_field: str,
    plan: Any,
) -> int:
    """Read the session, plan the fields with ``plan(spec, status, namespace, current)`` and write them."""
    namespace = namespace_of(args)
    session: str = args.session
    owner, res, name = (
        (AUCTION, BID, bid_name(session, args.agent))
        if kind == "auction"
        else (MARKET, ORDER, order_name(session, args.agent))
    )
    kube = connect(args)
    try:
        obj = await kube.get(owner, session, namespace)
        if obj is None:
            print(f'Error: {owner.kind} "{session}" not found in {namespace}', file=sys.stderr)
            return 1
        current = await kube.get(res, name, namespace)
        try:
            planned: Planned = plan(obj, namespace, (current or {}).get("spec"))
        except pydantic.ValidationError as exc:
            print(f"Error: {owner.kind} {session} cannot be read: {exc}", file=sys.stderr)
            return 1
        except MabeamError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        await write_answer(
            kube,
            res,
            owner,
            name=name,
            namespace=namespace,
            session=session,
            session_uid=(obj.get("metadata") or {}).get("uid"),
            agent=args.agent,
            spec={session_field: session, "agent": args.agent},
            fields=planned.fields,
        )
    finally:
        await kube.close()
    print(f"{res.kind.lower()}.mabeam.io/{name} {'created' if current is None else 'updated'}", file=out)
    if planned.note:
        print(planned.note, file=sys.stderr)
    return 0


async def cmd_bid(args: argparse.Namespace, out: TextIO) -> int:
    options = BidOptions(
        agent=args.agent,
        amount=args.amount,
        bundles=tuple(args.bundle or ()),
        accept=args.accept,
    )

    def plan(obj: dict[str, Any], namespace: str, current: Mapping[str, Any] | None) -> Planned:
        spec = AuctionSpec.model_validate(obj.get("spec") or {})
        status = AuctionStatus.model_validate(obj.get("status") or {})
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        return bid_fields(args.session, spec, status, options, uid=uid)

    return await _answer(args, out, kind="auction", session_field="auction", plan=plan)


async def cmd_order(args: argparse.Namespace, out: TextIO) -> int:
    options = OrderOptions(
        agent=args.agent,
        side=args.side,
        price=args.price,
        quantity=args.quantity,
        schedule=tuple(args.schedule or ()),
        budget=args.budget,
        utilities=args.utilities,
    )

    def plan(obj: dict[str, Any], namespace: str, current: Mapping[str, Any] | None) -> Planned:
        spec = MarketSpec.model_validate(obj.get("spec") or {})
        status = MarketStatus.model_validate(obj.get("status") or {})
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        return order_fields(args.session, spec, status, options, uid=uid)

    return await _answer(args, out, kind="market", session_field="market", plan=plan)


# --- argument parsing --------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    p = sub.add_parser("vote", help="answer a session by hand, as an agent")
    p.add_argument("session", help="the Coordination's name")
    p.add_argument("choice", help="the option to vote for")
    p.add_argument("--as", dest="agent", required=True, help="the Agent the Vote is for")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="then wait this long for the operator's verdict (counted, or why not); exit 1 if refused",
    )
    add_connection_options(p)
    p.set_defaults(async_func=cmd_vote)

    p = sub.add_parser(
        "bid",
        help="bid in an auction by hand, as an agent",
        description="Sealed auctions (first-price, second-price): --amount while Bidding (sealed to "
        "the operator's key; only the operator can read it, when bidding closes). combinatorial: "
        "--bundle instead of --amount. Clock auctions (english, dutch): --accept or --decline the "
        "current round.",
    )
    p.add_argument("session", metavar="AUCTION", help="the Auction's name")
    p.add_argument("--as", dest="agent", required=True, help="the Agent the Bid is for")
    p.add_argument("--amount", type=_amount, help="sealed: the offer")
    p.add_argument(
        "--bundle",
        type=_bundle,
        action="append",
        metavar="ITEM[,ITEM...]=AMOUNT",
        help="combinatorial: an offer for a set of items (repeatable; at most one wins)",
    )
    choice = p.add_mutually_exclusive_group()
    choice.add_argument(
        "--accept", dest="accept", action="store_const", const=True, help="clock: stay in / buy"
    )
    choice.add_argument("--decline", dest="accept", action="store_const", const=False, help="clock: drop out")
    add_connection_options(p)
    p.set_defaults(async_func=cmd_bid)

    p = sub.add_parser(
        "order",
        help="place an order in a market by hand, as an agent",
        description="double-auction: --side buy|sell --price P [--quantity Q]. "
        "equilibrium: --schedule PRICE=QTY[,PRICE=QTY...] (net demand: positive buys, negative sells). "
        "fisher: --budget B --utilities GOOD=U[,GOOD=U...].",
    )
    p.add_argument("session", metavar="MARKET", help="the Market's name")
    p.add_argument("--as", dest="agent", required=True, help="the Agent the Order is for")
    p.add_argument("--side", choices=("buy", "sell"), help="double-auction: buy or sell")
    p.add_argument("--price", type=_price, help="double-auction: the limit price per unit")
    p.add_argument("--quantity", type=_quantity, metavar="Q", help="double-auction: units (1-10000)")
    p.add_argument(
        "--schedule", type=_schedule, metavar="PRICE=QTY[,PRICE=QTY...]", help="equilibrium: net demand"
    )
    p.add_argument("--budget", type=_amount, metavar="B", help="fisher: the money to spend")
    p.add_argument(
        "--utilities",
        type=_utilities,
        metavar="GOOD=U[,GOOD=U...]",
        help="fisher: utility per unit of each good",
    )
    add_connection_options(p)
    p.set_defaults(async_func=cmd_order)
