// Package model is the neutral description of the mesh PKI that every source produces and the
// collector renders: where a certificate was found, what it is, and what the analysis found about it.
//
// Data flows one way: sources build Objects, the analysis (package pki) turns all Objects into a
// Snapshot, and the collector turns the Snapshot into metrics. Nothing in this package holds private
// key material: sources must drop key blocks before they build a Bundle.
package model

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"strings"
	"time"
)

// Mesh names the service mesh an object belongs to. The empty Mesh is a generic certificate.
type Mesh string

// The meshes the exporter understands.
const (
	MeshNone    Mesh = ""
	MeshIstio   Mesh = "istio"
	MeshLinkerd Mesh = "linkerd"
)

// Role is what a certificate is in its PKI.
type Role string

// Certificate roles, exported as the `role` label.
const (
	// RoleTrustAnchor is a self-signed CA certificate.
	RoleTrustAnchor Role = "trust_anchor"
	// RoleIntermediate is a CA certificate signed by another CA.
	RoleIntermediate Role = "intermediate"
	// RoleIssuer is an intermediate that a mesh calls its issuer (Linkerd's identity issuer).
	RoleIssuer Role = "issuer"
	// RoleLeaf is any certificate that is not a CA.
	RoleLeaf Role = "leaf"
)

// Purpose says what a bundle is for in the object that holds it.
type Purpose uint8

const (
	// PurposeCertificates is a certificate or chain presented by its owner (leaf or signing CA first).
	PurposeCertificates Purpose = iota
	// PurposeTrustBundle is a set of trust anchors that its owner trusts (a CA bundle key). In an
	// authoritative object it is the mesh's current root set.
	PurposeTrustBundle
	// PurposeTrustBundleCopy is a copy of the mesh's trust anchors handed to workloads (a
	// namespace's copy of the roots, a proxy's trust bundle): it is compared with the current root set
	// (drift), never trusted for chain building.
	PurposeTrustBundleCopy
)

// Export says which certificates of a bundle are exported.
type Export uint8

const (
	// ExportAll exports every certificate.
	ExportAll Export = iota
	// ExportFirst exports the first certificate only.
	ExportFirst
	// ExportNone exports none; the bundle still counts for chains and drift.
	ExportNone
)

// Certificate is a certificate with what the analysis needs of it, computed once when the object
// that holds it changes. It keeps neither a parsed x509.Certificate (mostly fields the analysis
// never reads) nor the DER encoding: a mesh holds one leaf per workload.
// It never carries a private key.
type Certificate struct {
	// RawSubject and RawIssuer are the DER encodings of the names; chain building compares them,
	// as it compares SubjectKeyID with a child's AuthorityKeyID.
	RawSubject, RawIssuer        string
	SubjectKeyID, AuthorityKeyID string
	// Signed is what verifying the certificate's signature needs of the part its issuer signed:
	// the digest of that part under SignatureAlgorithm's hash, or the part itself when the
	// algorithm hashes it as it verifies (Ed25519). Empty when the algorithm is one the exporter
	// does not verify (MD5, DSA): such a signature never verifies.
	Signed             string
	Signature          string
	SignatureAlgorithm x509.SignatureAlgorithm
	// VerifiedBy, when set, is a CA whose key was found to verify this certificate's signature
	// when the certificate was parsed with it, before the certificate was shared (a workload
	// leaf presented with its issuer): the one check most certificates ever need then takes no
	// entry in the signature checks. Like every field, it is never written once the certificate
	// is shared.
	VerifiedBy *Certificate
	// Authority is what a CA signs with and under which constraints; nil for other certificates,
	// which cannot sign a certificate (and for a Partial CA, which shows no key).
	Authority *Authority
	// Validity is the validity window.
	Validity Validity
	// CA is true when the basic constraints make the certificate a CA.
	CA bool
	// Version1 marks an X.509 v1 certificate, which has no extensions at all. A self-signed one
	// can still be a root: in a trust-anchor position it is an anchor and may sign, as crypto/x509
	// and OpenSSL allow (it keeps an Authority for that); anywhere else it is no CA.
	Version1 bool
	// SelfSigned is true when the subject equals the issuer and the certificate's own key verifies
	// its signature.
	SelfSigned bool
	// Partial marks facts taken from a summary (Envoy's /certs, a proxy's expiry metric) rather than
	// from the certificate itself: only the fields the summary gave are set (no encoding, no
	// signature, no key, no subject), Fingerprint is derived from what is known, and no chain is
	// built. (The flags sit together: a leaf per workload, bytes saved here count.)
	Partial bool
	// DNSNames are the DNS SANs (a Linkerd identity is one).
	DNSNames []string
	// Fingerprint is the SHA-256 of the DER encoding.
	Fingerprint [sha256.Size]byte
	// Serial is the serial number in lowercase hex (two's complement sign kept as a leading '-').
	Serial string
	// KeyAlgorithm is a short description of the public key, such as "ECDSA-P256" or "RSA-2048".
	KeyAlgorithm string
	// SPIFFEIDs are the spiffe:// URI SANs, as written.
	SPIFFEIDs []string
	// Subject and Issuer are the distinguished names as text.
	Subject, Issuer string
}

// Authority is the part of a CA certificate that only a CA needs: the key that verifies what it
// signs and the constraints on what it may sign. Workload leaves, most of a mesh's certificates,
// do without it.
type Authority struct {
	// PublicKey verifies what the CA signs.
	PublicKey crypto.PublicKey
	// KeyUsage, MaxPathLen and MaxPathLenZero are as in x509.Certificate.
	KeyUsage       x509.KeyUsage
	MaxPathLen     int
	MaxPathLenZero bool
}

// Validity is a certificate's validity window in Unix seconds: X.509 times have no fractions of a
// second, and two integers take a third of the room of two time.Time values.
type Validity struct {
	NotBefore, NotAfter int64
}

// NewValidity returns the window from notBefore to notAfter.
func NewValidity(notBefore, notAfter time.Time) Validity {
	return Validity{NotBefore: notBefore.Unix(), NotAfter: notAfter.Unix()}
}

// IsCA reports whether the certificate may act as a certificate authority.
func (c *Certificate) IsCA() bool { return c.CA }

// MayAnchor reports whether the certificate is a root when it stands in a trust-anchor position: a
// self-signed CA, or a self-signed X.509 v1 certificate.
func (c *Certificate) MayAnchor() bool { return c.SelfSigned && (c.CA || c.Version1) }

// NotBefore is the start of the validity window.
func (c *Certificate) NotBefore() time.Time { return time.Unix(c.Validity.NotBefore, 0).UTC() }

// NotAfter is the end of the validity window.
func (c *Certificate) NotAfter() time.Time { return time.Unix(c.Validity.NotAfter, 0).UTC() }

// Bundle is the content of one key of an object (a Secret data key, a file, an SDS secret). Every
// proxy holds two or three: the small fields sit together, which keeps the record small.
type Bundle struct {
	// Key is the data key, file name or SDS secret name.
	Key string
	// Certificates in the order they appear.
	Certificates []*Certificate
	// Error is the bounded reason why the bundle could not be read completely, or "".
	Error ErrorReason
	// Purpose says whether the bundle is presented or trusted.
	Purpose Purpose
	// Export says which of the bundle's certificates get series. Proxies repeat the mesh's
	// intermediates and roots thousands of times: they export their leaf (the rest still serve to
	// build its chain) and compare their trust bundle without exporting it.
	Export Export
	// NoIdentity marks certificates that are not mesh identities (a gateway's server certificate):
	// their identity is not checked.
	NoIdentity bool
	// NoChain marks certificates whose verifiers the exporter cannot know (a gateway's public
	// server certificate): no chain is built for them.
	NoChain bool
	// Issuer marks a bundle whose CA certificates are the mesh's issuer (Linkerd's identity
	// issuer) rather than intermediates, self-signed ones included: a default Linkerd install
	// issues from a self-signed issuer that is its own trust anchor.
	Issuer bool
	// Presented marks a chain its owner presents in the TLS handshake (a proxy's workload
	// certificate, istiod's serving certificate): peers verify it with nothing but their trust
	// anchors, so its path is built only from the certificates presented with it.
	Presented bool
	// TrustDomainKeyed marks a trust bundle held for one trust domain (Envoy's SPIFFE validator):
	// the key's last path element names the domain (see TrustDomain).
	TrustDomainKeyed bool
	// State is the state a node proxy reports for the certificate of the workload identity the
	// bundle is (ztunnel's certificates[].state); IdentityStateNone for every other bundle.
	State IdentityState
	// Expect, when set, overrides the object's expectation for this bundle (a node proxy holds one
	// certificate per workload identity on its node).
	Expect *Identity
}

// IdentityState is the state a node proxy reports for the certificate of one workload identity
// it holds. It is a label value through Label, so only the constants below exist.
type IdentityState uint8

// The identity states.
const (
	// IdentityStateNone: the bundle is no node proxy's identity.
	IdentityStateNone IdentityState = iota
	// IdentityAvailable: the proxy holds a certificate for the identity.
	IdentityAvailable
	// IdentityInitializing: the proxy is still asking for the identity's first certificate.
	IdentityInitializing
	// IdentityUnavailable: the proxy could not get a certificate (its error text is logged,
	// never a label).
	IdentityUnavailable
)

// Label is the state's value of the state label; empty for IdentityStateNone.
func (s IdentityState) Label() string {
	switch s {
	case IdentityAvailable:
		return "available"
	case IdentityInitializing:
		return "initializing"
	case IdentityUnavailable:
		return "unavailable"
	}
	return ""
}

// RoleHint is the role of the bundle's CA certificates: RoleIssuer, or empty for the role their
// own constraints give.
func (b *Bundle) RoleHint() Role {
	if b.Issuer {
		return RoleIssuer
	}
	return ""
}

// TrustDomain is the trust domain a trust-domain-keyed bundle is held for, or "".
func (b *Bundle) TrustDomain() string {
	if !b.TrustDomainKeyed {
		return ""
	}
	return b.Key[strings.LastIndexByte(b.Key, '/')+1:]
}

// Identity is what a workload certificate is expected to prove.
type Identity struct {
	// Namespace and ServiceAccount of the workload, when known (proxy sources).
	Namespace      string
	ServiceAccount string
	// NotOnNode marks an identity a node proxy holds although no pod of that namespace
	// and service account runs on its node.
	NotOnNode bool
}

// Object is one place where certificates were found: a directory, a Secret, a ConfigMap, a proxy.
type Object struct {
	// Source names the kind of place: "file", "secret", "configmap", "envoy", ...
	Source string
	// Namespace of the Kubernetes object or pod; empty for files.
	Namespace string
	// Name of the object, pod or directory.
	Name string
	// Mesh the object belongs to, or MeshNone.
	Mesh Mesh
	// Authoritative marks an object whose trust bundles are the mesh's current trust anchors
	// (istiod's root, Linkerd's trust roots). Copies (namespace ConfigMaps, proxies) are not.
	Authoritative bool
	// FromPods marks an object read from a pod this exporter found by watching pods (a proxy): with
	// shards or one replica per node, each replica reads its own share of those. Every replica
	// reads the other objects (Kubernetes objects, files, static proxy targets) alike.
	FromPods bool
	// Expect, when set, is the workload identity the object's leaf certificates must carry.
	Expect *Identity
	// Bundles in a stable order.
	Bundles []Bundle
	// KeyPairs name the keys that hold a private key and the certificate each belongs to. Only the
	// names are known: the key material itself is never read.
	KeyPairs []KeyPair
	// Manager, on an object that holds a mesh's issuer (the CA the mesh signs workload
	// certificates with), names what rotates that CA: ManagerCertManager or ManagerNone. Empty on
	// every other object, and where it cannot be known (a mounted directory).
	Manager string
	// TrustRootDigest is the digest of the trust anchors a proxy was injected with (from its pod),
	// compared with the mesh's TrustAnchorDigests.
	TrustRootDigest string
}

// The values of Object.Manager.
const (
	// ManagerCertManager: cert-manager issued the object's certificate and renews it.
	ManagerCertManager = "cert-manager"
	// ManagerNone: nothing known rotates it; someone has to, by hand, before it expires.
	ManagerNone = "none"
)

// KeyPair names a private key's data key and the data key of its certificate.
type KeyPair struct {
	PrivateKey  string
	Certificate string
}

// MeshSettings are the settings of one mesh that the identity checks need.
type MeshSettings struct {
	// TrustDomain is the primary trust domain, "cluster.local" by default.
	TrustDomain string
	// TrustDomainAliases are further trust domains that are accepted (Istio).
	TrustDomainAliases []string
	// ControlPlaneNamespace is where the mesh's control plane runs (Linkerd identities name it).
	ControlPlaneNamespace string
	// TrustAnchorDigests are hex SHA-256 digests of the trust-anchor bundles exactly as the mesh
	// publishes them, to compare with an Object's TrustRootDigest.
	TrustAnchorDigests []string
	// TrustAnchorDigestKey is the key label of that comparison: where the mesh writes the digest.
	TrustAnchorDigestKey string
	// RootNamespace is where a policy applies to the whole mesh (Istio's rootNamespace).
	RootNamespace string
	// DefaultPolicy is the mesh's cluster-wide default inbound policy (Linkerd's
	// proxy.defaultInboundPolicy), where the mesh has one.
	DefaultPolicy string
}

// TrustDomains returns the primary trust domain followed by its aliases.
func (s MeshSettings) TrustDomains() []string {
	return append([]string{s.TrustDomain}, s.TrustDomainAliases...)
}

// Merge returns s updated by what o says: o's trust domain (with its aliases) and control plane
// namespace where o sets them, and the digests of both.
func (s MeshSettings) Merge(o MeshSettings) MeshSettings {
	out := s
	if o.TrustDomain != "" {
		out.TrustDomain, out.TrustDomainAliases = o.TrustDomain, o.TrustDomainAliases
	}
	if o.ControlPlaneNamespace != "" {
		out.ControlPlaneNamespace = o.ControlPlaneNamespace
	}
	if o.TrustAnchorDigestKey != "" {
		out.TrustAnchorDigestKey = o.TrustAnchorDigestKey
	}
	if o.RootNamespace != "" {
		out.RootNamespace = o.RootNamespace
	}
	if o.DefaultPolicy != "" {
		out.DefaultPolicy = o.DefaultPolicy
	}
	out.TrustAnchorDigests = nil
	for _, d := range append(slices.Clone(s.TrustAnchorDigests), o.TrustAnchorDigests...) {
		if !slices.Contains(out.TrustAnchorDigests, d) {
			out.TrustAnchorDigests = append(out.TrustAnchorDigests, d)
		}
	}
	slices.Sort(out.TrustAnchorDigests)
	return out
}
