"""``mabeam local`` and ``mabeam demo``: the local control plane, and the demo that runs on it.

Both need the ``[local]`` extra (kmock): :mod:`mabeam.local` is imported only when they run,
and without the extra they say what to install instead of failing on an import. The demo also
needs the example manifests (``examples/``) and the example agents they run (``agents/*.py``,
started from the working directory): they are in a source checkout, not in the wheel, and the
demo says so when they are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import MabeamError

__all__ = ["add_commands", "cmd_demo", "cmd_local", "require_examples", "require_local_extra"]

_SOURCE = "https://github.com/mabeam/mabeam"


def require_local_extra(command: str) -> None:
    """MabeamError saying what to install when the ``[local]`` extra is missing."""
    try:
        import kmock  # noqa: F401  (only whether it is there)
    except ImportError:
        raise MabeamError(
            f"`mabeam {command}` runs the local control plane, which needs the [local] extra: "
            "pip install 'mabeam[local]'"
        ) from None


def require_examples(examples: Path) -> None:
    """MabeamError when the demo's manifests, or the example agents they run, are not here."""
    manifests = [p for p in examples.glob("*.y*ml")] if examples.is_dir() else []
    if not manifests:
        raise MabeamError(
            f"no manifests in {examples}/: the demo runs the examples of a MABEAM source checkout "
            f"(not in the wheel): git clone {_SOURCE} && cd mabeam && mabeam demo (or pass --examples DIR)"
        )
    wanted = {
        arg
        for text in (p.read_text() for p in manifests)
        for arg in text.split()
        if arg.startswith("agents/") and arg.rstrip(",]").endswith(".py")
    }
    missing = sorted(a.rstrip(",]") for a in wanted if not Path(a.rstrip(",]")).is_file())
    if missing:
        raise MabeamError(
            f"the examples run {', '.join(missing)} from the working directory, and it is not here: "
            f"run the demo from a MABEAM source checkout (git clone {_SOURCE})"
        )


def cmd_local(args: argparse.Namespace) -> int:
    """Serve until SIGTERM, SIGINT, SIGHUP or the death of the parent process; then stop every pod."""
    require_local_extra("local")
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
    require_local_extra("demo")
    require_examples(Path(args.examples))
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
    p.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds")
    p.add_argument("--workdir", default=".mabeam-local", help="logs and kubeconfigs of local pods")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="run on a real control plane (etcd, kube-apiserver, ...; built with Go on first use)",
    )
    p.set_defaults(func=cmd_demo)
