"""The entry point: the local API server as an async context manager, or in a thread of its own."""

from __future__ import annotations

import asyncio
import copy
import logging
import pathlib
import ssl
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

import aiohttp.test_utils
import kmock
import yaml

from mabeam.errors import InvalidSpecError

from .. import rbac
from ._auth import service_account_user
from ._emulator import LocalApiEmulator
from ._logs import LogFiles
from ._selectors import parse_label_selector
from ._tls import ServingTls, make_serving_tls
from ._types import ADMIN, AuditRecord, UserInfo, _ApiError, _meta

logger = logging.getLogger("mabeam.local.apiserver")


class LocalApiServer:
    """The local API server, as an async context manager (``async with LocalApiServer() as api``)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        watch_history: int = 1000,
        history_limit: int | None = None,
        retain_deleted: bool = True,
        require_namespaces: bool = True,
        bookmark_interval: float = 30.0,
        authorize: bool = True,
        tls: bool = False,
    ) -> None:
        """``tls``: serve HTTPS with a certificate of a CA made for this server (see :mod:`._tls`);
        the kubeconfigs it writes trust that CA. kubectl sends credentials only over TLS."""
        self.emulator = LocalApiEmulator(
            watch_history=watch_history,
            history_limit=history_limit,
            retain_deleted=retain_deleted,
            require_namespaces=require_namespaces,
            bookmark_interval=bookmark_interval,
            authorize=authorize,
        )
        self._host, self._port = host, port
        self._server: kmock.Server | None = None
        self.tls: ServingTls | None = make_serving_tls(host) if tls else None

    async def __aenter__(self) -> Self:
        await self.emulator.__aenter__()
        server_cls = aiohttp.test_utils.RawTestServer
        if self.tls is not None:
            server_cls = _tls_server(self.tls.context)
        self._server = kmock.Server(
            self.emulator, host=self._host, port=self._port or None, server_cls=server_cls
        )
        await self._server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.emulator.close_watches()
        await asyncio.sleep(0)  # let the streams see the end before the server goes
        if self._server is not None:
            await self._server.__aexit__(exc_type, exc, tb)
            self._server = None
        await self.emulator.__aexit__(exc_type, exc, tb)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local API server is not running (use `async with`)")
        return str(self._server.url).rstrip("/")

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the local API server is not running (use `async with`)")
        return self._server.port

    def issue_token(self, user: str = ADMIN.name, groups: tuple[str, ...] | None = None) -> str:
        """A new secret token that authenticates as ``user`` (see :func:`user_info` for groups)."""
        return self.emulator.issue_token(user_info(user, groups))

    def kubeconfig(
        self,
        path: str | pathlib.Path,
        *,
        user: str | None = ADMIN.name,
        groups: tuple[str, ...] | None = None,
    ) -> pathlib.Path:
        """Write a kubeconfig pointing at this server (trusting its CA if it serves TLS); return its path.

        Its token is a new secret that authenticates as ``user`` (by default the cluster admin;
        ``system:serviceaccount:<namespace>:<name>`` for a service account); ``user=None``
        writes no token, so requests are anonymous.
        """
        token = None if user is None else self.issue_token(user, groups)
        ca_data = None if self.tls is None else self.tls.ca_data
        return write_kubeconfig(path, self.url, token=token, ca_data=ca_data)

    def serve_logs(self, log_files: LogFiles) -> None:
        """Serve ``pods/log`` from the files ``log_files(namespace, pod, container)`` names
        (the kubelet's; the API server itself knows nothing of where pods run)."""
        self.emulator.log_files = log_files

    # ---- direct access for tests and oracles (no HTTP) ----

    def install_crds(self, crds: Iterable[dict[str, Any]]) -> None:
        """Create or replace CRDs, registering their kinds; InvalidSpecError if one is invalid."""
        for crd in crds:
            self.emulator.install_crd(crd)

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """A copy of a stored object, or None. ``resource``: ``v1/pods``, ``agents.mabeam.io``..."""
        rtype = self.emulator.resolve(resource)
        obj = self.emulator.load(rtype, namespace if rtype.namespaced else None, name)
        return None if obj is None else copy.deepcopy(self.emulator.present(rtype, obj))

    def objects(
        self, resource: str, namespace: str | None = None, *, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Copies of the stored objects of a resource, sorted by namespace and name."""
        rtype = self.emulator.resolve(resource)
        select = parse_label_selector(label_selector)
        return [
            copy.deepcopy(self.emulator.present(rtype, obj))
            for obj in self.emulator.live(rtype, namespace)
            if select(obj)
        ]

    def history(self, resource: str, name: str, namespace: str | None = None) -> list[dict[str, Any] | None]:
        """Every stored version of an object, oldest first; ``None`` marks a deletion."""
        rtype = self.emulator.resolve(resource)
        key = (rtype.store_key, namespace if rtype.namespaced else None, name)
        if key not in self.emulator.objects:
            return []
        return [None if v is None else copy.deepcopy(v.raw) for v in self.emulator.objects[key].history]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object directly (its type from apiVersion and kind)."""
        rtype = self.emulator._by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        namespace = _meta(obj).get("namespace") or ("default" if rtype.namespaced else None)
        try:
            return copy.deepcopy(self.emulator.create_object(rtype, namespace, obj))
        except _ApiError as exc:
            raise InvalidSpecError(exc.message) from None

    @property
    def resource_version(self) -> int:
        """The current (global) resourceVersion."""
        return self.emulator._rv

    @property
    def request_counts(self) -> dict[str, int]:
        """Requests served, by verb (get, list, watch, create, update, patch, delete, discovery)."""
        return dict(self.emulator.counts)

    @property
    def audit(self) -> list[AuditRecord]:
        """The latest resource requests, oldest first, with the caller's identity."""
        return list(self.emulator.audit)

    @property
    def server_errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the server (500s); a test can assert this is empty."""
        return list(self.emulator.server_errors)

    # ---- running without an event loop of one's own ----

    @classmethod
    def run_forever(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 8001,
        kubeconfig: str | pathlib.Path | None = None,
        crds: Iterable[dict[str, Any]] = (),
        on_ready: Callable[[LocalApiServer], None] | None = None,
    ) -> None:
        """Serve until interrupted (Ctrl-C). For ``mabeam local``."""

        async def serve() -> None:
            async with cls(host=host, port=port, retain_deleted=False, history_limit=20) as api:
                api.install_crds(crds)
                if kubeconfig is not None:
                    api.kubeconfig(kubeconfig)  # the cluster admin's
                if on_ready is not None:
                    on_ready(api)
                await asyncio.Event().wait()

        try:
            asyncio.run(serve())
        except KeyboardInterrupt:
            pass

    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> ThreadedApiServer:
        """Start a server in a background thread; stop it with ``.stop()`` (or ``with``)."""
        return ThreadedApiServer(cls(**kwargs))


class ThreadedApiServer:
    """A :class:`LocalApiServer` running on its own event loop in a daemon thread."""

    def __init__(self, api: LocalApiServer) -> None:
        self.api = api
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mabeam-local-apiserver", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                async with self.api:
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                self._failure = exc
                self._ready.set()
                raise

        try:
            self._loop.run_until_complete(serve())
        except BaseException:  # reported to the starting thread through self._failure
            logger.debug("the threaded local API server ended with an error", exc_info=True)
        finally:
            self._loop.close()

    @property
    def url(self) -> str:
        return self.api.url

    def kubeconfig(
        self,
        path: str | pathlib.Path,
        *,
        user: str | None = ADMIN.name,
        groups: tuple[str, ...] | None = None,
    ) -> pathlib.Path:
        return self.call(lambda: self.api.kubeconfig(path, user=user, groups=groups))  # type: ignore[no-any-return]

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (the state is not thread-safe) and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tls_server(context: ssl.SSLContext) -> type[aiohttp.test_utils.RawTestServer]:
    """aiohttp's raw server, started with ``context`` (kmock starts it without arguments)."""

    class TlsServer(aiohttp.test_utils.RawTestServer):
        async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
            await super().start_server(loop, ssl=context, **kwargs)

    return TlsServer


def user_info(name: str, groups: tuple[str, ...] | None = None) -> UserInfo:
    """A user with the groups Kubernetes gives it: ``admin`` is the cluster admin
    (``system:masters``), a ServiceAccount's name gets the ServiceAccount groups, anyone else
    ``system:authenticated``; ``groups`` replaces the defaults (``system:authenticated`` stays)."""
    if groups is None:
        if name == ADMIN.name:
            return ADMIN
        if name.startswith(rbac.SERVICE_ACCOUNT_PREFIX):
            namespace, _, account = name[len(rbac.SERVICE_ACCOUNT_PREFIX) :].partition(":")
            return service_account_user(namespace, account)
        groups = ()
    return UserInfo(name, (*groups, "system:authenticated"))


def write_kubeconfig(
    path: str | pathlib.Path, url: str, *, token: str | None = None, ca_data: str | None = None
) -> pathlib.Path:
    """Write a kubeconfig for ``url`` (context ``mabeam-local``): trusting the CA ``ca_data``
    (base64 PEM) for an HTTPS server, insecure otherwise."""
    user: dict[str, Any] = {"token": token} if token else {}
    cluster: dict[str, Any] = {"server": url}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    else:
        cluster["insecure-skip-tls-verify"] = True
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mabeam-local", "cluster": cluster}],
        "users": [{"name": "mabeam-local", "user": user}],
        "contexts": [
            {
                "name": "mabeam-local",
                "context": {"cluster": "mabeam-local", "user": "mabeam-local", "namespace": "default"},
            }
        ],
        "current-context": "mabeam-local",
        "preferences": {},
    }
    target = pathlib.Path(path)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
