"""What the command groups share: the connection options and the rendering helpers.

Every command talks to the API through ``mabeam.kube.client.Kube`` (:func:`connect`) with
``--kubeconfig`` (default ``$KUBECONFIG``, then ``~/.kube/config``), ``--context`` (default: the
kubeconfig's current one) and ``-n`` (default: the context's namespace, else ``default``).
Tables, ages and countdowns look like kubectl's.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from ..kube.client import Kube, load_config

__all__ = [
    "AUCTION_TERMINAL",
    "CLOCK_MECHANISMS",
    "COORDINATION_TERMINAL",
    "MARKET_TERMINAL",
    "add_connection_options",
    "age",
    "connect",
    "countdown",
    "indent",
    "namespace_of",
    "now_utc",
    "parse_time",
    "render_table",
    "show",
]

#: Coordination phases after which nothing changes any more.
COORDINATION_TERMINAL = frozenset({"Decided", "NoDecision", "Failed", "Cancelled"})
#: Auction phases after which nothing changes any more.
AUCTION_TERMINAL = frozenset({"Awarded", "NoSale", "Failed", "Cancelled"})
#: Market phases after which nothing changes any more.
MARKET_TERMINAL = frozenset({"Cleared", "NoTrade", "Failed", "Cancelled"})
#: Auction mechanisms that run in rounds of a clock price.
CLOCK_MECHANISMS = frozenset({"english", "dutch"})


# --- connection --------------------------------------------------------------------------------


def add_connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="the kubeconfig context to use (default: its current context)")
    p.add_argument("-n", "--namespace", help="namespace (default: the context's, else default)")


def connect(args: argparse.Namespace) -> Kube:
    """A client for ``--kubeconfig`` and ``--context``."""
    return Kube.connect(args.kubeconfig, context=getattr(args, "context", None))


def namespace_of(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    try:
        current = load_config(args.kubeconfig).get(context_name=getattr(args, "context", None))
    except Exception:  # no kubeconfig, or no such context: the connection will say so
        return "default"
    return (current.namespace if current else None) or "default"


# --- rendering ---------------------------------------------------------------------------------


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(value: Any) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def age(value: Any, now: dt.datetime) -> str:
    """kubectl's short age: 45s, 3m, 2h, 5d (empty when unknown)."""
    when = parse_time(value) if value else None
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


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def indent(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())


def show(value: Any) -> str:
    """A number for humans (12 significant digits)."""
    return f"{value:.12g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def countdown(phase: str, deadline: Any, now: dt.datetime, terminal: frozenset[str]) -> str:
    if phase in terminal:
        return "closed"
    when = parse_time(deadline) if deadline else None
    if when is None:
        return "no deadline yet"
    left = (when - now).total_seconds()
    return f"closes in {left:.0f}s" if left > 0 else "deadline passed"
