package pki

import (
	"errors"
	"slices"
	"strings"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// SPIFFEID is a parsed SPIFFE ID: spiffe://<trust domain>/<path>.
type SPIFFEID struct {
	TrustDomain string
	// Segments of the path, without the leading slash; empty for a trust domain's own ID.
	Segments []string
}

// Workload returns the namespace and service account of an Istio/Kubernetes workload ID of the
// exact form /ns/<namespace>/sa/<service account>.
func (id SPIFFEID) Workload() (namespace, serviceAccount string, ok bool) {
	s := id.Segments
	if len(s) != 4 || s[0] != "ns" || s[2] != "sa" {
		return "", "", false
	}
	return s[1], s[3], true
}

// maxSPIFFEIDLength is the limit the SPIFFE specification sets for an ID.
const maxSPIFFEIDLength = 2048

var errMalformedSPIFFEID = errors.New("malformed SPIFFE ID")

// ParseSPIFFEID parses s following the SPIFFE ID specification: a lowercase scheme, a trust domain of
// [a-z0-9.-_], path segments of [a-zA-Z0-9.-_] that are neither empty, "." nor "..", and nothing else
// (no port, user info, query or fragment).
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok || len(s) > maxSPIFFEIDLength {
		return SPIFFEID{}, errMalformedSPIFFEID
	}
	td, path, _ := strings.Cut(rest, "/")
	if !ValidTrustDomain(td) {
		return SPIFFEID{}, errMalformedSPIFFEID
	}
	id := SPIFFEID{TrustDomain: td}
	if !strings.Contains(rest, "/") {
		return id, nil
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." ||
			strings.IndexFunc(seg, func(r rune) bool { return !isPathChar(r) }) >= 0 {
			return SPIFFEID{}, errMalformedSPIFFEID
		}
		id.Segments = append(id.Segments, seg)
	}
	return id, nil
}

// ValidTrustDomain reports whether td is a trust domain as the SPIFFE specification allows it:
// not empty, lowercase letters, digits, dots, dashes and underscores.
func ValidTrustDomain(td string) bool {
	return td != "" && strings.IndexFunc(td, func(r rune) bool { return !isTrustDomainChar(r) }) < 0
}

func isTrustDomainChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
}

func isPathChar(r rune) bool {
	return isTrustDomainChar(r) || r >= 'A' && r <= 'Z'
}

// LinkerdIdentity is a parsed Linkerd proxy identity:
// <service account>.<namespace>.serviceaccount.identity.<control plane namespace>.<trust domain>.
type LinkerdIdentity struct {
	ServiceAccount        string
	Namespace             string
	ControlPlaneNamespace string
	TrustDomain           string
}

const linkerdIdentityInfix = ".serviceaccount.identity."

// IsLinkerdIdentityName reports whether a DNS name has the shape of a Linkerd identity.
func IsLinkerdIdentityName(name string) bool {
	return strings.Contains(name, linkerdIdentityInfix)
}

var errMalformedLinkerdIdentity = errors.New("malformed Linkerd identity")

// ParseLinkerdIdentity parses a Linkerd identity DNS name. Namespaces are DNS labels (no dots);
// service accounts may contain dots, so the namespace is the label just before the infix.
func ParseLinkerdIdentity(name string) (LinkerdIdentity, error) {
	left, right, ok := strings.Cut(name, linkerdIdentityInfix)
	if !ok {
		return LinkerdIdentity{}, errMalformedLinkerdIdentity
	}
	dot := strings.LastIndexByte(left, '.')
	cpNS, td, ok := strings.Cut(right, ".")
	if dot <= 0 || dot == len(left)-1 || !ok || cpNS == "" || td == "" {
		return LinkerdIdentity{}, errMalformedLinkerdIdentity
	}
	return LinkerdIdentity{
		ServiceAccount:        left[:dot],
		Namespace:             left[dot+1:],
		ControlPlaneNamespace: cpNS,
		TrustDomain:           td,
	}, nil
}

// CheckIdentity checks the mesh identity of a leaf certificate of a mesh against the mesh's
// settings and, when expect is not nil, the workload it belongs to. Istio identities are SPIFFE IDs
// of the form spiffe://<trust domain>/ns/<ns>/sa/<sa>; Linkerd identities are DNS names (or a SPIFFE
// ID when the proxy gets its identity from SPIRE).
func CheckIdentity(c *model.Certificate, mesh model.Mesh, settings model.MeshSettings, expect *model.Identity) model.IdentityStatus {
	if mesh == model.MeshLinkerd {
		var names []string
		for _, n := range c.DNSNames {
			if IsLinkerdIdentityName(n) {
				names = append(names, n)
			}
		}
		if len(names) > 0 || len(c.SPIFFEIDs) == 0 {
			return checkLinkerdNames(names, settings, expect)
		}
	}
	return checkSPIFFEIDs(c.SPIFFEIDs, settings, expect)
}

func checkSPIFFEIDs(ids []string, settings model.MeshSettings, expect *model.Identity) model.IdentityStatus {
	switch len(ids) {
	case 0:
		return invalid(model.ReasonMissingIdentity)
	case 1:
	default:
		return invalid(model.ReasonMultipleIdentities)
	}
	id, err := ParseSPIFFEID(ids[0])
	if err != nil {
		return invalid(model.ReasonMalformedIdentity)
	}
	ns, sa, ok := id.Workload()
	if !ok {
		return invalid(model.ReasonMalformedIdentity)
	}
	if !slices.Contains(settings.TrustDomains(), id.TrustDomain) {
		return invalid(model.ReasonWrongTrustDomain)
	}
	return checkWorkload(ns, sa, expect)
}

func checkLinkerdNames(names []string, settings model.MeshSettings, expect *model.Identity) model.IdentityStatus {
	switch len(names) {
	case 0:
		return invalid(model.ReasonMissingIdentity)
	case 1:
	default:
		return invalid(model.ReasonMultipleIdentities)
	}
	id, err := ParseLinkerdIdentity(names[0])
	if err != nil {
		return invalid(model.ReasonMalformedIdentity)
	}
	if !slices.Contains(settings.TrustDomains(), id.TrustDomain) {
		return invalid(model.ReasonWrongTrustDomain)
	}
	if settings.ControlPlaneNamespace != "" && id.ControlPlaneNamespace != settings.ControlPlaneNamespace {
		return invalid(model.ReasonWrongControlPlaneNS)
	}
	return checkWorkload(id.Namespace, id.ServiceAccount, expect)
}

func checkWorkload(namespace, serviceAccount string, expect *model.Identity) model.IdentityStatus {
	if expect != nil {
		if expect.Namespace != "" && namespace != expect.Namespace {
			return invalid(model.ReasonWrongNamespace)
		}
		if expect.ServiceAccount != "" && serviceAccount != expect.ServiceAccount {
			return invalid(model.ReasonWrongServiceAccount)
		}
		if expect.NotOnNode {
			return invalid(model.ReasonNotOnNode)
		}
	}
	return model.IdentityStatus{Valid: true}
}

func invalid(reason model.ErrorReason) model.IdentityStatus {
	return model.IdentityStatus{Reason: reason}
}
