package istio

import (
	"slices"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// rules are Istio's rules for its certificates: SPIFFE identities of Kubernetes workloads, and
// the keys istiod can sign with.
type rules struct{ pki.SPIFFERules }

// caKeys: istiod signs with RSA (2048 bits or more) or ECDSA P-256/P-384 keys; it has no Ed25519
// signer.
var caKeys = []string{"ECDSA-P256", "ECDSA-P384"}

// minRSABits is the smallest RSA key istiod accepts for its CA (its default size).
const minRSABits = 2048

// CheckRequirements implements pki.MeshRules: a trust anchor or intermediate must hold a key
// istiod can sign with.
func (rules) CheckRequirements(c *model.Certificate, role model.Role, _ model.MeshSettings) (model.RequirementStatus, bool) {
	if role != model.RoleTrustAnchor && role != model.RoleIntermediate {
		return model.RequirementStatus{}, false
	}
	if !slices.Contains(caKeys, c.KeyAlgorithm) && pki.RSABits(c.KeyAlgorithm) < minRSABits {
		return model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true
	}
	return model.RequirementStatus{Met: true}, true
}
