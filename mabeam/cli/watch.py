"""``mabeam watch``: follow a coordination, auction or market live until it ends.

Each update of the object draws one frame (:func:`render_session`, :func:`render_auction`,
:func:`render_market`): the answers so far, the phase, the countdown to the deadline and, once
it has ended, the result. On a terminal the frame is redrawn in place and the countdown moves.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from ..kube.resources import AUCTION, COORDINATION, MARKET, Res
from ._common import (
    AUCTION_TERMINAL,
    CLOCK_MECHANISMS,
    COORDINATION_TERMINAL,
    MARKET_TERMINAL,
    add_connection_options,
    connect,
    countdown,
    indent,
    namespace_of,
    now_utc,
    render_table,
    show,
)
from .get import resolve_kind

__all__ = ["add_commands", "render_auction", "render_market", "render_session"]


# --- frames ------------------------------------------------------------------------------------


def render_session(obj: dict[str, Any], now: dt.datetime) -> str:
    """One frame of ``mabeam watch coordination``."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    clock = countdown(phase, status.get("deadline"), now, COORDINATION_TERMINAL)
    lines = [
        f"Coordination {meta.get('namespace')}/{meta.get('name')}   protocol {spec.get('protocol')}   "
        f"phase {phase}   {clock}",
    ]
    participants = [p.get("name", "") for p in status.get("participants") or []]
    answers = {a.get("agent"): a for a in status.get("answers") or []}
    refusals = {r.get("agent"): r for r in status.get("refusals") or []}
    rows = []
    for agent in participants or sorted({*answers, *refusals}):
        answer, refusal = answers.get(agent), refusals.get(agent)
        if answer is not None:
            shown = next(
                (
                    f"{k}={answer[k]}" if k != "choice" else str(answer[k])
                    for k in ("choice", "cost", "accept", "claim")
                    if answer.get(k) is not None
                ),
                "",
            )
            rows.append([agent, shown, "counted"])
        elif refusal is not None:
            rows.append([agent, "", f"refused: {refusal.get('reason')}"])
        else:
            rows.append([agent, "", "waiting"])
    lines.append(
        indent(render_table(["AGENT", "ANSWER", "STATE"], rows)) if rows else "  (no participants yet)"
    )
    tally = status.get("tally") or {}
    if tally or spec.get("options"):
        options = list(spec.get("options") or []) + [o for o in tally if o not in (spec.get("options") or [])]
        lines.append("Tally:")
        lines.append(
            indent(render_table(["OPTION", "VOTES"], [[o, f"{tally.get(o, 0):g}"] for o in options]))
        )
    result = status.get("result")
    if result:
        value = result.get("value")
        lines.append(
            f"Result: {value if value is not None else '(none)'} ({result.get('reason')}) "
            f"{result.get('message', '')}".rstrip()
        )
    return "\n".join(lines)


def _bundles(bundles: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{','.join(b.get('items') or [])}={show(b.get('amount'))}" for b in bundles)


def _auction_states(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[list[str]]:
    names = [p.get("name", "") for p in status.get("participants") or []]
    bids = {b.get("agent"): b for b in status.get("bids") or []}
    refusals = {r.get("agent"): r for r in status.get("refusals") or []}
    accepted: dict[str, int] = {}
    for record in status.get("rounds") or []:
        for agent in record.get("accepted") or []:
            accepted[agent] = max(accepted.get(agent, 0), int(record.get("round") or 0))
    clock = spec.get("mechanism") in CLOCK_MECHANISMS
    active = set(status.get("active") or [])
    rows = []
    for agent in names or sorted({*bids, *refusals, *accepted}):
        bid = bids.get(agent)
        if bid is not None and (bid.get("amount") is not None or bid.get("bundles")):
            shown = (
                show(bid["amount"]) if bid.get("amount") is not None else _bundles(bid.get("bundles") or [])
            )
            state = f"opened ({shown})"
        elif bid is not None:
            state = "sealed"
        elif agent in accepted:
            state = f"accepted round {accepted[agent]}"
        else:
            state = ""
        if clock and spec.get("mechanism") == "english" and status.get("rounds") and agent not in active:
            state = f"out ({state})" if state else "out"
        refusal = refusals.get(agent)
        if refusal is not None:
            refused = f"refused: {refusal.get('reason')}"
            state = f"{state}; {refused}" if state else refused
        rows.append([agent, state or "waiting"])
    return rows


def render_auction(obj: Mapping[str, Any], now: dt.datetime) -> str:
    """One frame of ``mabeam watch auction``."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    lines = [
        f"Auction {meta.get('namespace')}/{meta.get('name')}   mechanism {spec.get('mechanism')}   "
        f"phase {phase}   {countdown(phase, status.get('deadline'), now, AUCTION_TERMINAL)}",
        f"Items: {', '.join(spec.get('items') or [])}   reserve {show(spec.get('reservePrice', 0.0))}",
    ]
    if spec.get("mechanism") in CLOCK_MECHANISMS and status.get("round") is not None:
        line = f"Round {status['round']}   clock price {show(status.get('clockPrice'))}"
        if spec.get("mechanism") == "english":
            line += f"   active: {', '.join(status.get('active') or []) or '(none)'}"
        lines.append(line)
    rows = _auction_states(spec, status)
    lines.append(indent(render_table(["AGENT", "BID"], rows)) if rows else "  (no participants yet)")
    result = status.get("result")
    if result:
        lines.append(f"Result: {phase} ({result.get('reason')}) {result.get('message', '')}".rstrip())
        allocations = result.get("allocations") or []
        if allocations:
            table = [
                [
                    a.get("agent", ""),
                    ",".join(a.get("items") or []),
                    show(a.get("price")),
                    "" if a.get("bid") is None else show(a["bid"]),
                ]
                for a in allocations
            ]
            lines.append(indent(render_table(["WINNER", "ITEMS", "PRICE", "BID"], table)))
            lines.append(f"Revenue: {show(result.get('revenue', 0.0))}")
    return "\n".join(lines)


def _order_shown(order: Mapping[str, Any]) -> str:
    if order.get("budget") is not None:  # fisher
        utilities = ",".join(f"{g}={show(u)}" for g, u in (order.get("utilities") or {}).items())
        return f"budget {show(order['budget'])} {utilities}"
    if order.get("side") is None and order.get("schedule") is None:
        return "sealed"
    schedule = order.get("schedule")
    if schedule is not None:
        points = [f"{show(p.get('price'))}={show(p.get('quantity'))}" for p in schedule]
        return (
            "schedule " + ",".join(points[:6]) + (f",... ({len(points)} points)" if len(points) > 6 else "")
        )
    return f"{order.get('side')} {order.get('quantity') or 1} @ {show(order.get('price'))}"


def render_market(obj: Mapping[str, Any], now: dt.datetime) -> str:
    """One frame of ``mabeam watch market``."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    lines = [
        f"Market {meta.get('namespace')}/{meta.get('name')}   mechanism {spec.get('mechanism')}   "
        f"good {spec.get('good')}   phase {phase}   "
        f"{countdown(phase, status.get('deadline'), now, MARKET_TERMINAL)}",
    ]
    names = [p.get("name", "") for p in status.get("participants") or []]
    orders = {o.get("agent"): o for o in status.get("orders") or []}
    refusals = {r.get("agent"): r for r in status.get("refusals") or []}
    rows = []
    for agent in names or sorted({*orders, *refusals}):
        order, refusal = orders.get(agent), refusals.get(agent)
        state = "counted" if order is not None else "" if refusal is not None else "waiting"
        if refusal is not None:
            refused = f"refused: {refusal.get('reason')}"
            state = f"{state}; {refused}" if state else refused
        rows.append([agent, _order_shown(order) if order is not None else "", state])
    lines.append(
        indent(render_table(["AGENT", "ORDER", "STATE"], rows)) if rows else "  (no participants yet)"
    )
    result = status.get("result")
    if result:
        price = result.get("price")
        seller = result.get("sellerPrice")
        priced = "" if price is None else f"price {show(price)}   "
        if seller is not None and seller != price:
            priced += f"seller price {show(seller)}   "
        lines.append(
            f"Result: {phase} ({result.get('reason')})   {priced}volume {show(result.get('volume', 0.0))}   "
            f"{result.get('message', '')}".rstrip()
        )
        trades = result.get("trades") or []
        if trades:
            table = [
                [
                    t.get("agent", ""),
                    t.get("side", ""),
                    show(t.get("quantity")),
                    show(t.get("price")),
                    show(t.get("total")),
                ]
                for t in trades
            ]
            lines.append(indent(render_table(["TRADER", "SIDE", "QUANTITY", "PRICE", "TOTAL"], table)))
        lines += _fisher_result(result)
    return "\n".join(lines)


def _fisher_result(result: Mapping[str, Any]) -> list[str]:
    """A fisher market's prices per good, allocations and gap (nothing for the other markets)."""
    lines = []
    goods = result.get("goods") or []
    if goods:
        table = [
            [g.get("good", ""), show(g.get("price")), show(g.get("sold")), show(g.get("revenue"))]
            for g in goods
        ]
        lines.append(indent(render_table(["GOOD", "PRICE", "SOLD", "REVENUE"], table)))
    allocations = result.get("allocations") or []
    if allocations:
        table = [
            [a.get("agent", ""), a.get("good", ""), show(a.get("quantity")), show(a.get("payment"))]
            for a in allocations
        ]
        lines.append(indent(render_table(["BUYER", "GOOD", "QUANTITY", "PAYMENT"], table)))
    report = result.get("equilibrium")
    if report:
        failed = [c.get("name") for c in report.get("checks") or [] if not c.get("passed")]
        checks = "failed " + ", ".join(failed) if failed else "all passed"
        lines.append(
            f"Gap: {report.get('gap', 0):.3g} (target {report.get('targetGap', 0):g}, "
            f"{report.get('steps')} steps); checks: {checks}"
        )
    return lines


# --- command -----------------------------------------------------------------------------------


def _watched(res: Res) -> tuple[Callable[[dict[str, Any], dt.datetime], str], frozenset[str]] | None:
    """How to draw one frame of ``res`` and its terminal phases (None: not watchable)."""
    return {
        COORDINATION: (render_session, COORDINATION_TERMINAL),
        AUCTION: (render_auction, AUCTION_TERMINAL),
        MARKET: (render_market, MARKET_TERMINAL),
    }.get(res)


async def cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    view = resolve_kind(args.kind)
    watched = _watched(view.res)
    if watched is None:
        print(
            "Error: only coordinations, auctions and markets can be watched (mabeam watch KIND NAME)",
            file=sys.stderr,
        )
        return 2
    render, terminal = watched
    namespace = namespace_of(args)
    tty = out.isatty()
    kube = connect(args)
    updates: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def follow(resource_version: str | None) -> None:
        async for event, obj in kube.watch(view.res, namespace, resource_version=resource_version):
            if (obj.get("metadata") or {}).get("name") == args.name:
                await updates.put((event, obj))

    def draw(obj: dict[str, Any]) -> None:
        frame = render(obj, now_utc())
        print(("\x1b[H\x1b[2J" + frame) if tty else frame + "\n", file=out, flush=True)

    watcher: asyncio.Task[None] | None = None
    try:
        obj = await kube.get(view.res, args.name, namespace)
        if obj is None:
            print(f'Error: {view.kind} "{args.name}" not found in {namespace}', file=sys.stderr)
            return 1
        watcher = asyncio.create_task(follow(obj["metadata"].get("resourceVersion")))
        draw(obj)
        while (obj.get("status") or {}).get("phase") not in terminal:
            try:
                event, new = await asyncio.wait_for(updates.get(), timeout=args.refresh)
            except TimeoutError:
                if watcher.done():  # the watch ended (server closed it): start again from here
                    watcher = asyncio.create_task(follow(obj["metadata"].get("resourceVersion")))
                if tty:
                    draw(obj)  # the countdown moves
                continue
            if event == "DELETED":
                print(f"{view.kind} {namespace}/{args.name} was deleted.", file=out)
                return 1
            if new != obj:
                obj = new
                draw(obj)
        return 0
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await kube.close()


# --- argument parsing --------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    p = sub.add_parser("watch", help="follow a coordination, auction or market live until it ends")
    p.add_argument("kind", help="coordination, auction or market")
    p.add_argument("name")
    add_connection_options(p)
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between countdown redraws")
    p.set_defaults(async_func=cmd_watch)
