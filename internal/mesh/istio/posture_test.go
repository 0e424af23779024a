package istio

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

func TestJudgePosture(t *testing.T) {
	pa := func(ns, name string, created int64, mode string, selector bool) *model.PostureRecord {
		return &model.PostureRecord{Mesh: Name, Kind: model.PostureKindPeerAuthentication, Namespace: ns, Name: name, Created: created, Mode: mode, Selector: selector}
	}
	ap := func(ns, name, action string, noRules, selector bool) *model.PostureRecord {
		return &model.PostureRecord{Mesh: Name, Kind: model.PostureKindAuthorization, Namespace: ns, Name: name, Action: action, NoRules: noRules, Selector: selector}
	}
	enrolled := func(ns string) *model.PostureRecord {
		return &model.PostureRecord{Mesh: Name, Kind: model.PostureKindNamespace, Name: ns, Enrolled: true}
	}
	settings := New().Settings() // root namespace: istio-system
	for _, tt := range []struct {
		name     string
		records  []*model.PostureRecord
		settings model.MeshSettings
		ns       string
		mode     string
		deny     bool
	}{
		{"nothing: PERMISSIVE", []*model.PostureRecord{enrolled("a")}, settings, "a", "PERMISSIVE", false},
		{"mesh-wide STRICT", []*model.PostureRecord{enrolled("a"), pa("istio-system", "default", 1, "STRICT", false)}, settings, "a", "STRICT", false},
		{"a selector in the root namespace is not mesh-wide", []*model.PostureRecord{enrolled("a"), pa("istio-system", "gw", 1, "STRICT", true)}, settings, "a", "PERMISSIVE", false},
		{"the namespace overrides", []*model.PostureRecord{pa("istio-system", "default", 1, "STRICT", false), pa("a", "legacy", 1, "DISABLE", false)}, settings, "a", "DISABLE", false},
		{"UNSET inherits the mesh-wide mode", []*model.PostureRecord{pa("istio-system", "default", 1, "STRICT", false), pa("a", "x", 1, "UNSET", false)}, settings, "a", "STRICT", false},
		{"the oldest namespace policy wins", []*model.PostureRecord{pa("a", "new", 9, "STRICT", false), pa("a", "old", 2, "PERMISSIVE", false)}, settings, "a", "PERMISSIVE", false},
		{"a workload policy leaves the namespace's mode", []*model.PostureRecord{pa("a", "w", 1, "DISABLE", true)}, settings, "a", "PERMISSIVE", false},
		{"rootNamespace from the mesh config", []*model.PostureRecord{enrolled("a"), pa("mesh-root", "default", 1, "STRICT", false)},
			model.MeshSettings{ControlPlaneNamespace: "istio-system", RootNamespace: "mesh-root"}, "a", "STRICT", false},
		{"allow-nothing in the namespace", []*model.PostureRecord{ap("a", "deny-all", "ALLOW", true, false)}, settings, "a", "PERMISSIVE", true},
		{"allow-nothing mesh-wide", []*model.PostureRecord{enrolled("a"), ap("istio-system", "deny-all", "ALLOW", true, false)}, settings, "a", "PERMISSIVE", true},
		{"a DENY without rules denies nothing", []*model.PostureRecord{ap("a", "x", "DENY", true, false)}, settings, "a", "PERMISSIVE", false},
		{"selector-scoped allow-nothing is no default deny", []*model.PostureRecord{ap("a", "x", "ALLOW", true, true)}, settings, "a", "PERMISSIVE", false},
		{"an ALLOW with rules is no default deny", []*model.PostureRecord{ap("a", "x", "ALLOW", false, false)}, settings, "a", "PERMISSIVE", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := New().JudgePosture(tt.records, nil, tt.settings)
			for _, n := range got.Namespaces {
				if n.Namespace == tt.ns {
					if n.Mode != tt.mode || n.DefaultDeny != tt.deny {
						t.Errorf("%s: %+v, want %s and default deny %v", tt.ns, n, tt.mode, tt.deny)
					}
					return
				}
			}
			t.Errorf("%s not judged: %+v", tt.ns, got.Namespaces)
		})
	}
}

func TestReadPolicies(t *testing.T) {
	obj := func(spec map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "p", "namespace": "a"}, "spec": spec}}
	}
	if r := readPeerAuthentication(obj(nil)); r.Mode != "UNSET" || r.Selector || r.PortOverrides != 0 {
		t.Errorf("empty PeerAuthentication: %+v", r)
	}
	if r := readPeerAuthentication(obj(map[string]any{"mtls": map[string]any{"mode": "strict"}, "selector": map[string]any{"matchLabels": map[string]any{}},
		"portLevelMtls": map[string]any{"80": map[string]any{"mode": "DISABLE"}, "81": map[string]any{}}})); r.Mode != "STRICT" || r.Selector || r.PortOverrides != 2 {
		t.Errorf("PeerAuthentication with an empty selector and two ports: %+v", r)
	}
	if r := readAuthorizationPolicy(obj(map[string]any{})); r.Action != "ALLOW" || !r.NoRules || r.Selector {
		t.Errorf("spec {}: %+v", r)
	}
	if r := readAuthorizationPolicy(obj(map[string]any{"targetRefs": []any{map[string]any{"kind": "Gateway", "name": "gw"}}})); !r.Selector {
		t.Errorf("a policy for a gateway is not namespace-wide: %+v", r)
	}
	if r := readAuthorizationPolicy(obj(map[string]any{"action": "DENY", "rules": []any{map[string]any{}}})); r.Action != "DENY" || r.NoRules {
		t.Errorf("DENY with a rule: %+v", r)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "a", "labels": map[string]any{"istio.io/dataplane-mode": "ambient"}}}}
	if r := readNamespace(ns); !r.Enrolled || r.Kind != model.PostureKindNamespace {
		t.Errorf("ambient namespace: %+v", r)
	}
}

// TestJudgePosturePods: which pods are bypass candidates under Istio's rules, and which namespaces
// their pods are counted in.
func TestJudgePosturePods(t *testing.T) {
	istioPod := func(ns, name string) *model.PodRecord {
		return &model.PodRecord{Namespace: ns, Name: name, Meshed: []model.Mesh{Name}}
	}
	plain := func(ns, name string) *model.PodRecord { return &model.PodRecord{Namespace: ns, Name: name} }
	records := []*model.PostureRecord{
		{Mesh: Name, Kind: model.PostureKindPeerAuthentication, Namespace: "istio-system", Name: "default", Mode: "STRICT"},
		{Mesh: Name, Kind: model.PostureKindPeerAuthentication, Namespace: "legacy", Name: "open", Mode: "PERMISSIVE"},
		{Mesh: Name, Kind: model.PostureKindNamespace, Name: "injected", Enrolled: true},
	}
	pods := []*model.PodRecord{
		istioPod("shop", "cart"), plain("shop", "batch"), // STRICT by the mesh-wide policy: batch cannot be meshed
		plain("legacy", "old"), // PERMISSIVE, not injected: no bypass
		istioPod("injected", "web"), plain("injected", "cron"),
		{Namespace: "shop", Name: "debug", Meshed: []model.Mesh{Name}, NetAdmin: true},
		{Namespace: "shop", Name: "agent", HostNetwork: true, NetAdmin: true},
		{Namespace: "istio-system", Name: "istio-cni-node", HostNetwork: true, NetAdmin: true}, // the mesh's own
		plain("elsewhere", "lone"), // a namespace the mesh does not cover
		{Namespace: "shop", Name: "linkerd-only", Meshed: []model.Mesh{"linkerd"}},
	}
	got := New().JudgePosture(records, pods, New().Settings())
	want := []model.BypassFinding{
		{Mesh: Name, Namespace: "injected", Name: "cron", Reason: model.BypassNoProxy},
		{Mesh: Name, Namespace: "shop", Name: "agent", Reason: model.BypassHostNetwork},
		{Mesh: Name, Namespace: "shop", Name: "batch", Reason: model.BypassNoProxy},
		{Mesh: Name, Namespace: "shop", Name: "debug", Reason: model.BypassNetAdmin},
		{Mesh: Name, Namespace: "shop", Name: "linkerd-only", Reason: model.BypassNoProxy},
	}
	if !slices.Equal(got.Bypass, want) {
		t.Errorf("bypass:\n got %+v\nwant %+v", got.Bypass, want)
	}
	wantPods := []model.NamespacePods{
		{Mesh: Name, Namespace: "injected", Meshed: 1, Unmeshed: 1},
		{Mesh: Name, Namespace: "legacy", Unmeshed: 1},
		{Mesh: Name, Namespace: "shop", Meshed: 2, Unmeshed: 2, HostNetwork: 1},
	}
	if !slices.Equal(got.Pods, wantPods) {
		t.Errorf("pods:\n got %+v\nwant %+v", got.Pods, wantPods)
	}
	var judged []string
	for _, n := range got.Namespaces {
		judged = append(judged, n.Namespace)
	}
	if want := []string{"injected", "istio-system", "legacy", "shop"}; !slices.Equal(judged, want) {
		t.Errorf("judged namespaces %v, want %v (shop for its meshed pods)", judged, want)
	}
}

func TestPodEnrolment(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	for _, tt := range []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"sidecar", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}}}, true},
		{"native sidecar", corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "istio-proxy", RestartPolicy: &always}}}}, true},
		{"ambient", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"ambient.istio.io/redirection": "enabled"}}}, true},
		{"ambient opted out", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"ambient.istio.io/redirection": "disabled"}}}, false},
		{"plain", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}, false},
	} {
		if got := New().PodEnrolment().Meshed(&tt.pod); got != tt.want {
			t.Errorf("%s: meshed %v, want %v", tt.name, got, tt.want)
		}
	}
}
