package istio

import (
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

func TestRequirements(t *testing.T) {
	from, until := testpki.From(), testpki.Until()
	ed := testpki.Issue(testpki.Spec{CommonName: "ed root", CA: true, Key: testpki.Ed25519, NotBefore: from, NotAfter: until})
	rsa := testpki.Issue(testpki.Spec{CommonName: "rsa root", CA: true, Key: testpki.RSA2048, NotBefore: from, NotAfter: until})
	rsa1024 := testpki.Issue(testpki.Spec{CommonName: "rsa 1024 root", CA: true, Key: testpki.RSA1024, NotBefore: from, NotAfter: until})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Key: testpki.ECDSAP384, Issuer: rsa, NotBefore: from, NotAfter: until})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Key: testpki.Ed25519, Issuer: inter, NotBefore: from, NotAfter: until})
	cache := pki.NewCache()
	tests := []struct {
		name string
		c    *testpki.Cert
		role model.Role
		want model.RequirementStatus
		ok   bool
	}{
		{"RSA-2048 root", rsa, model.RoleTrustAnchor, model.RequirementStatus{Met: true}, true},
		{"RSA-1024 root", rsa1024, model.RoleTrustAnchor, model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true},
		{"P-384 intermediate", inter, model.RoleIntermediate, model.RequirementStatus{Met: true}, true},
		{"Ed25519 root", ed, model.RoleTrustAnchor, model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true},
		{"leaf: no rule", leaf, model.RoleLeaf, model.RequirementStatus{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, _ := cache.ParseBundle(tt.c.PEM())
			got, ok := New().Rules().CheckRequirements(certs[0], tt.role, New().Settings())
			if got != tt.want || ok != tt.ok {
				t.Errorf("CheckRequirements = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
