"""``mabeam get|describe``: list MABEAM objects and show one in full.

Tables use the printer columns of the generated CRDs, so ``mabeam get agents`` and
``kubectl get agents`` show the same columns.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from ..errors import MabeamError
from ..kube import crdgen
from ..kube.client import Kube
from ..kube.resources import AGENT, AUCTION, BID, COORDINATION, EVENT, MARKET, ORDER, VARIABLE, VOTE, Res
from ._common import add_connection_options, age, indent, namespace_of, now_utc, render_table

__all__ = ["KindView", "add_commands", "describe", "object_table", "resolve_kind"]

_RESOURCES = {r.plural: r for r in (AGENT, VARIABLE, COORDINATION, VOTE, AUCTION, BID, MARKET, ORDER)}


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


def object_table(
    view: KindView, objects: Sequence[dict[str, Any]], now: dt.datetime, *, all_namespaces: bool, wide: bool
) -> str:
    columns = [c for c in view.columns if wide or not c.get("priority")]
    header = [*(["NAMESPACE"] if all_namespaces else []), "NAME", *(c["name"].upper() for c in columns)]
    rows = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        cells = [_cell(_lookup(obj, c["jsonPath"]), c.get("type", "string"), now) for c in columns]
        rows.append([*([meta.get("namespace", "")] if all_namespaces else []), meta.get("name", ""), *cells])
    return render_table(header, rows)


# --- commands ----------------------------------------------------------------------------------


async def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    view = resolve_kind(args.kind)
    kube = Kube.connect(args.kubeconfig)
    try:
        if args.name:
            obj = await kube.get(view.res, args.name, namespace_of(args))
            if obj is None:
                print(f'Error: {view.kind} "{args.name}" not found in {namespace_of(args)}', file=sys.stderr)
                return 1
            objects = [obj]
        else:
            objects = await kube.list(view.res, None if args.all_namespaces else namespace_of(args))
    finally:
        await kube.close()
    if not objects:
        where = "any namespace" if args.all_namespaces else f"namespace {namespace_of(args)}"
        print(f"No {view.res.plural} found in {where}.", file=sys.stderr)
        return 0
    objects.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    print(
        object_table(
            view, objects, now_utc(), all_namespaces=args.all_namespaces, wide=args.output == "wide"
        ),
        file=out,
    )
    return 0


def _yaml_block(value: Any, indent: int = 2) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip()
    return "\n".join(" " * indent + line for line in text.splitlines())


async def cmd_describe(args: argparse.Namespace, out: TextIO) -> int:
    view = resolve_kind(args.kind)
    namespace = namespace_of(args)
    kube = Kube.connect(args.kubeconfig)
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
        "get", help="list agents, variables, coordinations, votes, auctions, bids, markets or orders"
    )
    p.add_argument(
        "kind",
        help="agents, variables, coordinations, votes, auctions, bids, markets or orders (or a short name)",
    )
    p.add_argument("name", nargs="?", help="only this object")
    add_connection_options(p)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-o", "--output", choices=("wide",), help="wide: also the priority columns")
    p.set_defaults(async_func=cmd_get)

    p = sub.add_parser("describe", help="spec, status, conditions and recent Events of one object")
    p.add_argument("kind")
    p.add_argument("name")
    add_connection_options(p)
    p.set_defaults(async_func=cmd_describe)
