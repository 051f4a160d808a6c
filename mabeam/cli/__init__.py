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
    bid       bid in an auction by hand as an agent (sealed: encrypted to the operator; clock: accept)
    order     place an order in a market by hand as an agent
    validate  check manifests offline against the CRD schemas (strict, CEL rules included)
    clear     clear a combinatorial auction offline from a CATS file (winners, revenue, VCG prices)
    delete-all
              delete every MABEAM object and wait until the operator has finished them (before
              the operator is uninstalled; the chart's pre-delete hook runs it)

One module per command group, each with ``add_commands(sub)``: ``crds``, ``run``, ``local``
(local and demo), ``get`` (get and describe), ``watch``, ``answer`` (vote, bid and order; the
vote itself in ``_vote``), ``validate``, ``clear`` and ``delete_all``; they share the connection
options (``--kubeconfig``, ``--context``, ``-n``) and the rendering helpers of ``_common``.

Errors a user can act on (a MabeamError, a missing kubeconfig or context, an API server that
cannot be reached) are one line on stderr, exit status 1; a closed pipe (``| head``) ends
quietly with 141; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import httpx2
from lightkube.core.exceptions import ConfigError

from ..errors import MabeamError
from . import _logging, answer, audit, clear, crds, delete_all, get, local, run, validate, watch

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mabeam", description="Kubernetes-native agent coordination.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    from ..cluster import _cli as cluster

    for group in (crds, run, local, cluster, get, watch, answer, validate, clear, audit, delete_all):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure a user can act on is one line on stderr, never a traceback."""
    args = build_parser().parse_args(argv)
    _logging.configure(
        getattr(args, "log_format", "text"), level=logging.DEBUG if args.verbose else logging.INFO
    )
    try:
        if getattr(args, "async_func", None) is not None:
            return int(asyncio.run(args.async_func(args, sys.stdout)))
        result: int = args.func(args)
    except BrokenPipeError:
        # The reader went away (`mabeam get agents | head -1`): stop quietly, as kubectl does.
        # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _one_line(exc, args)
        if message is None:
            raise
        print(f"Error: {message}", file=sys.stderr)
        return 1
    return result


def _one_line(exc: Exception, args: argparse.Namespace) -> str | None:
    """What went wrong and what to do, for the errors a user meets; None for a bug (a traceback)."""
    if isinstance(exc, MabeamError) and isinstance(exc.__cause__, httpx2.TransportError | ConnectionError):
        exc = exc.__cause__  # the client's ApiError for a connection that never got an answer
    if isinstance(exc, MabeamError):
        return str(exc)
    kubeconfig = getattr(args, "kubeconfig", None)
    if isinstance(exc, ConfigError):
        if getattr(args, "context", None) and "context" in str(exc).lower():
            return f"{exc}: --context names a context of the kubeconfig (kubectl config get-contexts)"
        return (
            f"{exc}. Pass --kubeconfig FILE, set KUBECONFIG, or start a local control plane with "
            "`mabeam local` (it writes .mabeam-local/kubeconfig)"
        )
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        where = f" ({kubeconfig})" if kubeconfig else ""
        return (
            f"cannot reach the API server of the kubeconfig{where}: {exc or type(exc).__name__}. "
            "Is the cluster (or `mabeam local`) running, and is its address right (kubectl cluster-info)?"
        )
    return None
