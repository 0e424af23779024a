package istio

import (
	"testing"

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
			got := New().JudgePosture(tt.records, tt.settings)
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
