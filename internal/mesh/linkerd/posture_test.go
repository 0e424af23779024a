package linkerd

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

func TestJudgePosture(t *testing.T) {
	ns := func(name string, inject bool, policy string) *model.PostureRecord {
		annotations := map[string]any{}
		if inject {
			annotations["linkerd.io/inject"] = "enabled"
		}
		if policy != "" {
			annotations["config.linkerd.io/default-inbound-policy"] = policy
		}
		return readNamespace(&unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": name, "annotations": annotations}}})
	}
	records := []*model.PostureRecord{
		ns("injected", true, ""), ns("denied", true, "deny"), ns("audited", false, "audit"), ns("plain", false, ""), ns("typo", true, "deny-all"),
	}
	for _, tt := range []struct {
		name    string
		cluster string
		want    map[string]string // namespace -> mode; absent: not judged
	}{
		{"Linkerd's default", "", map[string]string{"injected": "all-unauthenticated", "denied": "deny", "audited": "audit", "typo": "all-unauthenticated"}},
		{"a cluster default", "cluster-authenticated", map[string]string{"injected": "cluster-authenticated", "denied": "deny", "audited": "audit", "typo": "cluster-authenticated"}},
		{"a cluster default Linkerd does not know", "strict", map[string]string{"injected": "all-unauthenticated", "denied": "deny", "audited": "audit", "typo": "all-unauthenticated"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]model.NamespaceFinding{}
			for _, n := range New().JudgePosture(records, nil, model.MeshSettings{DefaultPolicy: tt.cluster}).Namespaces {
				got[n.Namespace] = n
			}
			if len(got) != len(tt.want) {
				t.Errorf("judged %v, want %v", got, tt.want)
			}
			for name, mode := range tt.want {
				if n := got[name]; n.Mode != mode || n.DefaultDeny != (mode == "deny") || n.Mesh != Name {
					t.Errorf("%s: %+v, want %s", name, n, mode)
				}
			}
		})
	}
}

// TestJudgePosturePods: a meshed pod's own policy annotation is a workload-scoped policy, and a pod
// without the proxy is a bypass where the namespace is injected or requires authenticated clients.
func TestJudgePosturePods(t *testing.T) {
	ns := func(name string, inject bool, policy string) *model.PostureRecord {
		return &model.PostureRecord{Mesh: Name, Kind: model.PostureKindNamespace, Name: name, Enrolled: inject, Mode: policy}
	}
	meshed := []model.Mesh{Name}
	records := []*model.PostureRecord{ns("linkerd", false, ""), ns("injected", true, ""), ns("strict", false, "all-authenticated"),
		ns("open", false, "all-unauthenticated"), ns("meshed-only", false, "")}
	pods := []*model.PodRecord{
		{Namespace: "injected", Name: "web", Meshed: meshed, Policies: []model.PodPolicy{{Mesh: Name, Value: "deny"}}},
		{Namespace: "injected", Name: "typo", Meshed: meshed, Policies: []model.PodPolicy{{Mesh: Name, Value: "deny-all"}}},
		{Namespace: "injected", Name: "skipped", Policies: []model.PodPolicy{{Mesh: Name, Value: "deny"}}}, // no proxy: the annotation does nothing
		{Namespace: "strict", Name: "batch"},
		{Namespace: "open", Name: "batch"},
		{Namespace: "meshed-only", Name: "api", Meshed: meshed},
		{Namespace: "linkerd", Name: "linkerd-destination", Meshed: meshed, NetAdmin: true},
	}
	got := New().JudgePosture(records, pods, model.MeshSettings{ControlPlaneNamespace: "linkerd"})
	wantPolicies := []model.PolicyFinding{{Mesh: Name, Namespace: "injected", Name: "web", Scope: "workload", Mode: "deny"}}
	if !slices.Equal(got.Policies, wantPolicies) {
		t.Errorf("policies %+v, want %+v", got.Policies, wantPolicies)
	}
	wantBypass := []model.BypassFinding{
		{Mesh: Name, Namespace: "injected", Name: "skipped", Reason: model.BypassNoProxy},
		{Mesh: Name, Namespace: "strict", Name: "batch", Reason: model.BypassNoProxy},
	}
	if !slices.Equal(got.Bypass, wantBypass) {
		t.Errorf("bypass %+v, want %+v", got.Bypass, wantBypass)
	}
	var judged []string
	for _, n := range got.Namespaces {
		judged = append(judged, n.Namespace)
	}
	if want := []string{"injected", "meshed-only", "open", "strict"}; !slices.Equal(judged, want) { // not the control plane's
		t.Errorf("judged %v, want %v", judged, want)
	}
	for _, c := range got.Pods {
		if c.Namespace == "linkerd" {
			t.Errorf("the control plane's namespace counted: %+v", c)
		}
	}
}
