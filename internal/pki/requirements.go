package pki

import (
	"slices"
	"strings"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Key algorithms as KeyAlgorithm names them that the meshes accept for their CAs.
var (
	// linkerdCAKeys: Linkerd's identity controller and proxies accept only ECDSA P-256 for the
	// trust anchor and the issuer (`linkerd check` fails any other).
	linkerdCAKeys = []string{"ECDSA-P256"}
	// istioCAKeys: istiod signs with RSA (2048 bits or more) or ECDSA P-256/P-384 keys; it has no
	// Ed25519 signer.
	istioCAKeys = []string{"ECDSA-P256", "ECDSA-P384"}
)

// minIstioRSABits is the smallest RSA key istiod accepts for its CA (its default size).
const minIstioRSABits = 2048

// CheckRequirements checks a CA certificate of a mesh (role trust anchor, intermediate or issuer)
// against the rules the mesh itself enforces for that role: Linkerd's anchor and issuer must be
// ECDSA P-256 and its issuer named identity.<control plane namespace>.<trust domain>; Istio's CAs
// must be RSA of at least 2048 bits or ECDSA P-256/P-384. ok is false where the mesh has no rule
// for the certificate's role.
func CheckRequirements(c *model.Certificate, role model.Role, mesh model.Mesh, settings model.MeshSettings) (status model.RequirementStatus, ok bool) {
	switch {
	case mesh == model.MeshLinkerd && (role == model.RoleTrustAnchor || role == model.RoleIssuer):
		if !slices.Contains(linkerdCAKeys, c.KeyAlgorithm) {
			return model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true
		}
		if role == model.RoleIssuer && !linkerdIssuerNamed(c, settings) {
			return model.RequirementStatus{Reason: model.ReasonWrongIssuerName}, true
		}
		return model.RequirementStatus{Met: true}, true
	case mesh == model.MeshIstio && (role == model.RoleTrustAnchor || role == model.RoleIntermediate):
		if !slices.Contains(istioCAKeys, c.KeyAlgorithm) && rsaBits(c.KeyAlgorithm) < minIstioRSABits {
			return model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true
		}
		return model.RequirementStatus{Met: true}, true
	}
	return model.RequirementStatus{}, false
}

// LinkerdIssuerName is the name Linkerd's identity controller issues under:
// identity.<control plane namespace>.<trust domain>.
func LinkerdIssuerName(controlPlaneNamespace, trustDomain string) string {
	return "identity." + controlPlaneNamespace + "." + trustDomain
}

// linkerdIssuerNamed reports whether c carries the issuer name as its common name or a DNS name.
// Without a known control plane namespace and trust domain the name cannot be judged.
func linkerdIssuerNamed(c *model.Certificate, s model.MeshSettings) bool {
	if s.ControlPlaneNamespace == "" || s.TrustDomain == "" {
		return true
	}
	name := LinkerdIssuerName(s.ControlPlaneNamespace, s.TrustDomain)
	// pkix.Name.String writes the most specific attribute, the common name, first.
	cn := "CN=" + name
	return c.Subject == cn || strings.HasPrefix(c.Subject, cn+",") || slices.Contains(c.DNSNames, name)
}

// rsaBits is the key size of an "RSA-<bits>" algorithm name, or 0.
func rsaBits(algorithm string) int {
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
