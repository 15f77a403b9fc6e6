{{- define "fluxlora.name" -}}fluxlora-operator{{- end -}}

{{- define "fluxlora.labels" -}}
app.kubernetes.io/name: fluxlora
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fluxlora.selectorLabels" -}}
app.kubernetes.io/name: fluxlora
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The rules the operator needs, nothing more: runs and their status, the
     children it creates per run, and the pods/events it reads to report status.
     It may create per-run Roles granting get/patch on fluxloraruns/status and
     on the run's FluxLoraSampleSet only because it holds those permissions
     itself (RBAC escalation check). */}}
{{- define "fluxlora.rules" -}}
- apiGroups: ["fluxlora.dev"]
  resources: ["fluxloraruns"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["fluxlora.dev"]
  resources: ["fluxloraruns/status"]
  verbs: ["get", "patch"]
# Children carry blockOwnerDeletion, which needs this where owner-reference permissions are enforced.
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
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch", "list", "watch"]
{{- end -}}

{{- define "fluxlora.dashboardLabels" -}}
app.kubernetes.io/name: fluxlora
app.kubernetes.io/component: dashboard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fluxlora.dashboardSelectorLabels" -}}
app.kubernetes.io/name: fluxlora
app.kubernetes.io/component: dashboard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The dashboard reads runs and their sample thumbnails; nothing else, and it writes nothing. */}}
{{- define "fluxlora.dashboardRules" -}}
- apiGroups: ["fluxlora.dev"]
  resources: ["fluxloraruns", "fluxlorasamplesets"]
  verbs: ["get", "list", "watch"]
{{- end -}}
