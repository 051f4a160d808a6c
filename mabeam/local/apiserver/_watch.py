"""Watches: the selection of a list or watch, and the stream of a watch request.

A watch resumes from ``resourceVersion`` (410 Gone when it has expired), ends after
``timeoutSeconds`` and sends BOOKMARK events when asked; objects enter and leave a selection as
their labels and fields change (:func:`_view`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp.web
import attrs
import kmock

from ._apply import ServerSideApply
from ._selectors import Selector, parse_field_selector, parse_label_selector
from ._store import _Event, _Watch
from ._tables import table, table_version
from ._types import ResourceType, _ApiError, _meta


def _view(event: _Event, selector: Selector) -> tuple[str, dict[str, Any]] | None:
    """What a watcher with this selector sees of the event (objects enter and leave selections)."""
    new_in = selector(event.new)
    if event.type == "DELETED":
        return ("DELETED", event.new) if new_in else None
    old_in = event.old is not None and selector(event.old)
    if event.type == "ADDED" or (new_in and not old_in):
        return ("ADDED", event.new) if new_in else None
    if new_in:
        return "MODIFIED", event.new
    if old_in:
        return "DELETED", event.new
    return None


@attrs.define(kw_only=True)
class Watches(ServerSideApply):
    """List selections and watch streams."""

    def _selector(self, rtype: ResourceType, namespace: str | None, params: Any) -> Selector:
        try:
            labels = parse_label_selector(params.get("labelSelector", ""))
            fields = parse_field_selector(params.get("fieldSelector", ""))
        except ValueError as exc:
            raise _ApiError(400, "BadRequest", str(exc)) from None
        return lambda obj: (
            labels(obj) and fields(obj) and (namespace is None or _meta(obj).get("namespace") == namespace)
        )

    async def _stream_watch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        rtype = self._request_type(request)
        params = dict(request.params)
        if request.name:
            params["fieldSelector"] = ",".join(
                filter(None, [params.get("fieldSelector"), f"metadata.name={request.name}"])
            )
        selector = self._selector(rtype, request.namespace, params)
        timeout = float(params.get("timeoutSeconds") or 0) or None
        bookmarks = params.get("allowWatchBookmarks") == "true"
        since_text = params.get("resourceVersion") or "0"
        try:
            since = int(since_text)
        except ValueError:
            raise _ApiError(400, "BadRequest", f"invalid resourceVersion {since_text!r}") from None
        key = (rtype.group, rtype.plural)
        table_as = table_version(request.headers.get("Accept", ""))
        include = params.get("includeObject", "Metadata")
        if table_as is not None:
            table(rtype, [], version=table_as, include_object=include)  # a bad includeObject is a 400
        first = [True]

        def render(obj: dict[str, Any]) -> dict[str, Any]:
            shown = self.present(rtype, obj)
            if table_as is None:
                return shown
            # As a real server: a watch of Tables sends the column definitions once, first.
            headers, first[0] = first[0], False
            return table(rtype, [shown], version=table_as, include_object=include, headers=headers)

        # Collect the backlog and subscribe with no await in between: nothing is missed or doubled.
        backlog: list[tuple[str, dict[str, Any]]] = []
        if since == 0:
            backlog = [("ADDED", obj) for obj in self.live(rtype, request.namespace) if selector(obj)]
        elif since < self._expired.get(key, 0):
            error = _ApiError(410, "Expired", f"too old resource version: {since} ({self._expired[key] + 1})")
            backlog = [("ERROR", error.status())]
        else:
            for past in self._events.get(key, ()):
                seen = _view(past, selector) if past.rv > since else None
                if seen is not None:
                    backlog.append(seen)
        watch = _Watch(selector=selector)
        expired = bool(backlog) and backlog[0][0] == "ERROR"
        if not expired:
            self._watches.setdefault(key, set()).add(watch)

        assert request._raw_request is not None
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            await response.prepare(request._raw_request)
            for kind, obj in backlog:
                shown = obj if kind == "ERROR" else render(obj)
                await response.write(json.dumps({"type": kind, "object": shown}).encode() + b"\n")
            if expired:
                await response.write_eof()
                return response
            while not self._closing:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    wait = min(wait, left) if wait is not None else left
                try:
                    event: _Event | None = await asyncio.wait_for(watch.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        bookmark = {
                            "apiVersion": rtype.group_version,
                            "kind": rtype.kind,
                            "metadata": {"resourceVersion": str(self._rv)},
                        }
                        await response.write(
                            json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n"
                        )
                    continue
                if event is None:
                    break
                seen = _view(event, selector)
                if seen is not None:
                    line = {"type": seen[0], "object": render(seen[1])}
                    await response.write(json.dumps(line).encode() + b"\n")
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watches.get(key, set()).discard(watch)
        return response

    def close_watches(self) -> None:
        """End every open watch stream (on shutdown)."""
        self._closing = True
        for watches in self._watches.values():
            for watch in watches:
                watch.queue.put_nowait(None)
