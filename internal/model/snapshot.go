package model

import (
	"strings"
	"time"
)

// ErrorReason is a bounded reason for a failed read or a failed check. It is used as a label value,
// so only the constants below are ever exported.
type ErrorReason string

// Read errors: why certificate material could not be read.
const (
	ReasonNone          ErrorReason = ""
	ReasonNoCertificate ErrorReason = "no_certificate"
	ReasonBadPEM        ErrorReason = "bad_pem"
	ReasonBadDER        ErrorReason = "bad_der"
	ReasonTooLarge      ErrorReason = "too_large"
	ReasonTooMany       ErrorReason = "too_many_certificates"
	ReasonReadError     ErrorReason = "read_error"
	ReasonRefused       ErrorReason = "refused"
	ReasonIncomplete    ErrorReason = "incomplete_bundle"
	ReasonBadConfig     ErrorReason = "bad_config"
	ReasonForbidden     ErrorReason = "forbidden"
	ReasonUnavailable   ErrorReason = "unavailable"
	ReasonTimeout       ErrorReason = "timeout"
	ReasonBadResponse   ErrorReason = "bad_response"
	// ReasonUnknownShape is an answer that parses but in none of the shapes the reader knows
	// (a proxy release newer or older than the ones it was checked against).
	ReasonUnknownShape ErrorReason = "unknown_shape"
)

// Skipped paths: why the file source passed over a path it was pointed at.
const (
	// ReasonNoMatch is a glob that matches nothing.
	ReasonNoMatch ErrorReason = "no_match"
	// ReasonDanglingLink is a symbolic link whose target does not exist.
	ReasonDanglingLink ErrorReason = "dangling_link"
	// ReasonNotAFile is an entry of a directory that is not a regular file (a subdirectory, which
	// is not searched, a socket).
	ReasonNotAFile ErrorReason = "not_a_file"
)

// Chain failures: why a certificate does not verify up to a trust anchor.
const (
	ReasonUnknownAuthority ErrorReason = "unknown_authority"
	ReasonExpired          ErrorReason = "expired"
	ReasonNotYetValid      ErrorReason = "not_yet_valid"
	ReasonBadSignature     ErrorReason = "bad_signature"
	ReasonNotCA            ErrorReason = "not_ca"
	ReasonPathLenExceeded  ErrorReason = "path_len_exceeded"
	ReasonChainTooLong     ErrorReason = "chain_too_long"
	// ReasonIncompleteChain is a presented chain that verifies only through a CA its owner did not
	// present: peers, which hold only the trust anchors, reject it.
	ReasonIncompleteChain ErrorReason = "incomplete_chain"
)

// Mesh requirement failures: why a CA certificate breaks a rule its mesh enforces.
const (
	// ReasonUnsupportedKey is a key algorithm or size the mesh does not accept for the role.
	ReasonUnsupportedKey ErrorReason = "unsupported_key_algorithm"
	// ReasonWrongIssuerName is a Linkerd issuer not named identity.<control plane namespace>.<trust domain>.
	ReasonWrongIssuerName ErrorReason = "wrong_issuer_name"
)

// Identity failures: why a certificate's mesh identity is not what is expected of it.
const (
	ReasonMissingIdentity     ErrorReason = "missing_identity"
	ReasonMultipleIdentities  ErrorReason = "multiple_identities"
	ReasonMalformedIdentity   ErrorReason = "malformed_identity"
	ReasonWrongTrustDomain    ErrorReason = "wrong_trust_domain"
	ReasonWrongNamespace      ErrorReason = "wrong_namespace"
	ReasonWrongServiceAccount ErrorReason = "wrong_service_account"
	ReasonWrongControlPlaneNS ErrorReason = "wrong_control_plane_namespace"
	ReasonNotOnNode           ErrorReason = "workload_not_on_node"
)

// Chain is the time-independent result of path building for one certificate, above it: the
// certificate itself is not part of its paths, so every certificate of one issuer (ten thousand
// workload leaves) shares one Chain. Time-dependent checks (validity windows) are made by Evaluate
// at scrape time, so a Chain can be cached until the objects it was built from change. A Chain is
// never modified once built.
type Chain struct {
	// Paths are complete paths from the certificate's issuer to a trust anchor whose signatures
	// and CA constraints hold, shortest first. Each ends with the anchor; a certificate that is
	// itself a current anchor (a self-signed issuer) has one empty path.
	Paths [][]*Certificate
	// Partial is the longest path above the certificate that could be built when no complete path
	// exists (empty when not even an issuer was found).
	Partial []*Certificate
	// Reason is why no complete path exists; ReasonNone when Paths is not empty.
	Reason ErrorReason
}

// ChainStatus is a Chain evaluated at one instant.
type ChainStatus struct {
	Valid  bool
	Reason ErrorReason
	// Depth is the number of certificates in the chosen path, the certificate and anchor included.
	Depth int
	// NotAfter is the earliest NotAfter along the chosen path, the certificate's own included.
	NotAfter time.Time
	// Anchor is the trust anchor the chosen path ends at, or nil.
	Anchor *Certificate
}

// Evaluate checks the validity windows of c, the certificate the chain was built for, and of the
// chain at now. It prefers the first path that is valid at now; when none is, it reports the
// first path and why it is not valid.
func (ch *Chain) Evaluate(c *Certificate, now time.Time) ChainStatus {
	if len(ch.Paths) == 0 {
		return ChainStatus{Reason: ch.Reason, Depth: 1 + len(ch.Partial), NotAfter: earliestNotAfter(c, ch.Partial)}
	}
	for _, p := range ch.Paths {
		if timeReason(c, p, now) == ReasonNone {
			return ChainStatus{Valid: true, Depth: 1 + len(p), NotAfter: earliestNotAfter(c, p), Anchor: pathAnchor(c, p)}
		}
	}
	p := ch.Paths[0]
	return ChainStatus{Reason: timeReason(c, p, now), Depth: 1 + len(p), NotAfter: earliestNotAfter(c, p), Anchor: pathAnchor(c, p)}
}

// pathAnchor is the anchor a path above c ends at: its last certificate, or c itself for the empty
// path of a certificate that is one of the current anchors.
func pathAnchor(c *Certificate, path []*Certificate) *Certificate {
	if len(path) == 0 {
		return c
	}
	return path[len(path)-1]
}

// timeReason is ReasonExpired when c or any certificate of the path above it has expired at now,
// else ReasonNotYetValid when one is not yet valid, else ReasonNone.
func timeReason(c *Certificate, path []*Certificate, now time.Time) ErrorReason {
	reason := validityAt(c, now)
	for _, p := range path {
		if reason == ReasonExpired {
			break
		}
		if r := validityAt(p, now); r != ReasonNone {
			reason = r
		}
	}
	return reason
}

// validityAt is ReasonExpired when c has expired at now, ReasonNotYetValid when it is not yet
// valid, else ReasonNone.
func validityAt(c *Certificate, now time.Time) ErrorReason {
	switch {
	case now.After(c.NotAfter()):
		return ReasonExpired
	case now.Before(c.NotBefore()):
		return ReasonNotYetValid
	}
	return ReasonNone
}

// earliestNotAfter is the earliest NotAfter of c and the path above it.
func earliestNotAfter(c *Certificate, path []*Certificate) time.Time {
	t := c.NotAfter()
	for _, p := range path {
		if p.NotAfter().Before(t) {
			t = p.NotAfter()
		}
	}
	return t
}

// IdentityStatus is the result of checking a certificate's mesh identity.
type IdentityStatus struct {
	Valid  bool
	Reason ErrorReason
}

// CertificateFinding is what the analysis found about one certificate of an object. The object's
// source, namespace, name and mesh are its ObjectAnalysis's, held there once rather than in each
// finding: every proxy has a leaf.
type CertificateFinding struct {
	// Key and Index locate the certificate in its object.
	Key         string
	Index       int
	Role        Role
	Certificate *Certificate
	// Chain is nil for trust anchors.
	Chain *Chain
	// Identity is nil when the certificate neither carries nor should carry a mesh identity.
	// Findings with equal results share one record: it is never modified.
	Identity *IdentityStatus
	// Requirement is nil when the mesh places no rule on the certificate (see RequirementStatus).
	// Findings with equal results share one record: it is never modified.
	Requirement *RequirementStatus
}

// RequirementStatus is the result of checking a CA certificate against the rules its mesh
// enforces for its role (key algorithm and size, Linkerd's issuer name).
type RequirementStatus struct {
	Met    bool
	Reason ErrorReason
}

// TrustBundleFinding says whether one trust-bundle copy of an object (or the trust-root digest a
// proxy was injected with) equals its mesh's current root set. A Federated finding is a bundle the
// object holds for another trust domain than its mesh's (SPIFFE federation, a trust-domain-keyed
// bundle: the key's last path element names the domain): that domain's anchors, never compared.
type TrustBundleFinding struct {
	Key       string
	Current   bool
	Federated bool
}

// TrustDomain is the trust domain a federated bundle is held for, or "".
func (f TrustBundleFinding) TrustDomain() string {
	if !f.Federated {
		return ""
	}
	return f.Key[strings.LastIndexByte(f.Key, '/')+1:]
}

// BundleError is a bundle that could not be read completely.
type BundleError struct {
	Source, Namespace, Name, Key string
	Reason                       ErrorReason
}

// SourceStatus is the health of one source.
type SourceStatus struct {
	// Name is the source's label value.
	Name string
	// Up is true when the source's last attempt to read its material worked.
	Up bool
	// Errors counts read errors by reason since the exporter started.
	Errors map[ErrorReason]uint64
	// LastSuccess is the time the source's data is current as of; zero if never. While the
	// source is down it is the last moment it was known healthy.
	LastSuccess time.Time
	// Synced is true once the source has read its material completely at least once.
	Synced bool
	// Unread counts the proxies a proxy source knows of and has not tried to read yet.
	Unread int
	// ReadInterval is, for a source that reads proxies, the time between two reads of one; zero
	// for other sources.
	ReadInterval time.Duration
}

// RootKeyStatus says whether an object holds the private key of a trust anchor.
type RootKeyStatus struct {
	Mesh                    Mesh
	Source, Namespace, Name string
	Stored                  bool
}

// ObjectAnalysis is what the analysis finds in one object. It is immutable: analysing an
// unchanged object in an unchanged mesh again returns the same *ObjectAnalysis, so a consumer may
// keep what it derives from one (rendered series) for as long as the pointer is in the analysis.
type ObjectAnalysis struct {
	// Object is the object analysed; its location and mesh are those of every finding below.
	Object       *Object
	Certificates []CertificateFinding
	TrustBundles []TrustBundleFinding
	BundleErrors []BundleError
	RootKeys     []RootKeyStatus
}

// Analysis is what the PKI analysis finds in all objects together.
type Analysis struct {
	// Version changes each time the analysis runs again; equal versions hold equal results.
	Version uint64
	// Objects hold the findings of each object, in the order of the objects.
	Objects []*ObjectAnalysis
	// Meshes are each mesh's current trust anchors and signing CAs, in the order of the meshes'
	// names; a mesh without authoritative objects has none.
	Meshes []MeshCAs
}

// ProxyStatus is the health of one proxy a source reads. It is immutable: a source replaces a
// proxy's record when its health changes, so consumers (the collector's rendered blocks) may keep
// what they derive from a pointer for as long as the pointer is in the snapshot. One record per
// proxy is shared from the source to the collector, never copied on the way.
type ProxyStatus struct {
	Mesh                    Mesh
	Source, Namespace, Name string
	// Up is true when the last read worked.
	Up bool
	// Endpoint is the admin endpoint the certificates came from: config_dump, certs (Envoy's
	// fallback, without chains), metrics (Linkerd's proxy).
	Endpoint string
	// LastSuccess is when the proxy was last read successfully; zero if never.
	LastSuccess time.Time
}

// Snapshot is the analysed state of the whole mesh PKI at one moment.
type Snapshot struct {
	Analysis
	Sources []SourceStatus
	Proxies []*ProxyStatus
	// Posture is what each mesh's posture judgement found, when a posture source runs.
	Posture Posture
	// Rotation is the blast radius of each mesh's CAs now.
	Rotation Rotation
	// Share names the share of the pods this exporter reads (sources.Sharding.Share): its counts
	// of what it read from pods add up with those of replicas of other shares.
	Share string
}
