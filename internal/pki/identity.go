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

// CheckSPIFFEIdentity checks that a leaf carries exactly one SPIFFE ID (ids), of a Kubernetes
// workload (/ns/<namespace>/sa/<service account>) in one of the mesh's trust domains, and that it
// is the workload expect names when expect is not nil.
func CheckSPIFFEIdentity(ids []string, settings model.MeshSettings, expect *model.Identity) model.IdentityStatus {
	switch len(ids) {
	case 0:
		return Invalid(model.ReasonMissingIdentity)
	case 1:
	default:
		return Invalid(model.ReasonMultipleIdentities)
	}
	id, err := ParseSPIFFEID(ids[0])
	if err != nil {
		return Invalid(model.ReasonMalformedIdentity)
	}
	ns, sa, ok := id.Workload()
	if !ok {
		return Invalid(model.ReasonMalformedIdentity)
	}
	if !slices.Contains(settings.TrustDomains(), id.TrustDomain) {
		return Invalid(model.ReasonWrongTrustDomain)
	}
	return CheckWorkload(ns, sa, expect)
}

// CheckWorkload checks the namespace and service account an identity names against the workload
// expect names (nil: any workload).
func CheckWorkload(namespace, serviceAccount string, expect *model.Identity) model.IdentityStatus {
	if expect != nil {
		if expect.Namespace != "" && namespace != expect.Namespace {
			return Invalid(model.ReasonWrongNamespace)
		}
		if expect.ServiceAccount != "" && serviceAccount != expect.ServiceAccount {
			return Invalid(model.ReasonWrongServiceAccount)
		}
		if expect.NotOnNode {
			return Invalid(model.ReasonNotOnNode)
		}
	}
	return model.IdentityStatus{Valid: true}
}

// Invalid is the status of an identity that is not valid for reason.
func Invalid(reason model.ErrorReason) model.IdentityStatus {
	return model.IdentityStatus{Reason: reason}
}
