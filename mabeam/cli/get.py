"""``mabeam get|describe``: list MABEAM objects and show one in full.

Tables use the printer columns of the generated CRDs, so ``mabeam get agents`` and
``kubectl get agents`` show the same columns, with kubectl's options: ``-o wide|yaml|json|name``,
``-l SELECTOR`` (``k=v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``, comma-separated),
``-w`` (print the list, then a line per change until interrupted), ``-A`` and ``--context``.
An auction's PRICE is its clock price while a clock runs, else what its winners pay (a sealed
auction's price once awarded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml
from lightkube import operators

from ..errors import MabeamError
from ..kube import crdgen
from ..kube.resources import (
    ACCOUNT,
    AGENT,
    AUCTION,
    BID,
    COORDINATION,
    EVENT,
    MARKET,
    ORDER,
    VARIABLE,
    VOTE,
    Res,
)
from ._common import add_connection_options, age, connect, indent, namespace_of, now_utc, render_table

__all__ = [
    "KindView",
    "add_commands",
    "auction_price",
    "describe",
    "object_table",
    "parse_selector",
    "resolve_kind",
]

_RESOURCES = {
    r.plural: r for r in (AGENT, VARIABLE, COORDINATION, VOTE, AUCTION, BID, MARKET, ORDER, ACCOUNT)
}


@dataclass(frozen=True)
class KindView:
    res: Res
    kind: str
    columns: tuple[dict[str, Any], ...]


def _views() -> list[KindView]:
    views = []
    for crd in crdgen.generate_crds():
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        views.append(
            KindView(
                _RESOURCES[names["plural"]], names["kind"], tuple(version.get("additionalPrinterColumns", ()))
            )
        )
    return views


def resolve_kind(word: str) -> KindView:
    """The kind a user means: plural, singular, kind or short name (the first CRD that has it)."""
    lowered = word.lower().split(".", 1)[0]
    views = _views()
    for view in views:
        crd_names = {view.res.plural, view.res.plural[:-1], view.kind.lower()}
        if lowered in crd_names:
            return view
    for crd, view in zip(crdgen.generate_crds(), views, strict=True):
        if lowered in crd["spec"]["names"].get("shortNames", ()):
            return view
    known = ", ".join(v.res.plural for v in views)
    raise MabeamError(f"unknown kind {word!r}; use one of {known}")


# --- tables ------------------------------------------------------------------------------------


def _lookup(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _cell(value: Any, type_: str, now: dt.datetime) -> str:
    if value is None:
        return ""
    if type_ == "date":
        return age(value, now)
    if type_ == "boolean":
        return "true" if value else "false"
    return str(value)


def auction_price(obj: dict[str, Any]) -> Any:
    """The clock price while a clock runs, else the winners' prices (``24`` or ``24,26``)."""
    status = obj.get("status") or {}
    if status.get("clockPrice") is not None:
        return status["clockPrice"]
    allocations = ((status.get("result") or {}).get("allocations")) or []
    prices = [a.get("price") for a in allocations if isinstance(a, dict) and a.get("price") is not None]
    if not prices:
        return None
    return ",".join(dict.fromkeys(_cell(p, "number", dt.datetime.now(dt.UTC)) for p in prices))


def _value(view: KindView, obj: dict[str, Any], column: dict[str, Any]) -> Any:
    if view.kind == "Auction" and column["name"] == "Price":
        return auction_price(obj)
    return _lookup(obj, column["jsonPath"])


def _header(view: KindView, *, all_namespaces: bool, wide: bool) -> tuple[list[dict[str, Any]], list[str]]:
    columns = [c for c in view.columns if wide or not c.get("priority")]
    header = [*(["NAMESPACE"] if all_namespaces else []), "NAME", *(c["name"].upper() for c in columns)]
    return columns, header


def _row(
    view: KindView, columns: list[dict[str, Any]], obj: dict[str, Any], now: dt.datetime, all_namespaces: bool
) -> list[str]:
    meta = obj.get("metadata") or {}
    cells = [_cell(_value(view, obj, c), c.get("type", "string"), now) for c in columns]
    return [*([meta.get("namespace", "")] if all_namespaces else []), meta.get("name", ""), *cells]


def object_table(
    view: KindView, objects: Sequence[dict[str, Any]], now: dt.datetime, *, all_namespaces: bool, wide: bool
) -> str:
    columns, header = _header(view, all_namespaces=all_namespaces, wide=wide)
    return render_table(header, [_row(view, columns, obj, now, all_namespaces) for obj in objects])


_REQUIREMENT = re.compile(
    r"^\s*(?P<not>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|!=|=)\s*(?P<value>[-A-Za-z0-9_.]*)|\s(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def parse_selector(text: str) -> dict[str, Any]:
    """A label selector (kubectl's syntax) as lightkube's ``labels`` argument."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):  # split on the commas outside parentheses
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    labels: dict[str, Any] = {}
    for part in parts:
        match = _REQUIREMENT.match(part)
        if match is None or (match["not"] and (match["op"] or match["set"])):
            raise MabeamError(
                f"invalid label selector {text!r} at {part.strip()!r}: use k=v, k!=v, k, !k, "
                "k in (a,b) or k notin (a,b), separated by commas"
            )
        key = match["key"]
        if match["not"]:
            labels[key] = operators.not_exists()
        elif match["op"] in ("=", "=="):
            labels[key] = match["value"]
        elif match["op"] == "!=":
            labels[key] = operators.not_equal(match["value"])
        elif match["set"]:
            values = [v.strip() for v in match["values"].split(",") if v.strip()]
            labels[key] = operators.in_(values) if match["set"] == "in" else operators.not_in(values)
        else:
            labels[key] = None  # exists
    return labels


# --- commands ----------------------------------------------------------------------------------


async def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    view = resolve_kind(args.kind)
    labels = parse_selector(args.selector) if args.selector else None
    if args.name and (labels is not None or args.all_namespaces):
        raise MabeamError("a name cannot be combined with -l or -A; list with -l/-A, or get one by name")
    namespace = None if args.all_namespaces else namespace_of(args)
    kube = connect(args)
    try:
        if args.name:
            obj = await kube.get(view.res, args.name, namespace)
            if obj is None:
                print(
                    f'Error: {view.kind} "{args.name}" not found in namespace {namespace}; '
                    f"list them with: mabeam get {view.res.plural} -n {namespace}",
                    file=sys.stderr,
                )
                return 1
            objects = [obj]
        else:
            objects = await kube.list(view.res, namespace, labels=labels)
        objects.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        if objects or args.output in ("yaml", "json"):
            print(_render(view, objects, args, single=bool(args.name)), file=out, flush=True)
        elif not args.watch:
            where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
            print(f"No {view.res.plural} found in {where}.", file=sys.stderr)
        if args.watch:
            await _watch(kube, view, args, namespace, labels, objects, out)
    finally:
        await kube.close()
    return 0


def _render(view: KindView, objects: list[dict[str, Any]], args: argparse.Namespace, *, single: bool) -> str:
    """The objects in the ``-o`` format (a table without it)."""
    if args.output in ("yaml", "json"):
        doc: Any = objects[0] if single else {"apiVersion": "v1", "kind": "List", "items": objects}
        if args.output == "json":
            return json.dumps(doc, indent=4, default=str)
        return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)).rstrip()
    if args.output == "name":
        return "\n".join(f"{view.kind.lower()}.{view.res.group}/{o['metadata']['name']}" for o in objects)
    return object_table(
        view, objects, now_utc(), all_namespaces=args.all_namespaces, wide=args.output == "wide"
    )


async def _watch(
    kube: Any,
    view: KindView,
    args: argparse.Namespace,
    namespace: str | None,
    labels: dict[str, Any] | None,
    listed: list[dict[str, Any]],
    out: TextIO,
) -> None:
    """kubectl get -w: after the list, one line (or document) per change, until interrupted."""
    seen = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o["metadata"].get("resourceVersion")
            for o in listed}  # fmt: skip
    columns, header = _header(view, all_namespaces=args.all_namespaces, wide=args.output == "wide")
    widths = [len(h) for h in header]
    if listed:
        table = [header, *(_row(view, columns, o, now_utc(), args.all_namespaces) for o in listed)]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    header_shown = bool(listed) or (args.output is not None and args.output != "wide")
    async for event, obj in kube.watch(view.res, namespace, labels=labels):
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace"), meta.get("name"))
        if event == "ADDED" and seen.get(key) == meta.get("resourceVersion"):
            continue  # already listed
        seen[key] = meta.get("resourceVersion")
        if args.name and meta.get("name") != args.name:
            continue
        if args.output in ("yaml", "json", "name"):
            text = _render(view, [obj], args, single=True)
            print(f"---\n{text}" if args.output == "yaml" else text, file=out, flush=True)
            continue
        row = _row(view, columns, obj, now_utc(), args.all_namespaces)
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        lines = ([header] if not header_shown else []) + [row]
        header_shown = True
        for line in lines:
            print(
                "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(),
                file=out,
                flush=True,
            )


def _yaml_block(value: Any, indent: int = 2) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip()
    return "\n".join(" " * indent + line for line in text.splitlines())


def _goods_lines(goods: Sequence[dict[str, Any]], entries: Sequence[dict[str, Any]]) -> list[str]:
    """An Account's goods: each holding (held, escrow, free, the sessions holding it) and the
    goods ledger."""
    lines = ["Goods:"]
    rows = [
        [
            str(g.get("good", "")),
            str(g.get("held", "0")),
            str(g.get("escrow", "0")),
            str(g.get("free", "0")),
            str(g.get("granted", "0")),
            ", ".join(f"{h.get('session')}={h.get('quantity')}" for h in g.get("holds") or []) or "-",
        ]
        for g in goods
        if isinstance(g, dict)
    ]
    header = ["GOOD", "HELD", "ESCROW", "FREE", "GRANTED", "HELD FOR"]
    lines.append(indent(render_table(header, rows)) if rows else "  <none>")
    if entries:
        lines.append("Goods ledger:")
        rows = [
            [
                str(e.get("at", "")),
                str(e.get("reason", "")),
                str(e.get("good", "")),
                str(e.get("quantity", "")),
                str(e.get("held", "")),
                str(e.get("counterparty", "")),
                str(e.get("session", "")),
            ]
            for e in entries
            if isinstance(e, dict)
        ]
        header = ["AT", "REASON", "GOOD", "QUANTITY", "HELD", "COUNTERPARTY", "SESSION"]
        lines.append(indent(render_table(header, rows)))
    return lines


async def cmd_describe(args: argparse.Namespace, out: TextIO) -> int:
    view = resolve_kind(args.kind)
    namespace = namespace_of(args)
    kube = connect(args)
    try:
        obj = await kube.get(view.res, args.name, namespace)
        events = await kube.list(EVENT, namespace) if obj is not None else []
    finally:
        await kube.close()
    if obj is None:
        print(f'Error: {view.kind} "{args.name}" not found in {namespace}', file=sys.stderr)
        return 1
    print(describe(view, obj, events, now_utc()), file=out)
    return 0


def describe(view: KindView, obj: dict[str, Any], events: Sequence[dict[str, Any]], now: dt.datetime) -> str:
    meta = obj.get("metadata") or {}
    status = dict(obj.get("status") or {})
    conditions = status.pop("conditions", None) or []
    entries = status.pop("entries", None) if view.kind == "Account" else None
    goods = status.pop("goods", None) if view.kind == "Account" else None
    goods_entries = status.pop("goodsEntries", None) if view.kind == "Account" else None
    lines = [
        f"Name:         {meta.get('name')}",
        f"Namespace:    {meta.get('namespace')}",
        f"Kind:         {view.kind}",
        f"Labels:       {', '.join(f'{k}={v}' for k, v in (meta.get('labels') or {}).items()) or '<none>'}",
        f"Created:      {meta.get('creationTimestamp', '')} ({age(meta.get('creationTimestamp'), now)} ago)",
        "Spec:",
        _yaml_block(obj.get("spec") or {}),
        "Status:",
        _yaml_block(status) if status else "  <none>",
        "Conditions:",
    ]
    if conditions:
        rows = [
            [c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", "")]
            for c in conditions
        ]
        lines.append(indent(render_table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows)))
    else:
        lines.append("  <none>")
    if entries is not None:
        lines.append("Ledger:")
        rows = [
            [
                str(e.get("at", "")),
                str(e.get("reason", "")),
                str(e.get("amount", "")),
                str(e.get("balance", "")),
                str(e.get("counterparty", "")),
                str(e.get("session", "")),
            ]
            for e in entries
        ]
        header = ["AT", "REASON", "AMOUNT", "BALANCE", "COUNTERPARTY", "SESSION"]
        lines.append(indent(render_table(header, rows)) if rows else "  <none>")
    if view.kind == "Account":
        lines.extend(_goods_lines(goods or [], goods_entries or []))
    mine = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("name") == meta.get("name")
        and (e.get("involvedObject") or {}).get("kind") == view.kind
    ]
    mine.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    lines.append("Events:")
    if mine:
        rows = [
            [
                e.get("type", ""),
                e.get("reason", ""),
                age(e.get("lastTimestamp") or e.get("eventTime"), now),
                (e.get("source") or {}).get("component") or e.get("reportingComponent", ""),
                e.get("message", ""),
            ]
            for e in mine[-20:]
        ]
        lines.append(indent(render_table(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], rows)))
    else:
        lines.append("  <none>")
    return "\n".join(lines)


# --- argument parsing --------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "get",
        help="list agents, variables, coordinations, votes, auctions, bids, markets, orders or accounts",
    )
    p.add_argument(
        "kind",
        help="agents, variables, coordinations, votes, auctions, bids, markets, orders or accounts "
        "(or a short name)",
    )
    p.add_argument("name", nargs="?", help="only this object")
    add_connection_options(p)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument(
        "-o",
        "--output",
        choices=("wide", "yaml", "json", "name"),
        help="wide: also the priority columns; yaml, json: the objects; name: kind/name",
    )
    p.add_argument(
        "-l", "--selector", help="label selector: k=v, k!=v, k, !k, k in (a,b), k notin (a,b) (comma: and)"
    )
    p.add_argument("-w", "--watch", action="store_true", help="after the list, print every change")
    p.set_defaults(async_func=cmd_get)

    p = sub.add_parser("describe", help="spec, status, conditions and recent Events of one object")
    p.add_argument("kind")
    p.add_argument("name")
    add_connection_options(p)
    p.set_defaults(async_func=cmd_describe)
