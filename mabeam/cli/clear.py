"""``mabeam clear FILE``: clear a combinatorial auction offline, from a CATS file.

The file is read with :func:`mabeam.core.economics._cats.parse_cats` (bids sharing a dummy good
are one bidder's XOR bids) and cleared by the operator's own core,
:func:`mabeam.core.economics._combinatorial.clear_combinatorial`: the welfare-maximizing
allocation with its deterministic tie-break, and each winner's VCG price. No cluster is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

from ..core.economics._cats import parse_cats, to_auction
from ..core.economics._combinatorial import DEFAULT_WORK_LIMIT, clear_combinatorial
from ..errors import MabeamError
from ..models._amount import dump_amount, parse_amount, to_decimal

__all__ = ["add_commands", "cmd_clear"]


def cmd_clear(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        text = Path(args.file).read_text() if args.file != "-" else sys.stdin.read()
    except OSError as error:
        raise MabeamError(f"cannot read {args.file}: {error.strerror}") from None
    instance = parse_cats(text)
    bids, items = to_auction(instance)
    try:
        reserve = parse_amount(args.reserve)
    except ValueError as error:
        raise MabeamError(f"--reserve: {error}") from None
    outcome = clear_combinatorial(
        bids, items, Fraction(reserve), work_limit=args.work_limit, on_timeout=args.on_timeout
    )
    revenue = sum((w.price for w in outcome.wins), Fraction(0))
    if args.output == "json":
        doc: dict[str, Any] = {
            "reason": outcome.reason,
            "message": outcome.message,
            "welfare": dump_amount(to_decimal(outcome.welfare)),
            "revenue": dump_amount(to_decimal(revenue)),
            "gap": outcome.gap,
            "work": round(outcome.work, 3),
            "winners": [
                {
                    "bidder": w.agent,
                    "goods": [int(g[1:]) for g in w.items],
                    "bid": dump_amount(to_decimal(w.bid)),
                    "price": dump_amount(to_decimal(w.price)),
                }
                for w in outcome.wins
            ],
        }
        print(json.dumps(doc, indent=2), file=out)
        return 0 if outcome.reason in ("Optimal", "BestFound", "BelowReserve") else 2
    print(f"{len(instance.bids)} bids on {instance.goods} goods: {outcome.reason}", file=out)
    print(outcome.message, file=out)
    if outcome.wins:
        width = max(len(w.agent) for w in outcome.wins)
        print(f"{'BIDDER':<{width}}  {'BID':>16}  {'VCG PRICE':>16}  GOODS", file=out)
        for w in outcome.wins:
            goods = " ".join(g[1:] for g in w.items)
            print(
                f"{w.agent:<{width}}  {to_decimal(w.bid)!s:>16}  {to_decimal(w.price)!s:>16}  {goods}",
                file=out,
            )
    print(f"welfare {to_decimal(outcome.welfare)}  revenue {to_decimal(revenue)}", file=out)
    print(f"solver work {outcome.work:.3f} (deterministic)", file=out)
    return 0 if outcome.reason in ("Optimal", "BestFound", "BelowReserve") else 2


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "clear",
        help="clear a combinatorial auction offline from a CATS file: winners, revenue, VCG prices",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("file", help="a CATS file (goods N, bids M, dummy D, one line per bid); - for stdin")
    p.add_argument("--reserve", default="0", help="the reserve price per good (default 0)")
    p.add_argument(
        "--work-limit",
        type=float,
        default=DEFAULT_WORK_LIMIT,
        help=f"deterministic solver work limit (default {DEFAULT_WORK_LIMIT:g})",
    )
    p.add_argument("--on-timeout", choices=("NoSale", "BestFound"), default="NoSale")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_clear)
