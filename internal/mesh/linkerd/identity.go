package linkerd

import (
	"errors"
	"slices"
	"strings"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// Identity is a parsed Linkerd proxy identity:
// <service account>.<namespace>.serviceaccount.identity.<control plane namespace>.<trust domain>.
type Identity struct {
	ServiceAccount        string
	Namespace             string
	ControlPlaneNamespace string
	TrustDomain           string
}

const identityInfix = ".serviceaccount.identity."

// IsIdentityName reports whether a DNS name has the shape of a Linkerd identity.
func IsIdentityName(name string) bool {
	return strings.Contains(name, identityInfix)
}

var errMalformedIdentity = errors.New("malformed Linkerd identity")

// ParseIdentity parses a Linkerd identity DNS name. Namespaces are DNS labels (no dots); service
// accounts may contain dots, so the namespace is the label just before the infix.
func ParseIdentity(name string) (Identity, error) {
	left, right, ok := strings.Cut(name, identityInfix)
	if !ok {
		return Identity{}, errMalformedIdentity
	}
	dot := strings.LastIndexByte(left, '.')
	cpNS, td, ok := strings.Cut(right, ".")
	if dot <= 0 || dot == len(left)-1 || !ok || cpNS == "" || td == "" {
		return Identity{}, errMalformedIdentity
	}
	return Identity{
		ServiceAccount:        left[:dot],
		Namespace:             left[dot+1:],
		ControlPlaneNamespace: cpNS,
		TrustDomain:           td,
	}, nil
}

// rules are Linkerd's rules for its certificates.
type rules struct{}

// CheckIdentity implements pki.MeshRules. A Linkerd identity is a DNS name; a proxy that gets its
// identity from SPIRE carries a SPIFFE ID instead.
func (rules) CheckIdentity(c *model.Certificate, settings model.MeshSettings, expect *model.Identity) model.IdentityStatus {
	var names []string
	for _, n := range c.DNSNames {
		if IsIdentityName(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 && len(c.SPIFFEIDs) > 0 {
		return pki.CheckSPIFFEIdentity(c.SPIFFEIDs, settings, expect)
	}
	switch len(names) {
	case 0:
		return pki.Invalid(model.ReasonMissingIdentity)
	case 1:
	default:
		return pki.Invalid(model.ReasonMultipleIdentities)
	}
	id, err := ParseIdentity(names[0])
	if err != nil {
		return pki.Invalid(model.ReasonMalformedIdentity)
	}
	if !slices.Contains(settings.TrustDomains(), id.TrustDomain) {
		return pki.Invalid(model.ReasonWrongTrustDomain)
	}
	if settings.ControlPlaneNamespace != "" && id.ControlPlaneNamespace != settings.ControlPlaneNamespace {
		return pki.Invalid(model.ReasonWrongControlPlaneNS)
	}
	return pki.CheckWorkload(id.Namespace, id.ServiceAccount, expect)
}

// AnchorsSign implements pki.MeshRules: Linkerd's identity controller signs only with its issuer
// (Secret linkerd-identity-issuer), never with a trust anchor.
func (rules) AnchorsSign() bool { return false }

// caKeys: Linkerd's identity controller and proxies accept only ECDSA P-256 for the trust anchor
// and the issuer (`linkerd check` fails any other).
var caKeys = []string{"ECDSA-P256"}

// CheckRequirements implements pki.MeshRules: the anchor and the issuer must be ECDSA P-256, and
// the issuer named identity.<control plane namespace>.<trust domain>.
func (rules) CheckRequirements(c *model.Certificate, role model.Role, settings model.MeshSettings) (model.RequirementStatus, bool) {
	if role != model.RoleTrustAnchor && role != model.RoleIssuer {
		return model.RequirementStatus{}, false
	}
	if !slices.Contains(caKeys, c.KeyAlgorithm) {
		return model.RequirementStatus{Reason: model.ReasonUnsupportedKey}, true
	}
	if role == model.RoleIssuer && !issuerNamed(c, settings) {
		return model.RequirementStatus{Reason: model.ReasonWrongIssuerName}, true
	}
	return model.RequirementStatus{Met: true}, true
}

// IssuerName is the name Linkerd's identity controller issues under:
// identity.<control plane namespace>.<trust domain>.
func IssuerName(controlPlaneNamespace, trustDomain string) string {
	return "identity." + controlPlaneNamespace + "." + trustDomain
}

// issuerNamed reports whether c carries the issuer name as its common name or a DNS name. Without
// a known control plane namespace and trust domain the name cannot be judged.
func issuerNamed(c *model.Certificate, s model.MeshSettings) bool {
	if s.ControlPlaneNamespace == "" || s.TrustDomain == "" {
		return true
	}
	name := IssuerName(s.ControlPlaneNamespace, s.TrustDomain)
	// pkix.Name.String writes the most specific attribute, the common name, first.
	cn := "CN=" + name
	return c.Subject == cn || strings.HasPrefix(c.Subject, cn+",") || slices.Contains(c.DNSNames, name)
}
