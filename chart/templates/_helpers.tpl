{{/* Name of the chart, or nameOverride. */}}
{{- define "meshcert.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects, or fullnameOverride. */}}
{{- define "meshcert.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "meshcert.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Namespace of the namespaced objects. */}}
{{- define "meshcert.namespace" -}}
{{- .Values.namespaceOverride | default .Release.Namespace -}}
{{- end -}}

{{- define "meshcert.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshcert.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshcert.labels" -}}
{{ include "meshcert.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The image reference: registry (global.imageRegistry wins), repository, digest or tag. */}}
{{- define "meshcert.image" -}}
{{- $registry := .Values.global.imageRegistry | default .Values.image.registry -}}
{{- $ref := .Values.image.repository -}}
{{- if $registry }}{{ $ref = printf "%s/%s" $registry $ref }}{{ end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $ref .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Whether the exporter serves TLS (a web configuration with a tls_server_config). */}}
{{- define "meshcert.tls" -}}
{{- if and .Values.webConfig (hasKey .Values.webConfig "tls_server_config") -}}true{{- end -}}
{{- end -}}

{{/* Whether a web configuration is in force. */}}
{{- define "meshcert.webConfig" -}}
{{- if or .Values.webConfig .Values.webConfigSecret -}}true{{- end -}}
{{- end -}}

{{/* The scheme a scrape uses: the value given, else https when the exporter serves TLS. */}}
{{- define "meshcert.scheme" -}}
{{- $ctx := index . 0 -}}{{- $given := index . 1 -}}
{{- $given | default (ternary "https" "http" (eq (include "meshcert.tls" $ctx) "true")) -}}
{{- end -}}

{{/*
The exporter's arguments: the chart's flags, each left out when extraArgs gives the same flag
(so extraArgs overrides instead of repeating, which the exporter refuses), then extraArgs.
*/}}
{{- define "meshcert.args" -}}
{{- $defaults := list "--config.file=/etc/meshcert/config.yaml" "--web.listen-address=:9733" (printf "--log.level=%s" .Values.logLevel) (printf "--log.format=%s" .Values.logFormat) -}}
{{- if eq (include "meshcert.webConfig" .) "true" -}}
{{- $defaults = append $defaults "--web.config.file=/etc/meshcert/web/web-config.yml" -}}
{{- end -}}
{{- if eq .Values.mode "sharded" -}}
{{- $defaults = append $defaults "--shard=$(SHARD)" -}}
{{- $defaults = append $defaults (printf "--total-shards=%v" .Values.shards) -}}
{{- end -}}
{{- if eq .Values.mode "daemonset" -}}
{{- $defaults = append $defaults "--proxy.node-name=$(NODE_NAME)" -}}
{{- end -}}
{{- $given := list -}}
{{- range .Values.extraArgs -}}
{{- $given = append $given (regexReplaceAll "^(--?[^=]+).*$" (toString .) "${1}") -}}
{{- end -}}
{{- $args := list -}}
{{- range $defaults -}}
{{- if not (has (regexReplaceAll "^(--?[^=]+).*$" . "${1}") $given) -}}
{{- $args = append $args . -}}
{{- end -}}
{{- end -}}
{{- concat $args .Values.extraArgs | toYaml -}}
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
The meshes' objects come from _meshes.tpl, generated from the mesh packages; this mirrors
internal/rbac, and the chart's test checks that both agree.
*/}}
{{- define "meshcert.permissions" -}}
{{- $c := .Values.config -}}
{{- $entries := list -}}
{{- range include "meshcert.meshWatches" . | fromYamlArray -}}
{{- if eq $.Values.rbac.meshScope "cluster" -}}
{{- $entries = append $entries (list "" (index . 1) (index . 2)) -}}
{{- else -}}
{{- $entries = append $entries . -}}
{{- end -}}
{{- end -}}
{{- range $c.kubernetes.secrets -}}
{{- $entries = append $entries (list (.namespace | default "") "secrets" (.name | default "")) -}}
{{- end -}}
{{- range $c.kubernetes.config_maps -}}
{{- $entries = append $entries (list (.namespace | default "") "configmaps" (.name | default "")) -}}
{{- end -}}
{{- $pods := $c.posture.enabled -}}
{{- range $kind := include "meshcert.proxyKinds" . | splitList " " -}}
{{- $pods = or $pods (get $c.proxies $kind).enabled -}}
{{- end -}}
{{- if $pods -}}
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
{{- $pf := false -}}
{{- range $kind := include "meshcert.proxyKinds" . | splitList " " -}}
{{- $k := get $p $kind -}}
{{- $pf = or $pf (and $k.enabled (eq $k.transport "port-forward")) -}}
{{- end -}}
{{- if $pf -}}
true
{{- end -}}
{{- end -}}
