package istio

import (
	"fmt"
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// BenchmarkJudgePosture100k: one judgement of 100,000 pods over 100 namespaces (40 injected, a few
// offenders), what a cluster whose pods churn pays about once a second.
func BenchmarkJudgePosture100k(b *testing.B) {
	var records []*model.PostureRecord
	for i := range 100 {
		records = append(records, &model.PostureRecord{Mesh: Name, Kind: model.PostureKindNamespace, Name: fmt.Sprintf("team-%d", i), Enrolled: i < 40})
	}
	records = append(records, &model.PostureRecord{Mesh: Name, Kind: model.PostureKindPeerAuthentication, Namespace: "istio-system", Name: "default", Mode: "STRICT"})
	meshed := []model.Mesh{Name}
	pods := make([]*model.PodRecord, 100_000)
	for i := range pods {
		ns, k := i%100, i/100
		p := &model.PodRecord{Namespace: fmt.Sprintf("team-%d", ns), Name: fmt.Sprintf("app-%d", k)}
		if ns < 40 && k%200 > 1 {
			p.Meshed = meshed
		}
		p.HostNetwork = ns < 40 && k%200 == 2
		p.NetAdmin = ns < 40 && k%200 == 3
		pods[i] = p
	}
	m, settings := New(), New().Settings()
	b.ReportAllocs()
	for b.Loop() {
		if got := m.JudgePosture(records, pods, settings); len(got.Bypass) == 0 {
			b.Fatal("no bypass found")
		}
	}
}
