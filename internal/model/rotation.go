package model

import "time"

// MeshCAs are one mesh's current trust anchors and signing CAs, as an analysis found them in its
// authoritative objects, with the anchor sets behind the trust-root digests the mesh published.
type MeshCAs struct {
	Mesh Mesh
	// Anchors are the mesh's current trust anchors.
	Anchors []*Certificate
	// Issuers are the other CA certificates of the authoritative objects: the intermediates and
	// issuers the mesh signs workload certificates with.
	Issuers []*Certificate
	// Digests are the anchor sets of the trust-root digests the mesh published while the analyzer
	// ran, the current ones first: a proxy injected with an older digest holds that older set.
	Digests []DigestSet
	// AnchorsSign is true for a mesh whose anchors may sign workload certificates themselves
	// (Istio's self-signed root): with no other signing CA, its anchors are its signing CAs. A mesh
	// that always signs with an issuer (Linkerd) cannot sign without one.
	AnchorsSign bool
}

// DigestSet is a published trust-root digest and the anchors it stands for.
type DigestSet struct {
	Digest  string
	Anchors []*Certificate
}

// Rotation is the blast radius of each of a mesh's CAs at one instant: what would stop verifying
// if it left, and how far the copies of the trust anchors have come. It holds a few records per
// CA, never one per workload.
type Rotation struct {
	Anchors []AnchorRadius
	Issuers []IssuerRadius
	// Bundles counts each mesh's trust-bundle copies (namespace root ConfigMaps, proxies' root
	// bundles, Linkerd pods' trust-root digests, configured copies).
	Bundles []MeshBundles
	// Signing says of each mesh with anchors whether it can sign workload certificates now.
	Signing []MeshSigning
	// Boundary is the first instant after the one the rotation was computed at at which a
	// validity window on the way changes, so that it must be computed again; zero when none will.
	Boundary time.Time
}

// AnchorRadius is one current trust anchor's blast radius.
type AnchorRadius struct {
	Mesh   Mesh
	Anchor *Certificate
	// Dependents are the distinct certificates (by fingerprint, wherever their copies are) that
	// verify now through this anchor and through no other current anchor of the mesh: they stop
	// verifying when it leaves. PodDependents are those of them found only in objects read from
	// pods (Object.FromPods), this replica's share.
	Dependents, PodDependents int
	// Bundles are the trust-bundle copies that hold this anchor; PodBundles those read from pods.
	Bundles, PodBundles int
	// Signing is true while one of the mesh's signing CAs (the intermediates and issuers of its
	// authoritative objects) chains to this anchor, and for every anchor of a mesh whose
	// authoritative objects hold no CA but the anchors (a self-signed root that signs itself).
	Signing bool
	// Retired is true for an anchor no signing CA chains to while the mesh signs under another
	// of its current anchors that is not older (by NotBefore): the mesh has moved on, and the
	// anchor only waits for its dependents to leave. An anchor newer than every anchor the mesh
	// signs under is published ahead of a rotation's next step, not retired; an anchor of a mesh
	// that cannot sign at all is never retired (see MeshSigning).
	Retired bool
}

// SigningReason says why a mesh cannot sign workload certificates; it is a bounded label value.
type SigningReason string

// The reasons a mesh cannot sign.
const (
	// SigningNoCA: no signing CA was read, and the mesh's anchors do not sign themselves (a
	// Linkerd issuer Secret that is absent or unreadable).
	SigningNoCA SigningReason = "no_signing_ca"
	// SigningExpired: every signing CA is outside its validity window (expired, or not yet valid).
	SigningExpired SigningReason = "signing_ca_expired"
	// SigningUnanchored: a signing CA is within its validity but verifies up to no current,
	// valid anchor (an intermediate whose root left the anchors, or whose root expired).
	SigningUnanchored SigningReason = "signing_ca_unanchored"
)

// SigningReasons are every SigningReason, in the order they are documented.
func SigningReasons() []SigningReason {
	return []SigningReason{SigningNoCA, SigningExpired, SigningUnanchored}
}

// MeshSigning says whether a mesh can sign workload certificates now: one of its signing CAs is
// valid and verifies up to one of its current anchors.
type MeshSigning struct {
	Mesh    Mesh
	CanSign bool
	// Reason is why it cannot; empty when it can.
	Reason SigningReason
	// CAs are the signing CAs that fail (none for SigningNoCA).
	CAs []*Certificate
}

// IssuerRadius is one signing CA's blast radius.
type IssuerRadius struct {
	Mesh   Mesh
	Issuer *Certificate
	// Dependents are the distinct workload certificates (by fingerprint) served now (presented
	// by a proxy or a control plane) that this CA signed; PodDependents those found only in
	// objects read from pods (Object.FromPods).
	Dependents, PodDependents int
}

// MeshBundles is the number of one mesh's trust-bundle copies; PodCopies are those read from pods
// (Object.FromPods).
type MeshBundles struct {
	Mesh              Mesh
	Copies, PodCopies int
}

// WhatIf is what would break if some CAs left their mesh.
type WhatIf struct {
	// Removed is the number of CA certificates the question named.
	Removed int
	// Broken are the certificates that verify now and would not, one per location.
	Broken []CertificateRef
	// Unanchored are the trust-bundle copies that hold a current anchor now and would hold none.
	Unanchored []BundleRef
}

// CertificateRef is one certificate at its location.
type CertificateRef struct {
	Object      *Object
	Key         string
	Index       int
	Certificate *Certificate
}

// BundleRef is one bundle of an object.
type BundleRef struct {
	Object *Object
	Key    string
}
