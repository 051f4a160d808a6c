"""``mabeam cluster up|down|build``: a real control plane on this machine (needs Go to build)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from ..errors import MabeamError

__all__ = ["add_commands", "operator_values"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def operator_values(**extra: Any) -> dict[str, Any]:
    """Chart values for the local kubelet: every namespace, ports free on this machine."""
    return {
        "clusterWide": True,
        "ports": {"health": _free_port(), "metrics": _free_port()},
        "networkPolicy": {"enabled": False},
        "livenessProbe": {"initialDelaySeconds": 10, "periodSeconds": 5},
        "readinessProbe": {"periodSeconds": 1},
        **extra,
    }


def _cmd_up(args: argparse.Namespace) -> int:
    from . import ControlPlane, build_binaries, install
    from ._install import OPERATOR_IMAGE

    workdir = Path(args.workdir)
    if (workdir / "state.json").exists():
        raise MabeamError(f"a control plane already runs from {workdir}; `mabeam cluster down` first")
    bin_dir = build_binaries()
    plane = ControlPlane(
        workdir,
        bin_dir=bin_dir,
        detached=True,
        kwok=args.kwok,
        images={OPERATOR_IMAGE: ["python", "-m", "mabeam.cli"]},
    )
    plane.start()
    print(f"Kubernetes API at {plane.url} (etcd, kube-apiserver, kube-controller-manager, local kubelet)")
    if args.install:
        install(plane.admin_kubeconfig, values=operator_values())
        print("MABEAM installed from charts/mabeam (namespace mabeam-system); the operator runs as its pod")
    print(f"  export KUBECONFIG={plane.admin_kubeconfig}")
    print(f"Logs in {plane.workdir / 'logs'}, pod logs in {plane.pods_dir}. `mabeam cluster down` stops it.")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from ._controlplane import stop_recorded

    stopped = stop_recorded(Path(args.workdir))
    print(f"Stopped {', '.join(stopped)}." if stopped else f"No control plane runs from {args.workdir}.")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from . import build_binaries

    print(build_binaries())
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("cluster", help="a real Kubernetes control plane on this machine (built with Go)")
    cmds = p.add_subparsers(dest="cluster_command", required=True)
    up = cmds.add_parser(
        "up", help="build (once) and start etcd, kube-apiserver, kube-controller-manager, kubelet"
    )
    up.add_argument("--workdir", default=".mabeam-cluster", help="certificates, data, logs, kubeconfig")
    up.add_argument("--install", action="store_true", help="install MABEAM from the Helm chart")
    up.add_argument("--kwok", action="store_true", help="also run kwok (fake nodes and pods, for scale)")
    up.set_defaults(func=_cmd_up)
    down = cmds.add_parser("down", help="stop the control plane started by `up`")
    down.add_argument("--workdir", default=".mabeam-cluster")
    down.set_defaults(func=_cmd_down)
    build = cmds.add_parser("build", help="build (or find) the binaries and print their folder")
    build.set_defaults(func=_cmd_build)
