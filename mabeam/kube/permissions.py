"""What the operator and the agents may do in the API: the source the chart's RBAC must match.

A test renders the Helm chart and checks that its Roles grant exactly these rules; another
records every request the operator makes in the integration tests and checks that each one
is covered. Keep them in step with the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AGENT_RULES",
    "CLEANUP_RULES",
    "OPERATOR_CLUSTER_RULES",
    "OPERATOR_OWN_NAMESPACE_RULES",
    "OPERATOR_RULES",
    "SEALING_KEY_SECRET",
    "Rule",
]


@dataclass(frozen=True)
class Rule:
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()


_READ = ("get", "list", "watch")

#: Namespaced rules of the operator (a Role per watched namespace, or a ClusterRole).
#: tests/integration/test_rbac_calls.py checks both directions: every request the operator
#: makes is granted here, and everything granted here is used (or has a stated reason).
OPERATOR_RULES: tuple[Rule, ...] = (
    # "update" on variables is never a request of ours: RBAC lets the operator grant writers
    # update on their Variable (the writer Roles) only if it holds that right itself.
    # Agents are reconciled from the watch (controller/agents.py), and read one by one only when
    # a recorded pod is gone (is its Agent still there, or was the pod deleted with it?).
    Rule("mabeam.io", ("agents",), (*_READ, "patch")),
    Rule("mabeam.io", ("coordinations", "auctions", "markets"), (*_READ, "patch")),
    Rule("mabeam.io", ("variables",), (*_READ, "patch", "update")),
    Rule("mabeam.io", ("votes", "bids", "orders"), ("list", "watch")),
    # Accounts are granted by administrators; the operator creates only the house's Account.
    Rule("mabeam.io", ("accounts",), (*_READ, "create")),
    Rule(
        "mabeam.io",
        (
            "accounts/status",
            "agents/status",
            "variables/status",
            "coordinations/status",
            "votes/status",
            "auctions/status",
            "bids/status",
            "markets/status",
            "orders/status",
        ),
        ("patch",),
    ),
    Rule("", ("pods",), ("list", "watch", "create", "delete")),
    Rule("", ("serviceaccounts",), ("create",)),
    Rule("", ("configmaps",), ("get", "create", "update")),
    Rule("", ("events",), ("create",)),
    # Each Variable's lock Lease is created (then read, and watched: a lock taken or released
    # wakes its Variable); the leader Lease (--leader-elect) is written. "update" on leases also
    # lets the operator grant writers update on their lock.
    Rule("coordination.k8s.io", ("leases",), ("get", "watch", "create", "update")),
    # Each agent's ServiceAccount is bound to the ClusterRole mabeam-agent in its namespace,
    # and each Variable's writers to a Role the operator generates (see docs/variables.md).
    Rule("rbac.authorization.k8s.io", ("roles", "rolebindings"), ("get", "create", "patch")),
    Rule("rbac.authorization.k8s.io", ("clusterroles",), ("bind",), resource_names=("mabeam-agent",)),
)

#: The leader Lease (``--leader-elect``, replicas > 1) in the release namespace when that namespace
#: is not watched: read, made, renewed. Not ``watch``: the lock Leases' watch needs that only
#: where Variables are.
LEADER_RULES: tuple[Rule, ...] = (Rule("coordination.k8s.io", ("leases",), ("get", "create", "update")),)

#: Cluster-scoped rules the operator needs wherever it runs: kopf discovers our CRDs.
OPERATOR_CLUSTER_RULES: tuple[Rule, ...] = (
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch")),
)

#: The Secret that holds the operator's private key for sealed bids (docs/security.md).
SEALING_KEY_SECRET = "mabeam-sealing-key"

#: Rules of the operator in its own namespace only (the release namespace; never a watched
#: namespace's Role, never a ClusterRole): its sealing key. RBAC cannot limit "create" by name
#: (the name is in the body, not the URL), so create covers any Secret of that namespace;
#: reading is limited to the one Secret. Agents are granted no Secrets at all.
OPERATOR_OWN_NAMESPACE_RULES: tuple[Rule, ...] = (
    Rule("", ("secrets",), ("get",), resource_names=(SEALING_KEY_SECRET,)),
    Rule("", ("secrets",), ("create",)),
)

#: What every agent's ServiceAccount may do in its namespace. Admission narrows "update
#: their own answers" to the agent's own name; RBAC cannot (resourceNames cannot limit create).
#: No Leases: a Variable's lock Lease is created by the operator, and only that Variable's
#: writers may get/update it (the per-Variable writer Role, see docs/variables.md). Of the
#: ConfigMaps only the projection mabeam-variables is readable (list/watch with the field
#: selector metadata.name=mabeam-variables, as Kubernetes authorizes it).
AGENT_RULES: tuple[Rule, ...] = (
    Rule("mabeam.io", ("agents", "variables", "coordinations", "auctions", "markets"), _READ),
    Rule("mabeam.io", ("votes", "bids", "orders"), (*_READ, "create", "update", "patch")),
    Rule("", ("configmaps",), _READ, resource_names=("mabeam-variables",)),
)

#: What ``mabeam delete-all`` needs, the chart's pre-delete hook (cleanupOnUninstall) in each
#: watched namespace: list every MABEAM kind and delete it; nothing else (the operator, still
#: running, removes what it made for each object before its finalizer lets it go).
CLEANUP_RULES: tuple[Rule, ...] = (
    Rule(
        "mabeam.io",
        (
            "coordinations",
            "auctions",
            "markets",
            "votes",
            "bids",
            "orders",
            "accounts",
            "variables",
            "agents",
        ),
        ("list", "delete"),
    ),
)
