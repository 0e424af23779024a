package pki

import (
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testmodel"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// find returns the observation at name/key/index, or nil.
func find(obs []testmodel.Observation, name, key string, index int) *testmodel.Observation {
	for i := range obs {
		if obs[i].Name == name && obs[i].Key == key && obs[i].Index == index {
			return &obs[i]
		}
	}
	return nil
}

// authoritative is a mesh's authoritative object holding bundles.
func authoritative(name string, mesh model.Mesh, bundles ...model.Bundle) *model.Object {
	return &model.Object{Source: "test", Namespace: "ns", Name: name, Mesh: mesh, Authoritative: true, Bundles: bundles}
}

func presented(key string, cs ...*testpki.Cert) model.Bundle {
	b := chain(key, cs...)
	b.Presented, b.Export = true, model.ExportFirst
	return b
}

// TestVersion1Roots: an X.509 v1 self-signed certificate in a trust-anchor position is a root
// that may sign, as crypto/x509 and OpenSSL accept it; in an intermediate position a v1
// certificate is no CA.
func TestVersion1Roots(t *testing.T) {
	root := testpki.IssueV1(testpki.Spec{CommonName: "v1 root", Key: testpki.RSA2048, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: inter, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	v1Inter := testpki.IssueV1(testpki.Spec{CommonName: "v1 inter", Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	underV1Inter := testpki.Issue(testpki.Spec{CommonName: "under v1 inter", Issuer: v1Inter, NotBefore: testpki.From(), NotAfter: testpki.Until()})

	tests := []struct {
		name    string
		objects []*model.Object
		at      [3]any // name, key, index of the certificate judged
		role    model.Role
		valid   bool
		reason  model.ErrorReason
		depth   int
	}{
		{"the v1 root of a plug-in CA is its trust anchor", []*model.Object{authoritative("cacerts", meshIstio, chain("ca-cert.pem", inter), trust("root-cert.pem", root))},
			[3]any{"cacerts", "root-cert.pem", 0}, model.RoleTrustAnchor, false, "", 0},
		{"an intermediate under a v1 root verifies", []*model.Object{authoritative("cacerts", meshIstio, chain("ca-cert.pem", inter), trust("root-cert.pem", root))},
			[3]any{"cacerts", "ca-cert.pem", 0}, model.RoleIntermediate, true, "", 2},
		{"a leaf under the v1 root's intermediate verifies", []*model.Object{
			authoritative("cacerts", meshIstio, chain("ca-cert.pem", inter), trust("root-cert.pem", root)),
			obj("proxy", meshIstio, presented("default", leaf, inter, root)),
		}, [3]any{"proxy", "default", 0}, model.RoleLeaf, true, "", 3},
		{"a generic bundle trusts its own v1 root", []*model.Object{obj("bundle", "", chain("chain.pem", leaf, inter, root))},
			[3]any{"bundle", "chain.pem", 0}, model.RoleLeaf, true, "", 3},
		{"a v1 certificate in an intermediate position is no CA", []*model.Object{obj("o", "", chain("tls.crt", underV1Inter, v1Inter), trust("ca.crt", root))},
			[3]any{"o", "tls.crt", 0}, model.RoleLeaf, false, model.ReasonNotCA, 2},
		{"a v1 self-signed certificate outside an anchor position is a leaf", []*model.Object{obj("o", meshIstio, chain("tls.crt", root))},
			[3]any{"o", "tls.crt", 0}, model.RoleLeaf, false, model.ReasonUnknownAuthority, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := find(testmodel.Certificates(newAnalyzer().Analyze(tt.objects, nil)), tt.at[0].(string), tt.at[1].(string), tt.at[2].(int))
			if got == nil || got.Role != tt.role {
				t.Fatalf("observation %+v, want role %q", got, tt.role)
			}
			if tt.role == model.RoleTrustAnchor {
				if got.Chain != nil {
					t.Errorf("a trust anchor got a chain")
				}
				return
			}
			st := got.Chain.Evaluate(got.Certificate, now)
			if st.Valid != tt.valid || st.Reason != tt.reason || st.Depth != tt.depth {
				t.Errorf("chain = valid %v reason %q depth %d, want %v %q %d", st.Valid, st.Reason, st.Depth, tt.valid, tt.reason, tt.depth)
			}
		})
	}

	// The v1 root's key stored next to it is a root key in the cluster.
	o := authoritative("istio-ca-secret", meshIstio, trust("ca-cert.pem", root))
	o.KeyPairs = []model.KeyPair{{PrivateKey: "ca-key.pem", Certificate: "ca-cert.pem"}}
	if rk := testmodel.RootKeys(newAnalyzer().Analyze([]*model.Object{o}, nil)); len(rk) != 1 || !rk[0].Stored {
		t.Errorf("root keys = %+v, want the v1 root's key reported", rk)
	}
}

// TestPresentedChains: a chain its owner presents is judged as a peer judges it, from the
// certificates presented with it up to the anchors. A leaf presented without its intermediate
// verifies only through the mesh's own copy of that intermediate: incomplete_chain.
func TestPresentedChains(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: inter, NotBefore: testpki.From(), NotAfter: testpki.Date(2030, 1, 1),
		URIs: []string{"spiffe://cluster.local/ns/shop/sa/web"}})
	otherRoot := testpki.Issue(testpki.Spec{CommonName: "other root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	otherInter := testpki.Issue(testpki.Spec{CommonName: "other inter", CA: true, Issuer: otherRoot, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	strayLeaf := testpki.Issue(testpki.Spec{CommonName: "stray", Issuer: otherInter, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	cacerts := authoritative("cacerts", meshIstio, chain("ca-cert.pem", inter), chain("cert-chain.pem", inter, root), trust("root-cert.pem", root))

	tests := []struct {
		name   string
		bundle model.Bundle
		valid  bool
		reason model.ErrorReason
		depth  int
	}{
		{"leaf, intermediate and root presented", presented("default", leaf, inter, root), true, "", 3},
		{"leaf and intermediate presented", presented("default", leaf, inter), true, "", 3},
		{"leaf alone: only the mesh's intermediate completes it", presented("default", leaf), false, model.ReasonIncompleteChain, 1},
		{"leaf with the root but not the intermediate", presented("default", leaf, root), false, model.ReasonIncompleteChain, 1},
		{"leaf of another PKI stays unknown", presented("default", strayLeaf), false, model.ReasonUnknownAuthority, 1},
		{"not presented: the mesh's intermediate completes it (a CA's rule)", chain("default", leaf), true, "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := obj("proxy", meshIstio, tt.bundle)
			got := find(testmodel.Certificates(newAnalyzer().Analyze([]*model.Object{cacerts, proxy}, nil)), "proxy", "default", 0)
			if got == nil || got.Chain == nil {
				t.Fatalf("no chain for the proxy's leaf: %+v", got)
			}
			st := got.Chain.Evaluate(got.Certificate, now)
			if st.Valid != tt.valid || st.Reason != tt.reason || st.Depth != tt.depth {
				t.Errorf("chain = valid %v reason %q depth %d, want %v %q %d", st.Valid, st.Reason, st.Depth, tt.valid, tt.reason, tt.depth)
			}
		})
	}
}

// TestSelfSignedIssuer: a default Linkerd install issues from a self-signed issuer that is also
// its trust anchor. It is reported in its position, as the issuer, with a chain of depth 1 to
// itself while the trust roots hold it; against other roots it is an unknown authority.
func TestSelfSignedIssuer(t *testing.T) {
	issuer := testpki.Issue(testpki.Spec{CommonName: "identity.linkerd.cluster.local", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Date(2028, 1, 1)})
	other := testpki.Issue(testpki.Spec{CommonName: "root.linkerd.cluster.local", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	issuerBundle := model.Bundle{Key: "crt.pem", Issuer: true, Certificates: certs(issuer)}
	for _, tt := range []struct {
		name   string
		roots  *testpki.Cert
		valid  bool
		reason model.ErrorReason
	}{
		{"its own anchor", issuer, true, ""},
		{"not among the trust roots", other, false, model.ReasonUnknownAuthority},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objects := []*model.Object{
				authoritative("linkerd-identity-trust-roots", meshLinkerd, trust("ca-bundle.crt", tt.roots)),
				{Source: "test", Namespace: "linkerd", Name: "linkerd-identity-issuer", Mesh: meshLinkerd, Bundles: []model.Bundle{issuerBundle},
					KeyPairs: []model.KeyPair{{PrivateKey: "key.pem", Certificate: "crt.pem"}}},
			}
			a := newAnalyzer().Analyze(objects, nil)
			got := find(testmodel.Certificates(a), "linkerd-identity-issuer", "crt.pem", 0)
			if got == nil || got.Role != model.RoleIssuer || got.Chain == nil {
				t.Fatalf("issuer observation %+v, want role issuer with a chain", got)
			}
			st := got.Chain.Evaluate(got.Certificate, now)
			if st.Valid != tt.valid || st.Reason != tt.reason || st.Depth != 1 {
				t.Errorf("chain = valid %v reason %q depth %d, want %v %q 1", st.Valid, st.Reason, st.Depth, tt.valid, tt.reason)
			}
			if tt.valid && st.Anchor.Serial != got.Certificate.Serial {
				t.Errorf("anchor %q, want the issuer itself", st.Anchor.Serial)
			}
			if rk := testmodel.RootKeys(a); len(rk) != 1 || !rk[0].Stored {
				t.Errorf("root keys %+v: the self-signed issuer's key is a root key in the cluster", rk)
			}
		})
	}
}

// TestFederatedBundles: a proxy's bundles are keyed by trust domain. The bundle of the mesh's own
// trust domain (or an alias) is compared with the current anchors; another domain's bundle is that
// domain's anchors, exported and never reported stale.
func TestFederatedBundles(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "mesh root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	oldRoot := testpki.Issue(testpki.Spec{CommonName: "old mesh root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	foreign := testpki.Issue(testpki.Spec{CommonName: "partner root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	foreignInter := testpki.Issue(testpki.Spec{CommonName: "partner intermediate", CA: true, Issuer: foreign, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	keyed := func(td string, cs ...*testpki.Cert) model.Bundle {
		return model.Bundle{Key: "ROOTCA/" + td, Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, TrustDomainKeyed: true, Certificates: certs(cs...)}
	}
	proxy := obj("proxy", meshIstio, keyed("cluster.local", root), keyed("legacy.local", oldRoot), keyed("partner.example", foreign, foreignInter))
	settings := map[model.Mesh]model.MeshSettings{meshIstio: {TrustDomain: "cluster.local", TrustDomainAliases: []string{"legacy.local"}}}
	a := newAnalyzer().Analyze([]*model.Object{authoritative("cacerts", meshIstio, trust("root-cert.pem", root)), proxy}, settings)

	current := map[string]bool{}
	for _, b := range testmodel.TrustBundles(a) {
		current[b.Key] = b.Current
	}
	want := map[string]bool{"ROOTCA/cluster.local": true, "ROOTCA/legacy.local": false}
	if len(current) != len(want) || current["ROOTCA/cluster.local"] != true || current["ROOTCA/legacy.local"] != false {
		t.Errorf("compared bundles %v, want %v (the partner's never compared)", current, want)
	}
	var fed []model.TrustBundleFinding
	for _, o := range a.Objects {
		for _, f := range o.TrustBundles {
			if f.Federated {
				fed = append(fed, f)
			}
		}
	}
	if len(fed) != 1 || fed[0].Key != "ROOTCA/partner.example" || fed[0].TrustDomain() != "partner.example" {
		t.Errorf("federated bundles %+v", fed)
	}
	got := find(testmodel.Certificates(a), "proxy", "ROOTCA/partner.example", 0)
	if got == nil || got.Role != model.RoleTrustAnchor || got.Certificate.Serial != cert(foreign).Serial {
		t.Errorf("the partner's anchor is not exported as a trust anchor: %+v", got)
	}
	if inter := find(testmodel.Certificates(a), "proxy", "ROOTCA/partner.example", 1); inter == nil || inter.Chain != nil {
		t.Errorf("the partner's intermediate: %+v, want exported without a chain to this mesh's anchors", inter)
	}
	if find(testmodel.Certificates(a), "proxy", "ROOTCA/cluster.local", 0) != nil {
		t.Error("the mesh's own bundle copy is exported per proxy")
	}
}
