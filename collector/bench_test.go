package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// BenchmarkScrape10k serves a whole scrape of a mesh with 10,000 workload certificates (plus
// the mesh's intermediate and root): const metrics built, gathered and encoded, as Prometheus sees it.
func BenchmarkScrape10k(b *testing.B) {
	m := testpki.NewMesh(10000, from)
	inter := pki.NewCertificate(m.Intermediate.X509)
	objects := []*model.Object{{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: model.MeshIstio, Authoritative: true,
		Bundles: []model.Bundle{
			{Key: "ca-cert.pem", Certificates: []*model.Certificate{inter}},
			{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: []*model.Certificate{pki.NewCertificate(m.Root.X509)}}}}}
	for i, l := range m.Leaves {
		objects = append(objects, &model.Object{Source: "envoy", Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("pod-%d", i), Mesh: model.MeshIstio,
			Bundles: []model.Bundle{{Key: "default", Certificates: []*model.Certificate{pki.NewCertificate(l.X509)}}}})
	}
	p := analysed(objects)
	p.snap.Version = 1
	for _, bench := range []struct {
		name     string
		gzip     bool
		rerender bool
	}{{"cached", false, false}, {"cached-gzip", true, false}, {"render", false, true}, {"render-gzip", true, true}} {
		b.Run(bench.name, func(b *testing.B) {
			h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 1)
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if bench.gzip {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			h.ServeHTTP(httptest.NewRecorder(), req) // warm the cache
			b.ReportAllocs()
			var size int
			for b.Loop() {
				if bench.rerender {
					p.snap.Version++
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "body-bytes")
		})
	}
}
