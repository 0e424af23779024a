package pki

import (
	"cmp"
	"crypto/sha256"
	"slices"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// RotationAt finds the blast radius of every mesh's current anchors and signing CAs in an at now:
// the distinct certificates that verify only through each anchor, the trust-bundle copies that
// hold it, the served workload certificates each CA signed, and whether each mesh can sign at all.
func RotationAt(an model.Analysis, now time.Time) model.Rotation {
	w := newRotationWalk(an, now)
	type key struct {
		mesh model.Mesh
		fp   [sha256.Size]byte
	}
	dependents, signed := map[key]*distinct{}, map[key]*distinct{}
	// Copies are locations: each ConfigMap or proxy is one copy to update. [0] every object,
	// [1] those read from pods.
	bundles, copies := map[key]*[2]int{}, map[model.Mesh]*[2]int{}
	signers := map[key]*model.Certificate{}
	signing := map[key]bool{} // the anchors each mesh's signing CAs chain to, from their own findings
	w.findings(func(oa *model.ObjectAnalysis, f *model.CertificateFinding, paths [][]*model.Certificate) {
		mesh := oa.Object.Mesh
		if a := soleAnchor(f.Certificate, paths); a != nil {
			note(dependents, key{mesh, a.Fingerprint}, oa.Object, f.Certificate)
		}
		if cas := w.cas[mesh]; oa.Object.Authoritative && cas != nil &&
			slices.ContainsFunc(cas.Issuers, func(c *model.Certificate) bool { return c.Fingerprint == f.Certificate.Fingerprint }) {
			for _, p := range paths {
				if len(p) > 0 {
					signing[key{mesh, p[len(p)-1].Fingerprint}] = true
				}
			}
		}
		if issuer := w.signer(oa, f); issuer != nil {
			k := key{mesh, issuer.Fingerprint}
			note(signed, k, oa.Object, f.Certificate)
			signers[k] = issuer
		}
	})
	w.copies(func(oa *model.ObjectAnalysis, _ string, held []*model.Certificate) {
		count(copies, oa.Object.Mesh, oa.Object)
		for _, c := range held {
			count(bundles, key{oa.Object.Mesh, c.Fingerprint}, oa.Object)
		}
	})
	out := model.Rotation{Boundary: w.boundary}
	for _, m := range an.Meshes {
		selfSigning := len(m.Issuers) == 0 && m.AnchorsSign
		if selfSigning {
			for _, a := range m.Anchors {
				signing[key{m.Mesh, a.Fingerprint}] = validityAt(a, now)
			}
		}
		st := signingState(&m, now, func(a *model.Certificate) bool { return signing[key{m.Mesh, a.Fingerprint}] })
		if len(m.Anchors) > 0 {
			out.Signing = append(out.Signing, st)
		}
		// The newest anchor the mesh signs under: an anchor newer than it that signs nothing is
		// published ahead of a rotation's next step, not retired.
		var newestSigning time.Time
		for _, a := range m.Anchors {
			if signing[key{m.Mesh, a.Fingerprint}] && a.NotBefore().After(newestSigning) {
				newestSigning = a.NotBefore()
			}
		}
		for _, a := range m.Anchors {
			k := key{m.Mesh, a.Fingerprint}
			d, b := dependents[k].parts(), parts(bundles[k])
			out.Anchors = append(out.Anchors, model.AnchorRadius{Mesh: m.Mesh, Anchor: a, Dependents: d[0], PodDependents: d[1], Bundles: b[0], PodBundles: b[1],
				Signing: signing[k], Retired: st.CanSign && !signing[k] && !a.NotBefore().After(newestSigning)})
		}
		issuers := slices.Clone(m.Issuers)
		for k, c := range signers {
			if k.mesh == m.Mesh && !slices.ContainsFunc(issuers, func(i *model.Certificate) bool { return i.Fingerprint == k.fp }) {
				issuers = append(issuers, c)
			}
		}
		slices.SortFunc(issuers, byName)
		for _, c := range issuers {
			s := signed[key{m.Mesh, c.Fingerprint}].parts()
			out.Issuers = append(out.Issuers, model.IssuerRadius{Mesh: m.Mesh, Issuer: c, Dependents: s[0], PodDependents: s[1]})
		}
		c := parts(copies[m.Mesh])
		out.Bundles = append(out.Bundles, model.MeshBundles{Mesh: m.Mesh, Copies: c[0], PodCopies: c[1]})
	}
	return out
}

// signingState says whether the mesh of m can sign at now: chains reports whether one of its
// signing CAs verifies up to an anchor (for a mesh whose anchors sign, whether the anchor is valid).
func signingState(m *model.MeshCAs, now time.Time, chains func(anchor *model.Certificate) bool) model.MeshSigning {
	st := model.MeshSigning{Mesh: m.Mesh}
	if slices.ContainsFunc(m.Anchors, chains) {
		st.CanSign = true
		return st
	}
	cas := m.Issuers
	if len(cas) == 0 && m.AnchorsSign {
		cas = m.Anchors
	}
	switch {
	case len(cas) == 0:
		st.Reason = model.SigningNoCA
	case slices.ContainsFunc(cas, func(c *model.Certificate) bool { return validityAt(c, now) }):
		st.Reason = model.SigningUnanchored
	default:
		st.Reason = model.SigningExpired
	}
	st.CAs = slices.Clone(cas)
	return st
}

// distinct holds the fingerprints of the certificates counted under one key: those found in an
// object every replica reads alike, and those found only in objects read from pods.
type distinct struct {
	shared, pods map[[sha256.Size]byte]struct{}
}

// note counts c, found in o, under k.
func note[K comparable](m map[K]*distinct, k K, o *model.Object, c *model.Certificate) {
	d := m[k]
	if d == nil {
		d = &distinct{shared: map[[sha256.Size]byte]struct{}{}, pods: map[[sha256.Size]byte]struct{}{}}
		m[k] = d
	}
	if o.FromPods {
		d.pods[c.Fingerprint] = struct{}{}
	} else {
		d.shared[c.Fingerprint] = struct{}{}
	}
}

// parts is [every distinct certificate, those found only in pods]; zero for none.
func (d *distinct) parts() [2]int {
	if d == nil {
		return [2]int{}
	}
	pods := 0
	for fp := range d.pods {
		if _, ok := d.shared[fp]; !ok {
			pods++
		}
	}
	return [2]int{len(d.shared) + pods, pods}
}

// count counts o under k: in the first part always, in the second when o was read from a pod.
func count[K comparable](m map[K]*[2]int, k K, o *model.Object) {
	c := m[k]
	if c == nil {
		c = new([2]int)
		m[k] = c
	}
	c[0]++
	if o.FromPods {
		c[1]++
	}
}

// parts is a count's two parts; zero for none.
func parts(c *[2]int) [2]int {
	if c == nil {
		return [2]int{}
	}
	return *c
}

// WhatIf finds what would break at now if the CA certificates with the fingerprints in removed
// left mesh (every mesh when empty): the certificates that verify now and would not, and the
// trust-bundle copies that hold a current anchor now and would hold none. Which certificates a
// person means is resolved before (package pkiapi), so that an unknown one is never answered with
// "nothing breaks".
func WhatIf(an model.Analysis, now time.Time, mesh model.Mesh, removed map[[sha256.Size]byte]bool) model.WhatIf {
	w := newRotationWalk(an, now)
	inMesh := func(oa *model.ObjectAnalysis) bool { return mesh == "" || oa.Object.Mesh == mesh }
	out := model.WhatIf{Removed: len(removed)}
	w.findings(func(oa *model.ObjectAnalysis, f *model.CertificateFinding, paths [][]*model.Certificate) {
		if !inMesh(oa) || removed[f.Certificate.Fingerprint] {
			return // another mesh's, or a removed CA itself
		}
		for _, p := range paths {
			if !slices.ContainsFunc(p, func(c *model.Certificate) bool { return removed[c.Fingerprint] }) {
				return // a path survives
			}
		}
		out.Broken = append(out.Broken, model.CertificateRef{Object: oa.Object, Key: f.Key, Index: f.Index, Certificate: f.Certificate})
	})
	w.copies(func(oa *model.ObjectAnalysis, key string, held []*model.Certificate) {
		if !inMesh(oa) || len(held) == 0 {
			return
		}
		if !slices.ContainsFunc(held, func(c *model.Certificate) bool { return !removed[c.Fingerprint] }) {
			out.Unanchored = append(out.Unanchored, model.BundleRef{Object: oa.Object, Key: key})
		}
	})
	return out
}

// byName orders certificates by subject, then serial.
func byName(a, b *model.Certificate) int {
	return cmp.Or(cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Serial, b.Serial))
}

// rotationWalk evaluates the findings of an analysis at one instant, each chain once however many
// certificates share it, and notes the first validity change after that instant.
type rotationWalk struct {
	an       model.Analysis
	now      time.Time
	valid    map[*model.Chain][][]*model.Certificate // the paths whose CAs are valid at now
	cas      map[model.Mesh]*model.MeshCAs
	boundary time.Time
}

func newRotationWalk(an model.Analysis, now time.Time) *rotationWalk {
	w := &rotationWalk{an: an, now: now, valid: map[*model.Chain][][]*model.Certificate{}, cas: map[model.Mesh]*model.MeshCAs{}}
	for i := range an.Meshes {
		w.cas[an.Meshes[i].Mesh] = &an.Meshes[i]
	}
	return w
}

// findings calls fn for each certificate with a chain that verifies at now, with its paths that
// do, in the order of the analysis.
func (w *rotationWalk) findings(fn func(oa *model.ObjectAnalysis, f *model.CertificateFinding, paths [][]*model.Certificate)) {
	for _, oa := range w.an.Objects {
		for i := range oa.Certificates {
			f := &oa.Certificates[i]
			if f.Chain == nil {
				continue
			}
			w.note(f.Certificate)
			if validityAt(f.Certificate, w.now) {
				if paths := w.validPaths(f.Chain); len(paths) > 0 {
					fn(oa, f, paths)
				}
			}
		}
	}
}

// validPaths are the paths of ch whose certificates are all valid at now.
func (w *rotationWalk) validPaths(ch *model.Chain) [][]*model.Certificate {
	if paths, ok := w.valid[ch]; ok {
		return paths
	}
	var out [][]*model.Certificate
	for _, p := range ch.Paths {
		ok := true
		for _, c := range p {
			w.note(c)
			ok = ok && validityAt(c, w.now)
		}
		if ok {
			out = append(out, p)
		}
	}
	w.valid[ch] = out
	return out
}

// signer is the CA that signed f's certificate when it is a workload certificate its owner
// serves (a presented leaf), else nil.
func (w *rotationWalk) signer(oa *model.ObjectAnalysis, f *model.CertificateFinding) *model.Certificate {
	if f.Role != model.RoleLeaf || !presentedKey(oa.Object, f.Key) {
		return nil
	}
	for _, p := range f.Chain.Paths {
		if len(p) > 0 {
			return p[0]
		}
	}
	return nil
}

// presentedKey reports whether o's bundle key is a chain o presents.
func presentedKey(o *model.Object, key string) bool {
	for i := range o.Bundles {
		if o.Bundles[i].Key == key {
			return o.Bundles[i].Presented
		}
	}
	return false
}

// copies calls fn for each trust-bundle copy of a mesh with known anchors, with the mesh's
// current anchors it holds: a bundle's own certificates, or for a trust-root digest the anchors
// of the set the mesh published under that digest (none when the digest is unknown).
func (w *rotationWalk) copies(fn func(oa *model.ObjectAnalysis, key string, held []*model.Certificate)) {
	for _, oa := range w.an.Objects {
		cas := w.cas[oa.Object.Mesh]
		if cas == nil {
			continue
		}
		for _, tb := range oa.TrustBundles {
			if tb.Federated {
				continue
			}
			var held []*model.Certificate
			if b := bundleOf(oa.Object, tb.Key); b != nil {
				for _, a := range cas.Anchors {
					if slices.ContainsFunc(b.Certificates, func(c *model.Certificate) bool { return c.Fingerprint == a.Fingerprint }) {
						held = append(held, a)
					}
				}
			} else if i := slices.IndexFunc(cas.Digests, func(d model.DigestSet) bool { return d.Digest == oa.Object.TrustRootDigest }); i >= 0 {
				for _, a := range cas.Anchors {
					if slices.ContainsFunc(cas.Digests[i].Anchors, func(c *model.Certificate) bool { return c.Fingerprint == a.Fingerprint }) {
						held = append(held, a)
					}
				}
			}
			fn(oa, tb.Key, held)
		}
	}
}

// bundleOf is o's bundle under key, or nil.
func bundleOf(o *model.Object, key string) *model.Bundle {
	for i := range o.Bundles {
		if o.Bundles[i].Key == key {
			return &o.Bundles[i]
		}
	}
	return nil
}

// note moves the boundary to c's next validity change after now, when that is earlier.
func (w *rotationWalk) note(c *model.Certificate) {
	for _, t := range []time.Time{c.NotBefore(), c.NotAfter().Add(time.Second)} {
		if t.After(w.now) && (w.boundary.IsZero() || t.Before(w.boundary)) {
			w.boundary = t
		}
	}
}

// validityAt reports whether c is within its validity window at now.
func validityAt(c *model.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore()) && !now.After(c.NotAfter())
}

// soleAnchor is the one anchor every path above c ends at (c itself for the empty path of a
// certificate that is a current anchor), or nil when the paths end at several.
func soleAnchor(c *model.Certificate, paths [][]*model.Certificate) *model.Certificate {
	var sole *model.Certificate
	for _, p := range paths {
		a := c
		if len(p) > 0 {
			a = p[len(p)-1]
		}
		switch {
		case sole == nil:
			sole = a
		case sole.Fingerprint != a.Fingerprint:
			return nil
		}
	}
	return sole
}
