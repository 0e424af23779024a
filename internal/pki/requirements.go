package pki

import (
	"strings"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// MeshRules judge the certificates of one mesh by that mesh's own rules. Each mesh package
// (internal/mesh/<mesh>) gives its rules to the analysis; a mesh without rules is judged by
// SPIFFERules.
type MeshRules interface {
	// CheckIdentity judges the identity a workload leaf of the mesh carries, against the mesh's
	// settings and, when expect is not nil, the workload it belongs to.
	CheckIdentity(c *model.Certificate, settings model.MeshSettings, expect *model.Identity) model.IdentityStatus
	// CheckRequirements judges a CA certificate of the mesh (role trust anchor, intermediate or
	// issuer) by the rules the mesh enforces for that role; ok is false where it has none.
	CheckRequirements(c *model.Certificate, role model.Role, settings model.MeshSettings) (status model.RequirementStatus, ok bool)
	// AnchorsSign reports whether the mesh may sign workload certificates with a trust anchor
	// itself (a self-signed root that is also the CA), rather than only with an issuer under it.
	AnchorsSign() bool
}

// SPIFFERules judge identities as SPIFFE IDs of Kubernetes workloads
// (spiffe://<trust domain>/ns/<namespace>/sa/<service account>) and have no requirements of CAs.
type SPIFFERules struct{}

// CheckIdentity implements MeshRules.
func (SPIFFERules) CheckIdentity(c *model.Certificate, settings model.MeshSettings, expect *model.Identity) model.IdentityStatus {
	return CheckSPIFFEIdentity(c.SPIFFEIDs, settings, expect)
}

// CheckRequirements implements MeshRules.
func (SPIFFERules) CheckRequirements(*model.Certificate, model.Role, model.MeshSettings) (model.RequirementStatus, bool) {
	return model.RequirementStatus{}, false
}

// AnchorsSign implements MeshRules: a generic SPIFFE CA may sign with its root.
func (SPIFFERules) AnchorsSign() bool { return true }

// RSABits is the key size of an "RSA-<bits>" algorithm name (as KeyAlgorithm writes it), or 0.
func RSABits(algorithm string) int {
	bits, ok := strings.CutPrefix(algorithm, "RSA-")
	if !ok {
		return 0
	}
	n := 0
	for _, r := range bits {
		if r < '0' || r > '9' {
			return 0
		}
		n = n*10 + int(r-'0')
	}
	return n
}
