package linkerd

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/sources"
)

// What a namespace shows Linkerd: its injection, and the default inbound policy it overrides the
// cluster's with.
const (
	annotationInject        = "linkerd.io/inject"
	annotationInboundPolicy = "config.linkerd.io/default-inbound-policy"
	injectEnabled           = "enabled"
	// ScopeWorkload is the scope of a pod's own default inbound policy.
	ScopeWorkload = "workload"
)

// Linkerd's default inbound policies.
const (
	PolicyAllUnauthenticated     = "all-unauthenticated"
	PolicyAllAuthenticated       = "all-authenticated"
	PolicyClusterAuthenticated   = "cluster-authenticated"
	PolicyClusterUnauthenticated = "cluster-unauthenticated"
	PolicyDeny                   = "deny"
	PolicyAudit                  = "audit"
)

// policies are the default inbound policies Linkerd knows.
var policies = []string{PolicyAllUnauthenticated, PolicyAllAuthenticated, PolicyClusterAuthenticated, PolicyClusterUnauthenticated, PolicyDeny, PolicyAudit}

// Linkerd's own containers besides the proxy: the init container that writes the redirect rules,
// and the CNI plugin's network validator.
const (
	containerInit      = "linkerd-init"
	containerValidator = "linkerd-network-validator"
)

// PodEnrolment implements mesh.PostureMesh: a pod is meshed when it runs the proxy; its
// config.linkerd.io/default-inbound-policy annotation overrides its namespace's policy.
func (m *Mesh) PodEnrolment() sources.PodEnrolment {
	return sources.PodEnrolment{Mesh: Name,
		Meshed:           func(p *corev1.Pod) bool { return sources.RunsContainer(p, containerProxy) },
		OwnContainers:    []string{containerInit, containerValidator, containerProxy},
		PolicyAnnotation: annotationInboundPolicy}
}

// authenticated are the default inbound policies that refuse a client without a mesh identity:
// where one is in force, a pod without the proxy is a way around it.
var authenticated = []string{PolicyAllAuthenticated, PolicyClusterAuthenticated, PolicyDeny}

// PostureWatches implements mesh.PostureMesh: the namespaces, with their injection and default
// inbound policy annotations.
func (m *Mesh) PostureWatches() []*sources.ResourceWatch {
	return []*sources.ResourceWatch{{Group: "", Resource: "namespaces", Versions: []string{"v1"}, Read: readNamespace}}
}

// readNamespace keeps a namespace's injection and its default inbound policy annotation.
func readNamespace(u *unstructured.Unstructured) *model.PostureRecord {
	a := u.GetAnnotations()
	return &model.PostureRecord{Mesh: Name, Kind: model.PostureKindNamespace, Name: u.GetName(), Created: u.GetCreationTimestamp().Unix(),
		Enrolled: a[annotationInject] == injectEnabled, Mode: a[annotationInboundPolicy]}
}

// JudgePosture implements mesh.PostureMesh: a namespace's default inbound policy is its
// annotation, else the cluster's (linkerd-config's proxy.defaultInboundPolicy, else
// all-unauthenticated); deny is a default deny. A meshed pod's own annotation is its
// workload-scoped policy. The namespaces judged are those injected, those that set a policy and
// those with a meshed pod; an annotation Linkerd does not know is ignored, as Linkerd's injector
// does. Their pods are judged by mesh.JudgePods: a pod without the proxy is a bypass where the
// namespace's injection is on or its policy requires an authenticated client. The control plane's
// namespace is not judged for pods.
func (m *Mesh) JudgePosture(records []*model.PostureRecord, pods []*model.PodRecord, s model.MeshSettings) model.Posture {
	cluster := PolicyAllUnauthenticated
	if slices.Contains(policies, s.DefaultPolicy) {
		cluster = s.DefaultPolicy
	}
	meshed := mesh.MeshedNamespaces(Name, pods, s.ControlPlaneNamespace)
	var out model.Posture
	for _, r := range records {
		if r.Kind != model.PostureKindNamespace || !r.Enrolled && r.Mode == "" && !meshed[r.Name] {
			continue
		}
		mode := cluster
		if slices.Contains(policies, r.Mode) {
			mode = r.Mode
		}
		out.Namespaces = append(out.Namespaces, model.NamespaceFinding{Mesh: Name, Namespace: r.Name, Mode: mode,
			DefaultDeny: mode == PolicyDeny, Enrolled: r.Enrolled})
	}
	slices.SortFunc(out.Namespaces, func(a, b model.NamespaceFinding) int { return cmp.Compare(a.Namespace, b.Namespace) })
	for _, p := range pods {
		if !p.MeshedBy(Name) {
			continue
		}
		for _, pp := range p.Policies {
			if pp.Mesh == Name && slices.Contains(policies, pp.Value) {
				out.Policies = append(out.Policies, model.PolicyFinding{Mesh: Name, Namespace: p.Namespace, Name: p.Name, Scope: ScopeWorkload, Mode: pp.Value})
			}
		}
	}
	slices.SortFunc(out.Policies, func(a, b model.PolicyFinding) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	out.Bypass, out.Pods = mesh.JudgePods(Name, pods, out.Namespaces, s.ControlPlaneNamespace,
		func(n model.NamespaceFinding) bool { return n.Enrolled || slices.Contains(authenticated, n.Mode) })
	return out
}
