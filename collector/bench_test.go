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
		name string
		gzip bool
		// change: "" serves the cache; "one" replaces one object's findings before each scrape (a
		// certificate rotated); "all" drops the cache (the first scrape after a start).
		change string
	}{{"cached", false, ""}, {"cached-gzip", true, ""}, {"one-changed-gzip", true, "one"}, {"render-all", false, "all"}, {"render-all-gzip", true, "all"}} {
		b.Run(bench.name, func(b *testing.B) {
			h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 1)
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if bench.gzip {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			h.ServeHTTP(httptest.NewRecorder(), req) // warm the cache
			b.ReportAllocs()
			var size, i int
			for b.Loop() {
				switch bench.change {
				case "one":
					i = (i + 7919) % len(p.snap.Objects) // spread over the blocks
					changed := *p.snap.Objects[i]
					p.snap.Objects[i] = &changed
					p.snap.Version++
				case "all":
					h.blocks = blockCache{of: map[*model.ObjectAnalysis]*block{}}
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "body-bytes")
		})
	}
}
