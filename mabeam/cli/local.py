"""``mabeam local`` and ``mabeam demo``: the local control plane, and the demo that runs on it.

Both need the ``[local]`` extra (kmock): :mod:`mabeam.local` is imported only when they run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands", "cmd_demo", "cmd_local"]


def cmd_local(args: argparse.Namespace) -> int:
    """Serve until SIGTERM, SIGINT, SIGHUP or the death of the parent process; then stop every pod."""
    from ..local import cluster
    from ..local.kubelet import die_with_parent

    parent = os.getppid()
    die_with_parent(signal.SIGTERM)  # whoever started us dies: stop as on SIGTERM
    if os.getppid() != parent:  # it died before we asked
        print("The parent process is gone: not starting.", file=sys.stderr)
        return 1
    received = asyncio.run(
        cluster.serve(
            port=args.port,
            workdir=Path(args.workdir),
            kubeconfig=Path(args.write_kubeconfig),
            with_operator=args.operator,
        )
    )
    print(f"Stopped on {received}: every local pod was terminated.", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.cluster:
        from ..cluster import _demo

        workdir = Path(args.workdir if args.workdir != ".mabeam-local" else ".mabeam-cluster-demo")
        return asyncio.run(_demo.main(Path(args.examples), timeout=max(args.timeout, 180.0), workdir=workdir))
    from ..local import demo

    return asyncio.run(demo.main(Path(args.examples), timeout=args.timeout, workdir=Path(args.workdir)))


def add_commands(sub: Any) -> None:
    p = sub.add_parser("local", help="run the local control plane (API server and kubelet)")
    p.add_argument("--port", type=int, default=6443, help="port of the local API (default 6443)")
    p.add_argument("--workdir", default=".mabeam-local", help="logs and kubeconfigs of local pods")
    p.add_argument("--write-kubeconfig", default=".mabeam-local/kubeconfig", help="where to write it")
    p.add_argument("--operator", action="store_true", help="run the operator in the same process")
    p.set_defaults(func=cmd_local)

    p = sub.add_parser("demo", help="local control plane + operator + examples, with outcomes printed")
    p.add_argument("--examples", default="examples", help="directory of manifests to apply")
    p.add_argument("--timeout", type=float, default=90.0, help="give up after this many seconds")
    p.add_argument("--workdir", default=".mabeam-local", help="logs and kubeconfigs of local pods")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="run on a real control plane (etcd, kube-apiserver, ...; built with Go on first use)",
    )
    p.set_defaults(func=cmd_demo)
