"""The ``pods/log`` subresource: a container's output, read from the file its kubelet writes.

The API server does not know where logs live: whoever runs the kubelet gives it a
:data:`LogFiles` function (``(namespace, pod, container) -> path``); ``LocalCluster`` passes the
local kubelet's. As a real API server: the container defaults to the pod's only one (400 when
there are several), ``tailLines``/``limitBytes`` cut the output, ``follow`` streams what is
appended until the pod stops or the client goes.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Callable
from typing import Any

import aiohttp.web

from ._types import _ApiError, _meta

__all__ = ["LogFiles", "choose_container", "stream_log", "tail"]

#: Where a container's log is: ``(namespace, pod, container) -> path``.
LogFiles = Callable[[str, str, str], pathlib.Path]

_FOLLOW_POLL = 0.2  # seconds between looks at a followed log file


def choose_container(pod: dict[str, Any], requested: str | None) -> str:
    """The container whose log is asked for (400 BadRequest as the API server words it)."""
    name = _meta(pod).get("name", "")
    spec = pod.get("spec") or {}
    containers = [c.get("name") for c in spec.get("containers") or [] if isinstance(c, dict)]
    init = [c.get("name") for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    if requested:
        if requested not in containers and requested not in init:
            raise _ApiError(
                400,
                "BadRequest",
                f"container {requested} is not valid for pod {name}",
            )
        return requested
    if len(containers) == 1:
        return str(containers[0])
    choices = " ".join(map(str, containers))
    raise _ApiError(
        400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: [{choices}]"
    )


def _int_param(params: Any, key: str) -> int | None:
    text = params.get(key)
    if text in (None, ""):
        return None
    try:
        value = int(text)
    except ValueError:
        raise _ApiError(400, "BadRequest", f"{key}: Invalid value: {text!r}: must be an integer") from None
    if value < 0 or (value == 0 and key == "limitBytes"):
        raise _ApiError(400, "BadRequest", f"{key}: Invalid value: {value}: must be greater than 0")
    return value


def tail(data: bytes, lines: int | None) -> bytes:
    """The last ``lines`` lines of ``data`` (all of it for None)."""
    if lines is None:
        return data
    if lines == 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


async def stream_log(
    raw_request: aiohttp.web.BaseRequest,
    path: pathlib.Path,
    params: Any,
    *,
    running: Callable[[], bool],
) -> aiohttp.web.StreamResponse:
    """Answer a log request from ``path``; with ``follow``, keep sending what is appended while
    ``running()`` says the container may still write."""
    lines = _int_param(params, "tailLines")
    limit = _int_param(params, "limitBytes")
    follow = params.get("follow") in ("true", "1")
    data = tail(path.read_bytes(), lines)
    if limit is not None:
        data = data[:limit]
    if not follow:
        return aiohttp.web.Response(body=data, status=200, content_type="text/plain")
    response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    await response.prepare(raw_request)
    sent = len(data)
    offset = path.stat().st_size
    try:
        await response.write(data)
        while limit is None or sent < limit:
            size = path.stat().st_size if path.exists() else 0
            if size > offset:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(size - offset)
                offset = size
                if limit is not None:
                    chunk = chunk[: limit - sent]
                sent += len(chunk)
                await response.write(chunk)
                continue
            if not running():
                break
            await asyncio.sleep(_FOLLOW_POLL)  # a file has no change notification to wait on
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    return response
