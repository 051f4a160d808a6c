"""The ``mabeam`` command (also ``kubectl mabeam``).

Subcommands:
    crds      print the CRDs, write them (--write DIR) or check committed ones (--check DIR)
    run       run the operator against a cluster (kubeconfig, in-cluster, or the local API)
    local     run the local control plane: API server, kubelet (and the operator with --operator)
    demo      the whole thing on the local control plane, with progress printed
    get       list agents, variables, coordinations, votes, auctions, bids, markets or orders
              (the CRDs' printer columns)
    describe  one object's spec, status, conditions and recent Events
    watch     follow a coordination, auction or market live (answers, phase, countdown, result)
              until it ends
    vote      answer a session by hand as an agent
    bid       bid in an auction by hand as an agent (sealed: commit, then reveal; clock: accept)
    order     place an order in a market by hand as an agent
    validate  check manifests offline against the CRD schemas (strict, CEL rules included)
    clear     clear a combinatorial auction offline from a CATS file (winners, revenue, VCG prices)

One module per command group, each with ``add_commands(sub)``: ``crds``, ``run``, ``local``
(local and demo), ``get`` (get and describe), ``watch``, ``answer`` (vote, bid and order),
``validate`` and ``clear``; they share the connection options and the rendering helpers of ``_common``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from ..errors import MabeamError
from . import _logging, answer, clear, crds, get, local, run, validate, watch

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mabeam", description="Kubernetes-native agent coordination.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    from ..cluster import _cli as cluster

    for group in (crds, run, local, cluster, get, watch, answer, validate, clear):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging.configure(
        getattr(args, "log_format", "text"), level=logging.DEBUG if args.verbose else logging.INFO
    )
    try:
        if getattr(args, "async_func", None) is not None:
            return int(asyncio.run(args.async_func(args, sys.stdout)))
        result: int = args.func(args)
    except MabeamError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return result
