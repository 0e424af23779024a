{{/* Full name of the release's objects. */}}
{{- define "meshcert.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshcert.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshcert.labels" -}}
{{ include "meshcert.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "meshcert.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "meshcert.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/*
The permissions the configuration needs, grouped by namespace ("_cluster" for every namespace):
a dict namespace -> resource -> list of names ("" in the list means every object of the kind).
This mirrors internal/rbac, and the chart's test checks that both agree.
*/}}
{{- define "meshcert.permissions" -}}
{{- $c := .Values.config -}}
{{- $entries := list -}}
{{- with $c.meshes.istio -}}
{{- if .watch -}}
{{- $entries = append $entries (list .namespace "secrets" .ca_secret) -}}
{{- $entries = append $entries (list .namespace "secrets" .plugin_ca_secret) -}}
{{- $entries = append $entries (list .namespace "secrets" .istiod_tls_secret) -}}
{{- $entries = append $entries (list .namespace "configmaps" .mesh_config_map) -}}
{{- $entries = append $entries (list "" "configmaps" .root_cert_config_map) -}}
{{- end -}}
{{- end -}}
{{- with $c.meshes.linkerd -}}
{{- if .watch -}}
{{- $entries = append $entries (list .namespace "secrets" .issuer_secret) -}}
{{- $entries = append $entries (list .namespace "configmaps" .trust_roots_config_map) -}}
{{- $entries = append $entries (list .namespace "configmaps" .config_map) -}}
{{- end -}}
{{- end -}}
{{- range $c.kubernetes.secrets -}}
{{- $entries = append $entries (list (.namespace | default "") "secrets" (.name | default "")) -}}
{{- end -}}
{{- range $c.kubernetes.config_maps -}}
{{- $entries = append $entries (list (.namespace | default "") "configmaps" (.name | default "")) -}}
{{- end -}}
{{- $p := $c.proxies -}}
{{- if or $p.envoy.enabled $p.ztunnel.enabled $p.linkerd.enabled -}}
{{- $entries = append $entries (list "" "pods" "") -}}
{{- end -}}
{{- $byNs := dict -}}
{{- range $entries -}}
{{- $ns := index . 0 | default "_cluster" -}}
{{- $byRes := get $byNs $ns | default dict -}}
{{- $names := get $byRes (index . 1) | default list -}}
{{- if not (has (index . 2) $names) -}}
{{- $names = append $names (index . 2) -}}
{{- end -}}
{{- $_ := set $byRes (index . 1) $names -}}
{{- $_ := set $byNs $ns $byRes -}}
{{- end -}}
{{- toYaml $byNs -}}
{{- end -}}

{{/* Policy rules of one namespace's permissions (a dict resource -> names). */}}
{{- define "meshcert.rules" -}}
{{- range $resource := keys . | sortAlpha }}
{{- $names := get $ $resource }}
- apiGroups: [""]
  resources: [{{ $resource }}]
  verbs: [get, list, watch]
  {{- if not (has "" $names) }}
  resourceNames: {{ $names | sortAlpha | toJson }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Whether any enabled proxy source uses the port-forward transport. */}}
{{- define "meshcert.portForward" -}}
{{- $p := .Values.config.proxies -}}
{{- if or (and $p.envoy.enabled (eq $p.envoy.transport "port-forward")) (and $p.ztunnel.enabled (eq $p.ztunnel.transport "port-forward")) (and $p.linkerd.enabled (eq $p.linkerd.transport "port-forward")) -}}
true
{{- end -}}
{{- end -}}
