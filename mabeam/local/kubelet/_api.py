"""The kubelet's access to the API server: its own credentials (bearer token, TLS with the CA and
client certificate of its kubeconfig), the HTTP calls and the pod watch, and the credentials it
hands each pod (a ServiceAccount token in a kubeconfig of the pod's own)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from mabeam.errors import ApiError

from ._pods import Pod, StartError, service_account

__all__ = ["ApiClient", "Credentials", "pod_path", "write_pod_kubeconfig"]


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


@dataclass
class Credentials:
    """What the kubelet's kubeconfig says about the server and about itself."""

    token: str | None = None
    ca_data: str | None = None  # base64, as in a kubeconfig
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    insecure: bool = False

    @classmethod
    def read(cls, path: Path) -> Credentials:
        config = yaml.safe_load(path.read_text()) or {}
        context_name = config.get("current-context")
        context: dict[str, Any] = next(
            (c["context"] for c in config.get("contexts", []) if c["name"] == context_name), {}
        )
        user: dict[str, Any] = next(
            (u["user"] for u in config.get("users", []) if u["name"] == context.get("user")), {}
        )
        cluster: dict[str, Any] = next(
            (c["cluster"] for c in config.get("clusters", []) if c["name"] == context.get("cluster")), {}
        )
        ca_data = cluster.get("certificate-authority-data")
        if not ca_data and cluster.get("certificate-authority"):
            ca_data = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()

        def pem(key: str) -> bytes | None:
            if user.get(key):
                return Path(user[key]).read_bytes()
            data = user.get(f"{key}-data")
            return base64.b64decode(data) if data else None

        token = user.get("token")
        return cls(
            token=str(token) if token else None,
            ca_data=str(ca_data) if ca_data else None,
            cert_pem=pem("client-certificate"),
            key_pem=pem("client-key"),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.ca_data or self.cert_pem or self.insecure):
            return None
        context = ssl.create_default_context()
        if self.ca_data:
            context.load_verify_locations(cadata=base64.b64decode(self.ca_data).decode())
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_pem and self.key_pem:
            # ssl loads a client certificate only from files: written privately, removed at once.
            with tempfile.TemporaryDirectory(prefix="mabeam-kubelet-") as tmp:
                cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
                cert.write_bytes(self.cert_pem)
                key.write_bytes(self.key_pem)
                context.load_cert_chain(cert, key)
        return context


class ApiClient:
    """HTTP calls to the API server as the kubelet (its bearer token, its TLS context)."""

    def __init__(self, api_url: str, credentials: Credentials) -> None:
        self.api_url = api_url
        self.credentials = credentials
        self._session: aiohttp.ClientSession | None = None

    @property
    def open(self) -> bool:
        return self._session is not None

    def connect(self) -> None:
        token = self.credentials.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        ssl_context = self.credentials.ssl_context()
        connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context is not None else None
        self._session = aiohttp.ClientSession(headers=headers, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        assert self._session is not None, "the kubelet is not running"
        headers = {}
        if body is not None:
            headers["Content-Type"] = (
                "application/merge-patch+json" if method == "PATCH" else "application/json"
            )
        async with self._session.request(
            method,
            self.api_url + path,
            data=None if body is None else json.dumps(body),
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    detail = json.loads(text).get("message", text)
                except ValueError:
                    detail = text
                raise ApiError(f"{method} {path}: HTTP {resp.status}: {detail}", status=resp.status)
            result = json.loads(text) if text else {}
            return result if isinstance(result, dict) else {}

    async def watch_pods(self, version: str, watch_timeout: float) -> AsyncGenerator[dict[str, Any]]:
        """The events of a watch of all pods from ``version``; ends quietly on a silent watch."""
        assert self._session is not None
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(watch_timeout)),
        }
        if version:
            params["resourceVersion"] = version
        timeout = aiohttp.ClientTimeout(total=watch_timeout + 10, sock_connect=10)
        try:
            async with self._session.get(
                self.api_url + "/api/v1/pods", params=params, timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    raise ApiError(f"watch pods: HTTP {resp.status}", status=resp.status)
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except TimeoutError:
            return  # the client-side guard against silent watches: list again


async def _pod_token(api: ApiClient, rt: Pod, *, token_seconds: int, retry_delay: float) -> str:
    """The pod's ServiceAccount token: a TokenRequest bound to the pod (on both control planes)."""
    account = service_account(rt.obj)
    path = f"/api/v1/namespaces/{rt.namespace}/serviceaccounts/{account}/token"
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": token_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": rt.name, "uid": rt.uid},
        },
    }
    while True:
        try:
            answer = await api.call("POST", path, body=body)
            return str((answer.get("status") or {})["token"])
        except ApiError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                raise StartError(
                    "CreateContainerConfigError",
                    f"no token for ServiceAccount {rt.namespace}/{account}: {exc}",
                ) from exc
        except (aiohttp.ClientError, TimeoutError, KeyError):
            pass
        if rt.terminating:
            raise StartError("ContainerCreating", "the pod is being deleted")
        await asyncio.sleep(retry_delay)


async def write_pod_kubeconfig(
    api: ApiClient, rt: Pod, path: Path, *, token_seconds: int, retry_delay: float
) -> None:
    """Write the pod's kubeconfig (its ``KUBECONFIG``), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cluster: dict[str, Any] = {"server": api.api_url}
    if api.credentials.ca_data:
        cluster["certificate-authority-data"] = api.credentials.ca_data
    token = await _pod_token(api, rt, token_seconds=token_seconds, retry_delay=retry_delay)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mabeam-local", "cluster": cluster}],
        "users": [{"name": "pod", "user": {"token": token}}],
        "contexts": [
            {
                "name": "mabeam-local",
                "context": {"cluster": "mabeam-local", "user": "pod", "namespace": rt.namespace},
            }
        ],
        "current-context": "mabeam-local",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f)
