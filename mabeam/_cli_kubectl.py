"""``mabeam get|describe|watch|vote``: read and answer MABEAM objects from the command line.

``watch`` draws coordinations here and auctions and markets with :mod:`mabeam._cli_trade`.

Tables use the printer columns of the generated CRDs, so ``mabeam get agents`` and
``kubectl get agents`` show the same columns. Every command talks to the API through
``mabeam.kube.client.Kube`` with ``--kubeconfig`` (default ``$KUBECONFIG``, then ``~/.kube/config``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from .errors import ConflictError, MabeamError
from .kube import crdgen
from .kube.client import Kube, load_config
from .kube.resources import AGENT, AUCTION, BID, COORDINATION, EVENT, MARKET, ORDER, VARIABLE, VOTE, Res
from .models.coordination import VoteSpec, vote_name

__all__ = ["add_commands", "resolve_kind"]

_RESOURCES = {r.plural: r for r in (AGENT, VARIABLE, COORDINATION, VOTE, AUCTION, BID, MARKET, ORDER)}
#: Coordination phases after which nothing changes any more.
TERMINAL = frozenset({"Decided", "NoDecision", "Failed", "Cancelled"})
SESSION_LABEL = "mabeam.io/session"
AGENT_LABEL = "mabeam.io/agent"


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


def _parse_time(value: Any) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def age(value: Any, now: dt.datetime) -> str:
    """kubectl's short age: 45s, 3m, 2h, 5d (empty when unknown)."""
    when = _parse_time(value) if value else None
    if when is None:
        return ""
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return _span(seconds)


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(value: Any, type_: str, now: dt.datetime) -> str:
    if value is None:
        return ""
    if type_ == "date":
        return age(value, now)
    if type_ == "boolean":
        return "true" if value else "false"
    return str(value)


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    try:
        current = load_config(args.kubeconfig).get()
    except Exception:  # no kubeconfig at all: the connection will say so
        return "default"
    return (current.namespace if current else None) or "default"


async def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    view = resolve_kind(args.kind)
    kube = Kube.connect(args.kubeconfig)
    try:
        if args.name:
            obj = await kube.get(view.res, args.name, _namespace(args))
            if obj is None:
                print(f'Error: {view.kind} "{args.name}" not found in {_namespace(args)}', file=sys.stderr)
                return 1
            objects = [obj]
        else:
            objects = await kube.list(view.res, None if args.all_namespaces else _namespace(args))
    finally:
        await kube.close()
    if not objects:
        where = "any namespace" if args.all_namespaces else f"namespace {_namespace(args)}"
        print(f"No {view.res.plural} found in {where}.", file=sys.stderr)
        return 0
    objects.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    print(
        object_table(view, objects, _now(), all_namespaces=args.all_namespaces, wide=args.output == "wide"),
        file=out,
    )
    return 0


def _yaml_block(value: Any, indent: int = 2) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip()
    return "\n".join(" " * indent + line for line in text.splitlines())


async def cmd_describe(args: argparse.Namespace, out: TextIO) -> int:
    view = resolve_kind(args.kind)
    namespace = _namespace(args)
    kube = Kube.connect(args.kubeconfig)
    try:
        obj = await kube.get(view.res, args.name, namespace)
        events = await kube.list(EVENT, namespace) if obj is not None else []
    finally:
        await kube.close()
    if obj is None:
        print(f'Error: {view.kind} "{args.name}" not found in {namespace}', file=sys.stderr)
        return 1
    print(describe(view, obj, events, _now()), file=out)
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
        lines.append(_indent(render_table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows)))
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
        lines.append(_indent(render_table(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], rows)))
    else:
        lines.append("  <none>")
    return "\n".join(lines)


def _indent(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())


async def cmd_vote(args: argparse.Namespace, out: TextIO) -> int:
    namespace = _namespace(args)
    spec = VoteSpec(session=args.session, agent=args.agent, choice=args.choice).to_wire()
    name = vote_name(args.session, args.agent)
    labels = {SESSION_LABEL: args.session, AGENT_LABEL: args.agent}
    kube = Kube.connect(args.kubeconfig)
    try:
        for _ in range(3):
            current = await kube.get(VOTE, name, namespace)
            try:
                if current is None:
                    await kube.create(
                        VOTE,
                        {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec},
                    )
                    print(f"vote.mabeam.io/{name} created", file=out)
                else:
                    meta = current["metadata"]
                    body = {
                        "metadata": {
                            "name": name,
                            "namespace": namespace,
                            "labels": {**(meta.get("labels") or {}), **labels},
                            "resourceVersion": meta["resourceVersion"],
                        },
                        "spec": spec,
                    }
                    await kube.replace(VOTE, body)
                    print(f"vote.mabeam.io/{name} updated", file=out)
                return 0
            except ConflictError:
                continue  # someone wrote it meanwhile; read again
    finally:
        await kube.close()
    print(f"Error: vote {name} kept changing; try again", file=sys.stderr)
    return 1


def render_session(obj: dict[str, Any], now: dt.datetime) -> str:
    """One frame of ``mabeam watch coordination``."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    deadline = _parse_time(status.get("deadline")) if status.get("deadline") else None
    if phase in TERMINAL:
        clock = "closed"
    elif deadline is None:
        clock = "no deadline yet"
    else:
        left = (deadline - now).total_seconds()
        clock = f"closes in {left:.0f}s" if left > 0 else "deadline passed"
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
        _indent(render_table(["AGENT", "ANSWER", "STATE"], rows)) if rows else "  (no participants yet)"
    )
    tally = status.get("tally") or {}
    if tally or spec.get("options"):
        options = list(spec.get("options") or []) + [o for o in tally if o not in (spec.get("options") or [])]
        lines.append("Tally:")
        lines.append(
            _indent(render_table(["OPTION", "VOTES"], [[o, f"{tally.get(o, 0):g}"] for o in options]))
        )
    result = status.get("result")
    if result:
        value = result.get("value")
        lines.append(
            f"Result: {value if value is not None else '(none)'} ({result.get('reason')}) "
            f"{result.get('message', '')}".rstrip()
        )
    return "\n".join(lines)


def _watched(res: Res) -> tuple[Callable[[dict[str, Any], dt.datetime], str], frozenset[str]] | None:
    """How to draw one frame of ``res`` and its terminal phases (None: not watchable)."""
    from . import _cli_trade  # deferred: _cli_trade builds on this module

    return {
        COORDINATION: (render_session, TERMINAL),
        AUCTION: (_cli_trade.render_auction, _cli_trade.AUCTION_TERMINAL),
        MARKET: (_cli_trade.render_market, _cli_trade.MARKET_TERMINAL),
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
    namespace = _namespace(args)
    tty = out.isatty()
    kube = Kube.connect(args.kubeconfig)
    updates: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def follow(resource_version: str | None) -> None:
        async for event, obj in kube.watch(view.res, namespace, resource_version=resource_version):
            if (obj.get("metadata") or {}).get("name") == args.name:
                await updates.put((event, obj))

    def draw(obj: dict[str, Any]) -> None:
        frame = render(obj, _now())
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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's, else default)")


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "get", help="list agents, variables, coordinations, votes, auctions, bids, markets or orders"
    )
    p.add_argument(
        "kind",
        help="agents, variables, coordinations, votes, auctions, bids, markets or orders (or a short name)",
    )
    p.add_argument("name", nargs="?", help="only this object")
    _common(p)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-o", "--output", choices=("wide",), help="wide: also the priority columns")
    p.set_defaults(async_func=cmd_get)

    p = sub.add_parser("describe", help="spec, status, conditions and recent Events of one object")
    p.add_argument("kind")
    p.add_argument("name")
    _common(p)
    p.set_defaults(async_func=cmd_describe)

    p = sub.add_parser("watch", help="follow a coordination, auction or market live until it ends")
    p.add_argument("kind", help="coordination, auction or market")
    p.add_argument("name")
    _common(p)
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between countdown redraws")
    p.set_defaults(async_func=cmd_watch)

    p = sub.add_parser("vote", help="answer a session by hand, as an agent")
    p.add_argument("session", help="the Coordination's name")
    p.add_argument("choice", help="the option to vote for")
    p.add_argument("--as", dest="agent", required=True, help="the Agent the Vote is for")
    _common(p)
    p.set_defaults(async_func=cmd_vote)
