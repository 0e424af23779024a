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
				if !a.Signing {
					retired = append(retired, a.Anchor.Subject)
				}
			}
			if !slices.Equal(retired, tt.retired) {
				t.Errorf("retired anchors %v, want %v", retired, tt.retired)
			}
			// What-if agrees: removing an anchor breaks exactly its dependents.
			for _, a := range r.Anchors {
				w := WhatIf(an, now, meshIstio, a.Anchor.Serial, "")
				if w.Removed != 1 || len(w.Broken) != a.Dependents {
					t.Errorf("what if %s left: %d removed, %d broken, want %d", a.Anchor.Subject, w.Removed, len(w.Broken), a.Dependents)
				}
			}
		})
	}
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
		{"another mesh's", meshLinkerd, "10", "", 0, nil, nil},
		{"an unknown serial", meshIstio, "ff", "", 0, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := WhatIf(an, now, tt.mesh, tt.anchor, tt.issuer)
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
	// cacerts' intermediate and the secret's copy of it verify through the new root only, the
	// cross-signed one through the old root only, the leaf through both.
	if want := map[string]radius{"CN=old root": {1, 0}, "CN=new root": {2, 0}}; !mapsEqual(got, want) {
		t.Errorf("anchors %v, want %v", got, want)
	}
	if w := WhatIf(an, now, meshIstio, "10", ""); len(w.Broken) != 1 || w.Broken[0].Index != 2 {
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
