{{/* Generated from the mesh packages (internal/mesh/...) by `make generate`; do not edit. */}}

{{/* The objects each mesh watches, as [namespace, resource, name] (namespace "" is every namespace). */}}
{{- define "meshcert.meshWatches" -}}
{{- $entries := list -}}
{{- with .Values.config.meshes.istio -}}
{{- if .watch -}}
{{- $entries = append $entries (list .namespace "secrets" .ca_secret) -}}
{{- $entries = append $entries (list .namespace "secrets" .plugin_ca_secret) -}}
{{- $entries = append $entries (list .namespace "secrets" .istiod_tls_secret) -}}
{{- $entries = append $entries (list .namespace "configmaps" .mesh_config_map) -}}
{{- $entries = append $entries (list "" "configmaps" .root_cert_config_map) -}}
{{- end -}}
{{- end -}}
{{- with .Values.config.meshes.linkerd -}}
{{- if .watch -}}
{{- $entries = append $entries (list .namespace "secrets" .issuer_secret) -}}
{{- $entries = append $entries (list .namespace "configmaps" .trust_roots_config_map) -}}
{{- $entries = append $entries (list .namespace "configmaps" .config_map) -}}
{{- end -}}
{{- end -}}
{{- toYaml $entries -}}
{{- end -}}

{{/* The policy rules of the posture source: the kinds the meshes judge their posture by. */}}
{{- define "meshcert.postureRules" -}}

- apiGroups: ["security.istio.io"]
  resources: [peerauthentications]
  verbs: [get, list, watch]
- apiGroups: ["security.istio.io"]
  resources: [authorizationpolicies]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end -}}

{{/* The proxy kinds' sections under config.proxies. */}}
{{- define "meshcert.proxyKinds" -}}
envoy ztunnel linkerd
{{- end -}}
