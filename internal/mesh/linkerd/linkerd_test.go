package linkerd

import (
	"strings"
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// parsed returns c as the sources see it.
func parsed(t *testing.T, cache *pki.Cache, c *testpki.Cert) *model.Certificate {
	t.Helper()
	certs, reason := cache.ParseBundle(c.PEM())
	if reason != model.ReasonNone || len(certs) != 1 {
		t.Fatalf("parse: %q", reason)
	}
	return certs[0]
}

var settings = model.MeshSettings{TrustDomain: "cluster.local", ControlPlaneNamespace: "linkerd"}

func TestIdentities(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	workload := &model.Identity{Namespace: "shop", ServiceAccount: "cart"}
	cache := pki.NewCache()
	tests := []struct {
		name   string
		uris   []string
		dns    []string
		expect *model.Identity
		reason model.ErrorReason
	}{
		{"workload", nil, []string{"cart.shop.serviceaccount.identity.linkerd.cluster.local"}, workload, ""},
		{"dotted service account", nil, []string{"cart.v2.shop.serviceaccount.identity.linkerd.cluster.local"}, &model.Identity{Namespace: "shop", ServiceAccount: "cart.v2"}, ""},
		{"wrong trust domain", nil, []string{"cart.shop.serviceaccount.identity.linkerd.example.org"}, workload, model.ReasonWrongTrustDomain},
		{"wrong control plane", nil, []string{"cart.shop.serviceaccount.identity.linkerd-x.cluster.local"}, workload, model.ReasonWrongControlPlaneNS},
		{"wrong namespace", nil, []string{"cart.web.serviceaccount.identity.linkerd.cluster.local"}, workload, model.ReasonWrongNamespace},
		{"two identities", nil, []string{"a.b.serviceaccount.identity.linkerd.cluster.local", "c.d.serviceaccount.identity.linkerd.cluster.local"}, nil, model.ReasonMultipleIdentities},
		{"SPIRE identity", []string{"spiffe://cluster.local/ns/shop/sa/cart"}, nil, workload, ""},
		{"no identity", nil, []string{"example.com"}, nil, model.ReasonMissingIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: root, URIs: tt.uris, DNSNames: tt.dns, NotBefore: testpki.From(), NotAfter: testpki.Until()})
			got := rules{}.CheckIdentity(parsed(t, cache, leaf), settings, tt.expect)
			if got.Valid != (tt.reason == "") || got.Reason != tt.reason {
				t.Errorf("identity = %+v, want reason %q", got, tt.reason)
			}
		})
	}
}

func TestRequirements(t *testing.T) {
	from, until := testpki.From(), testpki.Until()
	rsa := testpki.Issue(testpki.Spec{CommonName: "rsa root", CA: true, Key: testpki.RSA2048, NotBefore: from, NotAfter: until})
	p256 := testpki.Issue(testpki.Spec{CommonName: "root.linkerd.cluster.local", CA: true, NotBefore: from, NotAfter: until})
	p384 := testpki.Issue(testpki.Spec{CommonName: "p384 root", CA: true, Key: testpki.ECDSAP384, NotBefore: from, NotAfter: until})
	issuer := testpki.Issue(testpki.Spec{CommonName: "identity.linkerd.cluster.local", CA: true, Issuer: p256, NotBefore: from, NotAfter: until})
	issuerByDNS := testpki.Issue(testpki.Spec{CommonName: "Linkerd issuer", DNSNames: []string{"identity.linkerd.cluster.local"}, CA: true, Issuer: p256, NotBefore: from, NotAfter: until})
	misnamed := testpki.Issue(testpki.Spec{CommonName: "identity.linkerd.example.org", CA: true, Issuer: p256, NotBefore: from, NotAfter: until})
	rsaIssuer := testpki.Issue(testpki.Spec{CommonName: "identity.linkerd.cluster.local", CA: true, Key: testpki.RSA2048, Issuer: p256, NotBefore: from, NotAfter: until})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Key: testpki.ECDSAP384, Issuer: rsa, NotBefore: from, NotAfter: until})
	cache := pki.NewCache()
	tests := []struct {
		name string
		c    *testpki.Cert
		role model.Role
		want model.RequirementStatus
		ok   bool
	}{
		{"anchor P-256", p256, model.RoleTrustAnchor, model.RequirementStatus{Met: true}, true},
		{"anchor RSA", rsa, model.RoleTrustAnchor, model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true},
		{"anchor P-384", p384, model.RoleTrustAnchor, model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true},
		{"issuer named by CN", issuer, model.RoleIssuer, model.RequirementStatus{Met: true}, true},
		{"issuer named by DNS SAN", issuerByDNS, model.RoleIssuer, model.RequirementStatus{Met: true}, true},
		{"issuer of another trust domain", misnamed, model.RoleIssuer, model.RequirementStatus{Reason: model.ReasonWrongIssuerName}, true},
		{"issuer RSA", rsaIssuer, model.RoleIssuer, model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true},
		{"intermediate: no rule", inter, model.RoleIntermediate, model.RequirementStatus{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := rules{}.CheckRequirements(parsed(t, cache, tt.c), tt.role, settings)
			if got != tt.want || ok != tt.ok {
				t.Errorf("CheckRequirements = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}

	// In an analysis: the issuer Secret's RSA issuer and the anchors are judged, once.
	certs := func(c *testpki.Cert) []*model.Certificate { return []*model.Certificate{parsed(t, cache, c)} }
	objects := []*model.Object{
		{Source: "configmap", Namespace: "linkerd", Name: "linkerd-identity-trust-roots", Mesh: Name, Authoritative: true,
			Bundles: []model.Bundle{{Key: "ca-bundle.crt", Purpose: model.PurposeTrustBundle, Certificates: certs(p256)}}},
		{Source: "secret", Namespace: "linkerd", Name: "linkerd-identity-issuer", Mesh: Name,
			Bundles: []model.Bundle{{Key: "crt.pem", Issuer: true, Certificates: certs(rsaIssuer)}}},
		{Source: "secret", Namespace: "linkerd", Name: "copy", Mesh: Name,
			Bundles: []model.Bundle{{Key: "ca.crt", Purpose: model.PurposeTrustBundleCopy, Certificates: certs(p256)}}},
	}
	a := pki.NewAnalyzer(cache, map[model.Mesh]pki.MeshRules{Name: New().Rules()}).Analyze(objects, map[model.Mesh]model.MeshSettings{Name: settings})
	requirement := map[string]*model.RequirementStatus{}
	for _, oa := range a.Objects {
		for _, f := range oa.Certificates {
			requirement[oa.Object.Name] = f.Requirement
		}
	}
	if r := requirement["linkerd-identity-issuer"]; r == nil || r.Reason != model.ReasonUnsupportedKey {
		t.Errorf("issuer requirement %+v", r)
	}
	if r := requirement["linkerd-identity-trust-roots"]; r == nil || !r.Met {
		t.Errorf("anchor requirement %+v", r)
	}
	if r, ok := requirement["copy"]; !ok || r != nil {
		t.Errorf("a copy of the anchors is judged again: %+v", r)
	}
}

// FuzzParseIdentity: whatever parses writes back to exactly its input.
func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{"cart.shop.serviceaccount.identity.linkerd.cluster.local", "a.b.c.serviceaccount.identity.l.td", ".serviceaccount.identity.", "x.serviceaccount.identity.linkerd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentity(s)
		if err != nil {
			return
		}
		back := id.ServiceAccount + "." + id.Namespace + identityInfix + id.ControlPlaneNamespace + "." + id.TrustDomain
		if back != s || id.Namespace == "" || id.ServiceAccount == "" || strings.Contains(id.Namespace, ".") {
			t.Fatalf("%q parsed as %+v", s, id)
		}
	})
}
