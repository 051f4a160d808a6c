"""``mabeam audit <kind>/<name>``: recompute an ended auction or market and check what was applied.

The outcome is recomputed from the answers the session's status records, with the same pure
engine the operator ran (:mod:`mabeam.core.economics.audit`); then the settlement, and each
Account's ledger. Exit status 0 if everything matches, 1 if something does not.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import pydantic

from ..core.economics.audit import audit_auction, audit_market
from ..core.ledger import Ledger
from ..kube.resources import ACCOUNT, AUCTION, MARKET
from ..models.account import AccountStatus
from ..models.auction import AuctionSpec, AuctionStatus
from ..models.market import MarketSpec, MarketStatus
from ._common import add_connection_options, connect, namespace_of, render_table

__all__ = ["add_commands", "cmd_audit"]

_KINDS = {"auction": AUCTION, "auctions": AUCTION, "market": MARKET, "markets": MARKET}


async def cmd_audit(args: argparse.Namespace, out: TextIO) -> int:
    kind, _, name = str(args.target).partition("/")
    res = _KINDS.get(kind.lower())
    if res is None or not name:
        print(
            "Error: name an auction or a market: mabeam audit auction/<name> (or market/<name>)",
            file=sys.stderr,
        )
        return 2
    namespace = namespace_of(args)
    kube = connect(args)
    try:
        obj = await kube.get(res, name, namespace)
        accounts = await kube.list(ACCOUNT, namespace) if obj is not None else []
    finally:
        await kube.close()
    if obj is None:
        print(f'Error: {res.kind} "{name}" not found in {namespace}', file=sys.stderr)
        return 1
    ledgers: dict[str, Ledger] = {}
    for account in accounts:
        try:
            ledgers[account["metadata"]["name"]] = Ledger.from_status(
                AccountStatus.model_validate(account.get("status") or {})
            )
        except pydantic.ValidationError:
            continue
    try:
        report: Any
        if res is AUCTION:
            report = audit_auction(
                name,
                AuctionSpec.model_validate(obj.get("spec") or {}),
                AuctionStatus.model_validate(obj.get("status") or {}),
                ledgers,
            )
        else:
            report = audit_market(
                name,
                MarketSpec.model_validate(obj.get("spec") or {}),
                MarketStatus.model_validate(obj.get("status") or {}),
                ledgers,
            )
    except pydantic.ValidationError as exc:
        print(f"Error: {res.kind} {name} cannot be read: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 1
    rows = [[what, "yes" if ok else "NO", detail] for what, ok, detail in report.findings]
    print(render_table(["CHECK", "MATCHES", "DETAIL"], rows), file=out)
    print(
        f"{res.kind.lower()}/{name}: {'the applied outcome matches' if report.ok else 'MISMATCH'}", file=out
    )
    return 0 if report.ok else 1


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "audit",
        help="recompute an ended auction or market from its recorded answers and check what was applied",
    )
    p.add_argument("target", help="auction/<name> or market/<name>")
    add_connection_options(p)
    p.set_defaults(async_func=cmd_audit)
