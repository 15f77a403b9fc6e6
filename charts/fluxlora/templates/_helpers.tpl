{{/* Names. Every object is named after the release (`fluxlora.fullname`, the usual helper:
     fullnameOverride, else the release name, with nameOverride or the chart's name appended unless
     the release name already holds it), so two releases never share a name in one namespace.
     Objects outside the release namespace (ClusterRoles, and Roles in watched namespaces) carry
     the release namespace too: two releases of the same name in two namespaces never collide. */}}
{{- define "fluxlora.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fluxlora.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The operator's objects in the release namespace (ServiceAccount, Deployment, ConfigMaps):
     <fullname>-operator, at most 63 characters. */}}
{{- define "fluxlora.operatorName" -}}
{{- printf "%s-operator" (include "fluxlora.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/* The dashboard's objects in the release namespace (its Service is a DNS label: 63 characters). */}}
{{- define "fluxlora.dashboardName" -}}
{{- printf "%s-dashboard" (include "fluxlora.fullname" . | trunc 53 | trimSuffix "-") -}}
{{- end -}}

{{/* The name of an object of the release outside its namespace: (list $ base namespace), with
     namespace "" for cluster-scoped objects. In the release namespace: the base name; elsewhere:
     base-<release namespace>. */}}
{{- define "fluxlora.nameIn" -}}
{{- $ctx := index . 0 -}}{{- $base := index . 1 -}}{{- $ns := index . 2 -}}
{{- if eq $ns $ctx.Release.Namespace -}}{{ $base }}{{- else -}}{{ printf "%s-%s" $base $ctx.Release.Namespace }}{{- end -}}
{{- end -}}

{{- define "fluxlora.labels" -}}
app.kubernetes.io/name: {{ include "fluxlora.name" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fluxlora.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fluxlora.name" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The namespaces the operator serves when it is not cluster-wide. */}}
{{- define "fluxlora.namespaces" -}}
{{- if .Values.watchNamespaces }}{{ toJson .Values.watchNamespaces }}{{ else }}{{ toJson (list .Release.Namespace) }}{{ end -}}
{{- end -}}

{{/* Exactly the verbs the operator uses (tests/cluster/test_chart.py asserts this list):
     runs: kopf lists and watches them (the operator plans from the watch), the
       operator gets one after a status conflict;
     runs/status: the operator patches it; "get" only because it creates per-run
       Roles granting get/patch on it (RBAC: one may only grant what one holds);
     runs/finalizers: children carry blockOwnerDeletion (OwnerReferencesPermissionEnforcement);
     samplesets: create (the run's thumbnails), get (is an existing one this run's?), and
       patch only because per-run Roles grant it to the trainer on its own set;
     jobs: list/watch (the watch; a list when the status names a Job the watch has
       not shown), create, get (is an existing one this run's?), delete (suspend, and a
       Job Kueue preempted: the next attempt replaces it);
     pods: list/watch only;
     workloads (Kueue): list/watch, for admission, preemption and queue positions (without
       Kueue's CRDs the operator serves runs as before);
     configmaps, serviceaccounts, roles, rolebindings: create, and get to check
       that an existing one of the same name is this run's (never adopted otherwise);
     events: create. */}}
{{- define "fluxlora.rules" -}}
- apiGroups: ["fluxlora.dev"]
  resources: ["fluxloraruns"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["fluxlora.dev"]
  resources: ["fluxloraruns/status"]
  verbs: ["get", "patch"]
- apiGroups: ["fluxlora.dev"]
  resources: ["fluxloraruns/finalizers"]
  verbs: ["update"]
- apiGroups: ["fluxlora.dev"]
  resources: ["fluxlorasamplesets"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{- define "fluxlora.dashboardLabels" -}}
app.kubernetes.io/name: {{ include "fluxlora.name" . }}
app.kubernetes.io/component: dashboard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fluxlora.dashboardSelectorLabels" -}}
app.kubernetes.io/name: {{ include "fluxlora.name" . }}
app.kubernetes.io/component: dashboard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The dashboard reads runs and their sample thumbnails; nothing else, and it writes nothing. */}}
{{- define "fluxlora.dashboardRules" -}}
- apiGroups: ["fluxlora.dev"]
  resources: ["fluxloraruns", "fluxlorasamplesets"]
  verbs: ["get", "list", "watch"]
{{- end -}}
