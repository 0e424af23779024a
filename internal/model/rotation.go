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
	// Boundary is the first instant after the one the rotation was computed at at which a
	// validity window on the way changes, so that it must be computed again; zero when none will.
	Boundary time.Time
}

// AnchorRadius is one current trust anchor's blast radius.
type AnchorRadius struct {
	Mesh   Mesh
	Anchor *Certificate
	// Dependents are the certificates that verify now through this anchor and through no other
	// current anchor of the mesh: they stop verifying when it leaves. PodDependents are those of
	// them read from pods (Object.FromPods), this replica's share.
	Dependents, PodDependents int
	// Bundles are the trust-bundle copies that hold this anchor; PodBundles those read from pods.
	Bundles, PodBundles int
	// Signing is true while one of the mesh's signing CAs (the intermediates and issuers of its
	// authoritative objects) chains to this anchor, and for every anchor of a mesh whose
	// authoritative objects hold no CA but the anchors (a self-signed root that signs itself).
	// An anchor no signing CA chains to is retired: it only waits for its dependents to leave.
	Signing bool
}

// IssuerRadius is one signing CA's blast radius.
type IssuerRadius struct {
	Mesh   Mesh
	Issuer *Certificate
	// Dependents are the workload certificates served now (presented by a proxy or a control
	// plane) that this CA signed; PodDependents those read from pods (Object.FromPods).
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
	// Removed is the number of CA certificates the question matched.
	Removed int
	// Broken are the certificates that verify now and would not.
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
