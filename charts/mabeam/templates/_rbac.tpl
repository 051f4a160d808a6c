{{/*
The operator's rights, kept equal to mabeam/kube/permissions.py by tests/unit/test_chart.py.
*/}}

{{/* OPERATOR_RULES: namespaced (a Role per watched namespace, or a ClusterRole). */}}
{{- define "mabeam.operatorRules" -}}
- apiGroups: ["mabeam.io"]
  resources: ["agents"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["mabeam.io"]
  resources: ["coordinations", "auctions", "markets"]
  verbs: ["get", "list", "watch", "patch"]
# update is granted, not used: the operator gives each Variable's writers update on it.
- apiGroups: ["mabeam.io"]
  resources: ["variables"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["mabeam.io"]
  resources: ["votes", "bids", "orders"]
  verbs: ["list", "watch"]
# Accounts are granted by administrators; the operator creates only the house's Account.
- apiGroups: ["mabeam.io"]
  resources: ["accounts"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: ["mabeam.io"]
  resources:
    - accounts/status
    - agents/status
    - variables/status
    - coordinations/status
    - votes/status
    - auctions/status
    - bids/status
    - markets/status
    - orders/status
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "update"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{ include "mabeam.leaseRules" . }}
# Each agent's ServiceAccount gets a RoleBinding to the agent ClusterRole in its namespace,
# and the writers of each Variable a Role that names that Variable.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["bind"]
  resourceNames: [{{ include "mabeam.agentClusterRole" . | quote }}]
{{- end }}

{{/* The Lease rule of OPERATOR_RULES: the Variables' lock Leases (watched) and the leader Lease. */}}
{{- define "mabeam.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "watch", "create", "update"]
{{- end }}

{{/* LEADER_RULES: the leader Lease alone, in a release namespace that is not watched. */}}
{{- define "mabeam.leaderLeaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}

{{/* OPERATOR_OWN_NAMESPACE_RULES: the sealing key, in the release namespace only. */}}
{{- define "mabeam.sealingKeyRules" -}}
# Read only the sealing key's Secret; create is not limited by name in RBAC (the name is in the
# body), so it covers this namespace's Secrets. No other Secret rights, and none for agents.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
  resourceNames: ["mabeam-sealing-key"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
{{- end }}

{{/* OPERATOR_CLUSTER_RULES: kopf discovers our CRDs wherever it runs. */}}
{{- define "mabeam.operatorClusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/* AGENT_RULES: what every agent's ServiceAccount may do in its namespace. */}}
{{- define "mabeam.agentRules" -}}
- apiGroups: ["mabeam.io"]
  resources: ["agents", "variables", "coordinations", "auctions", "markets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["mabeam.io"]
  resources: ["votes", "bids", "orders"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
# Only the projection; list/watch only with the field selector metadata.name=mabeam-variables.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
  resourceNames: ["mabeam-variables"]
# No leases: the writers of a Variable get/update its lock Lease through its writer Role.
{{- end }}

{{/* CLEANUP_RULES: the pre-delete hook's `mabeam delete-all` in each watched namespace. */}}
{{- define "mabeam.cleanupRules" -}}
- apiGroups: ["mabeam.io"]
  resources: ["coordinations", "auctions", "markets", "votes", "bids", "orders", "accounts", "variables", "agents"]
  verbs: ["list", "delete"]
{{- end }}
