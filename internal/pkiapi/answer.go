// Package pkiapi serves the mesh PKI the exporter holds as a graph a person or a program can ask:
// GET /api/v1/pki (anchors, the issuers under them, the workload certificates, the trust-bundle
// copies), GET /api/v1/what-if (what removing an anchor or issuer would break), and the /pki page
// that shows the same for a person during a rotation. It reads the inventory's snapshots and
// never their key material, which the model does not hold.
package pkiapi

import (
	"cmp"
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
	// Meshes is the tree of each mesh: its current anchors, the CAs that sign under each, and how
	// many served workload certificates each signed, by namespace. Of the filters only mesh
	// applies to it.
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
	// TrustBundles is the number of the mesh's trust-bundle copies.
	TrustBundles int      `json:"trust_bundles"`
	Anchors      []Anchor `json:"anchors"`
}

// CA names a CA certificate as meshcert_certificate_info does, with its validity.
type CA struct {
	Subject   string    `json:"subject"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Anchor is a current trust anchor and what depends on it.
type Anchor struct {
	CA
	// Dependents are the certificates that verify through this anchor only.
	Dependents int `json:"dependents"`
	// Bundles are the trust-bundle copies that hold it.
	Bundles int `json:"bundles"`
	// Signing is false once none of the mesh's signing CAs chains to it: it is retired, and
	// waits for its dependents to leave.
	Signing bool     `json:"signing"`
	Issuers []Issuer `json:"issuers"`
}

// Issuer is a CA that signs under an anchor.
type Issuer struct {
	CA
	// Dependents are the served workload certificates it signed.
	Dependents int `json:"dependents"`
	// Workloads counts those certificates by namespace.
	Workloads []NamespaceCount `json:"workloads"`
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
	Index     int       `json:"index"`
	Mesh      string    `json:"mesh"`
	Role      string    `json:"role"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	SPIFFEID  string    `json:"spiffe_id"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Chain is absent for trust anchors and for certificates whose chain is not built.
	Chain *Chain `json:"chain,omitempty"`
	// Identity is absent where no mesh identity is expected.
	Identity *Check `json:"identity,omitempty"`
	// Problems are the reasons of every failed check (chain, identity, mesh requirement).
	Problems []string `json:"problems"`
}

// Chain is a certificate's chain evaluated now.
type Chain struct {
	Valid  bool   `json:"valid"`
	Depth  int    `json:"depth"`
	Reason string `json:"reason"`
	// AnchorSerial and IssuerSerial name the anchor the chosen path ends at and the CA that
	// signed the certificate; empty when unknown.
	AnchorSerial string `json:"anchor_serial"`
	IssuerSerial string `json:"issuer_serial"`
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
	// Removed counts the CA certificates the question named.
	Removed int `json:"removed"`
	// Broken are the certificates that verify now and would not.
	Broken []Certificate `json:"broken"`
	// Unanchored are the trust-bundle copies that hold a current anchor now and would hold none.
	Unanchored []Location `json:"unanchored"`
}

// Filter selects certificates and trust bundles; empty fields select all.
type Filter struct {
	Mesh, Namespace, Role string
	// Issuer selects certificates signed by the CA with this serial.
	Issuer string
	// ExpiringBefore selects certificates that expire before it.
	ExpiringBefore time.Time
	// Problem selects certificates with a failed check and copies that are not current.
	Problem bool
	// Offset and Limit page the certificates and bundles.
	Offset, Limit int
}

// Build answers GET /api/v1/pki for snap at now.
func Build(snap *model.Snapshot, now time.Time, f Filter) PKI {
	out := PKI{APIVersion: APIVersion, GeneratedAt: now.UTC(), Meshes: []Mesh{}, Certificates: []Certificate{}, TrustBundles: []TrustBundle{}}
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
			if f.Role != "" && c.Role != f.Role || f.Issuer != "" && (c.Chain == nil || c.Chain.IssuerSerial != f.Issuer) ||
				!f.ExpiringBefore.IsZero() && !c.NotAfter.Before(f.ExpiringBefore) || f.Problem && len(c.Problems) == 0 {
				continue
			}
			certs = append(certs, c)
		}
	}
	var bundles []TrustBundle
	if f.Role == "" && f.Issuer == "" && f.ExpiringBefore.IsZero() {
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

// BuildWhatIf answers GET /api/v1/what-if for snap at now.
func BuildWhatIf(snap *model.Snapshot, now time.Time, mesh, removeAnchor, removeIssuer string) WhatIf {
	w := pki.WhatIf(snap.Analysis, now, model.Mesh(mesh), removeAnchor, removeIssuer)
	out := WhatIf{APIVersion: APIVersion, GeneratedAt: now.UTC(), Removed: w.Removed, Broken: []Certificate{}, Unanchored: []Location{}}
	for _, b := range w.Broken {
		for _, oa := range snap.Objects {
			if oa.Object != b.Object {
				continue
			}
			for i := range oa.Certificates {
				if f := &oa.Certificates[i]; f.Key == b.Key && f.Index == b.Index {
					out.Broken = append(out.Broken, certificate(oa.Object, f, now))
				}
			}
		}
	}
	for _, u := range w.Unanchored {
		out.Unanchored = append(out.Unanchored, Location{Source: u.Object.Source, Namespace: u.Object.Namespace, Name: u.Object.Name, Key: u.Key})
	}
	return out
}

// caOf describes a CA certificate.
func caOf(c *model.Certificate) CA {
	return CA{Subject: c.Subject, Serial: c.Serial, NotBefore: c.NotBefore(), NotAfter: c.NotAfter()}
}

// certificate describes one finding of o at now.
func certificate(o *model.Object, f *model.CertificateFinding, now time.Time) Certificate {
	c := f.Certificate
	out := Certificate{Location: Location{Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: f.Key}, Index: f.Index,
		Mesh: string(o.Mesh), Role: string(f.Role), Subject: c.Subject, Issuer: c.Issuer, Serial: c.Serial,
		SPIFFEID: strings.Join(c.SPIFFEIDs, ","), NotBefore: c.NotBefore(), NotAfter: c.NotAfter(), Problems: []string{}}
	if f.Chain != nil {
		st := f.Chain.Evaluate(c, now)
		ch := &Chain{Valid: st.Valid, Depth: st.Depth, Reason: string(st.Reason)}
		if st.Anchor != nil {
			ch.AnchorSerial = st.Anchor.Serial
		}
		if issuer := signer(f.Chain); issuer != nil {
			ch.IssuerSerial = issuer.Serial
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
	var out []Mesh
	for _, b := range rot.Bundles {
		m := Mesh{Mesh: string(b.Mesh), TrustBundles: b.Copies, Anchors: []Anchor{}}
		for _, a := range rot.Anchors {
			if a.Mesh != b.Mesh {
				continue
			}
			anchor := Anchor{CA: caOf(a.Anchor), Dependents: a.Dependents, Bundles: a.Bundles, Signing: a.Signing, Issuers: []Issuer{}}
			for _, is := range rot.Issuers {
				k := caKey{is.Mesh, is.Issuer.Fingerprint}
				if is.Mesh != b.Mesh || !under[k][a.Anchor.Fingerprint] && is.Issuer.Fingerprint != a.Anchor.Fingerprint {
					continue
				}
				issuer := Issuer{CA: caOf(is.Issuer), Dependents: is.Dependents, Workloads: []NamespaceCount{}}
				for _, ns := range sortedKeys(workloads[k]) {
					issuer.Workloads = append(issuer.Workloads, NamespaceCount{Namespace: ns, Count: workloads[k][ns]})
				}
				anchor.Issuers = append(anchor.Issuers, issuer)
			}
			m.Anchors = append(m.Anchors, anchor)
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
