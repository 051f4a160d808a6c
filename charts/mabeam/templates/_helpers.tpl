{{/*
Names and labels. Selector labels (app.kubernetes.io/name, instance, component) never contain
the chart version, so that an upgrade can change the chart without touching immutable
selectors.
*/}}

{{- define "mabeam.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mabeam.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mabeam.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across chart versions. */}}
{{- define "mabeam.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mabeam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels of the pods (the Deployment's template, the hook and test pods): the selector labels and
nothing that changes with the chart's version, so that a chart upgrade that changes nothing in
the pod does not restart the operator.
*/}}
{{- define "mabeam.podLabels" -}}
{{ include "mabeam.selectorLabels" . }}
app.kubernetes.io/part-of: mabeam
{{- end }}

{{/* Labels of every object. */}}
{{- define "mabeam.labels" -}}
helm.sh/chart: {{ include "mabeam.chart" . }}
{{ include "mabeam.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mabeam
{{- end }}

{{/*
The operator's ServiceAccount: created by the chart (serviceAccount.create, named
serviceAccount.name or the full name), or an existing one named by serviceAccount.name.
*/}}
{{/* Labels of the objects of another component: (dict "ctx" $ "component" "cleanup"). */}}
{{- define "mabeam.componentLabels" -}}
helm.sh/chart: {{ include "mabeam.chart" .ctx }}
app.kubernetes.io/name: {{ include "mabeam.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: mabeam
{{- end }}

{{- define "mabeam.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mabeam.fullname" .) .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- fail "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" }}
{{- end }}
{{- end }}

{{/* The username the API server gives the operator's ServiceAccount. */}}
{{- define "mabeam.operatorUsername" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "mabeam.serviceAccountName" .) }}
{{- end }}

{{- define "mabeam.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The ClusterRole bound to every agent's ServiceAccount. The operator creates those RoleBindings
and refers to the ClusterRole by this fixed name, so there is one per cluster.
*/}}
{{- define "mabeam.agentClusterRole" -}}
mabeam-agent
{{- end }}

{{/* Namespaces the operator watches when not cluster-wide (default: the release namespace). */}}
{{- define "mabeam.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson (uniq .Values.watchNamespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{- define "mabeam.leaderElect" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{- define "mabeam.validate" -}}
{{- if and .Values.clusterWide .Values.watchNamespaces }}
{{- fail "watchNamespaces must be empty when clusterWide is true (the operator then watches every namespace)" }}
{{- end }}
{{- end }}

{{/* The annotations of the uninstall hook's objects (cleanup-hook.yaml), at a weight. */}}
{{- define "mabeam.cleanupHookAnnotations" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}
