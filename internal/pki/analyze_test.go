package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testmodel"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

var now = testpki.Now()

// The meshes of these tests: names only, judged by SPIFFERules (the meshes' own rules are tested
// in their packages).
const (
	meshIstio   model.Mesh = "istio"
	meshLinkerd model.Mesh = "linkerd"
)

// testCache is the cache the tests' certificates are shared through, as every source shares
// them through the exporter's.
func testCache() *Cache { return sharedTestCache }

// sharedTestCache is written once, before any test runs.
var sharedTestCache = NewCache()

// newAnalyzer returns an analyzer over the tests' cache with the SPIFFE rules for every mesh.
func newAnalyzer() *Analyzer { return NewAnalyzer(testCache(), nil) }

// cert returns the shared certificate for c, as every source gets it from ParseBundle.
func cert(c *testpki.Cert) *model.Certificate {
	shared, err := testCache().certificate(c.X509.Raw)
	if err != nil {
		panic(err)
	}
	return shared
}

func certs(cs ...*testpki.Cert) []*model.Certificate {
	out := make([]*model.Certificate, len(cs))
	for i, c := range cs {
		out[i] = cert(c)
	}
	return out
}

func obj(name string, mesh model.Mesh, bundles ...model.Bundle) *model.Object {
	return &model.Object{Source: "test", Name: name, Mesh: mesh, Bundles: bundles}
}

func trust(key string, cs ...*testpki.Cert) model.Bundle {
	return model.Bundle{Key: key, Purpose: model.PurposeTrustBundle, Certificates: certs(cs...)}
}

func chain(key string, cs ...*testpki.Cert) model.Bundle {
	return model.Bundle{Key: key, Certificates: certs(cs...)}
}

// tampered returns c with one byte of its signature flipped.
func tampered(c *testpki.Cert) *testpki.Cert {
	raw := append([]byte{}, c.X509.Raw...)
	raw[len(raw)-3] ^= 0xff
	x, err := x509.ParseCertificate(raw)
	if err != nil {
		panic(err)
	}
	return &testpki.Cert{X509: x, Key: c.Key}
}

func intp(i int) *int { return &i }

func TestAnalyzeChains(t *testing.T) {
	y := func(years int) time.Time { return testpki.From().AddDate(years, 0, 0) }
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, Key: testpki.RSA2048, NotBefore: testpki.From(), NotAfter: y(10)})
	otherRoot := testpki.Issue(testpki.Spec{CommonName: "other root", CA: true, NotBefore: testpki.From(), NotAfter: y(10)})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: y(5)})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: inter, NotBefore: testpki.From(), NotAfter: y(2)})
	expiredLeaf := testpki.Issue(testpki.Spec{CommonName: "old", Issuer: inter, NotBefore: testpki.From(), NotAfter: testpki.Date(2026, 1, 2)})
	futureLeaf := testpki.Issue(testpki.Spec{CommonName: "new", Issuer: inter, NotBefore: testpki.Date(2028, 1, 1), NotAfter: y(4)})
	expiredInter := testpki.Issue(testpki.Spec{CommonName: "expired inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Date(2027, 1, 1)})
	leafOfExpired := testpki.Issue(testpki.Spec{CommonName: "leaf2", Issuer: expiredInter, NotBefore: testpki.From(), NotAfter: y(2)})
	notCA := testpki.Issue(testpki.Spec{CommonName: "not a ca", Issuer: root, NotBefore: testpki.From(), NotAfter: y(5)})
	signedByLeaf := testpki.Issue(testpki.Spec{CommonName: "signed by leaf", Issuer: notCA, NotBefore: testpki.From(), NotAfter: y(2)})
	noBC := testpki.Issue(testpki.Spec{CommonName: "ca without basic constraints", CA: true, NoBasicConstraints: true, Issuer: root, NotBefore: testpki.From(), NotAfter: y(5)})
	signedByNoBC := testpki.Issue(testpki.Spec{CommonName: "signed by noBC", Issuer: noBC, NotBefore: testpki.From(), NotAfter: y(2)})
	strictRoot := testpki.Issue(testpki.Spec{CommonName: "strict root", CA: true, MaxPathLen: intp(0), NotBefore: testpki.From(), NotAfter: y(10)})
	strictInter := testpki.Issue(testpki.Spec{CommonName: "strict inter", CA: true, Issuer: strictRoot, NotBefore: testpki.From(), NotAfter: y(5)})
	strictLeaf := testpki.Issue(testpki.Spec{CommonName: "strict leaf", Issuer: strictInter, NotBefore: testpki.From(), NotAfter: y(2)})
	selfLeaf := testpki.Issue(testpki.Spec{CommonName: "self-signed leaf", NotBefore: testpki.From(), NotAfter: y(2)})
	// A loop: A is signed by B and B by A (two CAs that cross-sign each other, no root).
	aName, bName := pkix.Name{CommonName: "loop A"}, pkix.Name{CommonName: "loop B"}
	aKey, bKey := testpki.NewKey(testpki.ECDSAP256), testpki.NewKey(testpki.ECDSAP256)
	bSelf := testpki.Issue(testpki.Spec{Subject: &bName, CA: true, SubjectKey: bKey, NotBefore: testpki.From(), NotAfter: y(5)})
	loopA := testpki.Issue(testpki.Spec{Subject: &aName, CA: true, SubjectKey: aKey, Issuer: bSelf, NotBefore: testpki.From(), NotAfter: y(5)})
	loopB := testpki.Issue(testpki.Spec{Subject: &bName, CA: true, SubjectKey: bKey, Issuer: loopA, NotBefore: testpki.From(), NotAfter: y(5)})

	type want struct {
		role   model.Role
		valid  bool
		reason model.ErrorReason
		depth  int
		notAft time.Time
	}
	tests := []struct {
		name    string
		objects []*model.Object
		want    want // for the first certificate of the first bundle holding certificates of the last object
	}{
		{"intermediate under its root", []*model.Object{obj("cacerts", meshIstio, chain("ca-cert.pem", inter), trust("root-cert.pem", root))},
			want{model.RoleIntermediate, true, "", 2, y(5)}},
		{"chain of 3 with an external root", []*model.Object{
			{Source: "test", Name: "root", Mesh: meshIstio, Authoritative: true, Bundles: []model.Bundle{trust("root-cert.pem", root)}},
			obj("proxy", meshIstio, chain("default", leaf, inter)),
		}, want{model.RoleLeaf, true, "", 3, y(2)}},
		{"external root of another mesh is not trusted", []*model.Object{
			{Source: "test", Name: "root", Mesh: meshLinkerd, Authoritative: true, Bundles: []model.Bundle{trust("ca-bundle.crt", root)}},
			obj("proxy", meshIstio, chain("default", leaf, inter)),
		}, want{model.RoleLeaf, false, model.ReasonUnknownAuthority, 2, y(2)}},
		{"signed by a root not in the bundle", []*model.Object{obj("cacerts", meshIstio, chain("ca-cert.pem", inter), chain("cert-chain.pem", inter, root), trust("root-cert.pem", otherRoot))},
			want{model.RoleIntermediate, false, model.ReasonUnknownAuthority, 1, y(5)}},
		{"expired leaf", []*model.Object{obj("o", "", chain("tls.crt", expiredLeaf, inter), trust("ca.crt", root))},
			want{model.RoleLeaf, false, model.ReasonExpired, 3, testpki.Date(2026, 1, 2)}},
		{"leaf not yet valid", []*model.Object{obj("o", "", chain("tls.crt", futureLeaf, inter), trust("ca.crt", root))},
			want{model.RoleLeaf, false, model.ReasonNotYetValid, 3, y(4)}},
		{"valid leaf under an expired intermediate", []*model.Object{obj("o", "", chain("tls.crt", leafOfExpired, expiredInter), trust("ca.crt", root))},
			want{model.RoleLeaf, false, model.ReasonExpired, 3, testpki.Date(2027, 1, 1)}},
		{"bad signature", []*model.Object{obj("o", "", chain("tls.crt", tampered(inter)), trust("ca.crt", root))},
			want{model.RoleIntermediate, false, model.ReasonBadSignature, 1, y(5)}},
		{"signed by a leaf", []*model.Object{obj("o", "", chain("tls.crt", signedByLeaf, notCA), trust("ca.crt", root))},
			want{model.RoleLeaf, false, model.ReasonNotCA, 2, y(2)}},
		{"signed by a CA without basic constraints", []*model.Object{obj("o", "", chain("tls.crt", signedByNoBC, noBC), trust("ca.crt", root))},
			want{model.RoleLeaf, false, model.ReasonNotCA, 2, y(2)}},
		{"path length exceeded", []*model.Object{obj("o", "", chain("tls.crt", strictLeaf, strictInter), trust("ca.crt", strictRoot))},
			want{model.RoleLeaf, false, model.ReasonPathLenExceeded, 3, y(2)}},
		{"path length zero allows its direct intermediate", []*model.Object{obj("o", "", chain("tls.crt", strictInter), trust("ca.crt", strictRoot))},
			want{model.RoleIntermediate, true, "", 2, y(5)}},
		{"self-signed leaf", []*model.Object{obj("o", "", chain("tls.crt", selfLeaf))},
			want{model.RoleLeaf, false, model.ReasonUnknownAuthority, 1, y(2)}},
		{"chain loop", []*model.Object{obj("o", "", chain("tls.crt", loopA, loopB))},
			want{model.RoleIntermediate, false, model.ReasonUnknownAuthority, 2, y(5)}},
		{"no trust bundle: a self-signed CA in the object is the anchor", []*model.Object{obj("o", "", chain("bundle.pem", leaf, inter, root))},
			want{model.RoleLeaf, true, "", 3, y(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := testmodel.Certificates(newAnalyzer().Analyze(tt.objects, nil))
			last := tt.objects[len(tt.objects)-1]
			var got *testmodel.Observation
			for i := range obs {
				if obs[i].Name == last.Name && obs[i].Index == 0 && obs[i].Key == firstKey(last) {
					got = &obs[i]
				}
			}
			if got == nil {
				t.Fatalf("no observation for %s", last.Name)
			}
			if got.Role != tt.want.role || got.Chain == nil {
				t.Fatalf("role %q (chain %v), want %q with a chain", got.Role, got.Chain != nil, tt.want.role)
			}
			st := got.Chain.Evaluate(got.Certificate, now)
			if st.Valid != tt.want.valid || st.Reason != tt.want.reason || st.Depth != tt.want.depth || !st.NotAfter.Equal(tt.want.notAft) {
				t.Errorf("chain = valid %v reason %q depth %d not after %s; want %v %q %d %s",
					st.Valid, st.Reason, st.Depth, st.NotAfter, tt.want.valid, tt.want.reason, tt.want.depth, tt.want.notAft)
			}
		})
	}
}

func firstKey(o *model.Object) string {
	for _, b := range o.Bundles {
		if len(b.Certificates) > 0 {
			return b.Key
		}
	}
	return ""
}

func TestAnalyzeTwoRootsAndUniqueLocations(t *testing.T) {
	oldRoot := testpki.Issue(testpki.Spec{CommonName: "old root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	newRoot := testpki.Issue(testpki.Spec{CommonName: "new root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	dir := obj("/etc/cacerts", meshIstio, trust("root-cert.pem", oldRoot, newRoot), trust("root-cert.pem", oldRoot))
	a := newAnalyzer().Analyze([]*model.Object{dir, obj("/etc/cacerts", meshIstio, trust("x", oldRoot))}, nil)
	obs, errs := testmodel.Certificates(a), testmodel.BundleErrors(a)
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	seen := map[testmodel.Location]bool{}
	for _, o := range obs {
		if seen[o.Location] {
			t.Errorf("duplicate location %+v", o.Location)
		}
		seen[o.Location] = true
		if o.Role != model.RoleTrustAnchor || o.Chain != nil {
			t.Errorf("%+v: role %q, chain %v; want an anchor without chain", o.Location, o.Role, o.Chain)
		}
	}
	if len(obs) != 2 {
		t.Errorf("%d observations, want both roots once", len(obs))
	}
}

func TestAnalyzeIdentities(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	istio := model.MeshSettings{TrustDomain: "cluster.local", TrustDomainAliases: []string{"old.example"}}
	meshes := map[model.Mesh]model.MeshSettings{meshIstio: istio}
	workload := &model.Identity{Namespace: "shop", ServiceAccount: "cart"}

	tests := []struct {
		name   string
		mesh   model.Mesh
		uris   []string
		dns    []string
		expect *model.Identity
		reason model.ErrorReason
	}{
		{"istio workload", meshIstio, []string{"spiffe://cluster.local/ns/shop/sa/cart"}, nil, workload, ""},
		{"istio alias trust domain", meshIstio, []string{"spiffe://old.example/ns/shop/sa/cart"}, nil, workload, ""},
		{"istio wrong trust domain", meshIstio, []string{"spiffe://evil.example/ns/shop/sa/cart"}, nil, workload, model.ReasonWrongTrustDomain},
		{"istio wrong service account", meshIstio, []string{"spiffe://cluster.local/ns/shop/sa/default"}, nil, workload, model.ReasonWrongServiceAccount},
		{"istio wrong namespace", meshIstio, []string{"spiffe://cluster.local/ns/other/sa/cart"}, nil, workload, model.ReasonWrongNamespace},
		{"istio any workload when none expected", meshIstio, []string{"spiffe://cluster.local/ns/other/sa/x"}, nil, nil, ""},
		{"istio no identity", meshIstio, nil, []string{"istiod.istio-system.svc"}, nil, model.ReasonMissingIdentity},
		{"istio three identities", meshIstio, []string{"spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/c/sa/d", "spiffe://cluster.local/ns/e/sa/f"}, nil, nil, model.ReasonMultipleIdentities},
		{"istio not a workload path", meshIstio, []string{"spiffe://cluster.local/ns/shop"}, nil, nil, model.ReasonMalformedIdentity},
		{"istio bad trust domain characters", meshIstio, []string{"spiffe://Cluster.Local/ns/shop/sa/cart"}, nil, nil, model.ReasonMalformedIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: root, URIs: tt.uris, DNSNames: tt.dns, NotBefore: testpki.From(), NotAfter: testpki.Until()})
			o := obj("pod", tt.mesh, chain("default", leaf), trust("ROOTCA", root))
			o.Expect = tt.expect
			obs := testmodel.Certificates(newAnalyzer().Analyze([]*model.Object{o}, meshes))
			id := obs[0].Identity
			if id == nil {
				t.Fatal("no identity result for a mesh leaf")
			}
			if id.Valid != (tt.reason == "") || id.Reason != tt.reason {
				t.Errorf("identity = %+v, want reason %q", *id, tt.reason)
			}
			if !obs[0].Chain.Evaluate(obs[0].Certificate, now).Valid {
				t.Errorf("chain invalid: %+v", obs[0].Chain.Evaluate(obs[0].Certificate, now))
			}
			if obs[1].Identity != nil {
				t.Error("a trust anchor got an identity check")
			}
		})
	}
}

func TestParseSPIFFEID(t *testing.T) {
	tests := []struct {
		in      string
		td      string
		segs    int
		wantErr bool
	}{
		{"spiffe://cluster.local/ns/a/sa/b", "cluster.local", 4, false},
		{"spiffe://cluster.local", "cluster.local", 0, false},
		{"spiffe://td/ns/a/sa/b.c-d_E", "td", 4, false},
		{"SPIFFE://td/ns/a", "", 0, true},
		{"spiffe://td/ns//sa/b", "", 0, true},
		{"spiffe://td/ns/../sa/b", "", 0, true},
		{"spiffe://td/ns/a?x=1", "", 0, true},
		{"spiffe://td:8080/ns/a", "", 0, true},
		{"spiffe://user@td/ns/a", "", 0, true},
		{"spiffe:///ns/a", "", 0, true},
		{"spiffe://td/", "", 0, true},
		{"https://td/ns/a", "", 0, true},
	}
	for _, tt := range tests {
		id, err := ParseSPIFFEID(tt.in)
		if (err != nil) != tt.wantErr || id.TrustDomain != tt.td || len(id.Segments) != tt.segs {
			t.Errorf("ParseSPIFFEID(%q) = %+v, %v", tt.in, id, err)
		}
	}
}

// TestAnalyzeIsIncremental: an unchanged object keeps its findings, a changed object is analysed
// alone, a change to its mesh's authoritative objects analyses the mesh's objects again, and
// signature checks are made once.
func TestAnalyzeIsIncremental(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := func(name string) *model.Object {
		l := testpki.Issue(testpki.Spec{CommonName: name, Issuer: inter, NotBefore: testpki.From(), NotAfter: testpki.Until(),
			URIs: []string{"spiffe://cluster.local/ns/a/sa/" + name}})
		o := obj(name, meshIstio, chain("tls.crt", l, inter))
		o.Source = "envoy"
		return o
	}
	ca := obj("cacerts", meshIstio, chain("ca-cert.pem", inter), trust("root-cert.pem", root))
	ca.Authoritative = true
	a, b := leaf("a"), leaf("b")
	az := NewAnalyzer(NewCache(), nil)
	step := func(name string, objects []*model.Object, rebuilt, checks int) model.Analysis {
		t.Helper()
		out := az.Analyze(objects, nil)
		if az.rebuilt != rebuilt || az.cache.sigs.checks != checks {
			t.Errorf("%s: %d objects analysed and %d signatures checked in all, want %d and %d", name, az.rebuilt, az.cache.sigs.checks, rebuilt, checks)
		}
		return out
	}
	first := step("first run", []*model.Object{ca, a, b}, 3, 3) // inter->root, a->inter, b->inter
	again := step("unchanged", []*model.Object{ca, a, b}, 0, 3)
	for i := range first.Objects {
		if first.Objects[i] != again.Objects[i] {
			t.Errorf("object %d: findings not kept", i)
		}
	}
	changed := step("one object changed", []*model.Object{ca, leaf("a"), b}, 1, 4)
	if changed.Objects[2] != first.Objects[2] {
		t.Error("an unchanged object's findings were not kept")
	}
	caCopy := *ca
	step("the mesh's CA changed", []*model.Object{&caCopy, a, b}, 3, 4) // every check is cached
	step("an object removed", []*model.Object{&caCopy, a}, 0, 4)
}

// TestSignatureCacheIsBounded: checks of certificates that left the mesh are forgotten once the
// cache holds clearly more than the mesh needs.
func TestSignatureCacheIsBounded(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	a := NewAnalyzer(NewCache(), nil)
	for i := range 2500 { // a mesh of one leaf, rotated 2,500 times
		l := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
		a.Analyze([]*model.Object{obj("o", "", chain("tls.crt", l), trust("ca.crt", root))}, nil)
		if n := a.cache.sigs.size(); n > 2*(4*a.observed+1024+1) { // two generations, each rotated once over 4 per certificate + 1024
			t.Fatalf("after %d rotations the cache holds %d checks for a mesh of one", i+1, n)
		}
	}
}

func TestAnalyzeTrustBundleDriftAndRootKeys(t *testing.T) {
	oldRoot := testpki.Issue(testpki.Spec{CommonName: "old root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	newRoot := testpki.Issue(testpki.Spec{CommonName: "new root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: newRoot, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	copyOf := func(name string, cs ...*testpki.Cert) *model.Object {
		o := obj(name, meshIstio, model.Bundle{Key: "root-cert.pem", Purpose: model.PurposeTrustBundleCopy, Certificates: certs(cs...)})
		o.Namespace = name
		return o
	}
	authority := &model.Object{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: meshIstio, Authoritative: true,
		Bundles:  []model.Bundle{trust("root-cert.pem", oldRoot, newRoot), chain("ca-cert.pem", inter)},
		KeyPairs: []model.KeyPair{{PrivateKey: "ca-key.pem", Certificate: "ca-cert.pem"}}}
	selfSigned := &model.Object{Source: "secret", Namespace: "istio-system", Name: "istio-ca-secret", Mesh: meshIstio,
		Bundles:  []model.Bundle{chain("ca-cert.pem", newRoot)},
		KeyPairs: []model.KeyPair{{PrivateKey: "ca-key.pem", Certificate: "ca-cert.pem"}}}
	a := newAnalyzer().Analyze([]*model.Object{
		authority, selfSigned,
		copyOf("same", oldRoot, newRoot), copyOf("reordered", newRoot, oldRoot), copyOf("stale", oldRoot), copyOf("extra", oldRoot, newRoot, inter),
		obj("other mesh", meshLinkerd, model.Bundle{Key: "ca-bundle.crt", Purpose: model.PurposeTrustBundleCopy, Certificates: certs(oldRoot)}),
	}, nil)
	want := map[string]bool{"same": true, "reordered": true, "stale": false, "extra": false}
	if len(testmodel.TrustBundles(a)) != len(want) {
		t.Fatalf("%d trust bundle results, want %d (none for a mesh without known anchors): %+v", len(testmodel.TrustBundles(a)), len(want), testmodel.TrustBundles(a))
	}
	for _, b := range testmodel.TrustBundles(a) {
		if b.Current != want[b.Name] {
			t.Errorf("%s: current %v, want %v", b.Name, b.Current, want[b.Name])
		}
	}
	roots := map[string]bool{}
	for _, k := range testmodel.RootKeys(a) {
		roots[k.Name] = k.Stored
	}
	if roots["cacerts"] || !roots["istio-ca-secret"] || len(roots) != 2 {
		t.Errorf("root keys = %v, want only istio-ca-secret to hold one", roots)
	}
	// A copy is never trusted: the intermediate's chain verifies through the authoritative root.
	for _, o := range testmodel.Certificates(a) {
		if o.Name == "cacerts" && o.Key == "ca-cert.pem" && !o.Chain.Evaluate(o.Certificate, now).Valid {
			t.Errorf("intermediate chain: %+v", o.Chain.Evaluate(o.Certificate, now))
		}
	}
}

func TestCopiesAreNotTrusted(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	issuer := testpki.Issue(testpki.Spec{CommonName: "issuer", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	// A Linkerd issuer Secret whose ca.crt holds the root that signed it, while the mesh's anchors
	// are unknown: the issuer must not verify against its own copy.
	o := obj("linkerd-identity-issuer", meshLinkerd, chain("tls.crt", issuer),
		model.Bundle{Key: "ca.crt", Purpose: model.PurposeTrustBundleCopy, Certificates: certs(root)})
	obs := testmodel.Certificates(newAnalyzer().Analyze([]*model.Object{o}, nil))
	if st := obs[0].Chain.Evaluate(obs[0].Certificate, now); st.Valid || st.Reason != model.ReasonUnknownAuthority {
		t.Errorf("issuer verified against its own ca.crt: %+v", st)
	}
}

// TestTrustRootDigest: a pod injected with the published anchors is current, one injected before
// a rotation is not, and nothing is said while no digest is published.
func TestTrustRootDigest(t *testing.T) {
	pod := func(name, digest string) *model.Object {
		return &model.Object{Source: "linkerd-proxy", Namespace: "shop", Name: name, Mesh: meshLinkerd, TrustRootDigest: digest}
	}
	objects := []*model.Object{pod("fresh", "aaa"), pod("stale", "bbb"), pod("unannotated", "")}
	published := map[model.Mesh]model.MeshSettings{meshLinkerd: {TrustDomain: "cluster.local", TrustAnchorDigests: []string{"aaa", "ccc"}, TrustAnchorDigestKey: "example.com/trust-root"}}
	got := map[string]bool{}
	for _, b := range testmodel.TrustBundles(newAnalyzer().Analyze(objects, published)) {
		if b.Key != "example.com/trust-root" {
			t.Errorf("key %q", b.Key)
		}
		got[b.Name] = b.Current
	}
	if len(got) != 2 || !got["fresh"] || got["stale"] {
		t.Errorf("trust root digests: %v", got)
	}
	if n := len(testmodel.TrustBundles(newAnalyzer().Analyze(objects, nil))); n != 0 {
		t.Errorf("%d comparisons without a published digest", n)
	}
}

func TestMeshSettingsMerge(t *testing.T) {
	configured := model.MeshSettings{TrustDomain: "cluster.local", ControlPlaneNamespace: "linkerd"}
	fromRoots := model.MeshSettings{TrustAnchorDigests: []string{"b"}}
	fromConfig := model.MeshSettings{TrustDomain: "example.org", TrustAnchorDigests: []string{"a", "b"}}
	got := configured.Merge(fromRoots).Merge(fromConfig)
	if got.TrustDomain != "example.org" || got.ControlPlaneNamespace != "linkerd" || strings.Join(got.TrustAnchorDigests, ",") != "a,b" {
		t.Errorf("merged %+v", got)
	}
	if td := configured.Merge(fromRoots).TrustDomain; td != "cluster.local" {
		t.Errorf("a digest-only source blanked the trust domain: %q", td)
	}
}

// TestChainThroughLargePools: pools past smallPool are indexed; chains through them are found the
// same way, in the object's own pool and in its mesh's.
func TestChainThroughLargePools(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	var inters []*testpki.Cert
	for i := range 20 {
		inters = append(inters, testpki.Issue(testpki.Spec{CommonName: fmt.Sprintf("inter %d", i), CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()}))
	}
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: inters[14], NotBefore: testpki.From(), NotAfter: testpki.Until()})
	own := obj("own", "", append([]model.Bundle{chain("tls.crt", leaf)}, chain("cas.pem", inters...), trust("ca.crt", root))...)
	ca := obj("ca", meshIstio, chain("ca-cert.pem", inters...), trust("root-cert.pem", root))
	ca.Authoritative = true
	meshLeaf := obj("leaf", meshIstio, chain("tls.crt", leaf))
	a := newAnalyzer().Analyze([]*model.Object{own, ca, meshLeaf}, nil)
	for _, o := range testmodel.Certificates(a) {
		if o.Key != "tls.crt" {
			continue
		}
		if st := o.Chain.Evaluate(o.Certificate, testpki.Date(2027, 1, 1)); !st.Valid || st.Depth != 3 {
			t.Errorf("%s: chain %+v, want valid with depth 3", o.Name, st)
		}
	}
}

// TestParseChecksPresentedChains: parsing a presented chain checks its signatures where it is
// read, so the analysis a scrape waits for checks none; a bundle out of order costs nothing.
func TestParseChecksPresentedChains(t *testing.T) {
	cache := NewCache()
	sigs := cache.sigs
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: inter, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	first, reason := cache.ParseBundle(testpki.Bundle(inter, leaf))
	if reason != model.ReasonNone || sigs.checks != 0 {
		t.Fatalf("out of order: %q, %d checks", reason, sigs.checks)
	}
	presented, _ := cache.ParseBundle(testpki.Bundle(leaf, inter))
	// The cache shares certificates only while someone holds them: hold the first parse's, or a
	// garbage collection in between makes the second parse see fresh certificates.
	runtime.KeepAlive(first)
	roots, _ := cache.ParseBundle(root.PEM())
	if sigs.checks != 1 || sigs.size() != 1 {
		t.Fatalf("%d checks and %d remembered after parsing leaf and intermediate, want 1 and 1", sigs.checks, sigs.size())
	}
	o := &model.Object{Source: "test", Name: "o", Bundles: []model.Bundle{{Key: "tls.crt", Certificates: presented},
		{Key: "ca.crt", Purpose: model.PurposeTrustBundle, Certificates: roots}}}
	a := NewAnalyzer(cache, nil)
	for _, obs := range testmodel.Certificates(a.Analyze([]*model.Object{o}, nil)) {
		if obs.Chain != nil && !obs.Chain.Evaluate(obs.Certificate, testpki.Date(2027, 1, 1)).Valid {
			t.Errorf("%s[%d]: chain not valid", obs.Key, obs.Index)
		}
	}
	if sigs.checks != 2 { // only inter -> root was left to the analysis
		t.Errorf("%d checks in all, want 2", sigs.checks)
	}
}

// TestAnalyzeUniqueLocationsAcrossRuns: locations stay unique when an object is handed twice, and
// when a new object repeats the location of one analysed in an earlier run (the earlier in the
// list wins, whichever is new).
func TestAnalyzeUniqueLocationsAcrossRuns(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	other := testpki.Issue(testpki.Spec{CommonName: "other", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	first := obj("/etc/a", model.MeshNone, trust("ca.crt", root))
	b := obj("/etc/b", model.MeshNone, trust("ca.crt", root))
	a := newAnalyzer()
	subjects := func(an model.Analysis) []string {
		var out []string
		for _, o := range testmodel.Certificates(an) {
			out = append(out, o.Name+":"+o.Certificate.Subject)
		}
		return out
	}
	runs := []struct {
		name    string
		objects []*model.Object
		want    []string
	}{
		{"first run, b twice", []*model.Object{first, b, b}, []string{"/etc/a:CN=root", "/etc/b:CN=root"}},
		{"the same again", []*model.Object{first, b, b}, []string{"/etc/a:CN=root", "/etc/b:CN=root"}},
		{"a new object after an old one at its location", []*model.Object{first, b, obj("/etc/a", model.MeshNone, trust("ca.crt", other))},
			[]string{"/etc/a:CN=root", "/etc/b:CN=root"}},
		{"a new object before an old one at its location", []*model.Object{obj("/etc/a", model.MeshNone, trust("ca.crt", other)), first, b},
			[]string{"/etc/a:CN=other", "/etc/b:CN=root"}},
	}
	for _, r := range runs {
		if got := subjects(a.Analyze(r.objects, nil)); !slices.Equal(got, r.want) {
			t.Errorf("%s: %v, want %v", r.name, got, r.want)
		}
	}
}

// TestLeavesShareTheirIssuersChain: the workload leaves of one issuer hold one chain, which holds
// the paths above them only; a leaf of another issuer has its own, and each leaf still evaluates
// with its own validity.
func TestLeavesShareTheirIssuersChain(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	other := testpki.Issue(testpki.Spec{CommonName: "other inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := func(name string, issuer *testpki.Cert, notAfter time.Time) *testpki.Cert {
		return testpki.Issue(testpki.Spec{CommonName: name, Issuer: issuer, NotBefore: testpki.From(), NotAfter: notAfter})
	}
	parsed := func(cs ...*testpki.Cert) []*model.Certificate {
		out, reason := testCache().ParseBundle(testpki.Bundle(cs...))
		if reason != model.ReasonNone {
			t.Fatal(reason)
		}
		return out
	}
	proxy := func(name string, cs ...*testpki.Cert) *model.Object {
		return &model.Object{Source: "envoy", Name: name, Mesh: meshIstio, Bundles: []model.Bundle{{Key: "default", Export: model.ExportFirst, NoIdentity: true, Certificates: parsed(cs...)}}}
	}
	objects := []*model.Object{
		{Source: "secret", Name: "cacerts", Mesh: meshIstio, Authoritative: true, Bundles: []model.Bundle{{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: parsed(root)}}},
		proxy("a", leaf("a", inter, testpki.Until()), inter),
		proxy("b", leaf("b", inter, testpki.Date(2027, 1, 1)), inter),
		proxy("c", leaf("c", other, testpki.Until()), other),
	}
	obs := testmodel.Certificates(newAnalyzer().Analyze(objects, map[model.Mesh]model.MeshSettings{meshIstio: {TrustDomain: "cluster.local"}}))
	byName := map[string]testmodel.Observation{}
	for _, o := range obs {
		byName[o.Name] = o
	}
	a, b, c := byName["a"], byName["b"], byName["c"]
	if a.Chain == nil || a.Chain != b.Chain {
		t.Fatal("two leaves of one issuer hold two chains")
	}
	if c.Chain == a.Chain {
		t.Fatal("leaves of different issuers share a chain")
	}
	for _, o := range []testmodel.Observation{a, b, c} {
		for _, p := range o.Chain.Paths {
			if slices.Contains(p, o.Certificate) {
				t.Errorf("%s: the shared chain holds the leaf", o.Name)
			}
		}
	}
	if st := a.Chain.Evaluate(a.Certificate, now); !st.Valid || st.Depth != 3 || st.Anchor == nil || st.Anchor.Subject != "CN=root" {
		t.Errorf("a: %+v", st)
	}
	if st := b.Chain.Evaluate(b.Certificate, now); st.Valid || st.Reason != model.ReasonExpired || !st.NotAfter.Equal(testpki.Date(2027, 1, 1)) {
		t.Errorf("b, expired on its own: %+v", st)
	}
}

// TestFreshLeafRemembersItsIssuer: a leaf parsed for the first time with its issuer records that
// issuer before it is shared, so its check takes no entry in the cache; the analysis then checks
// only what is left (the intermediate by the root).
func TestFreshLeafRemembersItsIssuer(t *testing.T) {
	cache := NewCache()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: inter, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	presented, _ := cache.ParseBundle(testpki.Bundle(leaf, inter))
	if presented[0].VerifiedBy != presented[1] || cache.sigs.checks != 1 || cache.sigs.size() != 0 {
		t.Fatalf("leaf verified by %p (want the shared intermediate %p), %d checks, %d entries; want 1 and 0",
			presented[0].VerifiedBy, presented[1], cache.sigs.checks, cache.sigs.size())
	}
	if again, _ := cache.ParseBundle(testpki.Bundle(leaf, inter)); again[0] != presented[0] || again[1] != presented[1] || cache.sigs.checks != 1 {
		t.Errorf("the same chain parsed again: not the shared certificates, or checked again (%d checks)", cache.sigs.checks)
	}
	roots, _ := cache.ParseBundle(root.PEM())
	o := &model.Object{Source: "test", Name: "o", Bundles: []model.Bundle{{Key: "tls.crt", Certificates: presented},
		{Key: "ca.crt", Purpose: model.PurposeTrustBundle, Certificates: roots}}}
	for _, obs := range testmodel.Certificates(NewAnalyzer(cache, nil).Analyze([]*model.Object{o}, nil)) {
		if obs.Chain != nil && !obs.Chain.Evaluate(obs.Certificate, now).Valid {
			t.Errorf("%s[%d]: chain not valid", obs.Key, obs.Index)
		}
	}
	if cache.sigs.checks != 2 {
		t.Errorf("%d checks in all, want 2 (the leaf's was remembered)", cache.sigs.checks)
	}
	// A forged leaf (signed by another key under the intermediate's name) is not verified.
	other := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	forged := testpki.Issue(testpki.Spec{CommonName: "forged", Issuer: other, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	got, _ := cache.ParseBundle(testpki.Bundle(forged, inter))
	if got[0].VerifiedBy != nil || cache.sigs.size() != 2 { // inter -> root, and the forged leaf
		t.Errorf("a forged leaf: verified by %v, %d entries; want none and its failure remembered next to inter -> root", got[0].VerifiedBy, cache.sigs.size())
	}
}

// TestCAChainInAnyOrder: a CA's chain file lists its certificates in any order (Istio's own
// multi-level test PKI writes cert-chain.pem root first, with an X.509 v1 root, and istiod
// accepts it): a self-signed certificate in a CA's chain is a root there, never a workload leaf
// with a missing identity, and nothing in the plug-in CA is a problem.
func TestCAChainInAnyOrder(t *testing.T) {
	for _, v1 := range []bool{false, true} {
		issue := testpki.Issue
		if v1 {
			issue = testpki.IssueV1
		}
		root := issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
		inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
		for name, chain := range map[string][]*testpki.Cert{"root first": {root, inter}, "root last": {inter, root}} {
			o := obj("cacerts", meshIstio, model.Bundle{Key: "ca-cert.pem", Certificates: certs(inter)},
				model.Bundle{Key: "cert-chain.pem", Certificates: certs(chain...)}, trust("root-cert.pem", root))
			o.Authoritative = true
			an := NewAnalyzer(testCache(), nil).Analyze([]*model.Object{o}, nil)
			for _, c := range testmodel.Certificates(an) {
				want := model.RoleIntermediate
				if c.Certificate.Subject == "CN=root" {
					want = model.RoleTrustAnchor
				}
				if c.Role != want || c.Identity != nil || c.Chain != nil && !c.Chain.Evaluate(c.Certificate, now).Valid {
					t.Errorf("v1 root %v, %s: %s[%d] %s is a %s (identity %+v), want a valid %s", v1, name, c.Key, c.Index, c.Certificate.Subject, c.Role, c.Identity, want)
				}
			}
		}
	}
}
