"""``mabeam run``: the operator with its metrics endpoint, log format and leader election."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..kube.client import Kube

if TYPE_CHECKING:
    from aiohttp import web

    from ..controller import Runtime
    from ..controller._leader import LeaderElector

__all__ = ["add_arguments", "add_commands", "cmd_run", "run"]

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    p.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable)")
    p.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("--peering", default=None, help="kopf peering name (several replicas, one active)")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics at :PORT/metrics")
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="run the operator only while holding the Lease mabeam-operator (for several replicas)",
    )
    p.add_argument(
        "--leader-namespace",
        default=os.environ.get("POD_NAMESPACE") or "default",
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    p.add_argument(
        "--lease-seconds",
        type=int,
        default=15,
        help="how long a leader's claim lasts without renewal (default 15; renewed every quarter)",
    )
    p.add_argument("--identity", default=None, help="this replica's name in the Lease (default: pod-random)")
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON objects"
    )


async def run(args: argparse.Namespace) -> None:
    from .. import controller
    from ..controller._metrics import serve_metrics

    runtime = controller.Runtime(kubeconfig=args.kubeconfig)
    metrics_server = None
    if args.metrics_port is not None:
        metrics_server = serve_metrics(runtime.metrics.registry, args.metrics_port)
        log.info("Serving metrics at :%d/metrics", metrics_server.port)
    try:
        if args.leader_elect:
            await _run_elected(args, runtime)
        else:
            runtime.metrics.leader.set(1)
            await controller.run(
                kubeconfig=args.kubeconfig,
                namespaces=args.namespace or (),
                liveness_endpoint=args.liveness,
                standalone=not args.peering,
                peering_name=args.peering,
                runtime=runtime,
            )
    finally:
        if metrics_server is not None:
            metrics_server.close()


async def _run_elected(args: argparse.Namespace, runtime: Runtime) -> None:
    from .. import controller
    from ..controller._leader import LeaderElector, default_identity, operator_in_thread

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def operator(flag: threading.Event) -> None:
        await controller.run(
            kubeconfig=args.kubeconfig,
            namespaces=args.namespace or (),
            stop_flag=flag,
            runtime=runtime,
        )

    kube = Kube.connect(args.kubeconfig)
    elector = LeaderElector(
        kube,
        namespace=args.leader_namespace,
        identity=args.identity or default_identity(),
        lease_seconds=args.lease_seconds,
        metrics=runtime.metrics,
    )
    health = await _serve_health(args.liveness, elector) if args.liveness else None
    log.info("Leader election as %s on lease %s/%s", elector.identity, elector.namespace, elector.name)
    try:
        await elector.run(operator_in_thread(operator), stop)
    finally:
        if health is not None:
            await health.cleanup()
        await kube.close()


async def _serve_health(endpoint: str, elector: LeaderElector) -> web.AppRunner:
    """The liveness endpoint for every replica, leading or waiting (kopf's runs only in a leader)."""
    from aiohttp import web

    url = urlsplit(endpoint)

    async def healthz(_: web.Request) -> web.Response:
        body = {"identity": elector.identity, "leader": elector.leading}
        return web.Response(text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_get(url.path or "/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 8080).start()
    return runner


def cmd_run(args: argparse.Namespace) -> int:
    asyncio.run(run(args))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("run", help="run the operator")
    add_arguments(p)
    p.set_defaults(func=cmd_run)
