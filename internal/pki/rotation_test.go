package pki

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// rotationPKI is an Istio multi-root rotation: the old root and the new one, an intermediate under
// each, and workload leaves under either.
type rotationPKI struct {
	oldRoot, newRoot, oldInter, newInter *testpki.Cert
}

func newRotationPKI() rotationPKI {
	ca := func(cn string, serial int64, issuer *testpki.Cert) *testpki.Cert {
		return testpki.Issue(testpki.Spec{CommonName: cn, CA: true, Serial: serial, Issuer: issuer, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	}
	p := rotationPKI{oldRoot: ca("old root", 0x10, nil), newRoot: ca("new root", 0x20, nil)}
	p.oldInter, p.newInter = ca("old intermediate", 0x11, p.oldRoot), ca("new intermediate", 0x21, p.newRoot)
	return p
}

// proxy is a sidecar serving a leaf of inter, with a root bundle of roots.
func (p rotationPKI) proxy(name string, inter *testpki.Cert, roots ...*testpki.Cert) *model.Object {
	leaf := testpki.Issue(testpki.Spec{Issuer: inter, URIs: []string{"spiffe://cluster.local/ns/shop/sa/" + name},
		NotBefore: testpki.From(), NotAfter: testpki.Until()})
	return &model.Object{Source: "envoy", Namespace: "shop", Name: name, Mesh: meshIstio, Bundles: []model.Bundle{
		{Key: "default", Export: model.ExportFirst, Presented: true, Certificates: certs(leaf, inter)},
		{Key: "ROOTCA", Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, Certificates: certs(roots...)},
	}}
}

// cacerts is the plug-in CA: signing with inter, the authoritative roots.
func (p rotationPKI) cacerts(inter *testpki.Cert, roots ...*testpki.Cert) *model.Object {
	o := obj("cacerts", meshIstio, model.Bundle{Key: "ca-cert.pem", Issuer: false, Certificates: certs(inter)}, trust("root-cert.pem", roots...))
	o.Authoritative = true
	return o
}

// radius is one CA's figures: anchors' dependents and bundles, issuers' dependents.
type radius struct{ dependents, bundles int }

func anchorsOf(r model.Rotation) map[string]radius {
	out := map[string]radius{}
	for _, a := range r.Anchors {
		out[a.Anchor.Subject] = radius{a.Dependents, a.Bundles}
	}
	return out
}

func issuersOf(r model.Rotation) map[string]int {
	out := map[string]int{}
	for _, i := range r.Issuers {
		out[i.Issuer.Subject] = i.Dependents
	}
	return out
}

// TestRotationPhases: the blast radius at each phase of a multi-root rotation, and the what-if
// answers that match it.
func TestRotationPhases(t *testing.T) {
	p := newRotationPKI()
	for _, tt := range []struct {
		name    string
		objects []*model.Object
		anchors map[string]radius
		issuers map[string]int
		copies  int
		retired []string // anchors no signing CA chains to
	}{
		{"before: one root, every proxy on it",
			[]*model.Object{p.cacerts(p.oldInter, p.oldRoot), p.proxy("a", p.oldInter, p.oldRoot), p.proxy("b", p.oldInter, p.oldRoot)},
			map[string]radius{"CN=old root": {3, 2}}, map[string]int{"CN=old intermediate": 2}, 2, nil},
		{"both roots published, signing with the new intermediate; proxies on either, copies with one or both",
			[]*model.Object{p.cacerts(p.newInter, p.oldRoot, p.newRoot), p.proxy("a", p.oldInter, p.oldRoot), p.proxy("b", p.newInter, p.oldRoot, p.newRoot),
				p.proxy("c", p.oldInter, p.oldRoot, p.newRoot)},
			// the old intermediate is no longer in cacerts: its leaves verify through the copies
			// of it they present (a and c); the new root's dependents are cacerts' new intermediate
			// and b
			map[string]radius{"CN=old root": {2, 3}, "CN=new root": {2, 2}}, map[string]int{"CN=new intermediate": 1, "CN=old intermediate": 2}, 3,
			[]string{"CN=old root"}},
		{"every proxy on the new intermediate: the old root has no dependents",
			[]*model.Object{p.cacerts(p.newInter, p.oldRoot, p.newRoot), p.proxy("a", p.newInter, p.oldRoot, p.newRoot), p.proxy("b", p.newInter, p.newRoot)},
			map[string]radius{"CN=old root": {0, 1}, "CN=new root": {3, 2}}, map[string]int{"CN=new intermediate": 2}, 2, []string{"CN=old root"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			an := newAnalyzer().Analyze(tt.objects, nil)
			r := RotationAt(an, now)
			if got := anchorsOf(r); !mapsEqual(got, tt.anchors) {
				t.Errorf("anchors %v, want %v", got, tt.anchors)
			}
			if got := issuersOf(r); !mapsEqual(got, tt.issuers) {
				t.Errorf("issuers %v, want %v", got, tt.issuers)
			}
			if len(r.Bundles) != 1 || r.Bundles[0].Copies != tt.copies {
				t.Errorf("bundles %+v, want %d copies", r.Bundles, tt.copies)
			}
			var retired []string
			for _, a := range r.Anchors {
				if a.Retired {
					retired = append(retired, a.Anchor.Subject)
				}
			}
			if !slices.Equal(retired, tt.retired) {
				t.Errorf("retired anchors %v, want %v", retired, tt.retired)
			}
			// What-if agrees: removing an anchor breaks exactly its dependents.
			for _, a := range r.Anchors {
				w := WhatIf(an, now, meshIstio, map[[32]byte]bool{a.Anchor.Fingerprint: true})
				if w.Removed != 1 || len(w.Broken) != a.Dependents {
					t.Errorf("what if %s left: %d removed, %d broken, want %d", a.Anchor.Subject, w.Removed, len(w.Broken), a.Dependents)
				}
			}
		})
	}
}

// bySerial are the fingerprints of the current anchors with serial anchor, or of every CA on a
// path with serial issuer: what a person names by serial, resolved as package pkiapi does.
func bySerial(an model.Analysis, anchor, issuer string) map[[32]byte]bool {
	out := map[[32]byte]bool{}
	for _, m := range an.Meshes {
		for _, a := range m.Anchors {
			if anchor != "" && a.Serial == anchor {
				out[a.Fingerprint] = true
			}
		}
	}
	for _, oa := range an.Objects {
		for _, f := range oa.Certificates {
			if f.Chain == nil || issuer == "" {
				continue
			}
			for _, p := range f.Chain.Paths {
				for _, c := range p {
					if c.Serial == issuer {
						out[c.Fingerprint] = true
					}
				}
			}
		}
	}
	return out
}

func mapsEqual[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestWhatIf: the certificates and bundles a removal breaks.
func TestWhatIf(t *testing.T) {
	p := newRotationPKI()
	objects := []*model.Object{p.cacerts(p.newInter, p.oldRoot, p.newRoot), p.proxy("a", p.oldInter, p.oldRoot),
		p.proxy("b", p.newInter, p.newRoot), p.proxy("c", p.oldInter, p.oldRoot, p.newRoot)}
	an := newAnalyzer().Analyze(objects, nil)
	names := func(w model.WhatIf) (broken, unanchored []string) {
		for _, b := range w.Broken {
			broken = append(broken, fmt.Sprintf("%s/%s", b.Object.Name, b.Key))
		}
		for _, u := range w.Unanchored {
			unanchored = append(unanchored, fmt.Sprintf("%s/%s", u.Object.Name, u.Key))
		}
		return broken, unanchored
	}
	for _, tt := range []struct {
		name               string
		mesh               model.Mesh
		anchor, issuer     string
		removed            int
		broken, unanchored []string
	}{
		{"the old root", meshIstio, "10", "", 1, []string{"a/default", "c/default"}, []string{"a/ROOTCA"}},
		{"the new root", meshIstio, "20", "", 1, []string{"cacerts/ca-cert.pem", "b/default"}, []string{"b/ROOTCA"}},
		{"the old intermediate", meshIstio, "", "11", 1, []string{"a/default", "c/default"}, nil},
		{"the old root, every mesh", "", "10", "", 1, []string{"a/default", "c/default"}, []string{"a/ROOTCA"}},
		{"the old root, asked of another mesh", meshLinkerd, "10", "", 1, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := WhatIf(an, now, tt.mesh, bySerial(an, tt.anchor, tt.issuer))
			broken, unanchored := names(w)
			if w.Removed != tt.removed || !slices.Equal(broken, tt.broken) || !slices.Equal(unanchored, tt.unanchored) {
				t.Errorf("removed %d, broken %v, unanchored %v; want %d, %v, %v", w.Removed, broken, unanchored, tt.removed, tt.broken, tt.unanchored)
			}
		})
	}
}

// TestCrossSignedIsNoDependent: a certificate that verifies through either root (its intermediate
// cross-signed by both) depends on neither: either can leave.
func TestCrossSignedIsNoDependent(t *testing.T) {
	p := newRotationPKI()
	cross := testpki.Issue(testpki.Spec{CommonName: "new intermediate", CA: true, Serial: 0x22, Issuer: p.oldRoot, SubjectKey: p.newInter.Key,
		NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := testpki.Issue(testpki.Spec{Issuer: p.newInter, DNSNames: []string{"svc.example"}, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	secret := obj("tls", meshIstio, model.Bundle{Key: "tls.crt", Certificates: certs(leaf, p.newInter, cross)})
	an := newAnalyzer().Analyze([]*model.Object{p.cacerts(p.newInter, p.oldRoot, p.newRoot), secret}, nil)
	got := anchorsOf(RotationAt(an, now))
	// cacerts' intermediate and the secret's copy of it (one certificate, counted once) verify
	// through the new root only, the cross-signed one through the old root only, the leaf through
	// both.
	if want := map[string]radius{"CN=old root": {1, 0}, "CN=new root": {1, 0}}; !mapsEqual(got, want) {
		t.Errorf("anchors %v, want %v", got, want)
	}
	if w := WhatIf(an, now, meshIstio, bySerial(an, "10", "")); len(w.Broken) != 1 || w.Broken[0].Index != 2 {
		t.Errorf("what if the old root left: %+v", w.Broken)
	}
}

// TestRotationBoundary: an expired leaf is no dependent, and the rotation says when to look again.
func TestRotationBoundary(t *testing.T) {
	p := newRotationPKI()
	short := testpki.Issue(testpki.Spec{Issuer: p.oldInter, URIs: []string{"spiffe://cluster.local/ns/shop/sa/x"}, NotBefore: testpki.From(), NotAfter: now.Add(time.Hour)})
	proxy := &model.Object{Source: "envoy", Namespace: "shop", Name: "x", Mesh: meshIstio, Bundles: []model.Bundle{
		{Key: "default", Export: model.ExportFirst, Presented: true, Certificates: certs(short, p.oldInter)}}}
	an := newAnalyzer().Analyze([]*model.Object{p.cacerts(p.oldInter, p.oldRoot), proxy}, nil)
	if r := RotationAt(an, now); anchorsOf(r)["CN=old root"].dependents != 2 || !r.Boundary.Equal(short.X509.NotAfter.Add(time.Second)) {
		t.Errorf("before the leaf expires: %v, boundary %s", anchorsOf(r), r.Boundary)
	}
	if r := RotationAt(an, now.Add(2*time.Hour)); anchorsOf(r)["CN=old root"].dependents != 1 {
		t.Errorf("after the leaf expired: %v", anchorsOf(r))
	}
}

// TestRotationDigests: a Linkerd pod injected with an earlier trust-root digest holds the set the
// mesh published under it, as long as the analyzer saw it published.
func TestRotationDigests(t *testing.T) {
	p := newRotationPKI()
	roots := func(cs ...*testpki.Cert) *model.Object {
		o := obj("linkerd-identity-trust-roots", meshLinkerd, trust("ca-bundle.crt", cs...))
		o.Authoritative = true
		return o
	}
	pod := func(name, digest string) *model.Object {
		return &model.Object{Source: "linkerd-proxy", Namespace: "web", Name: name, Mesh: meshLinkerd, TrustRootDigest: digest}
	}
	settings := func(digest string) map[model.Mesh]model.MeshSettings {
		return map[model.Mesh]model.MeshSettings{meshLinkerd: {TrustAnchorDigests: []string{digest}, TrustAnchorDigestKey: "linkerd.io/trust-root-sha256"}}
	}
	a := newAnalyzer()
	a.Analyze([]*model.Object{roots(p.oldRoot), pod("old", "d1")}, settings("d1"))
	an := a.Analyze([]*model.Object{roots(p.oldRoot, p.newRoot), pod("old", "d1"), pod("new", "d2"), pod("unknown", "d0")}, settings("d2"))
	r := RotationAt(an, now)
	want := map[string]radius{"CN=old root": {0, 2}, "CN=new root": {0, 1}}
	if got := anchorsOf(r); !mapsEqual(got, want) || r.Bundles[0].Copies != 3 {
		t.Errorf("anchors %v, bundles %+v; want %v and 3 copies", got, r.Bundles, want)
	}
}

// TestRotationCountsWhatPodsHold: each count also counts, apart, what was read from pods (a
// replica's share of the proxies), so that replicas that split the pods add up: here two proxies
// read from pods and one static target every replica reads, in the middle of a rotation.
func TestRotationCountsWhatPodsHold(t *testing.T) {
	p := newRotationPKI()
	a, b, static := p.proxy("a", p.oldInter, p.oldRoot), p.proxy("b", p.newInter, p.oldRoot, p.newRoot), p.proxy("gateway", p.oldInter, p.oldRoot)
	a.FromPods, b.FromPods = true, true
	r := RotationAt(newAnalyzer().Analyze([]*model.Object{p.cacerts(p.newInter, p.oldRoot, p.newRoot), a, b, static}, nil), now)
	type parts struct{ dependents, podDependents, bundles, podBundles int }
	anchors := map[string]parts{}
	for _, x := range r.Anchors {
		anchors[x.Anchor.Subject] = parts{x.Dependents, x.PodDependents, x.Bundles, x.PodBundles}
	}
	// The old root: dependents a and the gateway, copies a, b and the gateway. The new root:
	// dependents cacerts' new intermediate and b, copy b (the authoritative roots are no copy).
	want := map[string]parts{"CN=old root": {2, 1, 3, 2}, "CN=new root": {2, 1, 1, 1}}
	if !mapsEqual(anchors, want) {
		t.Errorf("anchors %+v, want %+v", anchors, want)
	}
	issuers := map[string][2]int{}
	for _, x := range r.Issuers {
		issuers[x.Issuer.Subject] = [2]int{x.Dependents, x.PodDependents}
	}
	if want := map[string][2]int{"CN=old intermediate": {2, 1}, "CN=new intermediate": {1, 1}}; !mapsEqual(issuers, want) {
		t.Errorf("issuers %v, want %v", issuers, want)
	}
	if len(r.Bundles) != 1 || r.Bundles[0].Copies != 3 || r.Bundles[0].PodCopies != 2 {
		t.Errorf("bundles %+v, want 3 copies, 2 of them from pods", r.Bundles)
	}
}

// issuerOnlyRules are the rules of a mesh that signs only with an issuer, never with an anchor
// (Linkerd's).
type issuerOnlyRules struct{ SPIFFERules }

func (issuerOnlyRules) AnchorsSign() bool { return false }

// TestMeshSigning: a mesh whose signing CA expired, is missing, or verifies up to no current anchor
// cannot sign, and then none of its anchors is retired: an anchor that signs nothing because the
// mesh is broken is not safe to remove.
func TestMeshSigning(t *testing.T) {
	p := newRotationPKI()
	later := testpki.Issue(testpki.Spec{CommonName: "later root", CA: true, Serial: 0x40, NotBefore: testpki.From().AddDate(0, 6, 0), NotAfter: testpki.Until()})
	laterInter := testpki.Issue(testpki.Spec{CommonName: "later intermediate", CA: true, Serial: 0x41, Issuer: later, NotBefore: testpki.From().AddDate(0, 6, 0), NotAfter: testpki.Until()})
	expiredInter := testpki.Issue(testpki.Spec{CommonName: "expired intermediate", CA: true, Serial: 0x31, Issuer: p.newRoot,
		NotBefore: testpki.From(), NotAfter: now.Add(-time.Hour)})
	linkerdTrust := func(roots ...*testpki.Cert) *model.Object {
		o := obj("linkerd-identity-trust-roots", meshLinkerd, trust("ca-bundle.crt", roots...))
		o.Authoritative = true
		return o
	}
	linkerdIssuer := func(issuer *testpki.Cert) *model.Object {
		o := obj("linkerd-identity-issuer", meshLinkerd, model.Bundle{Key: "crt.pem", Certificates: certs(issuer)})
		o.Authoritative = true
		return o
	}
	selfSigned := func(root *testpki.Cert) *model.Object {
		o := obj("istio-ca-secret", meshIstio, trust("ca-cert.pem", root))
		o.Authoritative = true
		return o
	}
	for _, tt := range []struct {
		name    string
		mesh    model.Mesh
		objects []*model.Object
		canSign bool
		reason  model.SigningReason
		cas     []string
		signing []string // anchors a valid signing CA verifies up to
		retired []string
	}{
		{"a plug-in CA in the middle of a rotation", meshIstio, []*model.Object{p.cacerts(p.newInter, p.oldRoot, p.newRoot)},
			true, "", nil, []string{"CN=new root"}, []string{"CN=old root"}},
		// Both roots published, still signing under the old one: the newer root is published
		// ahead of the next step, not retired (a root of the same age would be).
		{"a new root published, not signing yet", meshIstio, []*model.Object{p.cacerts(p.oldInter, p.oldRoot, later)},
			true, "", nil, []string{"CN=old root"}, nil},
		{"an older root next to the one signing", meshIstio, []*model.Object{p.cacerts(laterInter, p.oldRoot, later)},
			true, "", nil, []string{"CN=later root"}, []string{"CN=old root"}},
		{"istiod's self-signed root", meshIstio, []*model.Object{selfSigned(p.oldRoot)}, true, "", nil, []string{"CN=old root"}, nil},
		{"an intermediate whose root was removed too early", meshIstio, []*model.Object{p.cacerts(p.oldInter, p.newRoot)},
			false, model.SigningUnanchored, []string{"CN=old intermediate"}, nil, nil},
		{"an expired intermediate", meshIstio, []*model.Object{p.cacerts(expiredInter, p.oldRoot, p.newRoot)},
			false, model.SigningExpired, []string{"CN=expired intermediate"}, nil, nil},
		{"Linkerd with its issuer", meshLinkerd, []*model.Object{linkerdTrust(p.oldRoot, p.newRoot), linkerdIssuer(p.newInter)},
			true, "", nil, []string{"CN=new root"}, []string{"CN=old root"}},
		{"Linkerd without its issuer", meshLinkerd, []*model.Object{linkerdTrust(p.newRoot)}, false, model.SigningNoCA, nil, nil, nil},
		{"Linkerd with an expired issuer", meshLinkerd, []*model.Object{linkerdTrust(p.oldRoot, p.newRoot), linkerdIssuer(expiredInter)},
			false, model.SigningExpired, []string{"CN=expired intermediate"}, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			an := NewAnalyzer(testCache(), map[model.Mesh]MeshRules{meshLinkerd: issuerOnlyRules{}}).Analyze(tt.objects, nil)
			r := RotationAt(an, now)
			if len(r.Signing) != 1 {
				t.Fatalf("signing %+v", r.Signing)
			}
			st := r.Signing[0]
			var cas []string
			for _, c := range st.CAs {
				cas = append(cas, c.Subject)
			}
			if st.Mesh != tt.mesh || st.CanSign != tt.canSign || st.Reason != tt.reason || !slices.Equal(cas, tt.cas) {
				t.Errorf("signing %s %v %q %v, want %s %v %q %v", st.Mesh, st.CanSign, st.Reason, cas, tt.mesh, tt.canSign, tt.reason, tt.cas)
			}
			var signing, retired []string
			for _, a := range r.Anchors {
				if a.Signing {
					signing = append(signing, a.Anchor.Subject)
				}
				if a.Retired {
					retired = append(retired, a.Anchor.Subject)
				}
			}
			if !slices.Equal(signing, tt.signing) || !slices.Equal(retired, tt.retired) {
				t.Errorf("signing %v, retired %v; want %v, %v", signing, retired, tt.signing, tt.retired)
			}
		})
	}
}

// TestDependentsAreDistinct: a certificate held in several places depends on its anchor once,
// in the shared part when any copy is in an object every replica reads.
func TestDependentsAreDistinct(t *testing.T) {
	p := newRotationPKI()
	twice := func(name string, fromPods bool) *model.Object {
		o := p.proxy(name, p.oldInter, p.oldRoot)
		o.FromPods = fromPods
		return o
	}
	a := twice("a", true)
	b := *a // the same leaf served from a second pod
	b.Name = "b"
	secret := obj("copy", meshIstio, model.Bundle{Key: "ca.crt", Certificates: certs(p.oldInter)})
	an := newAnalyzer().Analyze([]*model.Object{p.cacerts(p.oldInter, p.oldRoot), a, &b, secret}, nil)
	r := RotationAt(an, now)
	// The intermediate (in cacerts and the Secret) and the one leaf (in two pods).
	if len(r.Anchors) != 1 || r.Anchors[0].Dependents != 2 || r.Anchors[0].PodDependents != 1 {
		t.Errorf("anchors %+v, want 2 dependents, 1 of them only in pods", r.Anchors)
	}
	if len(r.Issuers) != 1 || r.Issuers[0].Dependents != 1 {
		t.Errorf("issuers %+v, want the one leaf", r.Issuers)
	}
	if r.Anchors[0].Bundles != 2 {
		t.Errorf("bundles %d: each proxy's root bundle is a copy of its own, want 2", r.Anchors[0].Bundles)
	}
}
