// Package pkiapi serves the mesh PKI the exporter holds as a graph a person or a program can ask:
// GET /api/v1/pki (anchors, the issuers under them, the workload certificates, the trust-bundle
// copies), GET /api/v1/what-if (what removing an anchor or issuer would break), and the /pki page
// that shows the same for a person during a rotation. It reads the inventory's snapshots and
// never their key material, which the model does not hold.
package pkiapi

import (
	"cmp"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// APIVersion is the version of the answers' shape; a change that is not an addition makes a new
// version under a new path.
const APIVersion = "v1"

// PKI is the answer of GET /api/v1/pki.
type PKI struct {
	APIVersion  string    `json:"api_version"`
	GeneratedAt time.Time `json:"generated_at"`
	// Status says how fresh the answer is; when it is not complete, the answer may miss what the
	// sources that are down would show.
	Status Status `json:"status"`
	// Meshes is the tree of each mesh: whether it can sign, its current anchors, the CAs that
	// sign under each, the CAs that verify up to no current anchor, and how many served workload
	// certificates each signed, by namespace. Of the filters only mesh applies to it.
	Meshes []Mesh `json:"meshes"`
	// Certificates are the certificates that pass the filters, ordered by location, at most
	// limit of them from offset.
	Certificates []Certificate `json:"certificates"`
	// TrustBundles are the trust-bundle copies that pass the filters.
	TrustBundles []TrustBundle `json:"trust_bundles"`
	// Total counts what passed the filters before limit and offset.
	Total Total `json:"total"`
}

// Total counts the certificates and trust bundles that passed the filters.
type Total struct {
	Certificates int `json:"certificates"`
	TrustBundles int `json:"trust_bundles"`
}

// Mesh is one mesh's CA tree.
type Mesh struct {
	Mesh string `json:"mesh"`
	// TrustBundleCopies is the number of the mesh's trust-bundle copies (each location once).
	TrustBundleCopies int `json:"trust_bundle_copies"`
	// Signing says whether the mesh can sign workload certificates now.
	Signing Signing  `json:"signing"`
	Anchors []Anchor `json:"anchors"`
	// UnanchoredIssuers are the mesh's CAs that verify up to no current, valid anchor: an
	// intermediate whose root was removed or expired. They sign nothing a peer accepts.
	UnanchoredIssuers []UnanchoredIssuer `json:"unanchored_issuers"`
}

// Signing says whether a mesh can sign: one of its signing CAs is valid and verifies up to a
// current anchor. When it cannot, no anchor of the mesh is retired: the mesh is broken.
type Signing struct {
	CanSign bool `json:"can_sign"`
	// Reason is why it cannot: no_signing_ca, signing_ca_expired or signing_ca_unanchored.
	Reason string `json:"reason"`
	// CAs are the signing CAs that fail.
	CAs []CA `json:"cas"`
}

// CA names a CA certificate as meshcert_certificate_info does, with its validity.
type CA struct {
	Subject     string    `json:"subject"`
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"fingerprint"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	// Expired is true once NotAfter has passed.
	Expired bool `json:"expired"`
}

// Anchor is a current trust anchor and what depends on it.
type Anchor struct {
	CA
	// Dependents are the distinct certificates that verify through this anchor only.
	Dependents int `json:"dependents"`
	// Bundles are the trust-bundle copies that hold it.
	Bundles int `json:"bundles"`
	// Signing is true while one of the mesh's valid signing CAs verifies up to it.
	Signing bool `json:"signing"`
	// Retired is true when the mesh signs under another of its anchors, not older than this one,
	// and not under this one: it waits for its dependents to leave. Never true in a mesh that
	// cannot sign, nor for an anchor newer than every anchor the mesh signs under (published
	// ahead of a rotation's next step: signing and retired both false).
	Retired bool     `json:"retired"`
	Issuers []Issuer `json:"issuers"`
}

// Issuer is a CA that signs under an anchor.
type Issuer struct {
	CA
	// Dependents are the distinct served workload certificates it signed.
	Dependents int `json:"dependents"`
	// Workloads counts those certificates by namespace.
	Workloads []NamespaceCount `json:"workloads"`
}

// UnanchoredIssuer is a CA of the mesh whose chain ends at no current, valid anchor.
type UnanchoredIssuer struct {
	Issuer
	// Reason is why its chain does not verify now (unknown_authority: its root is not a current
	// anchor; expired: it or its root expired).
	Reason string `json:"reason"`
	// IssuedBy is the subject of the CA that signed it.
	IssuedBy string `json:"issued_by"`
}

// NamespaceCount is a count in one namespace.
type NamespaceCount struct {
	Namespace string `json:"namespace"`
	Count     int    `json:"count"`
}

// Location is where a certificate or bundle was found, as in the metrics' labels.
type Location struct {
	Source    string `json:"source"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

// Certificate is one certificate at its location with what the analysis found.
type Certificate struct {
	Location
	Index       int       `json:"index"`
	Mesh        string    `json:"mesh"`
	Role        string    `json:"role"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"fingerprint"`
	SPIFFEID    string    `json:"spiffe_id"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	// Expired is true once NotAfter has passed.
	Expired bool `json:"expired"`
	// Chain is absent for trust anchors and for certificates whose chain is not built.
	Chain *Chain `json:"chain,omitempty"`
	// Identity is absent where no mesh identity is expected.
	Identity *Check `json:"identity,omitempty"`
	// Problems are the reasons of every failed check (chain, identity, mesh requirement).
	Problems []string `json:"problems"`
	// AlsoAt are the other locations of the same certificate, where an answer lists each
	// certificate once (the what-if's broken list).
	AlsoAt []Location `json:"also_at,omitempty"`
}

// Chain is a certificate's chain evaluated now.
type Chain struct {
	Valid  bool   `json:"valid"`
	Depth  int    `json:"depth"`
	Reason string `json:"reason"`
	// AnchorSerial and IssuerSerial name the anchor the chosen path ends at and the CA that
	// signed the certificate; empty when unknown. The fingerprints name them without doubt.
	AnchorSerial      string `json:"anchor_serial"`
	IssuerSerial      string `json:"issuer_serial"`
	AnchorFingerprint string `json:"anchor_fingerprint"`
	IssuerFingerprint string `json:"issuer_fingerprint"`
}

// Check is the outcome of one check.
type Check struct {
	Valid  bool   `json:"valid"`
	Reason string `json:"reason"`
}

// TrustBundle is one copy of a mesh's trust anchors.
type TrustBundle struct {
	Location
	Mesh    string `json:"mesh"`
	Current bool   `json:"current"`
	// Anchors are the serials of the mesh's current anchors the copy holds.
	Anchors []string `json:"anchors"`
}

// WhatIf is the answer of GET /api/v1/what-if.
type WhatIf struct {
	APIVersion  string    `json:"api_version"`
	GeneratedAt time.Time `json:"generated_at"`
	// Status says how fresh the answer is: "nothing breaks" is said only of what the sources
	// read; when it is not complete, what a source that is down holds is not counted.
	Status Status `json:"status"`
	// Matched is the CA certificate the question named, and where the exporter found it.
	Matched []Matched `json:"matched"`
	// Removed counts the CA certificates the question named.
	Removed int `json:"removed"`
	// Broken are the distinct certificates that verify now and would not, each at its first
	// location, with its other copies in also_at.
	Broken []Certificate `json:"broken"`
	// Unanchored are the trust-bundle copies that hold a current anchor now and would hold none.
	Unanchored []Location `json:"unanchored"`
}

// Filter selects certificates and trust bundles; empty fields select all.
type Filter struct {
	Mesh, Namespace, Role string
	// Issuer selects certificates signed by the CA with this fingerprint, when IssuerSet.
	Issuer    [32]byte
	IssuerSet bool
	// IssuerName is how the request named the issuer, for a title.
	IssuerName string
	// ExpiringBefore selects certificates that expire before it.
	ExpiringBefore time.Time
	// Problem selects certificates with a failed check and copies that are not current.
	Problem bool
	// Offset and Limit page the certificates and bundles.
	Offset, Limit int
}

// Build answers GET /api/v1/pki for snap at now.
func Build(snap *model.Snapshot, now time.Time, f Filter) PKI {
	out := PKI{APIVersion: APIVersion, GeneratedAt: now.UTC(), Status: statusOf(snap, now), Meshes: []Mesh{}, Certificates: []Certificate{}, TrustBundles: []TrustBundle{}}
	for _, m := range tree(snap, now) {
		if f.Mesh == "" || m.Mesh == f.Mesh {
			out.Meshes = append(out.Meshes, m)
		}
	}
	var certs []Certificate
	for _, oa := range snap.Objects {
		if f.Mesh != "" && string(oa.Object.Mesh) != f.Mesh || f.Namespace != "" && oa.Object.Namespace != f.Namespace {
			continue
		}
		for i := range oa.Certificates {
			c := certificate(oa.Object, &oa.Certificates[i], now)
			if f.Role != "" && c.Role != f.Role || f.IssuerSet && (c.Chain == nil || c.Chain.IssuerFingerprint != hex.EncodeToString(f.Issuer[:])) ||
				!f.ExpiringBefore.IsZero() && !c.NotAfter.Before(f.ExpiringBefore) || f.Problem && len(c.Problems) == 0 {
				continue
			}
			certs = append(certs, c)
		}
	}
	var bundles []TrustBundle
	if f.Role == "" && !f.IssuerSet && f.ExpiringBefore.IsZero() {
		for _, b := range trustBundles(snap) {
			if f.Mesh != "" && b.Mesh != f.Mesh || f.Namespace != "" && b.Namespace != f.Namespace || f.Problem && b.Current {
				continue
			}
			bundles = append(bundles, b)
		}
	}
	out.Total = Total{Certificates: len(certs), TrustBundles: len(bundles)}
	out.Certificates = append(out.Certificates, page(certs, f.Offset, f.Limit)...)
	out.TrustBundles = append(out.TrustBundles, page(bundles, f.Offset, f.Limit)...)
	return out
}

// page is the part of s from offset, at most limit long (0: no limit).
func page[T any](s []T, offset, limit int) []T {
	s = s[min(offset, len(s)):]
	if limit > 0 && len(s) > limit {
		s = s[:limit]
	}
	return s
}

// BuildWhatIf answers GET /api/v1/what-if for snap at now: what breaks if the CA k left mesh.
func BuildWhatIf(snap *model.Snapshot, now time.Time, mesh string, k *knownCA) WhatIf {
	w := pki.WhatIf(snap.Analysis, now, model.Mesh(mesh), map[[32]byte]bool{k.cert.Fingerprint: true})
	out := WhatIf{APIVersion: APIVersion, GeneratedAt: now.UTC(), Status: statusOf(snap, now), Matched: []Matched{k.matched(now)},
		Removed: w.Removed, Broken: []Certificate{}, Unanchored: []Location{}}
	// The broken certificates' findings, in one pass over the objects (the order of w.Broken).
	broken := map[*model.Object][]model.CertificateRef{}
	for _, b := range w.Broken {
		broken[b.Object] = append(broken[b.Object], b)
	}
	first := map[[32]byte]int{} // a broken certificate's index in out.Broken
	for _, oa := range snap.Objects {
		for _, b := range broken[oa.Object] {
			if i, ok := first[b.Certificate.Fingerprint]; ok {
				out.Broken[i].AlsoAt = append(out.Broken[i].AlsoAt, Location{Source: b.Object.Source, Namespace: b.Object.Namespace, Name: b.Object.Name, Key: b.Key})
				continue
			}
			for i := range oa.Certificates {
				if f := &oa.Certificates[i]; f.Key == b.Key && f.Index == b.Index {
					first[b.Certificate.Fingerprint] = len(out.Broken)
					out.Broken = append(out.Broken, certificate(oa.Object, f, now))
					break
				}
			}
		}
	}
	for _, u := range w.Unanchored {
		out.Unanchored = append(out.Unanchored, Location{Source: u.Object.Source, Namespace: u.Object.Namespace, Name: u.Object.Name, Key: u.Key})
	}
	return out
}

// caAt describes a CA certificate at now.
func caAt(c *model.Certificate, now time.Time) CA {
	return CA{Subject: c.Subject, Serial: c.Serial, Fingerprint: fingerprint(c), NotBefore: c.NotBefore(), NotAfter: c.NotAfter(), Expired: now.After(c.NotAfter())}
}

// certificate describes one finding of o at now.
func certificate(o *model.Object, f *model.CertificateFinding, now time.Time) Certificate {
	c := f.Certificate
	out := Certificate{Location: Location{Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: f.Key}, Index: f.Index,
		Mesh: string(o.Mesh), Role: string(f.Role), Subject: c.Subject, Issuer: c.Issuer, Serial: c.Serial, Fingerprint: fingerprint(c),
		SPIFFEID: strings.Join(c.SPIFFEIDs, ","), NotBefore: c.NotBefore(), NotAfter: c.NotAfter(), Expired: now.After(c.NotAfter()), Problems: []string{}}
	if f.Chain != nil {
		st := f.Chain.Evaluate(c, now)
		ch := &Chain{Valid: st.Valid, Depth: st.Depth, Reason: string(st.Reason)}
		if st.Anchor != nil {
			ch.AnchorSerial, ch.AnchorFingerprint = st.Anchor.Serial, fingerprint(st.Anchor)
		}
		if issuer := signer(f.Chain); issuer != nil {
			ch.IssuerSerial, ch.IssuerFingerprint = issuer.Serial, fingerprint(issuer)
		}
		out.Chain = ch
		if !st.Valid {
			out.Problems = append(out.Problems, string(st.Reason))
		}
	}
	if f.Identity != nil {
		out.Identity = &Check{Valid: f.Identity.Valid, Reason: string(f.Identity.Reason)}
		if !f.Identity.Valid {
			out.Problems = append(out.Problems, string(f.Identity.Reason))
		}
	}
	if f.Requirement != nil && !f.Requirement.Met {
		out.Problems = append(out.Problems, string(f.Requirement.Reason))
	}
	return out
}

// signer is the CA a chain starts at: the first of its first path, else of its partial path.
func signer(ch *model.Chain) *model.Certificate {
	for _, p := range ch.Paths {
		if len(p) > 0 {
			return p[0]
		}
	}
	if len(ch.Partial) > 0 {
		return ch.Partial[0]
	}
	return nil
}

// trustBundles are the trust-bundle copies of every mesh with the current anchors each holds.
func trustBundles(snap *model.Snapshot) []TrustBundle {
	var out []TrustBundle
	anchors := map[model.Mesh][]*model.Certificate{}
	digests := map[model.Mesh][]model.DigestSet{}
	for _, m := range snap.Meshes {
		anchors[m.Mesh], digests[m.Mesh] = m.Anchors, m.Digests
	}
	for _, oa := range snap.Objects {
		o := oa.Object
		for _, tb := range oa.TrustBundles {
			if tb.Federated {
				continue
			}
			held := []string{}
			var in []*model.Certificate
			if i := slices.IndexFunc(o.Bundles, func(b model.Bundle) bool { return b.Key == tb.Key }); i >= 0 {
				in = o.Bundles[i].Certificates
			} else if j := slices.IndexFunc(digests[o.Mesh], func(d model.DigestSet) bool { return d.Digest == o.TrustRootDigest }); j >= 0 {
				in = digests[o.Mesh][j].Anchors
			}
			for _, a := range anchors[o.Mesh] {
				if slices.ContainsFunc(in, func(c *model.Certificate) bool { return c.Fingerprint == a.Fingerprint }) {
					held = append(held, a.Serial)
				}
			}
			out = append(out, TrustBundle{Location: Location{Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: tb.Key},
				Mesh: string(o.Mesh), Current: tb.Current, Anchors: held})
		}
	}
	return out
}

// tree builds each mesh's anchors, the CAs that sign under each and their served workload
// certificates by namespace.
func tree(snap *model.Snapshot, now time.Time) []Mesh {
	rot := snap.Rotation
	if rot.Anchors == nil && rot.Issuers == nil {
		rot = pki.RotationAt(snap.Analysis, now)
	}
	// Which anchors each signing CA's paths end at, and its served leaves by namespace.
	type caKey struct {
		mesh model.Mesh
		fp   [32]byte
	}
	under := map[caKey]map[[32]byte]bool{}
	workloads := map[caKey]map[string]int{}
	for _, oa := range snap.Objects {
		for i := range oa.Certificates {
			f := &oa.Certificates[i]
			if f.Chain == nil {
				continue
			}
			for pi, p := range f.Chain.Paths {
				if f.Certificate.IsCA() && len(p) > 0 { // a CA found on its own: it signs under its anchors too
					k := caKey{oa.Object.Mesh, f.Certificate.Fingerprint}
					if under[k] == nil {
						under[k] = map[[32]byte]bool{}
					}
					under[k][p[len(p)-1].Fingerprint] = true
				}
				for j, c := range p {
					k := caKey{oa.Object.Mesh, c.Fingerprint}
					if under[k] == nil {
						under[k] = map[[32]byte]bool{}
					}
					under[k][p[len(p)-1].Fingerprint] = true
					if pi == 0 && j == 0 && f.Role == model.RoleLeaf && presented(oa.Object, f.Key) {
						if workloads[k] == nil {
							workloads[k] = map[string]int{}
						}
						workloads[k][oa.Object.Namespace]++
					}
				}
			}
		}
	}
	// The chain of each CA certificate the objects hold, to say why one is unanchored.
	chains := map[[32]byte]Certificate{}
	for _, oa := range snap.Objects {
		for i := range oa.Certificates {
			f := &oa.Certificates[i]
			if _, ok := chains[f.Certificate.Fingerprint]; !ok && f.Chain != nil && f.Certificate.IsCA() {
				chains[f.Certificate.Fingerprint] = certificate(oa.Object, f, now)
			}
		}
	}
	issuerOf := func(is model.IssuerRadius) Issuer {
		k := caKey{is.Mesh, is.Issuer.Fingerprint}
		issuer := Issuer{CA: caAt(is.Issuer, now), Dependents: is.Dependents, Workloads: []NamespaceCount{}}
		for _, ns := range sortedKeys(workloads[k]) {
			issuer.Workloads = append(issuer.Workloads, NamespaceCount{Namespace: ns, Count: workloads[k][ns]})
		}
		return issuer
	}
	var out []Mesh
	for _, b := range rot.Bundles {
		m := Mesh{Mesh: string(b.Mesh), TrustBundleCopies: b.Copies, Signing: Signing{CanSign: true, CAs: []CA{}}, Anchors: []Anchor{}, UnanchoredIssuers: []UnanchoredIssuer{}}
		for _, st := range rot.Signing {
			if st.Mesh == b.Mesh && !st.CanSign {
				m.Signing = Signing{Reason: string(st.Reason), CAs: []CA{}}
				for _, c := range st.CAs {
					m.Signing.CAs = append(m.Signing.CAs, caAt(c, now))
				}
			}
		}
		placed := map[[32]byte]bool{}
		for _, a := range rot.Anchors {
			if a.Mesh != b.Mesh {
				continue
			}
			placed[a.Anchor.Fingerprint] = true
			anchor := Anchor{CA: caAt(a.Anchor, now), Dependents: a.Dependents, Bundles: a.Bundles, Signing: a.Signing, Retired: a.Retired, Issuers: []Issuer{}}
			for _, is := range rot.Issuers {
				k := caKey{is.Mesh, is.Issuer.Fingerprint}
				if is.Mesh != b.Mesh || !under[k][a.Anchor.Fingerprint] && is.Issuer.Fingerprint != a.Anchor.Fingerprint {
					continue
				}
				placed[is.Issuer.Fingerprint] = true
				anchor.Issuers = append(anchor.Issuers, issuerOf(is))
			}
			m.Anchors = append(m.Anchors, anchor)
		}
		for _, is := range rot.Issuers {
			if is.Mesh != b.Mesh || placed[is.Issuer.Fingerprint] {
				continue
			}
			u := UnanchoredIssuer{Issuer: issuerOf(is), Reason: string(model.ReasonUnknownAuthority), IssuedBy: is.Issuer.Issuer}
			if c, ok := chains[is.Issuer.Fingerprint]; ok && c.Chain != nil && c.Chain.Reason != "" {
				u.Reason = c.Chain.Reason
			}
			m.UnanchoredIssuers = append(m.UnanchoredIssuers, u)
		}
		out = append(out, m)
	}
	return out
}

// presented reports whether o's bundle key is a chain o presents.
func presented(o *model.Object, key string) bool {
	i := slices.IndexFunc(o.Bundles, func(b model.Bundle) bool { return b.Key == key })
	return i >= 0 && o.Bundles[i].Presented
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, cmp.Compare)
	return out
}
