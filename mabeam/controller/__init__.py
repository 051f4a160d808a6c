"""The operator: kopf handlers that gather inputs, call the pure cores and carry out effects.

Importing this package registers every handler with kopf's default registry.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import threading
from collections.abc import Sequence
from typing import Any

import kopf

from . import _runtime
from ._runtime import Runtime
from ._settings import Settings

__all__ = ["Runtime", "Settings", "run"]

# One handler module per kind; each registers its handlers with kopf when imported.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
# The client is closed last, after the handler modules' own cleanups.
kopf.on.cleanup()(_runtime.cleanup)


async def run(
    *,
    kubeconfig: str | None = None,
    namespaces: Sequence[str] = (),
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    runtime: Runtime | None = None,
    liveness_endpoint: str | None = None,
    standalone: bool = True,
    peering_name: str | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (all namespaces unless some are named)."""
    _runtime.allow_deep_json()
    memo = runtime or Runtime(kubeconfig=kubeconfig)
    if runtime is not None and kubeconfig is not None:
        memo.kubeconfig = kubeconfig
    memo.namespaces = tuple(namespaces)
    kwargs: dict[str, Any] = {}
    if namespaces:
        kwargs["namespaces"] = list(namespaces)
    else:
        kwargs["clusterwide"] = True
    await kopf.operator(
        memo=memo,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        standalone=standalone,
        peering_name=peering_name,
        liveness_endpoint=liveness_endpoint,
        **kwargs,
    )


# Keep the import of _runtime's handlers explicit for readers and linters.
_ = _runtime
