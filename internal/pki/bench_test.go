package pki

import (
	"fmt"
	"sync"
	"testing"

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
		m := testpki.NewMesh(10000, jan2026)
		inter := NewCertificate(m.Intermediate.X509)
		benchObjects = append(benchObjects, &model.Object{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: model.MeshIstio,
			Authoritative: true, Bundles: []model.Bundle{
				{Key: "ca-cert.pem", Certificates: []*model.Certificate{inter}},
				{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: []*model.Certificate{NewCertificate(m.Root.X509)}}}})
		for i, l := range m.Leaves {
			benchObjects = append(benchObjects, &model.Object{Source: "envoy", Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("pod-%d", i), Mesh: model.MeshIstio,
				Bundles: []model.Bundle{{Key: "default", Certificates: []*model.Certificate{NewCertificate(l.X509)}}}})
		}
	})
	return benchObjects
}

var benchMeshes = map[model.Mesh]model.MeshSettings{model.MeshIstio: {TrustDomain: "cluster.local"}}

// BenchmarkAnalyzeCold analyses 10,000 workload chains with an empty signature cache: the cost after
// the whole mesh changed.
func BenchmarkAnalyzeCold(b *testing.B) {
	objects := meshObjects()
	b.ReportAllocs()
	for b.Loop() {
		NewAnalyzer().Analyze(objects, benchMeshes)
	}
}

// BenchmarkAnalyzeWarm analyses the same 10,000 chains again: the cost when one object changed.
func BenchmarkAnalyzeWarm(b *testing.B) {
	objects := meshObjects()
	a := NewAnalyzer()
	a.Analyze(objects, benchMeshes)
	b.ReportAllocs()
	for b.Loop() {
		a.Analyze(objects, benchMeshes)
	}
}

// BenchmarkParseBundle parses a chain of two PEM certificates.
func BenchmarkParseBundle(b *testing.B) {
	m := testpki.NewMesh(1, jan2026)
	data := testpki.Bundle(m.Leaves[0], m.Intermediate)
	b.ReportAllocs()
	for b.Loop() {
		ParseBundle(data)
	}
}
