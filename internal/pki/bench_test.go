package pki

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

var (
	benchOnce    sync.Once
	benchObjects []*model.Object
)

// meshObjects is a mesh of 10,000 workloads: each object holds one leaf; the intermediate and the
// root come from the mesh's authoritative object, as with Secrets signed by a mesh CA.
func meshObjects() []*model.Object {
	benchOnce.Do(func() {
		m := testpki.NewMesh(10000, testpki.From())
		inter := NewCertificate(m.Intermediate.X509)
		benchObjects = append(benchObjects, &model.Object{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: meshIstio,
			Authoritative: true, Bundles: []model.Bundle{
				{Key: "ca-cert.pem", Certificates: []*model.Certificate{inter}},
				{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: []*model.Certificate{NewCertificate(m.Root.X509)}}}})
		for i, l := range m.Leaves {
			benchObjects = append(benchObjects, &model.Object{Source: "envoy", Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("pod-%d", i), Mesh: meshIstio,
				Bundles: []model.Bundle{{Key: "default", Certificates: []*model.Certificate{NewCertificate(l.X509)}}}})
		}
	})
	return benchObjects
}

var benchMeshes = map[model.Mesh]model.MeshSettings{meshIstio: {TrustDomain: "cluster.local"}}

// BenchmarkAnalyzeCold analyses 10,000 workload chains with an empty signature cache: the cost
// after a start, had no reader checked a presented chain yet.
func BenchmarkAnalyzeCold(b *testing.B) {
	objects := meshObjects()
	b.ReportAllocs()
	for b.Loop() {
		NewAnalyzer(NewCache(), nil).Analyze(objects, benchMeshes)
	}
}

// BenchmarkAnalyzeMeshChanged analyses the 10,000 chains again in a new mesh context (the mesh's
// CA object changed, so every object of the mesh is analysed again): every signature check is a
// cache hit.
func BenchmarkAnalyzeMeshChanged(b *testing.B) {
	objects := meshObjects()
	newAnalyzer().Analyze(objects, benchMeshes) // warms the process's signature cache
	b.ReportAllocs()
	for b.Loop() {
		newAnalyzer().Analyze(objects, benchMeshes)
	}
}

// BenchmarkAnalyzeOneChanged analyses the mesh after one of its 10,000 objects changed: that
// object is analysed, the others keep their findings.
func BenchmarkAnalyzeOneChanged(b *testing.B) {
	objects := slices.Clone(meshObjects())
	a := newAnalyzer()
	a.Analyze(objects, benchMeshes)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = i%(len(objects)-1) + 1
		changed := *objects[i]
		objects[i] = &changed
		a.Analyze(objects, benchMeshes)
	}
}

// BenchmarkParseBundle parses a chain of two PEM certificates.
func BenchmarkParseBundle(b *testing.B) {
	m := testpki.NewMesh(1, testpki.From())
	data := testpki.Bundle(m.Leaves[0], m.Intermediate)
	b.ReportAllocs()
	for b.Loop() {
		testCache().ParseBundle(data)
	}
}

// BenchmarkAnalysisHeld reports the heap an analysis keeps per workload object once it is done:
// the analyser's entry and the object's findings (its leaf's observation and chain).
func BenchmarkAnalysisHeld(b *testing.B) {
	objects := meshObjects()
	newAnalyzer().Analyze(objects, benchMeshes) // warms the process's signature cache
	var held float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a := newAnalyzer()
		result := a.Analyze(objects, benchMeshes)
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(len(objects))
		runtime.KeepAlive(a)
		runtime.KeepAlive(result)
	}
	b.ReportMetric(held, "held-bytes/object")
}

// BenchmarkRotation10k finds the blast radius of the mesh's CAs over its 10,000 workload chains,
// as the inventory does after an analysis or when a validity window on the way changes.
func BenchmarkRotation10k(b *testing.B) {
	an := newAnalyzer().Analyze(meshObjects(), benchMeshes)
	b.ReportAllocs()
	for b.Loop() {
		if r := RotationAt(an, testpki.From().Add(time.Hour)); len(r.Anchors) != 1 || r.Anchors[0].Dependents != 10001 {
			b.Fatalf("rotation %+v", r.Anchors)
		}
	}
}
