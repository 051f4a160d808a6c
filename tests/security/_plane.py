"""A control plane under attack: raw HTTP as anybody, and the admin's client for setup and checks.

The same attacks run on ``mabeam local`` (tests/security) and on the real control plane
(tests/e2e/test_security.py). Agents authenticate as on a cluster: with a token from the
TokenRequest API for their ServiceAccount ``mabeam-agent-<name>``.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from mabeam.kube.client import AlreadyExistsError, Kube
from mabeam.kube.resources import ROLE, ROLE_BINDING, SERVICE_ACCOUNT

AGENT_ROLE = "mabeam-agent"  # the ClusterRole the chart (and mabeam local) gives agents


@dataclass
class Reply:
    status: int
    body: Any

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, dict) else str(self.body)


def _ssl_contexts(
    config: dict[str, Any],
) -> tuple[str, ssl.SSLContext | bool, ssl.SSLContext | bool, str | None]:
    """(server, TLS context without and with the admin's client certificate, admin token)."""
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
    user = next(u for u in config["users"] if u["name"] == context["user"])["user"]
    server = str(cluster["server"]).rstrip("/")
    if not server.startswith("https"):
        return server, False, False, user.get("token")
    plain = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    admin = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    if user.get("client-certificate-data"):
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            admin.load_cert_chain(cert, key)
    return server, plain, admin, user.get("token")


@dataclass
class Plane:
    """A running control plane with the operator, seen by an attacker and by the admin."""

    kubeconfig: Path  # the cluster admin's
    namespace: str
    workdir: Path
    admin: Kube
    _tokens: dict[str, str] = field(default_factory=dict)
    _clients: list[Kube] = field(default_factory=list)

    def __post_init__(self) -> None:
        config = yaml.safe_load(self.kubeconfig.read_text())
        self.server, self._plain, self._admin_tls, self._admin_token = _ssl_contexts(config)
        self._ca = config["clusters"][0]["cluster"].get("certificate-authority-data")

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        admin: bool = False,
        content_type: str = "application/json",
    ) -> Reply:
        """One raw request: as the admin, or with ``token`` (None: anonymous)."""
        sent = {"Content-Type": content_type, **(headers or {})}
        tls = self._admin_tls if admin else self._plain
        if admin and self._admin_token:
            sent["Authorization"] = f"Bearer {self._admin_token}"
        elif token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body)
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.server + path, data=data, headers=sent, ssl=tls) as response,
        ):
            text = await response.text()
            try:
                return Reply(response.status, json.loads(text))
            except ValueError:
                return Reply(response.status, text)

    def path(self, resource: str, name: str = "", *, namespace: str | None = None, sub: str = "") -> str:
        """The URL path of a mabeam.io resource (``votes``) or a core/RBAC one (``v1/secrets``)."""
        ns = namespace or self.namespace
        if resource.startswith("v1/"):
            base = f"/api/v1/namespaces/{ns}/{resource[3:]}"
        elif resource.startswith("rbac/"):
            base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{resource[5:]}"
        else:
            base = f"/apis/mabeam.io/v1alpha1/namespaces/{ns}/{resource}"
        return "/".join(p for p in (base, name, sub) if p)

    async def service_account(self, account: str, namespace: str | None = None) -> None:
        ns = namespace or self.namespace
        try:
            await self.admin.create(SERVICE_ACCOUNT, {"metadata": {"name": account, "namespace": ns}})
        except AlreadyExistsError:
            pass

    async def token(self, account: str, namespace: str | None = None) -> str:
        """A TokenRequest token of a ServiceAccount (created if missing), as a kubelet gets one."""
        ns = namespace or self.namespace
        await self.service_account(account, ns)
        reply = await self.request(
            "POST",
            f"/api/v1/namespaces/{ns}/serviceaccounts/{account}/token",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
            admin=True,
        )
        assert reply.status == 201, reply
        return str(reply.body["status"]["token"])

    async def agent(self, name: str, namespace: str | None = None) -> str:
        """The token of agent ``name``'s ServiceAccount, with the rights every agent has."""
        ns = namespace or self.namespace
        key = f"{ns}/{name}"
        if key not in self._tokens:
            await self.grant(f"mabeam-agent-{name}", "ClusterRole", AGENT_ROLE, ns, account_namespace=ns)
            self._tokens[key] = await self.token(f"mabeam-agent-{name}", ns)
        return self._tokens[key]

    async def grant(
        self,
        account: str,
        kind: str,
        role: str,
        namespace: str,
        *,
        account_namespace: str | None = None,
        rules: list[dict[str, Any]] | None = None,
    ) -> None:
        """Bind a (Cluster)Role to a ServiceAccount in ``namespace`` (a Role is made from ``rules``)."""
        if rules is not None:
            try:
                await self.admin.create(
                    ROLE, {"metadata": {"name": role, "namespace": namespace}, "rules": rules}
                )
            except AlreadyExistsError:
                pass
        binding = {
            "metadata": {"name": f"{role}-{account}", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [
                {"kind": "ServiceAccount", "name": account, "namespace": account_namespace or namespace}
            ],
        }
        try:
            await self.admin.create(ROLE_BINDING, binding)
        except AlreadyExistsError:
            pass
