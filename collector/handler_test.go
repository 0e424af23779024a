package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testexpo"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// versionedProvider serves a snapshot whose analysis version the test moves.
type versionedProvider struct{ snap *model.Snapshot }

func (p *versionedProvider) Snapshot() *model.Snapshot { return p.snap }

func scrapeHandler(t *testing.T, h http.Handler, gz bool) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if !gz {
		return rec.Body.String()
	}
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatal("no gzip although asked")
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr) // reads every member of the stream
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// parse reads exposition text into families, failing on anything promtool would reject as text.
func parse(t *testing.T, body string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, f := range testexpo.Parse(t, strings.NewReader(body)) {
		var buf bytes.Buffer
		expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain)).Encode(f)
		out[name] = buf.String()
	}
	return out
}

func handlerFixture() (*versionedProvider, *testpki.Cert) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, Serial: 1, NotBefore: from, NotAfter: testpki.Until()})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Serial: 2, Issuer: root, NotBefore: from, NotAfter: testpki.Date(2026, 7, 1),
		URIs: []string{"spiffe://cluster.local/ns/a/sa/b"}})
	objects := []*model.Object{{Source: "secret", Namespace: "a", Name: "b", Mesh: istio.Name, Bundles: []model.Bundle{
		bundle("tls.crt", model.PurposeCertificates, leaf), bundle("ca.crt", model.PurposeTrustBundle, root), {Key: "junk", Error: model.ReasonBadPEM}}}}
	a := pki.NewAnalyzer(pki.NewCache(), mesh.Rules(config.Default().Meshes)).Analyze(objects, map[model.Mesh]model.MeshSettings{istio.Name: {TrustDomain: "cluster.local"}})
	a.Version = 1
	return &versionedProvider{&model.Snapshot{Analysis: a, Sources: []model.SourceStatus{{Name: "secret", Up: true,
		Errors: map[model.ErrorReason]uint64{model.ReasonBadPEM: 1}}},
		Proxies: []*model.ProxyStatus{{Mesh: istio.Name, Source: "envoy", Namespace: "a", Name: "p", Up: true, Endpoint: "config_dump", LastSuccess: from}}}}, leaf
}

// TestHandlerServesTheRenderedFamilies: the handler's scrape, plain and gzip, holds the same
// families, every family of the fixture, and parses.
func TestHandlerServesTheRenderedFamilies(t *testing.T) {
	p, _ := handlerFixture()
	clock := scrape()
	h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 2)
	h.now = func() time.Time { return clock }

	want := parse(t, rendered(t, p.snap, clock))
	for _, gz := range []bool{false, true} {
		got := parse(t, scrapeHandler(t, h, gz))
		if len(got) != len(want) || len(want) < 14 {
			t.Errorf("gzip %v: %d families, want %d", gz, len(got), len(want))
		}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("gzip %v: %s differs:\n got %s\nwant %s", gz, name, got[name], w)
			}
		}
	}
}

// TestHandlerRendersOnlyOnChange: the analysis families are rendered once per analysis version and
// again when a chain crosses a validity boundary, not on every scrape.
func TestHandlerRendersOnlyOnChange(t *testing.T) {
	p, leaf := handlerFixture()
	clock := scrape()
	h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 2)
	h.now = func() time.Time { return clock }
	valid := `meshcert_chain_valid{index="0",key="tls.crt",mesh="istio",name="b",namespace="a",role="leaf",source="secret"} 1`
	for range 5 {
		if body := scrapeHandler(t, h, false); !strings.Contains(body, valid) {
			t.Fatalf("leaf not valid before its NotAfter:\n%s", body)
		}
	}
	if h.blocks.renders != 1 {
		t.Errorf("%d renders for five scrapes of one analysis", h.blocks.renders)
	}
	clock = leaf.X509.NotAfter // the last valid instant
	scrapeHandler(t, h, false)
	if h.blocks.renders != 1 {
		t.Errorf("re-rendered before the boundary (%d renders)", h.blocks.renders)
	}
	clock = leaf.X509.NotAfter.Add(time.Second)
	if body := scrapeHandler(t, h, false); !strings.Contains(body, strings.TrimSuffix(valid, "1")+"0") {
		t.Errorf("the expired leaf still shows a valid chain")
	}
	if h.blocks.renders != 2 {
		t.Errorf("%d renders after crossing the NotAfter, want 2", h.blocks.renders)
	}
	next := *p.snap
	next.Analysis.Version = 2
	p.snap = &next
	scrapeHandler(t, h, false)
	if h.blocks.renders != 2 {
		t.Errorf("%d renders after a new analysis with the same findings, want still 2", h.blocks.renders)
	}
}

// TestHandlerRendersChangedBlocksOnly: in a mesh of many objects, a changed object re-renders its
// old block and the open block, not the mesh; objects that leave leave; and what a scrape serves
// is always exactly the series of the current analysis.
func TestHandlerRendersChangedBlocksOnly(t *testing.T) {
	clock := scrape()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: from, NotAfter: testpki.Until()})
	proxy := func(i int) *model.Object {
		leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: root, NotBefore: from, NotAfter: testpki.Date(2026, 7, 1),
			URIs: []string{fmt.Sprintf("spiffe://cluster.local/ns/a/sa/p%d", i)}})
		return &model.Object{Source: "envoy", Namespace: "a", Name: fmt.Sprintf("p%03d", i), Mesh: istio.Name,
			Expect:  &model.Identity{Namespace: "a", ServiceAccount: fmt.Sprintf("p%d", i)},
			Bundles: []model.Bundle{bundle("default", model.PurposeCertificates, leaf), bundle("ROOTCA", model.PurposeTrustBundle, root)}}
	}
	objects := make([]*model.Object, 200)
	for i := range objects {
		objects[i] = proxy(i)
	}
	analyzer := pki.NewAnalyzer(pki.NewCache(), mesh.Rules(config.Default().Meshes))
	p := &versionedProvider{snap: &model.Snapshot{}}
	h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 2)
	h.now = func() time.Time { return clock }
	version := uint64(0)
	check := func(name string, wantRenders int) {
		t.Helper()
		version++
		p.snap = &model.Snapshot{Analysis: analyzer.Analyze(objects, map[model.Mesh]model.MeshSettings{istio.Name: {TrustDomain: "cluster.local"}})}
		p.snap.Version = version
		before := h.blocks.renders
		got := sortedFamilies(t, scrapeHandler(t, h, true))
		if n := h.blocks.renders - before; wantRenders >= 0 && n != wantRenders {
			t.Errorf("%s: %d blocks rendered, want %d", name, n, wantRenders)
		}
		want := sortedFamilies(t, rendered(t, p.snap, clock))
		if len(got) != len(want) {
			t.Errorf("%s: %d families, want %d", name, len(got), len(want))
		}
		for fam, w := range want {
			if got[fam] != w {
				t.Errorf("%s: %s differs from the analysis", name, fam)
			}
		}
		if max := (len(objects)+blockSize/2-1)/(blockSize/2) + 1; len(h.blocks.blocks) > max {
			t.Errorf("%s: %d blocks for %d objects", name, len(h.blocks.blocks), len(objects))
		}
	}
	check("first scrape", 4) // 200 objects in blocks of 64
	check("nothing changed", 0)
	objects[5] = proxy(5)
	check("one object changed", 2) // its old block and the open one
	objects = append(objects[:10], objects[50:]...)
	check("40 objects of the first block gone", -1)
	objects = append(objects, proxy(1000), proxy(1001))
	check("two objects new", 1)
}

// rendered is what a new Handler serves for snap at now: every item rendered at once, the
// sources' health with it. The handler under test, which renders item by item as the snapshots
// change, must serve the same series.
func rendered(t *testing.T, snap *model.Snapshot, now time.Time) string {
	t.Helper()
	h := NewHandler(staticProvider{snap}, prometheus.NewRegistry(), log.NewNopLogger(), 0)
	h.now = func() time.Time { return now }
	return scrapeHandler(t, h, false)
}

// sortedFamilies parses exposition text into its families, each with its samples sorted: the order
// of samples within a family is free.
func sortedFamilies(t *testing.T, body string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, text := range parse(t, body) {
		lines := strings.Split(strings.TrimSpace(text), "\n")
		slices.Sort(lines)
		out[name] = strings.Join(lines, "\n")
	}
	return out
}

// TestHandlerProxiesHealth: the proxies' health is kept in blocks of proxy states (a changed state
// renders its old block and the open one); a proxy that is read, fails, changes endpoint, arrives
// or goes away shows at once.
func TestHandlerProxiesHealth(t *testing.T) {
	p := &versionedProvider{snap: &model.Snapshot{}}
	h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 2)
	var proxies []*model.ProxyStatus
	proxy := func(i int) *model.ProxyStatus {
		return &model.ProxyStatus{Mesh: istio.Name, Source: "envoy", Namespace: "a", Name: fmt.Sprintf("p%03d", i),
			Up: true, Endpoint: "config_dump", LastSuccess: from.Add(time.Duration(i) * time.Second)}
	}
	for i := range 200 {
		proxies = append(proxies, proxy(i))
	}
	// change gives proxy i a new record, as a source does: records are immutable.
	change := func(i int, f func(*model.ProxyStatus)) {
		next := *proxies[i]
		f(&next)
		proxies[i] = &next
	}
	later := func(p *model.ProxyStatus) { p.LastSuccess = p.LastSuccess.Add(time.Minute) }
	check := func(name string, wantRenders int) {
		t.Helper()
		before := h.blocks.renders
		p.snap = &model.Snapshot{Proxies: slices.Clone(proxies)}
		got := sortedFamilies(t, scrapeHandler(t, h, true))
		for fam, w := range sortedFamilies(t, rendered(t, p.snap, from)) {
			if got[fam] != w {
				t.Errorf("%s: %s differs:\n got %s\nwant %s", name, fam, got[fam], w)
			}
		}
		if n := h.blocks.renders - before; wantRenders >= 0 && n != wantRenders {
			t.Errorf("%s: %d blocks of proxies rendered, want %d", name, n, wantRenders)
		}
	}
	check("first scrape", 4) // 200 proxies in blocks of 64
	for i := range proxies[:3] {
		change(i, later)
	}
	check("three proxies read again", 2)
	for i := range proxies {
		change(i, later)
	}
	check("every proxy read again", 4)
	change(3, func(p *model.ProxyStatus) { p.Up = false })
	check("one proxy down", 2)
	change(4, func(p *model.ProxyStatus) { p.Endpoint = "certs" })
	check("one proxy on another endpoint", 2)
	proxies = append(proxies, proxy(500))
	slices.SortFunc(proxies, func(a, b *model.ProxyStatus) int { return strings.Compare(a.Name, b.Name) })
	check("one proxy new", 1)
	proxies = proxies[1:]
	check("one proxy gone", 1)
	check("nothing changed", 0)
	// A list in another order than the sources' is placed by the map, and the next diff does not
	// trust it.
	slices.Reverse(proxies)
	change(7, func(p *model.ProxyStatus) { p.Up = !p.Up })
	check("out of order", 1) // the changed proxy was in the open block
	slices.Reverse(proxies)
	change(9, func(p *model.ProxyStatus) { p.Endpoint = "metrics" })
	check("in order again", 2)
}

// TestHandlerRunRendersInTheBackground: with Run, changes are rendered between scrapes, and a scrape
// that comes after finds nothing left to render; it still serves exactly the current snapshot.
func TestHandlerRunRendersInTheBackground(t *testing.T) {
	p, _ := handlerFixture()
	clock := scrape()
	h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 2)
	h.now = func() time.Time { return clock }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx, 5*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	rendered := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.blocks.renders
	}
	for deadline := time.Now().Add(2 * time.Minute); rendered() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing rendered in the background")
		}
	}
	before := rendered()
	body := scrapeHandler(t, h, true)
	if n := rendered(); n != before {
		t.Errorf("the scrape rendered %d blocks the background had rendered already", n-before)
	}
	if !strings.Contains(body, `meshcert_chain_valid{index="0",key="tls.crt",mesh="istio",name="b",namespace="a",role="leaf",source="secret"} 1`) ||
		!strings.Contains(body, `meshcert_proxy_up{mesh="istio",name="p",namespace="a",source="envoy",endpoint="config_dump"} 1`) {
		t.Errorf("scrape after background rendering:\n%s", body)
	}
}

// TestOpenMetricsNegotiation: a scraper that asks for OpenMetrics gets it, from the same cached
// families, ending with # EOF and accepted by Prometheus' own OpenMetrics parser; anyone else gets
// the text format.
func TestOpenMetricsNegotiation(t *testing.T) {
	p, _ := handlerFixture()
	h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 2)
	h.now = func() time.Time { return scrape() }
	for _, tt := range []struct {
		accept, contentType string
		openMetrics         bool
	}{
		{"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", "application/openmetrics-text; version=1.0.0", true},
		{"text/plain;version=0.0.4", "text/plain; version=0.0.4", false},
		{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3", "text/plain; version=0.0.4", false},
		{"", "text/plain; version=0.0.4", false},
	} {
		for _, gz := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s gzip %v", tt.accept, gz), func(t *testing.T) {
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept", tt.accept)
				if gz {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
					t.Fatalf("Content-Type %q, want %q", ct, tt.contentType)
				}
				body := rec.Body.Bytes()
				if gz {
					zr, err := gzip.NewReader(rec.Body)
					if err != nil {
						t.Fatal(err)
					}
					if body, err = io.ReadAll(zr); err != nil {
						t.Fatal(err)
					}
				}
				if got := bytes.HasSuffix(body, []byte("# EOF\n")); got != tt.openMetrics {
					t.Fatalf("ends with # EOF: %v, want %v", got, tt.openMetrics)
				}
				if !tt.openMetrics {
					parse(t, string(body))
					return
				}
				names := map[string]bool{}
				parser := textparse.NewOpenMetricsParser(body, labels.NewSymbolTable())
				for {
					entry, err := parser.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatalf("OpenMetrics parser: %v", err)
					}
					if entry == textparse.EntrySeries {
						var l labels.Labels
						parser.Labels(&l)
						names[l.Get(prommodel.MetricNameLabel)] = true
					}
				}
				for _, n := range []string{"meshcert_certificate_not_after_timestamp_seconds", "meshcert_source_errors_total", "meshcert_proxy_up"} {
					if !names[n] {
						t.Errorf("no %s series in the OpenMetrics answer", n)
					}
				}
			})
		}
	}
}

// TestHelpTextsNeedNoOpenMetricsEscape: the cached families' HELP lines are the same in both
// formats only while no HELP text holds a double quote (which OpenMetrics escapes).
func TestHelpTextsNeedNoOpenMetricsEscape(t *testing.T) {
	for _, f := range Families() {
		if strings.ContainsRune(f.Help, '"') {
			t.Errorf("%s: HELP holds a double quote", f.Name)
		}
	}
}

// blockingProvider holds every scrape in Snapshot until released.
type blockingProvider struct {
	snap    *model.Snapshot
	entered chan struct{}
	release chan struct{}
}

func (p *blockingProvider) Snapshot() *model.Snapshot {
	p.entered <- struct{}{}
	<-p.release
	return p.snap
}

// TestScrapeConcurrencyLimit: past --web.max-requests scrapes at once the next gets a 503; with 0
// there is no limit.
func TestScrapeConcurrencyLimit(t *testing.T) {
	fixture, _ := handlerFixture()
	for _, tt := range []struct {
		limit, scrapes int
		want503        bool
	}{{2, 3, true}, {0, 3, false}} {
		t.Run(fmt.Sprintf("limit %d", tt.limit), func(t *testing.T) {
			p := &blockingProvider{snap: fixture.snap, entered: make(chan struct{}, tt.scrapes), release: make(chan struct{})}
			h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), tt.limit)
			codes := make(chan int, tt.scrapes)
			for range tt.scrapes {
				go func() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
					codes <- rec.Code
				}()
			}
			admitted := tt.scrapes
			if tt.want503 {
				admitted = tt.limit
				if code := <-codes; code != http.StatusServiceUnavailable {
					t.Fatalf("the scrape past the limit got %d, want 503", code)
				}
			}
			for range admitted {
				<-p.entered // every admitted scrape is in at once
			}
			close(p.release)
			for range admitted {
				if code := <-codes; code != http.StatusOK {
					t.Errorf("an admitted scrape got %d", code)
				}
			}
		})
	}
}

// TestBlockCacheReplace: replacing a list's items finds exactly what departed and arrived, in the
// same order, after a replacement, a removal, an insertion, and in a changed order (compared as
// sets then); the blocks hold exactly the items of the lists.
func TestBlockCacheReplace(t *testing.T) {
	r := &renderer{families: renderedFamilies()}
	c := newBlockCache(r, newCompressors(1))
	var old []*model.ProxyStatus
	proxy := func(name string) *model.ProxyStatus { return &model.ProxyStatus{Name: name} }
	a, b, cc, d := proxy("a"), proxy("b"), proxy("c"), proxy("d")
	held := func() []string {
		var out []string
		for it := range c.of {
			out = append(out, it.proxy.Name)
		}
		slices.Sort(out)
		return out
	}
	for _, tt := range []struct {
		name string
		next []*model.ProxyStatus
		want []string
	}{
		{"first", []*model.ProxyStatus{a, b, cc}, []string{"a", "b", "c"}},
		{"one replaced", []*model.ProxyStatus{a, proxy("b"), cc}, []string{"a", "b", "c"}},
		{"one removed", []*model.ProxyStatus{a, cc}, []string{"a", "c"}},
		{"one inserted", []*model.ProxyStatus{a, d, cc}, []string{"a", "c", "d"}},
		{"order changed", []*model.ProxyStatus{cc, a, d}, []string{"a", "c", "d"}},
		{"emptied", nil, nil},
	} {
		replace(c, old, tt.next, proxyItem)
		if got := held(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: the cache holds %v, want %v", tt.name, got, tt.want)
		}
		for _, p := range tt.next {
			if b := c.of[proxyItem(p)]; b == nil || !slices.Contains(b.items, proxyItem(p)) {
				t.Errorf("%s: %s is not in its block", tt.name, p.Name)
			}
		}
		old = tt.next
	}
}
