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
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import _cli_kubectl, _cli_run, _cli_trade, _cli_validate, _logging
from .errors import MabeamError

__all__ = ["main"]


def _cmd_crds(args: argparse.Namespace) -> int:
    from .kube import crdgen

    if args.check:
        stale = crdgen.check_crds(Path(args.check))
        for name in stale:
            print(f"{name}: differs from the models; run `make crds`", file=sys.stderr)
        return 1 if stale else 0
    if args.write:
        for path in crdgen.write_crds(Path(args.write)):
            print(path)
        return 0
    print("\n---\n".join(crdgen.render_yaml(crd) for crd in crdgen.generate_crds()), end="")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from . import _cli_run

    asyncio.run(_cli_run.run(args))
    return 0


def _cmd_local(args: argparse.Namespace) -> int:
    from .local import cluster

    try:
        asyncio.run(
            cluster.serve(
                port=args.port,
                workdir=Path(args.workdir),
                kubeconfig=Path(args.write_kubeconfig),
                with_operator=args.operator,
            )
        )
    except KeyboardInterrupt:
        print("Stopped: every local pod was terminated.")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .local import demo

    return asyncio.run(demo.main(Path(args.examples), timeout=args.timeout, workdir=Path(args.workdir)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mabeam", description="Kubernetes-native agent coordination.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("crds", help="print, write or check the CustomResourceDefinitions")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="DIR", help="write one YAML file per kind into DIR")
    group.add_argument("--check", metavar="DIR", help="exit 1 if DIR's CRDs differ from the models")
    p.set_defaults(func=_cmd_crds)

    p = sub.add_parser("run", help="run the operator")
    _cli_run.add_arguments(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("local", help="run the local control plane (API server and kubelet)")
    p.add_argument("--port", type=int, default=6443, help="port of the local API (default 6443)")
    p.add_argument("--workdir", default=".mabeam-local", help="logs and kubeconfigs of local pods")
    p.add_argument("--write-kubeconfig", default=".mabeam-local/kubeconfig", help="where to write it")
    p.add_argument("--operator", action="store_true", help="run the operator in the same process")
    p.set_defaults(func=_cmd_local)

    p = sub.add_parser("demo", help="local control plane + operator + examples, with outcomes printed")
    p.add_argument("--examples", default="examples", help="directory of manifests to apply")
    p.add_argument("--timeout", type=float, default=90.0, help="give up after this many seconds")
    p.add_argument("--workdir", default=".mabeam-local", help="logs and kubeconfigs of local pods")
    p.set_defaults(func=_cmd_demo)

    _cli_kubectl.add_commands(sub)
    _cli_trade.add_commands(sub)
    _cli_validate.add_command(sub)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
