package pki

import (
	"slices"
	"sync"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Analyzer turns the objects of every source into observations: it classifies each certificate,
// builds its chain up to the trust anchors of its mesh and checks its identity. It keeps a cache of
// signature checks between runs, so analysing an unchanged mesh again costs map look-ups.
// An Analyzer is safe for concurrent use.
type Analyzer struct {
	mu   sync.Mutex
	sigs signatureCache
}

// NewAnalyzer returns an Analyzer with an empty cache.
func NewAnalyzer() *Analyzer {
	return &Analyzer{sigs: signatureCache{current: map[sigKey]bool{}}}
}

type objectKey struct{ source, namespace, name string }

// Analyze analyses objects together. Trust anchors are the self-signed CAs in the trust bundles of
// each mesh's authoritative objects (the mesh's current root set) and in each object's own trust
// bundles; a generic object without a trust bundle trusts the self-signed CAs it holds. Copies of
// trust bundles are never trusted: they are compared with the current root set. Candidate issuers
// on the way are the other certificates of the object itself and of its mesh's authoritative
// objects. An object that repeats the source, namespace and name of an earlier one is ignored, so
// every Location in the result is unique.
func (a *Analyzer) Analyze(objects []*model.Object, meshes map[model.Mesh]model.MeshSettings) model.Analysis {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sigs.rotate()

	objects = unique(objects)
	meshAnchors, meshIntermediates := map[model.Mesh]*pool{}, map[model.Mesh]*pool{}
	for _, o := range objects {
		if !o.Authoritative || o.Mesh == model.MeshNone {
			continue
		}
		anchors, intermediates := objectPools(o)
		merge(meshAnchors, o.Mesh, anchors)
		merge(meshIntermediates, o.Mesh, intermediates)
	}

	var out model.Analysis
	for _, o := range objects {
		anchors, intermediates := objectPools(o)
		allAnchors, allIntermediates := pools{anchors}, pools{intermediates}
		if p := meshAnchors[o.Mesh]; p != nil {
			allAnchors = append(allAnchors, p)
		}
		if p := meshIntermediates[o.Mesh]; p != nil {
			allIntermediates = append(allIntermediates, p)
		}
		keys := make(map[string]bool, len(o.Bundles))
		for _, b := range o.Bundles {
			if keys[b.Key] {
				continue // a source repeated a key: keep the first, labels stay unique
			}
			keys[b.Key] = true
			if b.Error != model.ReasonNone {
				out.BundleErrors = append(out.BundleErrors, model.BundleError{Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: b.Key, Reason: b.Error})
			}
			if current := meshAnchors[o.Mesh]; b.Purpose == model.PurposeTrustBundleCopy && current != nil && len(current.seen) > 0 && !anyPartial(b.Certificates) {
				out.TrustBundles = append(out.TrustBundles, model.TrustBundleStatus{Mesh: o.Mesh, Source: o.Source,
					Namespace: o.Namespace, Name: o.Name, Key: b.Key, Current: sameSet(b.Certificates, current)})
			}
			for i, c := range b.Certificates {
				if b.Export == model.ExportNone || b.Export == model.ExportFirst && i > 0 {
					break
				}
				obs := model.CertificateObservation{
					Location:    model.Location{Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: b.Key, Index: i},
					Mesh:        o.Mesh,
					Role:        Classify(c, b.RoleHint),
					Certificate: c,
				}
				if obs.Role != model.RoleTrustAnchor && !c.Partial && !b.NoChain {
					obs.Chain = buildChain(c, allAnchors, allIntermediates, &a.sigs)
				}
				if obs.Role == model.RoleLeaf && o.Mesh != model.MeshNone && !b.NoIdentity {
					expect := o.Expect
					if b.Expect != nil {
						expect = b.Expect
					}
					id := CheckIdentity(c, o.Mesh, meshes[o.Mesh], expect)
					obs.Identity = &id
				}
				out.Certificates = append(out.Certificates, obs)
			}
		}
		if digests := meshes[o.Mesh].TrustAnchorDigests; o.TrustRootDigest != "" && len(digests) > 0 {
			out.TrustBundles = append(out.TrustBundles, model.TrustBundleStatus{Mesh: o.Mesh, Source: o.Source,
				Namespace: o.Namespace, Name: o.Name, Key: TrustRootDigestKey, Current: slices.Contains(digests, o.TrustRootDigest)})
		}
		if len(o.KeyPairs) > 0 {
			out.RootKeys = append(out.RootKeys, model.RootKeyStatus{Mesh: o.Mesh, Source: o.Source,
				Namespace: o.Namespace, Name: o.Name, Stored: holdsRootKey(o)})
		}
	}
	return out
}

// TrustRootDigestKey is the key label of the trust-root digest comparison: the annotation it reads.
const TrustRootDigestKey = "linkerd.io/trust-root-sha256"

func anyPartial(certs []*model.Certificate) bool {
	return slices.ContainsFunc(certs, func(c *model.Certificate) bool { return c.Partial })
}

// sameSet reports whether certs are exactly the anchors of p, in any order.
func sameSet(certs []*model.Certificate, p *pool) bool {
	seen := make(map[[32]byte]bool, len(certs))
	for _, c := range certs {
		if !p.contains(c) {
			return false
		}
		seen[c.Fingerprint] = true
	}
	return len(seen) == len(p.seen)
}

// holdsRootKey reports whether one of o's private keys belongs to a self-signed CA: the root key
// of a PKI, which must not live in the cluster. The key is never looked at: a key stored next to a
// certificate is that certificate's key in every layout the exporter reads.
func holdsRootKey(o *model.Object) bool {
	for _, kp := range o.KeyPairs {
		for _, b := range o.Bundles {
			if b.Key == kp.Certificate && len(b.Certificates) > 0 && Classify(b.Certificates[0], "") == model.RoleTrustAnchor {
				return true
			}
		}
	}
	return false
}

// objectPools returns the trust anchors and intermediates an object holds.
func objectPools(o *model.Object) (anchors, intermediates *pool) {
	anchors, intermediates = newPool(), newPool()
	// A generic object without a trust bundle (a PEM bundle holding leaf, intermediates and
	// root) trusts its own root; a mesh object trusts only its mesh's anchors and its own bundle.
	trustOwnRoots := o.Mesh == model.MeshNone
	for _, b := range o.Bundles {
		trustOwnRoots = trustOwnRoots && b.Purpose != model.PurposeTrustBundle
	}
	for _, b := range o.Bundles {
		for _, c := range b.Certificates {
			switch {
			case c.Partial:
				// Facts from a summary cannot sign or verify anything.
			case !c.IsCA() || !c.SelfSigned:
				// Non-CA certificates are candidates too, so that a certificate signed by a
				// leaf is reported as not_ca rather than as an unknown authority.
				intermediates.add(c)
			case b.Purpose == model.PurposeTrustBundle:
				anchors.add(c)
			case b.Purpose == model.PurposeCertificates && trustOwnRoots:
				anchors.add(c)
			}
		}
	}
	return anchors, intermediates
}

func merge(into map[model.Mesh]*pool, mesh model.Mesh, from *pool) {
	p := into[mesh]
	if p == nil {
		p = newPool()
		into[mesh] = p
	}
	for _, certs := range from.bySubject {
		for _, c := range certs {
			p.add(c)
		}
	}
}

func unique(objects []*model.Object) []*model.Object {
	seen := make(map[objectKey]bool, len(objects))
	out := objects[:0:0]
	for _, o := range objects {
		k := objectKey{o.Source, o.Namespace, o.Name}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, o)
	}
	return out
}
