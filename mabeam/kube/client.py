"""A thin async Kubernetes client over lightkube that speaks plain dicts.

Everything MABEAM sends to the API goes through here, so that errors are translated once:
404 -> ``None``/``False`` where absence is a normal answer, 409 -> ``ConflictError`` (or
``AlreadyExists``), other failures -> ``ApiError`` with the status code (and the server's
``Retry-After``), a connection that failed or timed out -> ``ApiError`` without one.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.config.client_adapter import verify_cluster
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError as LightkubeApiError
from lightkube.core.exceptions import NotReadyError
from lightkube.types import PatchType

from ..errors import ApiError, ConflictError
from .resources import Res

__all__ = ["AlreadyExistsError", "Kube", "load_config"]


#: Connections to the API server: as many kept open as may be in flight.
T = TypeVar("T")

#: Requests of one client in flight at once (watches apart). The rest wait in the client, not in
#: httpx's connection pool: the pool rescans its whole queue and every connection at each
#: request and release (with 1 000 callers at once a fifth of an operator's CPU), and a request
#: that waits there longer than the timeout fails (PoolTimeout). More in flight than this gains
#: nothing on one API server; fewer connections cost less per request.
IN_FLIGHT = 32
#: No cap on connections: the requests are capped by IN_FLIGHT, and a watch (one per resource
#: and namespace) holds its connection while it lasts, so a cap would make watches wait.
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=IN_FLIGHT + 16, keepalive_expiry=30.0)


class AlreadyExistsError(ConflictError):
    """A create found an object of that name already."""


def load_config(kubeconfig: str | os.PathLike[str] | None = None) -> KubeConfig:
    """The kubeconfig to use: the given file, $KUBECONFIG, in-cluster, or ~/.kube/config."""
    if kubeconfig is not None:
        return KubeConfig.from_file(Path(kubeconfig))
    return KubeConfig.from_env()


def _status_code(exc: httpx.HTTPError) -> int:
    if isinstance(exc, LightkubeApiError):
        return int(getattr(exc.status, "code", 0) or 0)
    if isinstance(exc, httpx.HTTPStatusError):  # an error body that is not a Status (a proxy's)
        return exc.response.status_code
    return 0  # no answer: the connection failed or timed out


def _retry_after(exc: httpx.HTTPError) -> float | None:
    if not isinstance(exc, httpx.HTTPStatusError):
        return None
    try:
        return max(float(exc.response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None  # absent, or an HTTP date (the API server sends seconds)


def _translate(exc: httpx.HTTPError, what: str) -> Exception:
    code = _status_code(exc)
    if isinstance(exc, LightkubeApiError):
        message = getattr(exc.status, "message", None) or str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    if code == 409:
        reason = getattr(exc.status, "reason", "") if isinstance(exc, LightkubeApiError) else ""
        if reason == "AlreadyExists" or "already exists" in message.lower():
            return AlreadyExistsError(f"{what}: {message}")
        return ConflictError(f"{what}: {message}")
    return ApiError(f"{what}: {message}", status=code or None, retry_after=_retry_after(exc))


def _dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class Kube:
    """Async CRUD on any resource, with dict bodies."""

    def __init__(self, client: AsyncClient, *, in_flight: int = IN_FLIGHT) -> None:
        # lightkube's overloads are typed per resource class; we pass generic classes and dicts.
        self.client: Any = client
        self._shared: dict[tuple[str, str | None], _SharedList] = {}
        #: At most ``in_flight`` requests (not watches) at once; the others wait here, in order.
        self._gate = asyncio.Semaphore(in_flight)

    @classmethod
    def connect(
        cls,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        namespace: str | None = None,
        context: str | None = None,
    ) -> Kube:
        """A client for the kubeconfig's current context, or ``context`` (ConfigError if unknown)."""
        config: Any = load_config(kubeconfig)
        single = config.get(context_name=context) if context is not None else config.get()
        if context is not None:
            config = single
        transport = None
        if single is not None and single.user is not None:
            # httpx keeps only 20 idle connections of its 100 by default: with more requests in
            # flight (an operator with a fleet), every further one opened a new TLS connection.
            transport = httpx.AsyncHTTPTransport(
                verify=verify_cluster(single.cluster, single.user, single.abs_file), limits=LIMITS
            )
        return cls(
            AsyncClient(config=config, namespace=namespace, field_manager="mabeam", transport=transport)
        )

    async def close(self) -> None:
        await self.client.close()

    async def get(self, res: Res, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            async with self._gate:
                return _dict(await self.client.get(res.lightkube, name, namespace=namespace))
        except httpx.HTTPError as exc:
            if _status_code(exc) == 404:
                return None
            raise _translate(exc, f"get {res.kind} {namespace}/{name}") from exc

    async def list(
        self,
        res: Res,
        namespace: str | None = None,
        *,
        labels: Mapping[str, Any] | None = None,
    ) -> builtins.list[dict[str, Any]]:
        ns = namespace if namespace is not None else ("*" if res.namespaced else None)
        try:
            async with self._gate:
                return [
                    _dict(obj)
                    async for obj in self.client.list(res.lightkube, namespace=ns, labels=dict(labels or {}))
                ]
        except httpx.HTTPError as exc:
            raise _translate(exc, f"list {res.plural}") from exc

    async def list_versioned(
        self,
        res: Res,
        namespace: str | None = None,
        *,
        labels: Mapping[str, Any] | None = None,
        each: Callable[[dict[str, Any]], T],
        page: int = 500,
    ) -> tuple[builtins.list[T], str | None]:
        """``each`` of the objects listed, and the resourceVersion of the list (where a watch of
        the same objects resumes: every change after the list, none before). Read in pages of
        ``page`` objects, each object mapped as it is read, so a large list is never held whole.
        """
        ns = namespace if namespace is not None else ("*" if res.namespaced else None)
        try:
            selector = dict(labels or {})
            listing = self.client.list(res.lightkube, namespace=ns, labels=selector, chunk_size=page)
            async with self._gate:
                items = [each(_dict(obj)) async for obj in listing]
        except httpx.HTTPError as exc:
            raise _translate(exc, f"list {res.plural}") from exc
        try:
            return items, listing.resourceVersion
        except NotReadyError:  # no version in the answer: a watch then starts from now
            return items, None

    async def list_shared(self, res: Res, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """``list`` for many concurrent callers (every session pass lists the Agents of its
        namespace): they share requests, so that one (resource, namespace) has at most one list
        in flight and one waiting, however many callers there are. A caller still gets a list
        that began after its call (as fresh as its own ``list``), or that list's error. The
        objects are shared between callers: read them, never change them.
        """
        key = (res.plural, namespace)
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = _SharedList()
        try:
            return builtins.list(await shared.get(lambda: self.list(res, namespace)))
        finally:
            if not shared.callers:
                self._shared.pop(key, None)

    async def create(self, res: Res, body: Mapping[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": res.api_version, "kind": res.kind, **body}
        namespace = body.get("metadata", {}).get("namespace") if res.namespaced else None
        try:
            obj = res.lightkube.from_dict(body)
            async with self._gate:
                return _dict(await self.client.create(obj, namespace=namespace))
        except httpx.HTTPError as exc:
            raise _translate(exc, f"create {res.kind} {body.get('metadata', {}).get('name')}") from exc

    async def patch(
        self,
        res: Res,
        name: str,
        patch: Mapping[str, Any] | builtins.list[dict[str, Any]],
        *,
        namespace: str | None = None,
        status: bool = False,
        json_patch: bool = False,
    ) -> dict[str, Any]:
        """A merge patch (or a JSON patch); ``metadata.resourceVersion`` in it is a precondition."""
        target = res.lightkube.Status if status else res.lightkube
        patch_type = PatchType.JSON if json_patch else PatchType.MERGE
        try:
            async with self._gate:
                answer = await self.client.patch(
                    target, name, patch, namespace=namespace, patch_type=patch_type
                )
            return _dict(answer)
        except httpx.HTTPError as exc:
            raise _translate(exc, f"patch {res.kind} {namespace}/{name}") from exc

    async def replace(self, res: Res, body: Mapping[str, Any]) -> dict[str, Any]:
        """A PUT: fails with ConflictError when body's resourceVersion is no longer current."""
        meta = body.get("metadata", {})
        try:
            obj = res.lightkube.from_dict({"apiVersion": res.api_version, "kind": res.kind, **body})
            async with self._gate:
                answer = await self.client.replace(obj, meta.get("name"), namespace=meta.get("namespace"))
            return _dict(answer)
        except httpx.HTTPError as exc:
            raise _translate(exc, f"replace {res.kind} {meta.get('namespace')}/{meta.get('name')}") from exc

    async def delete(self, res: Res, name: str, namespace: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        try:
            async with self._gate:
                await self.client.delete(res.lightkube, name, namespace=namespace)
            return True
        except httpx.HTTPError as exc:
            if _status_code(exc) == 404:
                return False
            raise _translate(exc, f"delete {res.kind} {namespace}/{name}") from exc

    async def watch(
        self,
        res: Res,
        namespace: str | None = None,
        *,
        labels: Mapping[str, Any] | None = None,
        resource_version: str | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        ns = namespace if namespace is not None else ("*" if res.namespaced else None)
        async for event, obj in self.client.watch(
            res.lightkube, namespace=ns, labels=dict(labels or {}), resource_version=resource_version
        ):
            yield event, _dict(obj)


class _SharedList:
    """The lists of one (resource, namespace), shared by the callers that wait for one.

    Lists are numbered as they start. A caller that arrives when ``started`` lists have started
    needs one numbered above that (one that began after it called): it waits for the lock, and
    either the last list done is such a list (another waiter ran it) or it runs one itself.
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.started = 0
        self.callers = 0
        #: The number of the last list done, and its result or error.
        self.last: tuple[int, builtins.list[dict[str, Any]] | BaseException] | None = None

    async def get(
        self, fetch: Callable[[], Awaitable[builtins.list[dict[str, Any]]]]
    ) -> builtins.list[dict[str, Any]]:
        wanted = self.started + 1
        self.callers += 1
        try:
            async with self.lock:
                if self.last is None or self.last[0] < wanted:
                    self.started += 1
                    number = self.started
                    try:
                        self.last = (number, await fetch())
                    except Exception as exc:
                        self.last = (number, exc)
                outcome = self.last[1]
        finally:
            self.callers -= 1
            if not self.callers:
                self.last = None  # nobody waits: keep no list in memory
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
