"""The API resources MABEAM reads and writes, as lightkube generic resources (plain dicts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from ..models._base import GROUP, VERSION


@dataclass(frozen=True)
class Res:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def lightkube(self) -> Any:
        """The lightkube generic resource class (memoized by lightkube's registry)."""
        return _lightkube_class(self)

    @property
    def kopf_ref(self) -> str:
        """The resource reference kopf understands: ``plural.version.group``."""
        return f"{self.plural}.{self.version}.{self.group}" if self.group else f"{self.plural}.{self.version}"


_classes: dict[Res, Any] = {}


def _lightkube_class(res: Res) -> Any:
    if res not in _classes:
        factory = create_namespaced_resource if res.namespaced else create_global_resource
        _classes[res] = factory(res.group, res.version, res.kind, res.plural)
    return _classes[res]


POD = Res("", "v1", "Pod", "pods")
SERVICE_ACCOUNT = Res("", "v1", "ServiceAccount", "serviceaccounts")
CONFIG_MAP = Res("", "v1", "ConfigMap", "configmaps")
SECRET = Res("", "v1", "Secret", "secrets")
NAMESPACE = Res("", "v1", "Namespace", "namespaces", namespaced=False)
EVENT = Res("", "v1", "Event", "events")
LEASE = Res("coordination.k8s.io", "v1", "Lease", "leases")
ROLE = Res("rbac.authorization.k8s.io", "v1", "Role", "roles")
ROLE_BINDING = Res("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings")
CRD = Res("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False)


def mabeam(kind: str, plural: str) -> Res:
    return Res(GROUP, VERSION, kind, plural)


AGENT = mabeam("Agent", "agents")
VARIABLE = mabeam("Variable", "variables")
COORDINATION = mabeam("Coordination", "coordinations")
VOTE = mabeam("Vote", "votes")
AUCTION = mabeam("Auction", "auctions")
BID = mabeam("Bid", "bids")
MARKET = mabeam("Market", "markets")
ORDER = mabeam("Order", "orders")
ACCOUNT = mabeam("Account", "accounts")
