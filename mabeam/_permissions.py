"""What the operator and the agents may do in the API: the source the chart's RBAC must match.

A test renders the Helm chart and checks that its Roles grant exactly these rules; another
records every request the operator makes in the integration tests and checks that each one
is covered. Keep them in step with the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AGENT_RULES", "OPERATOR_CLUSTER_RULES", "OPERATOR_RULES", "Rule"]


@dataclass(frozen=True)
class Rule:
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()


_READ = ("get", "list", "watch")

#: Namespaced rules of the operator (a Role per watched namespace, or a ClusterRole).
OPERATOR_RULES: tuple[Rule, ...] = (
    Rule("mabeam.io", ("agents", "variables", "coordinations", "votes"), (*_READ, "patch", "update")),
    Rule("mabeam.io", ("agents/status", "variables/status", "coordinations/status", "votes/status"),
         ("get", "patch")),
    Rule("", ("pods",), (*_READ, "create", "delete")),
    Rule("", ("serviceaccounts",), ("get", "create")),
    Rule("", ("configmaps",), ("get", "create", "patch", "update")),
    Rule("", ("events",), ("create",)),
    Rule("events.k8s.io", ("events",), ("create",)),
    Rule("coordination.k8s.io", ("leases",), ("get", "create", "update", "patch")),
    # Each agent's ServiceAccount is bound to the ClusterRole mabeam-agent in its namespace,
    # and each Variable's writers to a Role the operator generates (see docs/decisions.md).
    Rule("rbac.authorization.k8s.io", ("rolebindings",), ("get", "create", "patch", "delete")),
    Rule("rbac.authorization.k8s.io", ("roles",), ("get", "create", "patch", "delete")),
    Rule("rbac.authorization.k8s.io", ("clusterroles",), ("bind",), resource_names=("mabeam-agent",)),
)

#: Cluster-scoped rules the operator needs wherever it runs: kopf discovers namespaces and CRDs.
OPERATOR_CLUSTER_RULES: tuple[Rule, ...] = (
    Rule("", ("namespaces",), ("list", "watch")),
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch")),
)

#: What every agent's ServiceAccount may do in its namespace. Admission narrows "update
#: their own answers" to the agent's own name; RBAC cannot (resourceNames cannot limit create).
AGENT_RULES: tuple[Rule, ...] = (
    Rule("mabeam.io", ("agents", "variables", "coordinations"), _READ),
    Rule("mabeam.io", ("votes",), (*_READ, "create", "update", "patch")),
    Rule("", ("configmaps",), ("get", "list", "watch")),
    Rule("coordination.k8s.io", ("leases",), ("get", "create", "update")),
)
