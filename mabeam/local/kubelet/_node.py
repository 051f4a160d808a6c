"""The kubelet's node: registering its ``Node`` and binding pods to it with the ``pods/binding``
subresource, as a scheduler does (there is no scheduler)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging

import aiohttp

from mabeam.errors import ApiError
from mabeam.models._base import rfc3339

from ._api import ApiClient, pod_path
from ._pods import POD_IP, Pod

__all__ = ["bind", "register_node"]

logger = logging.getLogger(__name__)


async def register_node(api: ApiClient, node_name: str, *, retry_delay: float) -> None:
    """Create the Node (Ready, on 127.0.0.1), or find it from an earlier run."""
    now = rfc3339(_dt.datetime.now(_dt.UTC))
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "the MABEAM local kubelet runs pods as processes on this machine",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "10000", "ephemeral-storage": "100Gi"}
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name,
            "labels": {
                "kubernetes.io/hostname": node_name,
                "kubernetes.io/os": "linux",
                "mabeam.io/local-kubelet": "true",
            },
        },
    }
    status = {
        "status": {
            "conditions": [ready],
            "addresses": [{"type": "InternalIP", "address": POD_IP}],
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {"kubeletVersion": "mabeam-local", "operatingSystem": "linux"},
        }
    }
    while True:
        try:
            with contextlib.suppress(ApiError):  # 409: registered by an earlier run
                await api.call("POST", "/api/v1/nodes", body=body)
            await api.call("PATCH", f"/api/v1/nodes/{node_name}/status", body=status)
            return
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("kubelet %s: cannot register the node yet (%s)", node_name, exc)
            await asyncio.sleep(retry_delay)


async def _bind_once(api: ApiClient, rt: Pod, node_name: str) -> None:
    """Bind with the ``pods/binding`` subresource, as a scheduler does, and read the pod back."""
    path = pod_path(rt.namespace, rt.name)
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": rt.name, "namespace": rt.namespace, "uid": rt.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
    }
    await api.call("POST", path + "/binding", body=binding)
    rt.obj = await api.call("GET", path)


async def bind(api: ApiClient, rt: Pod, node_name: str, *, retry_delay: float) -> bool:
    """Bind the pod to the node (retrying while the API is unreachable); False if it is gone."""
    while not rt.terminating:
        try:
            await _bind_once(api, rt, node_name)
            return True
        except ApiError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                logger.warning("kubelet %s: cannot bind %s/%s: %s", node_name, rt.namespace, rt.name, exc)
                return False
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(retry_delay)
    return False
