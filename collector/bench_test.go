package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// BenchmarkScrape10k serves a whole scrape of a mesh with 10,000 workload certificates (plus
// the mesh's intermediate and root): const metrics built, gathered and encoded, as Prometheus sees it.
func BenchmarkScrape10k(b *testing.B) {
	m := testpki.NewMesh(10000, from)
	inter := pki.NewCertificate(m.Intermediate.X509)
	objects := []*model.Object{{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: istio.Name, Authoritative: true,
		Bundles: []model.Bundle{
			{Key: "ca-cert.pem", Certificates: []*model.Certificate{inter}},
			{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: []*model.Certificate{pki.NewCertificate(m.Root.X509)}}}}}
	for i, l := range m.Leaves {
		objects = append(objects, &model.Object{Source: "envoy", Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("pod-%d", i), Mesh: istio.Name,
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
					// A snapshot's lists are never modified once handed out: a new analysis.
					objects := slices.Clone(p.snap.Objects)
					objects[i] = &changed
					p.snap = &model.Snapshot{Analysis: model.Analysis{Objects: objects, Version: p.snap.Version + 1}}
				case "all":
					h.blocks, h.placed, h.objects, h.proxies = newBlockCache(h.blocks.render, h.zip), false, nil, nil
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "body-bytes")
		})
	}
}

// BenchmarkScrapeDuringSweep serves a scrape of 10,000 proxies while they are read for the first
// time: since the handler's last background pass 200 proxies were read (new objects to analyse and
// render, new proxy states). That is 250 ms of a sweep at 800 reads a second, more than the 100 ms
// the exporter's pass leaves. The analysis runs inside the scrape, as in the exporter.
func BenchmarkScrapeDuringSweep(b *testing.B) {
	const n, perScrape = 10000, 200
	m := testpki.NewMesh(n, from)
	// Every certificate comes from the cache the analysis shares, as the readers parse it: a
	// workload leaf parsed with its intermediate has its signature checked then.
	cache := pki.NewCache()
	parsed := func(c ...*testpki.Cert) []*model.Certificate {
		certs, _ := cache.ParseBundle(testpki.Bundle(c...))
		return certs
	}
	inter, root := parsed(m.Intermediate)[0], parsed(m.Root)[0]
	ca := &model.Object{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: istio.Name, Authoritative: true,
		Bundles: []model.Bundle{{Key: "ca-cert.pem", Certificates: []*model.Certificate{inter}},
			{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: []*model.Certificate{root}}}}
	proxies := make([]*model.Object, n)
	statuses := make([]*model.ProxyStatus, n)
	for i, l := range m.Leaves {
		proxies[i] = &model.Object{Source: "envoy", Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("pod-%d", i), Mesh: istio.Name,
			Bundles: []model.Bundle{{Key: "default", Export: model.ExportFirst, Certificates: parsed(l, m.Intermediate)},
				{Key: "ROOTCA", Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, Certificates: []*model.Certificate{root}}}}
		statuses[i] = &model.ProxyStatus{Mesh: istio.Name, Source: "envoy", Namespace: proxies[i].Namespace, Name: proxies[i].Name,
			Up: true, Endpoint: "config_dump", LastSuccess: from}
	}
	// A source lists its proxies by namespace/name; the objects are in that order too.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return strings.Compare(statuses[a].Namespace+"/"+statuses[a].Name, statuses[b].Namespace+"/"+statuses[b].Name)
	})
	sortedProxies, sortedStatuses := make([]*model.Object, n), make([]*model.ProxyStatus, n)
	for i, k := range order {
		sortedProxies[i], sortedStatuses[i] = proxies[k], statuses[k]
	}
	proxies, statuses = sortedProxies, sortedStatuses
	meshes := map[model.Mesh]model.MeshSettings{istio.Name: {TrustDomain: "cluster.local"}}
	analyzer := pki.NewAnalyzer(cache, mesh.Rules(config.Default().Meshes))
	p := &versionedProvider{snap: &model.Snapshot{}}
	analyse := func(read int) {
		objects := append([]*model.Object{ca}, proxies[:read]...)
		p.snap = &model.Snapshot{Analysis: analyzer.Analyze(objects, meshes), Proxies: statuses[:read]}
		p.snap.Version = uint64(read)
	}
	h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 1)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	read := n / 2
	analyse(read)
	h.ServeHTTP(httptest.NewRecorder(), req)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if read+perScrape > n {
			read = n / 2
		}
		read += perScrape
		b.StartTimer()
		analyse(read) // the inventory's part of the scrape
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
