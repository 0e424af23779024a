package linkerd

import (
	"cmp"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/sources"
)

// What a namespace shows Linkerd: its injection, and the default inbound policy it overrides the
// cluster's with.
const (
	annotationInject        = "linkerd.io/inject"
	annotationInboundPolicy = "config.linkerd.io/default-inbound-policy"
	injectEnabled           = "enabled"
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
// all-unauthenticated); deny is a default deny. The namespaces judged are those injected and those
// that set a policy. An annotation Linkerd does not know is ignored, as Linkerd's injector does.
func (m *Mesh) JudgePosture(records []*model.PostureRecord, s model.MeshSettings) model.Posture {
	cluster := PolicyAllUnauthenticated
	if slices.Contains(policies, s.DefaultPolicy) {
		cluster = s.DefaultPolicy
	}
	var out model.Posture
	for _, r := range records {
		if r.Kind != model.PostureKindNamespace || !r.Enrolled && r.Mode == "" {
			continue
		}
		mode := cluster
		if slices.Contains(policies, r.Mode) {
			mode = r.Mode
		}
		out.Namespaces = append(out.Namespaces, model.NamespaceFinding{Mesh: Name, Namespace: r.Name, Mode: mode, DefaultDeny: mode == PolicyDeny})
	}
	slices.SortFunc(out.Namespaces, func(a, b model.NamespaceFinding) int { return cmp.Compare(a.Namespace, b.Namespace) })
	return out
}
