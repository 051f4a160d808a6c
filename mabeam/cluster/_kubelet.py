"""The local kubelet as a process of the real control plane (``python -m mabeam.cluster._kubelet``).

It registers its Node, binds and runs pods as local processes, hands each pod a TokenRequest
token, and stops every pod on SIGTERM or SIGINT (and dies with its parent: see ControlPlane).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

from ..local.kubelet import LocalKubelet


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mabeam.cluster._kubelet")
    p.add_argument("--kubeconfig", required=True, type=Path)
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--node", default="mabeam-node")
    p.add_argument("--images", default="{}", help="JSON: image repository -> entrypoint argv")
    p.add_argument("--probe-period", type=float, default=None)
    p.add_argument("--backoff-base", type=float, default=10.0)
    p.add_argument("--backoff-cap", type=float, default=300.0)
    p.add_argument("--grace-period", type=float, default=None)
    return p


async def _main(args: argparse.Namespace) -> None:
    kubelet = LocalKubelet(
        _server(args.kubeconfig),
        node_name=args.node,
        workdir=args.workdir,
        kubeconfig_path=args.kubeconfig,
        register_node=True,
        images=json.loads(args.images),
        probe_period=args.probe_period,
        backoff_base=args.backoff_base,
        backoff_cap=args.backoff_cap,
        grace_period=args.grace_period,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with kubelet:
        await stop.wait()


def _server(kubeconfig: Path) -> str:
    import yaml

    config = yaml.safe_load(kubeconfig.read_text())
    return str(config["clusters"][0]["cluster"]["server"])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(_parser().parse_args()))


if __name__ == "__main__":
    main()
