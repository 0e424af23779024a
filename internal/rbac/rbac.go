// Package rbac derives the least-privilege permissions the exporter needs from its configuration:
// get, list and watch on each watched Secret and ConfigMap (by name where the watch names one), on
// pods for the proxy sources and the posture judgement, on the meshes' policies and the
// namespaces when posture is on, and nothing else.
// The integration tests bind exactly these rules to the exporter's service account, and the Helm
// chart's rendered RBAC is tested against them.
package rbac

import (
	"slices"
	"sort"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/sources"
)

// ClusterWide is the namespace key of rules that need a ClusterRole (objects in every namespace).
const ClusterWide = ""

// MeshScope says where the right to read a mesh's own objects (its CA Secrets and ConfigMaps,
// always by name) is granted.
type MeshScope string

// The mesh scopes.
const (
	// MeshScopeCluster grants it cluster-wide, by name only: nothing is created in a mesh's
	// namespace, so a mesh that is not installed (its namespace absent) is no error, and one
	// installed later is read without a new release. The names can be read in any namespace.
	MeshScopeCluster MeshScope = "cluster"
	// MeshScopeNamespace grants it in each mesh's namespace (a Role there): the tightest, for
	// clusters where every mesh's namespace exists before the exporter is installed.
	MeshScopeNamespace MeshScope = "namespace"
)

var readVerbs = []string{"get", "list", "watch"}

// Rules returns the policy rules the exporter needs, by namespace; ClusterWide holds the rules for
// objects watched in every namespace, and with MeshScopeCluster those of the meshes' own objects. They follow from the watches the exporter runs (the
// meshes' own objects and the selected ones) and the proxy sources. A rule with resource names
// covers list and watch too: the exporter lists and watches those objects with a metadata.name
// field selector, which the RBAC authorizer matches against the names.
func Rules(cfg *config.Config, scope MeshScope) map[string][]rbacv1.PolicyRule {
	names := map[string]map[string][]string{} // namespace -> resource -> names ("" = all)
	add := func(namespace, resource, name string) {
		if names[namespace] == nil {
			names[namespace] = map[string][]string{}
		}
		if !slices.Contains(names[namespace][resource], name) {
			names[namespace][resource] = append(names[namespace][resource], name)
		}
	}
	for _, m := range cfg.Meshes {
		for _, w := range m.Watches() {
			ns := w.Namespace
			if scope == MeshScopeCluster {
				ns = ClusterWide
			}
			add(ns, w.Kind.Resource(), w.Name)
		}
	}
	for _, w := range cfg.Kubernetes.Watches() {
		add(w.Namespace, w.Kind.Resource(), w.Name)
	}
	if cfg.Proxies.NeedsPods() || cfg.Posture.Enabled { // the proxies' pods, the posture's bypass candidates
		add(ClusterWide, "pods", "")
	}

	out := map[string][]rbacv1.PolicyRule{}
	for ns, byResource := range names {
		resources := make([]string, 0, len(byResource))
		for r := range byResource {
			resources = append(resources, r)
		}
		sort.Strings(resources)
		for _, r := range resources {
			rule := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{r}, Verbs: readVerbs}
			if !slices.Contains(byResource[r], "") { // a selector without a name needs the whole kind
				rule.ResourceNames = slices.Sorted(slices.Values(byResource[r]))
			}
			out[ns] = append(out[ns], rule)
		}
	}
	if cfg.Posture.Enabled {
		// The posture source lists every namespace and the meshes' policies in all of them.
		for _, w := range PostureKinds(cfg) {
			out[ClusterWide] = append(out[ClusterWide], rbacv1.PolicyRule{APIGroups: []string{w.Group}, Resources: []string{w.Resource}, Verbs: readVerbs})
		}
	}
	if cfg.Proxies.NeedsPortForward() {
		// istioctl's way to an admin port bound to the pod's localhost: the most powerful grant
		// the exporter can have (see docs/security.md), given only when that transport is on.
		out[ClusterWide] = append(out[ClusterWide], rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create", "get"}})
	}
	return out
}

// PostureKinds are the kinds the posture source watches for the meshes of cfg, each once (meshes
// that judge the same kind share its informer).
func PostureKinds(cfg *config.Config) []*sources.ResourceWatch {
	var out []*sources.ResourceWatch
	for _, m := range cfg.Meshes {
		pm, ok := m.(mesh.PostureMesh)
		if !ok {
			continue
		}
		for _, w := range pm.PostureWatches() {
			if !slices.ContainsFunc(out, func(o *sources.ResourceWatch) bool { return o.Group == w.Group && o.Resource == w.Resource }) {
				out = append(out, w)
			}
		}
	}
	return out
}
