package istio

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/sources"
)

// Istio's policy kinds, with the versions the API server may serve them under (v1 since 1.22,
// v1beta1 before and alongside).
const (
	groupSecurity = "security.istio.io"
	modePermitted = "PERMISSIVE"
	modeUnset     = "UNSET"
)

// Scopes of a peer authentication policy.
const (
	ScopeMesh      = "mesh"
	ScopeNamespace = "namespace"
	ScopeWorkload  = "workload"
)

// What a namespace shows of its enrolment: a sidecar injection label, a revision, ambient mode.
const (
	labelInjection    = "istio-injection"
	labelRevision     = "istio.io/rev"
	labelDataplane    = "istio.io/dataplane-mode"
	injectionEnabled  = "enabled"
	dataplaneAmbient  = "ambient"
	actionAllow       = "ALLOW"
	resourcePeerAuth  = "peerauthentications"
	resourceAuthz     = "authorizationpolicies"
	resourceNamespace = "namespaces"
)

// What a pod shows of Istio: the sidecar, the containers of its own that write the redirect rules
// or check them (the CNI plugin's validation), and istio-cni's mark on a pod enrolled in ambient
// mode.
const (
	containerInit         = "istio-init"
	containerValidation   = "istio-validation"
	annotationRedirection = "ambient.istio.io/redirection"
	redirectionEnabled    = "enabled"
	modeStrict            = "STRICT"
)

// PodEnrolment implements mesh.PostureMesh: a pod is meshed when it runs the sidecar (a gateway
// runs it as its main container) or istio-cni has enrolled it in ambient mode.
func (m *Mesh) PodEnrolment() sources.PodEnrolment {
	return sources.PodEnrolment{Mesh: Name,
		Meshed: func(p *corev1.Pod) bool {
			return sources.RunsContainer(p, containerProxy) || p.Annotations[annotationRedirection] == redirectionEnabled
		},
		OwnContainers: []string{containerInit, containerValidation, containerProxy}}
}

// PostureWatches implements mesh.PostureMesh: PeerAuthentication and AuthorizationPolicy in
// every namespace, and the namespaces with their enrolment labels.
func (m *Mesh) PostureWatches() []*sources.ResourceWatch {
	versions := []string{"v1", "v1beta1"}
	return []*sources.ResourceWatch{
		{Group: groupSecurity, Resource: resourcePeerAuth, Versions: versions, Read: readPeerAuthentication},
		{Group: groupSecurity, Resource: resourceAuthz, Versions: versions, Read: readAuthorizationPolicy},
		{Group: "", Resource: resourceNamespace, Versions: []string{"v1"}, Read: readNamespace},
	}
}

// record is the common part of a policy's record.
func record(kind model.PostureKind, u *unstructured.Unstructured) *model.PostureRecord {
	r := &model.PostureRecord{Mesh: Name, Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName(), Created: u.GetCreationTimestamp().Unix()}
	labels, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	_, targetRef, _ := unstructured.NestedMap(u.Object, "spec", "targetRef")
	targetRefs, _, _ := unstructured.NestedSlice(u.Object, "spec", "targetRefs")
	r.Selector = len(labels) > 0 || targetRef || len(targetRefs) > 0
	return r
}

// readPeerAuthentication keeps a PeerAuthentication's mode, its port-level overrides and whether it
// selects workloads.
func readPeerAuthentication(u *unstructured.Unstructured) *model.PostureRecord {
	r := record(model.PostureKindPeerAuthentication, u)
	mode, _, _ := unstructured.NestedString(u.Object, "spec", "mtls", "mode")
	r.Mode = cmp.Or(strings.ToUpper(mode), modeUnset)
	ports, _, _ := unstructured.NestedMap(u.Object, "spec", "portLevelMtls")
	r.PortOverrides = len(ports)
	return r
}

// readAuthorizationPolicy keeps an AuthorizationPolicy's action, whether it has rules and whether
// it selects workloads.
func readAuthorizationPolicy(u *unstructured.Unstructured) *model.PostureRecord {
	r := record(model.PostureKindAuthorization, u)
	action, _, _ := unstructured.NestedString(u.Object, "spec", "action")
	r.Action = cmp.Or(action, actionAllow)
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	r.NoRules = len(rules) == 0
	return r
}

// readNamespace keeps whether the mesh takes a namespace's workloads in.
func readNamespace(u *unstructured.Unstructured) *model.PostureRecord {
	l := u.GetLabels()
	return &model.PostureRecord{Mesh: Name, Kind: model.PostureKindNamespace, Name: u.GetName(), Created: u.GetCreationTimestamp().Unix(),
		Enrolled: l[labelInjection] == injectionEnabled || l[labelRevision] != "" || l[labelDataplane] == dataplaneAmbient}
}

// JudgePosture implements mesh.PostureMesh with istiod's precedence: a workload's selector-scoped
// policy, else its namespace's policy (the oldest of several), else the mesh-wide one in the root
// namespace, else PERMISSIVE; a policy whose mode is UNSET inherits the next one. A namespace
// denies by default when an ALLOW policy without rules and without a selector applies to it (in
// the namespace, or mesh-wide). The namespaces judged are those the mesh takes in and those that
// hold a policy or a meshed pod. Their pods are judged by mesh.JudgePods: a pod without the mesh is
// a bypass where the namespace is STRICT or its injection is on. The control plane's namespace is
// not judged for pods: istio-cni and ztunnel there need the rights a workload must not have.
func (m *Mesh) JudgePosture(records []*model.PostureRecord, pods []*model.PodRecord, s model.MeshSettings) model.Posture {
	root := cmp.Or(s.RootNamespace, s.ControlPlaneNamespace)
	oldest := func(a, b *model.PostureRecord) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.Name, b.Name))
	}
	wide := map[string]*model.PostureRecord{} // namespace -> its namespace-wide peer authentication
	denies := map[string]bool{}               // namespace -> an allow-nothing policy applies
	enrolled := map[string]bool{}
	judged := mesh.MeshedNamespaces(Name, pods, s.ControlPlaneNamespace)
	var out model.Posture
	for _, r := range records {
		switch r.Kind {
		case model.PostureKindNamespace:
			if r.Enrolled {
				judged[r.Name], enrolled[r.Name] = true, true
			}
		case model.PostureKindPeerAuthentication:
			judged[r.Namespace] = true
			scope := ScopeWorkload
			if !r.Selector {
				scope = ScopeNamespace
				if r.Namespace == root {
					scope = ScopeMesh
				}
				if w := wide[r.Namespace]; w == nil || oldest(r, w) < 0 {
					wide[r.Namespace] = r
				}
			}
			out.Policies = append(out.Policies, model.PolicyFinding{Mesh: Name, Namespace: r.Namespace, Name: r.Name,
				Scope: scope, Mode: r.Mode, PortOverrides: r.PortOverrides})
		case model.PostureKindAuthorization:
			judged[r.Namespace] = true
			if r.Action == actionAllow && r.NoRules && !r.Selector {
				denies[r.Namespace] = true
			}
		}
	}
	meshMode := modePermitted
	if w := wide[root]; w != nil && w.Mode != modeUnset {
		meshMode = w.Mode
	}
	for _, ns := range slices.Sorted(maps.Keys(judged)) {
		mode := meshMode
		if w := wide[ns]; w != nil && w.Mode != modeUnset {
			mode = w.Mode
		}
		out.Namespaces = append(out.Namespaces, model.NamespaceFinding{Mesh: Name, Namespace: ns, Mode: mode,
			DefaultDeny: denies[ns] || denies[root], Enrolled: enrolled[ns]})
	}
	out.Bypass, out.Pods = mesh.JudgePods(Name, pods, out.Namespaces, s.ControlPlaneNamespace,
		func(n model.NamespaceFinding) bool { return n.Mode == modeStrict || n.Enrolled })
	return out
}
