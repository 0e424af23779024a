package pkiapi

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// namesFixture is a Linkerd mesh and an Istio mesh whose CAs have serials people copy in awkward
// forms: the Linkerd anchor's serial has an odd number of hex digits (openssl prints it with a
// leading zero), its issuer's first byte has the high bit set (DER keeps a leading zero byte,
// `openssl x509 -text` prints 00:...), the Istio root's hex serial is all digits (1234) and
// another Istio CA has the serial that 1234 is in decimal (0x4d2).
type namesFixture struct {
	linkerdAnchor, linkerdIssuer, istioRoot, istioInter, decimalTwin *testpki.Cert
	snap                                                             *model.Snapshot
}

func newNamesFixture() namesFixture {
	ca := func(cn string, serial int64, issuer *testpki.Cert) *testpki.Cert {
		return testpki.Issue(testpki.Spec{CommonName: cn, CA: true, Serial: serial, Issuer: issuer, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	}
	f := namesFixture{linkerdAnchor: ca("root.linkerd.cluster.local", 0x8fcfadf, nil), istioRoot: ca("istio root", 0x1234, nil)}
	f.linkerdIssuer = ca("identity.linkerd.cluster.local", 0x8f12, f.linkerdAnchor)
	f.istioInter = ca("istio intermediate", 0x4d2, f.istioRoot)
	f.decimalTwin = f.istioInter
	objects := []*model.Object{
		{Source: "configmap", Namespace: "linkerd", Name: "linkerd-identity-trust-roots", Mesh: model.MeshLinkerd, Authoritative: true,
			Bundles: []model.Bundle{{Key: "ca-bundle.crt", Purpose: model.PurposeTrustBundle, Certificates: certs(f.linkerdAnchor)}}},
		{Source: "secret", Namespace: "linkerd", Name: "linkerd-identity-issuer", Mesh: model.MeshLinkerd, Authoritative: true,
			Bundles: []model.Bundle{{Key: "crt.pem", Certificates: certs(f.linkerdIssuer)}}},
		{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: model.MeshIstio, Authoritative: true, Bundles: []model.Bundle{
			{Key: "ca-cert.pem", Certificates: certs(f.istioInter)},
			{Key: "cert-chain.pem", Certificates: certs(f.istioInter, f.istioRoot)},
			{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: certs(f.istioRoot)}}},
	}
	an := pki.NewAnalyzer(pki.NewCache(), nil).Analyze(objects, nil)
	f.snap = &model.Snapshot{Analysis: an, Rotation: pki.RotationAt(an, testpki.Now()),
		Sources: []model.SourceStatus{{Name: "secret", Up: true, Synced: true}, {Name: "configmap", Up: true, Synced: true}}}
	return f
}

// certs are the model's certificates of cs.
func certs(cs ...*testpki.Cert) []*model.Certificate {
	var out []*model.Certificate
	for _, c := range cs {
		out = append(out, pki.NewCertificate(c.X509))
	}
	return out
}

// openSSLText is a serial as `openssl x509 -text` prints it: the DER integer's bytes, colon-separated.
func openSSLText(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	if len(b) > 0 && b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	var parts []string
	for _, x := range b {
		parts = append(parts, fmt.Sprintf("%02x", x))
	}
	return strings.Join(parts, ":")
}

// colonFingerprint is a fingerprint as `openssl x509 -fingerprint -sha256` prints it.
func colonFingerprint(c *testpki.Cert) string {
	fp := strings.ToUpper(fingerprintOf(c))
	var parts []string
	for i := 0; i < len(fp); i += 2 {
		parts = append(parts, fp[i:i+2])
	}
	return "sha256 Fingerprint=" + strings.Join(parts, ":")
}

// TestCertificateNames: every form in which the usual tools print a serial or a fingerprint names
// the certificate; a value that names none is a 404 with no verdict, one that names different
// certificates in two readings is a 400 that lists them.
func TestCertificateNames(t *testing.T) {
	f := newNamesFixture()
	s := loadSchema(t)
	fx := fixture{snap: f.snap}
	anchor, issuer := f.linkerdAnchor, f.linkerdIssuer
	type want struct {
		status int
		cert   *testpki.Cert // the certificate matched, for 200
	}
	for _, tt := range []struct {
		query string
		want  want
	}{
		{"remove_anchor=8fcfadf", want{200, anchor}},
		{"remove_anchor=08fcfadf", want{200, anchor}},
		{"remove_anchor=08FCFADF", want{200, anchor}},          // openssl x509 -serial
		{"remove_anchor=serial%3D08FCFADF", want{200, anchor}}, // openssl x509 -serial, pasted whole
		{"remove_anchor=0x08fcfadf", want{200, anchor}},
		{"remove_anchor=" + url.QueryEscape(openSSLText(anchor.X509)), want{200, anchor}}, // openssl x509 -text
		{"remove_anchor=" + anchor.X509.SerialNumber.String(), want{200, anchor}},         // step certificate inspect (decimal)
		{"remove_anchor=" + fingerprintOf(anchor), want{200, anchor}},
		{"remove_anchor=" + url.QueryEscape(colonFingerprint(anchor)), want{200, anchor}},
		{"remove_anchor=" + url.QueryEscape(" 08fcfadf "), want{200, anchor}},
		{"remove_anchor=8fcfadf&mesh=linkerd", want{200, anchor}},
		{"remove_issuer=" + url.QueryEscape(openSSLText(issuer.X509)), want{200, issuer}}, // 00:8f:12
		{"remove_issuer=8F12", want{200, issuer}},
		{"remove_issuer=" + issuer.X509.SerialNumber.String(), want{200, issuer}}, // 36626 in decimal is no hex serial here
		{"remove_issuer=0x1234", want{200, f.istioRoot}},
		{"remove_issuer=" + fingerprintOf(f.istioInter), want{200, f.istioInter}},
		// 1234 is the Istio root in hex and the Istio intermediate (0x4d2) in decimal.
		{"remove_issuer=1234", want{400, nil}},
		{"remove_anchor=1234", want{200, f.istioRoot}}, // of the two, only the root is an anchor
		{"remove_anchor=8fcfadf&mesh=istio", want{404, nil}},
		{"remove_anchor=8f12", want{404, nil}}, // an issuer, not an anchor
		{"remove_anchor=ffff", want{404, nil}},
		{"remove_anchor=" + strings.Repeat("ab", 32), want{404, nil}},
		{"remove_anchor=zz", want{400, nil}},
		{"remove_anchor=0x", want{400, nil}},
		{"remove_anchor=08%3Afc%3A%3Afa", want{400, nil}},
	} {
		t.Run(tt.query, func(t *testing.T) {
			rec := fx.serve(t, PathWhatIf+"?"+tt.query)
			if rec.Code != tt.want.status {
				t.Fatalf("%d, want %d: %s", rec.Code, tt.want.status, rec.Body)
			}
			if rec.Code != http.StatusOK {
				if errs := s.validate("error", rec.Body.Bytes()); len(errs) > 0 {
					t.Errorf("schema: %v", errs)
				}
				e := decode[errorAnswer](t, rec)
				if rec.Code == http.StatusBadRequest && strings.Contains(tt.query, "1234") && len(e.Candidates) != 2 {
					t.Errorf("candidates %+v, want the root and the intermediate", e.Candidates)
				}
				return
			}
			if errs := s.validate("what_if", rec.Body.Bytes()); len(errs) > 0 {
				t.Errorf("schema: %v", errs)
			}
			w := decode[WhatIf](t, rec)
			if len(w.Matched) != 1 || w.Matched[0].Fingerprint != fingerprintOf(tt.want.cert) || w.Removed != 1 {
				t.Errorf("matched %+v, removed %d; want %s", w.Matched, w.Removed, tt.want.cert.X509.Subject)
			}
		})
	}
	// The Linkerd anchor by the serial people copy: the issuer under it breaks.
	w := decode[WhatIf](t, fx.serve(t, PathWhatIf+"?remove_anchor=08FCFADF"))
	if len(w.Broken) != 1 || w.Broken[0].Name != "linkerd-identity-issuer" || len(w.Matched[0].Where) != 1 || w.Matched[0].Where[0].Name != "linkerd-identity-trust-roots" {
		t.Errorf("broken %+v, matched %+v", w.Broken, w.Matched)
	}
	// The Istio intermediate is one certificate in two keys: one broken entry with its other copy.
	w = decode[WhatIf](t, fx.serve(t, PathWhatIf+"?remove_anchor=0x1234"))
	if len(w.Broken) != 1 || len(w.Broken[0].AlsoAt) != 1 || w.Broken[0].Key != "ca-cert.pem" || w.Broken[0].AlsoAt[0].Key != "cert-chain.pem" {
		t.Errorf("broken %+v", w.Broken)
	}
	// A CA that signs no workload still matches: removing it breaks nothing, and it says so.
	w = decode[WhatIf](t, fx.serve(t, PathWhatIf+"?remove_issuer=8f12"))
	if w.Removed != 1 || len(w.Broken) != 0 {
		t.Errorf("removed %d, broken %+v", w.Removed, w.Broken)
	}
	// The issuer filter takes the same names; an unknown one is a 404, not an empty list.
	for _, tt := range []struct {
		query  string
		status int
		total  int
	}{
		{"issuer=08FCFADF", 200, 1},
		{"issuer=" + fingerprintOf(f.istioRoot), 200, 2}, // the intermediate in ca-cert.pem and cert-chain.pem
		{"issuer=ffff", 404, 0},
		{"issuer=1234", 400, 0},
	} {
		rec := fx.serve(t, PathPKI+"?"+tt.query)
		if rec.Code != tt.status {
			t.Errorf("%s: %d, want %d: %s", tt.query, rec.Code, tt.status, rec.Body)
			continue
		}
		if rec.Code == http.StatusOK {
			if a := decode[PKI](t, rec); a.Total.Certificates != tt.total {
				t.Errorf("%s: %d certificates, want %d", tt.query, a.Total.Certificates, tt.total)
			}
		}
		if rec := fx.serve(t, PathPage+"?"+tt.query); rec.Code != tt.status {
			t.Errorf("page %s: %d, want %d", tt.query, rec.Code, tt.status)
		}
	}
}

// TestReadings: how one value is read.
func TestReadings(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want map[Reading]string
	}{
		{"08FC", map[Reading]string{ReadingHexSerial: "8fc", ReadingDecimalSerial: ""}},
		{"1234", map[Reading]string{ReadingHexSerial: "1234", ReadingDecimalSerial: "4d2"}},
		{"0x1234", map[Reading]string{ReadingHexSerial: "1234"}},
		{"00:8f:12", map[Reading]string{ReadingHexSerial: "8f12"}},
		{"-1f", map[Reading]string{ReadingHexSerial: "-1f"}},
		{"0", map[Reading]string{ReadingHexSerial: "0", ReadingDecimalSerial: "0"}},
	} {
		got, err := readings(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if tt.in == "08FC" { // not a decimal number
			if _, ok := got[ReadingDecimalSerial]; ok || got[ReadingHexSerial] != "8fc" {
				t.Errorf("%s: %v", tt.in, got)
			}
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: %v, want %v", tt.in, got, tt.want)
		}
		for r, v := range tt.want {
			if got[r] != v {
				t.Errorf("%s: %s %q, want %q", tt.in, r, got[r], v)
			}
		}
	}
	if n, _ := new(big.Int).SetString("150797023", 10); n.Text(16) != "8fcfadf" {
		t.Fatal("the fixture's decimal serial is not what the table assumes")
	}
}

// TestAnswersSayWhatTheyCannotSee: with a source down, every answer says which, since when, and
// how many proxies were not read; the page says it cannot see instead of "no problems", and keeps
// the last known certificates listed.
func TestAnswersSayWhatTheyCannotSee(t *testing.T) {
	f := newFixture()
	down := time.Date(2027, 5, 31, 23, 0, 0, 0, time.UTC)
	blind := *f.snap
	blind.Sources = []model.SourceStatus{
		{Name: "secret", Up: false, Synced: true, LastSuccess: down},
		{Name: "envoy", Up: true, Synced: true, Unread: 2, ReadInterval: 5 * time.Minute},
	}
	blind.Proxies = []*model.ProxyStatus{
		{Mesh: model.MeshIstio, Source: "envoy", Namespace: "shop", Name: "a", Up: true, LastSuccess: testpki.Now().Add(-time.Hour)},
		{Mesh: model.MeshIstio, Source: "envoy", Namespace: "web", Name: "b", Up: false, LastSuccess: testpki.Now().Add(-time.Minute)},
	}
	fx := fixture{snap: &blind}
	s := loadSchema(t)
	rec := fx.serve(t, PathPKI)
	if errs := s.validate("pki", rec.Body.Bytes()); len(errs) > 0 {
		t.Fatalf("schema: %v", errs)
	}
	a := decode[PKI](t, rec)
	want := ProxyReads{Known: 4, NeverRead: 2, Failing: 1, Stale: 1}
	if a.Status.Complete || a.Status.Proxies != want || len(a.Status.Sources) != 2 || a.Status.Sources[0].Up ||
		a.Status.Sources[0].LastSuccess == nil || !a.Status.Sources[0].LastSuccess.Equal(down) {
		t.Errorf("status %+v, want incomplete with the secret source down since %s and proxies %+v", a.Status, down, want)
	}
	if len(a.Certificates) == 0 {
		t.Error("the last known certificates are gone")
	}
	w := decode[WhatIf](t, fx.serve(t, PathWhatIf+"?remove_anchor=10"))
	if w.Status.Complete {
		t.Error("a what-if answered while a source is down says it is complete")
	}
	body := fx.serve(t, PathPage).Body.String()
	for _, want := range []string{"This page is not complete", "Source <code>secret</code> is <strong>down</strong> since 2027-05-31 23:00:00 UTC",
		"2 of 4 proxies were never read", "1 of 4 proxies were last read more than 3 read intervals ago", "CN=old root"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "Every source is up") || strings.Contains(body, `class="ok">None`) {
		t.Error("the page gives an all-clear while it is blind")
	}
	// A healthy snapshot with nothing wrong says so, and only then.
	n := newNamesFixture()
	body = fixture{snap: n.snap}.serve(t, PathPage).Body.String()
	if !strings.Contains(body, "Every source is up") || !strings.Contains(body, "None: every source is up and nothing it read has a problem") {
		t.Errorf("a healthy page:\n%s", body)
	}
	// The same PKI with its source not yet ready is no all-clear.
	unready := *n.snap
	unready.Sources = []model.SourceStatus{{Name: "secret", Up: true}}
	body = fixture{snap: &unready}.serve(t, PathPage).Body.String()
	if !strings.Contains(body, "not ready") || !strings.Contains(body, "None found in what could be read. This is not an all-clear") {
		t.Errorf("a page whose source is not ready:\n%s", body)
	}
}

// TestBrokenMeshIsNoRotation: an expired Linkerd issuer and an Istio intermediate under a root that
// was removed too early are problems at the top of the page and in the API, with the CA that is
// wrong; no anchor reads "retired", and the orphaned intermediate stays visible.
func TestBrokenMeshIsNoRotation(t *testing.T) {
	ca := func(cn string, serial int64, issuer *testpki.Cert, notAfter time.Time) *testpki.Cert {
		return testpki.Issue(testpki.Spec{CommonName: cn, CA: true, Serial: serial, Issuer: issuer, NotBefore: testpki.From(), NotAfter: notAfter})
	}
	anchor := ca("root.linkerd.cluster.local", 0x30, nil, testpki.Until())
	expiredIssuer := ca("identity.linkerd.cluster.local", 0x31, anchor, testpki.Now().Add(-2*time.Hour))
	oldRoot, newRoot := ca("old istio root", 0x40, nil, testpki.Until()), ca("new istio root", 0x50, nil, testpki.Until())
	orphan := ca("istio intermediate", 0x41, oldRoot, testpki.Until())
	objects := []*model.Object{
		{Source: "configmap", Namespace: "linkerd", Name: "linkerd-identity-trust-roots", Mesh: model.MeshLinkerd, Authoritative: true,
			Bundles: []model.Bundle{{Key: "ca-bundle.crt", Purpose: model.PurposeTrustBundle, Certificates: certs(anchor)}}},
		{Source: "secret", Namespace: "linkerd", Name: "linkerd-identity-issuer", Mesh: model.MeshLinkerd, Authoritative: true,
			Bundles: []model.Bundle{{Key: "crt.pem", Certificates: certs(expiredIssuer)}}},
		{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: model.MeshIstio, Authoritative: true, Bundles: []model.Bundle{
			{Key: "ca-cert.pem", Certificates: certs(orphan)},
			{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: certs(newRoot)}}},
	}
	rules := map[model.Mesh]pki.MeshRules{model.MeshLinkerd: linkerdLike{}}
	an := pki.NewAnalyzer(pki.NewCache(), rules).Analyze(objects, nil)
	snap := &model.Snapshot{Analysis: an, Rotation: pki.RotationAt(an, testpki.Now()), Sources: []model.SourceStatus{{Name: "secret", Up: true, Synced: true}}}
	fx := fixture{snap: snap}
	rec := fx.serve(t, PathPKI)
	if errs := loadSchema(t).validate("pki", rec.Body.Bytes()); len(errs) > 0 {
		t.Fatalf("schema: %v", errs)
	}
	a := decode[PKI](t, rec)
	got := map[string]Mesh{}
	for _, m := range a.Meshes {
		got[m.Mesh] = m
	}
	l, i := got["linkerd"], got["istio"]
	if l.Signing.CanSign || l.Signing.Reason != "signing_ca_expired" || len(l.Signing.CAs) != 1 || !l.Signing.CAs[0].Expired ||
		l.Signing.CAs[0].Subject != "CN=identity.linkerd.cluster.local" {
		t.Errorf("linkerd signing %+v", l.Signing)
	}
	if i.Signing.CanSign || i.Signing.Reason != "signing_ca_unanchored" || len(i.UnanchoredIssuers) != 1 ||
		i.UnanchoredIssuers[0].Subject != "CN=istio intermediate" || i.UnanchoredIssuers[0].IssuedBy != "CN=old istio root" || i.UnanchoredIssuers[0].Reason != "unknown_authority" {
		t.Errorf("istio signing %+v, unanchored %+v", i.Signing, i.UnanchoredIssuers)
	}
	for _, m := range a.Meshes {
		for _, an := range m.Anchors {
			if an.Retired {
				t.Errorf("%s anchor %s reads retired in a mesh that cannot sign", m.Mesh, an.Subject)
			}
		}
	}
	body := fx.serve(t, PathPage).Body.String()
	for _, want := range []string{"The linkerd mesh cannot sign workload certificates (signing_ca_expired)", "The istio mesh cannot sign workload certificates (signing_ca_unanchored)",
		"CAs under no current anchor", "CN=istio intermediate", "issued by CN=old istio root", "the mesh cannot sign under any anchor"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "retired anchor") || strings.Contains(body, "<strong>retired</strong>") {
		t.Error("the page calls an anchor of a broken mesh retired")
	}
	if p, tree := strings.Index(body, `id="problems"`), strings.Index(body, `id="tree"`); p < 0 || tree < p {
		t.Error("the problems do not come before the inventory")
	}
}

// linkerdLike are rules of a mesh that signs only with its issuer.
type linkerdLike struct{ pki.SPIFFERules }

func (linkerdLike) AnchorsSign() bool { return false }
