package pkiapi

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// testMeshes are the meshes the handlers under test know.
var testMeshes = []string{"istio", "linkerd"}

// staticProvider hands out one snapshot.
type staticProvider struct{ snap *model.Snapshot }

func (p staticProvider) Snapshot() *model.Snapshot { return p.snap }

// fixture is an Istio rotation half done: both roots published and signing with the new
// intermediate; sidecar a on the old intermediate with the old root only, b on the new with both
// roots; a namespace's root copy still old; a Secret whose leaf names no known CA; a pod that
// could bypass the proxy.
type fixture struct {
	oldRoot, newRoot, oldInter, newInter *testpki.Cert
	snap                                 *model.Snapshot
}

func newFixture() fixture {
	ca := func(cn string, serial int64, issuer *testpki.Cert) *testpki.Cert {
		return testpki.Issue(testpki.Spec{CommonName: cn, CA: true, Serial: serial, Issuer: issuer, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	}
	f := fixture{oldRoot: ca("old root", 0x10, nil), newRoot: ca("new root", 0x20, nil)}
	f.oldInter, f.newInter = ca("old intermediate", 0x11, f.oldRoot), ca("new intermediate", 0x21, f.newRoot)
	certs := func(cs ...*testpki.Cert) []*model.Certificate {
		var out []*model.Certificate
		for _, c := range cs {
			out = append(out, pki.NewCertificate(c.X509))
		}
		return out
	}
	leaf := func(ns, sa string, inter *testpki.Cert, notAfter time.Time) *testpki.Cert {
		return testpki.Issue(testpki.Spec{Issuer: inter, Serial: int64(len(sa)) + 0x100, URIs: []string{"spiffe://cluster.local/ns/" + ns + "/sa/" + sa},
			NotBefore: testpki.From(), NotAfter: notAfter})
	}
	proxy := func(ns, name string, inter *testpki.Cert, roots ...*testpki.Cert) *model.Object {
		return &model.Object{Source: "envoy", Namespace: ns, Name: name, Mesh: model.MeshIstio, Expect: &model.Identity{Namespace: ns, ServiceAccount: name},
			Bundles: []model.Bundle{
				{Key: "default", Export: model.ExportFirst, Presented: true, Certificates: certs(leaf(ns, name, inter, testpki.Date(2027, 6, 2)), inter)},
				{Key: "ROOTCA", Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, Certificates: certs(roots...)}}}
	}
	stray := testpki.Issue(testpki.Spec{CommonName: "stray", DNSNames: []string{"stray.example"}, Issuer: ca("elsewhere", 0x99, nil),
		NotBefore: testpki.From(), NotAfter: testpki.Until()})
	objects := []*model.Object{
		{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: model.MeshIstio, Authoritative: true, Bundles: []model.Bundle{
			{Key: "ca-cert.pem", Certificates: certs(f.newInter)},
			{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: certs(f.oldRoot, f.newRoot)}}},
		proxy("shop", "a", f.oldInter, f.oldRoot),
		proxy("web", "b", f.newInter, f.oldRoot, f.newRoot),
		{Source: "configmap", Namespace: "legacy", Name: "istio-ca-root-cert", Mesh: model.MeshIstio,
			Bundles: []model.Bundle{{Key: "root-cert.pem", Purpose: model.PurposeTrustBundleCopy, Certificates: certs(f.oldRoot)}}},
		{Source: "secret", Namespace: "certs", Name: "stray-tls", Mesh: model.MeshIstio, Bundles: []model.Bundle{{Key: "tls.crt", Certificates: certs(stray)}}},
	}
	an := pki.NewAnalyzer(pki.NewCache(), nil).Analyze(objects, map[model.Mesh]model.MeshSettings{model.MeshIstio: {TrustDomain: "cluster.local"}})
	f.snap = &model.Snapshot{Analysis: an, Rotation: pki.RotationAt(an, testpki.Now()),
		Sources: []model.SourceStatus{{Name: "posture", Up: true, Synced: true}},
		Posture: model.Posture{Bypass: []model.BypassFinding{{Mesh: model.MeshIstio, Namespace: "shop", Name: "debug", Reason: model.BypassNetAdmin}}}}
	return f
}

// serve answers one request of the handler over the fixture at testpki.Now.
func (f fixture) serve(t testing.TB, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	path, query, _ := strings.Cut(target, "?")
	return f.serveRaw(path, query, header...)
}

// serveRaw answers a request for path whose query is rawQuery as the client sent it.
func (f fixture) serveRaw(path, rawQuery string, header ...string) *httptest.ResponseRecorder {
	h := NewHandler(staticProvider{f.snap}, testMeshes, log.NewNopLogger())
	h.now = testpki.Now
	mux := http.NewServeMux()
	h.Register(mux)
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.URL.RawQuery = rawQuery
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("%s: %v", rec.Body, err)
	}
	return v
}

// TestPKIAnswer: the tree of the rotation in progress, every answer valid against the documented
// schema.
func TestPKIAnswer(t *testing.T) {
	f := newFixture()
	s := loadSchema(t)
	rec := f.serve(t, PathPKI)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", rec.Code, rec.Header())
	}
	if errs := s.validate("pki", rec.Body.Bytes()); len(errs) > 0 {
		t.Errorf("the answer breaks the schema: %v", errs)
	}
	a := decode[PKI](t, rec)
	if len(a.Meshes) != 1 || a.Meshes[0].TrustBundleCopies != 3 || len(a.Meshes[0].Anchors) != 2 {
		t.Fatalf("meshes %+v", a.Meshes)
	}
	type row struct {
		anchor     string
		dependents int
		bundles    int
		issuers    []string
	}
	var got []row
	for _, an := range a.Meshes[0].Anchors {
		r := row{anchor: an.Subject, dependents: an.Dependents, bundles: an.Bundles}
		for _, is := range an.Issuers {
			var ws []string
			for _, w := range is.Workloads {
				ws = append(ws, w.Namespace)
			}
			r.issuers = append(r.issuers, is.Subject+" signed "+strings.Join(ws, ","))
		}
		got = append(got, r)
	}
	want := []row{
		{"CN=old root", 1, 3, []string{"CN=old intermediate signed shop"}},
		{"CN=new root", 2, 1, []string{"CN=new intermediate signed web"}},
	}
	if len(got) != len(want) {
		t.Fatalf("anchors %+v", got)
	}
	for i := range want {
		if got[i].anchor != want[i].anchor || got[i].dependents != want[i].dependents || got[i].bundles != want[i].bundles || !slices.Equal(got[i].issuers, want[i].issuers) {
			t.Errorf("anchor %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if a.Total.Certificates != len(a.Certificates) || a.Total.TrustBundles != 3 {
		t.Errorf("totals %+v for %d certificates", a.Total, len(a.Certificates))
	}
}

// TestPKIFilters: each filter selects what it says, and a request the API cannot answer gets 400
// with the reason, valid against the schema.
func TestPKIFilters(t *testing.T) {
	f := newFixture()
	s := loadSchema(t)
	where := func(a PKI) (certs, bundles []string) {
		for _, c := range a.Certificates {
			certs = append(certs, c.Namespace+"/"+c.Name+"/"+c.Key)
		}
		for _, b := range a.TrustBundles {
			bundles = append(bundles, b.Namespace+"/"+b.Name+"/"+b.Key)
		}
		return certs, bundles
	}
	for _, tt := range []struct {
		query          string
		certs, bundles []string
	}{
		{"namespace=shop", []string{"shop/a/default"}, []string{"shop/a/ROOTCA"}},
		{"role=leaf", []string{"shop/a/default", "web/b/default", "certs/stray-tls/tls.crt"}, nil},
		{"issuer=11", []string{"shop/a/default"}, nil},
		{"problem=true", []string{"certs/stray-tls/tls.crt"}, []string{"shop/a/ROOTCA", "legacy/istio-ca-root-cert/root-cert.pem"}},
		{"expiring_before=2027-07-01T00:00:00Z", []string{"shop/a/default", "web/b/default"}, nil},
		{"expiring_before=720h", []string{"shop/a/default", "web/b/default"}, nil},
		{"expiring_before=30d", []string{"shop/a/default", "web/b/default"}, nil},
		{"expiring_before=1y", []string{"shop/a/default", "web/b/default"}, nil},
		{"expiring_before=12h", nil, nil},
		{"mesh=linkerd", nil, nil},
		{"mesh=istio&namespace=legacy", []string{"legacy/istio-ca-root-cert/root-cert.pem"}, []string{"legacy/istio-ca-root-cert/root-cert.pem"}},
		{"role=leaf&limit=1&offset=1", []string{"web/b/default"}, nil},
	} {
		t.Run(tt.query, func(t *testing.T) {
			rec := f.serve(t, PathPKI+"?"+tt.query)
			if errs := s.validate("pki", rec.Body.Bytes()); rec.Code != http.StatusOK || len(errs) > 0 {
				t.Fatalf("%d, schema: %v\n%s", rec.Code, errs, rec.Body)
			}
			a := decode[PKI](t, rec)
			certs, bundles := where(a)
			if !slices.Equal(certs, tt.certs) || !slices.Equal(bundles, tt.bundles) {
				t.Errorf("certificates %v, bundles %v; want %v, %v", certs, bundles, tt.certs, tt.bundles)
			}
			if strings.Contains(tt.query, "mesh=linkerd") && len(a.Meshes) != 0 {
				t.Errorf("the tree of mesh=linkerd holds %+v", a.Meshes)
			}
		})
	}
	for _, query := range []string{"role=root", "limit=-1", "limit=0", "limit=100000", "expiring_before=soon", "expiring_before=-1h", "problem=maybe", "issuer=xyz",
		"namespace=Not_A_Name", "colour=blue", "mesh=a&mesh=b", "mesh=consul", "%zz"} {
		rec := f.serve(t, PathPKI+"?"+query)
		if errs := s.validate("error", rec.Body.Bytes()); rec.Code != http.StatusBadRequest || len(errs) > 0 {
			t.Errorf("%s: %d, schema %v: %s", query, rec.Code, errs, rec.Body)
		}
	}
}

// TestWhatIfAnswer: removing the old root breaks a's leaf and leaves two copies without a current
// root; removing the new intermediate breaks b's leaf and cacerts' copy of the intermediate is
// the removed CA itself.
func TestWhatIfAnswer(t *testing.T) {
	f := newFixture()
	s := loadSchema(t)
	for _, tt := range []struct {
		query              string
		removed            int
		broken, unanchored []string
	}{
		{"remove_anchor=10", 1, []string{"shop/a/default"}, []string{"shop/a/ROOTCA", "legacy/istio-ca-root-cert/root-cert.pem"}},
		{"remove_anchor=20&mesh=istio", 1, []string{"istio-system/cacerts/ca-cert.pem", "web/b/default"}, nil},
		{"remove_issuer=21", 1, []string{"web/b/default"}, nil},
	} {
		rec := f.serve(t, PathWhatIf+"?"+tt.query)
		if errs := s.validate("what_if", rec.Body.Bytes()); rec.Code != http.StatusOK || len(errs) > 0 {
			t.Fatalf("%s: %d, schema %v: %s", tt.query, rec.Code, errs, rec.Body)
		}
		w := decode[WhatIf](t, rec)
		var broken, unanchored []string
		for _, c := range w.Broken {
			broken = append(broken, c.Namespace+"/"+c.Name+"/"+c.Key)
		}
		for _, u := range w.Unanchored {
			unanchored = append(unanchored, u.Namespace+"/"+u.Name+"/"+u.Key)
		}
		if w.Removed != tt.removed || !slices.Equal(broken, tt.broken) || !slices.Equal(unanchored, tt.unanchored) {
			t.Errorf("%s: removed %d, broken %v, unanchored %v; want %d, %v, %v", tt.query, w.Removed, broken, unanchored, tt.removed, tt.broken, tt.unanchored)
		}
	}
	for _, query := range []string{"", "remove_anchor=10&remove_issuer=11", "remove_anchor=", "remove_anchor=10&limit=1", "remove_anchor=10&mesh=consul"} {
		if rec := f.serve(t, PathWhatIf+"?"+query); rec.Code != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", query, rec.Code)
		}
	}
	// An unknown serial, an intermediate asked about as an anchor, another mesh's anchor: no verdict.
	for _, query := range []string{"remove_anchor=ab", "remove_anchor=11", "remove_anchor=10&mesh=linkerd", "remove_issuer=ab"} {
		rec := f.serve(t, PathWhatIf+"?"+query)
		if errs := s.validate("error", rec.Body.Bytes()); rec.Code != http.StatusNotFound || len(errs) > 0 {
			t.Errorf("%q: %d, schema %v: %s", query, rec.Code, errs, rec.Body)
		}
	}
}

// TestGzipAndMethods: answers are gzipped for a client that asks, and only GET and HEAD are served.
func TestGzipAndMethods(t *testing.T) {
	f := newFixture()
	rec := f.serve(t, PathPKI, "Accept-Encoding", "br, gzip")
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if errs := loadSchema(t).validate("pki", body); len(errs) > 0 {
		t.Errorf("the gzipped answer: %v", errs)
	}
	if rec := f.serve(t, PathPKI, "Accept-Encoding", "gzip;q=0"); rec.Header().Get("Content-Encoding") != "" {
		t.Error("gzip for a client that refuses it")
	}
	h := NewHandler(staticProvider{f.snap}, testMeshes, log.NewNopLogger())
	mux := http.NewServeMux()
	h.Register(mux)
	for _, path := range []string{PathPKI, PathWhatIf + "?remove_anchor=10", PathPage} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d", path, rec.Code)
		}
	}
}

// TestPage: the page shows the tree, the rotation, what expires first, the problems and the bypass
// candidates, without any script; a filter lists the certificates it selects.
func TestPage(t *testing.T) {
	f := newFixture()
	rec := f.serve(t, PathPage)
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	for _, want := range []string{"CN=old root", "CN=new intermediate", "2 distinct certificates depend on it only", "in 3 trust-bundle copies",
		`href="/pki?issuer=` + fingerprintOf(f.oldInter) + `&amp;namespace=shop#certificates"`, "1 of 3 (33%)", "retired anchor: CN=old root", "unknown_authority", "istio-ca-root-cert", "shop/debug", "net_admin",
		"Every source is up"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(body), "<script") {
		t.Error("the page has a script")
	}
	rec = f.serve(t, PathPage+"?"+url.Values{"issuer": {fingerprintOf(f.oldInter)}, "namespace": {"shop"}}.Encode())
	if body := rec.Body.String(); !strings.Contains(body, `id="certificates"`) || !strings.Contains(body, "spiffe://cluster.local/ns/shop/sa/a") || strings.Contains(body, "ns/web/sa/b</code></td><td>2027") {
		t.Errorf("the filtered page:\n%s", body)
	}
	if rec := f.serve(t, PathPage+"?role=nope"); rec.Code != http.StatusBadRequest {
		t.Errorf("a bad filter: %d", rec.Code)
	}
}

// FuzzQuery: no query makes the API fail: it answers 200, 400 or 404, with JSON valid against the
// schema, and the page 200, 400 or 404.
func FuzzQuery(f *testing.F) {
	for _, seed := range []string{"", "mesh=istio", "role=leaf&limit=1&offset=2", "expiring_before=24h", "remove_anchor=10", "remove_issuer=-1f",
		"remove_anchor=0x10", "remove_anchor=00:10", "issuer=17", "expiring_before=30d", "mesh=consul", "remove_issuer=serial%3D11",
		"problem=1&namespace=a.b", "%", "limit=99999999999999999999", "expiring_before=2027-01-01T00:00:00%2B02:00"} {
		f.Add(seed)
	}
	fx := newFixture()
	s := loadSchema(f)
	f.Fuzz(func(t *testing.T, query string) {
		for _, path := range []string{PathPKI, PathWhatIf} {
			rec := fx.serveRaw(path, query)
			def := map[string]string{PathPKI: "pki", PathWhatIf: "what_if"}[path]
			switch rec.Code {
			case http.StatusOK:
			case http.StatusBadRequest, http.StatusNotFound:
				def = "error"
			default:
				t.Fatalf("%s?%s: %d", path, query, rec.Code)
			}
			if errs := s.validate(def, rec.Body.Bytes()); len(errs) > 0 {
				t.Fatalf("%s?%s: %v", path, query, errs)
			}
		}
		if rec := fx.serveRaw(PathPage, query); rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest && rec.Code != http.StatusNotFound {
			t.Fatalf("page ?%s: %d", query, rec.Code)
		}
	})
}

// fingerprintOf is c's SHA-256 fingerprint as the API writes it.
func fingerprintOf(c *testpki.Cert) string {
	sum := sha256.Sum256(c.X509.Raw)
	return hex.EncodeToString(sum[:])
}
