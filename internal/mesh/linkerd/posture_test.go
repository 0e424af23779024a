package linkerd

import (
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
			for _, n := range New().JudgePosture(records, model.MeshSettings{DefaultPolicy: tt.cluster}).Namespaces {
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
