"""``mabeam delete-all``: delete every MABEAM object and wait until the operator has finished them.

The step before the operator goes (the chart's pre-delete hook runs it on ``helm uninstall``;
docs/install.md, "Uninstall"). Sessions and Variables carry the operator's finalizer: it
finishes them before the object may go (Agents carry none; the garbage collector removes their
pods). With the operator gone, their deletion would hang, so this runs while it is still up.

Sessions (Coordinations, Auctions, Markets) and their answers go first, then Variables, then
Agents. The command deletes again whatever appears meanwhile (an agent's late Vote) and waits
until nothing is left (an Account is refused while it holds escrow for a session being
deleted: it is deleted again once the session's hold is released); after ``--timeout`` it
fails, naming what is left and the finalizers that hold it. API failures worth retrying (no
connection, 5xx, 429) are retried until then.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ..errors import ApiError, MabeamError
from ..kube.client import Kube
from ..kube.resources import ACCOUNT, AGENT, AUCTION, BID, COORDINATION, MARKET, ORDER, VARIABLE, VOTE, Res
from ._common import connect, namespace_of

__all__ = ["DELETION_ORDER", "add_commands", "cmd_delete_all", "delete_all"]

#: The kinds, in the order they are deleted: sessions, their answers, Variables, Agents.
DELETION_ORDER: tuple[Res, ...] = (COORDINATION, AUCTION, MARKET, VOTE, BID, ORDER, ACCOUNT, VARIABLE, AGENT)

#: How many of the objects left after the timeout the error names.
_SHOWN = 10


def _retryable(error: ApiError) -> bool:
    # An Account refused because it still holds escrow (the account-escrow admission policy):
    # the sessions deleted before it release it (within a minute), then it may go.
    if error.status == 403 and "holds escrow for open sessions" in str(error):
        return True
    return error.status is None or error.status == 429 or error.status >= 500


def _ref(res: Res, obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{res.kind.lower()} {meta.get('namespace')}/{meta['name']}"


async def delete_all(
    kube: Kube,
    namespaces: Sequence[str] | None,
    *,
    timeout: float,
    interval: float = 1.0,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Delete every MABEAM object in ``namespaces`` (None: all) and wait until they are gone.

    Returns how many objects this call deleted. Raises MabeamError when some are still there
    after ``timeout`` seconds, or when the API refuses (403: the rights are missing).
    """
    deadline = clock() + timeout
    scopes: Sequence[str | None] = list(namespaces) if namespaces is not None else [None]
    deleted: set[str] = set()  # uids: each object is reported once
    last_error: ApiError | None = None
    while True:
        left: list[tuple[Res, dict[str, Any]]] = []
        try:
            for res in DELETION_ORDER:
                for namespace in scopes:
                    left += [(res, obj) for obj in await kube.list(res, namespace)]
            if not left:
                return len(deleted)
            for res, obj in left:
                meta = obj["metadata"]
                if meta.get("deletionTimestamp") or meta.get("uid") in deleted:
                    continue
                if await kube.delete(res, meta["name"], meta.get("namespace")):
                    where = meta.get("namespace")
                    print(
                        f'{res.kind.lower()}.{res.group} "{meta["name"]}" deleted in {where}',
                        file=out,
                        flush=True,
                    )
                deleted.add(meta.get("uid") or _ref(res, obj))
            last_error = None
        except ApiError as error:
            if not _retryable(error):
                raise
            last_error = error
        if clock() >= deadline:
            break
        await asyncio.sleep(interval)
    if last_error is not None:
        raise last_error  # still failing at the deadline: the error says what (main makes it one line)
    shown = ", ".join(
        f"{_ref(res, obj)} (finalizers: {', '.join(obj['metadata'].get('finalizers') or ['none'])})"
        for res, obj in left[:_SHOWN]
    )
    more = f" and {len(left) - _SHOWN} more" if len(left) > _SHOWN else ""
    raise MabeamError(
        f"{len(left)} MABEAM objects are still there after {timeout:g}s: {shown}{more}. Their "
        "finalizers are removed by the operator: is it running (kubectl get pods -A -l "
        "app.kubernetes.io/name=mabeam)? Without it they stay; see docs/install.md, Uninstall"
    )


async def cmd_delete_all(args: argparse.Namespace, out: TextIO) -> int:
    if args.all_namespaces and args.namespace:
        raise MabeamError("-A deletes in every namespace; leave out -n, or leave out -A")
    if args.timeout <= 0:
        raise MabeamError(f"--timeout must be more than 0 seconds, not {args.timeout:g}")
    if args.all_namespaces:
        namespaces: list[str] | None = None
    elif args.namespace:
        namespaces = list(dict.fromkeys(args.namespace))
    else:
        default = argparse.Namespace(namespace=None, kubeconfig=args.kubeconfig, context=args.context)
        namespaces = [namespace_of(default)]
    kube = connect(args)
    try:
        count = await delete_all(kube, namespaces, timeout=args.timeout, out=out)
    finally:
        await kube.close()
    where = "any namespace" if namespaces is None else "namespace " + ", ".join(namespaces)
    print(f"{count} deleted; no MABEAM objects left in {where}.", file=out, flush=True)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "delete-all",
        help="delete every MABEAM object (sessions, answers, Variables, Agents) and wait until it is gone",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    p.add_argument("--context", help="the kubeconfig context to use (default: its current context)")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="a namespace to empty (repeat for several; default: the context's, else default)",
    )
    p.add_argument("-A", "--all-namespaces", action="store_true", help="empty every namespace")
    p.add_argument(
        "--timeout",
        type=float,
        default=240.0,
        help="seconds to wait until everything is gone before failing (default 240)",
    )
    p.set_defaults(async_func=cmd_delete_all)
