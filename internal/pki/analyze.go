package pki

import (
	"maps"
	"slices"
	"sync"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/share"
)

// Analyzer turns the objects of every source into observations: it classifies each certificate,
// builds its chain up to the trust anchors of its mesh and checks its identity. It is incremental:
// the findings of an object depend only on the object and on its mesh's context (the mesh's
// authoritative objects and settings), so an object whose pointer and mesh context are unchanged
// since the previous run keeps its *model.ObjectAnalysis, and only new or changed objects are
// analysed. The Cache's signature checks make re-analysis after an anchor rotation cheap, and hold
// the checks of presented chains that readers made as they parsed them.
// An Analyzer is safe for concurrent use.
type Analyzer struct {
	mu       sync.Mutex
	cache    *Cache
	rules    map[model.Mesh]MeshRules
	contexts map[model.Mesh]*meshContext
	results  map[*model.Object]analysed
	run      uint64
	// digests are, per mesh, the trust-root digests its settings published in earlier runs and
	// the anchors each stood for, newest first, at most maxDigestSets.
	digests  map[model.Mesh][]model.DigestSet
	observed int // certificates in the previous result, to bound the signature cache
	rebuilt  int // objects analysed by the last run (not reused), for tests and benchmarks
}

// analysed is the result of one object in the context it was analysed in.
type analysed struct {
	ctx    *meshContext
	result *model.ObjectAnalysis
	run    uint64 // the last run the object was in
}

// meshContext is what an object's findings depend on besides the object: its mesh's authoritative
// objects (whose trust bundles are the current anchors and whose CAs are candidate issuers) and the
// mesh's settings. Equal inputs keep the same *meshContext from one run to the next.
type meshContext struct {
	authoritative          []*model.Object
	settings               model.MeshSettings
	anchors, intermediates *pool
}

// NewAnalyzer returns an Analyzer with no results yet that shares what it can through cache and
// judges each mesh's certificates by its rules (SPIFFERules for a mesh without).
func NewAnalyzer(cache *Cache, rules map[model.Mesh]MeshRules) *Analyzer {
	return &Analyzer{cache: cache, rules: rules, results: map[*model.Object]analysed{}, digests: map[model.Mesh][]model.DigestSet{}}
}

// maxDigestSets bounds the trust-root digests remembered per mesh: a rotation publishes two or
// three.
const maxDigestSets = 16

// rulesOf returns the rules of mesh.
func (a *Analyzer) rulesOf(mesh model.Mesh) MeshRules {
	if r, ok := a.rules[mesh]; ok {
		return r
	}
	return SPIFFERules{}
}

type objectKey struct{ source, namespace, name string }

// Analyze analyses objects together. Trust anchors are the self-signed CAs in the trust bundles of
// each mesh's authoritative objects (the mesh's current root set) and in each object's own trust
// bundles; a generic object without a trust bundle trusts the self-signed CAs it holds. Copies of
// trust bundles are never trusted: they are compared with the current root set. Candidate issuers
// on the way are the other certificates of the object itself and of its mesh's authoritative
// objects. An object that repeats the source, namespace and name of an earlier one is ignored, so
// every Location in the result is unique. Objects must not change once analysed: a changed object
// is a new *model.Object.
func (a *Analyzer) Analyze(objects []*model.Object, meshes map[model.Mesh]model.MeshSettings) model.Analysis {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Unchanged objects keep their entries: a run costs map look-ups for them, and allocates only
	// for what changed. Entries of objects that left are dropped at the end.
	a.run++
	unique := a.unique(objects)
	authoritative := map[model.Mesh][]*model.Object{}
	for _, o := range unique {
		if o.Authoritative && o.Mesh != model.MeshNone {
			authoritative[o.Mesh] = append(authoritative[o.Mesh], o)
		}
	}
	contexts := map[model.Mesh]*meshContext{}
	contextOf := func(m model.Mesh) *meshContext {
		if c := contexts[m]; c != nil {
			return c
		}
		c := a.contexts[m]
		if c == nil || !slices.Equal(c.authoritative, authoritative[m]) || !sameSettings(c.settings, meshes[m]) {
			c = newMeshContext(authoritative[m], meshes[m])
		}
		contexts[m] = c
		return c
	}

	out := model.Analysis{Objects: make([]*model.ObjectAnalysis, 0, len(unique))}
	a.observed, a.rebuilt = 0, 0
	for _, o := range unique {
		ctx := contextOf(o.Mesh)
		r, ok := a.results[o]
		if !ok || r.ctx != ctx {
			r = analysed{ctx: ctx, result: a.analyse(o, ctx)}
			a.rebuilt++
		}
		r.run = a.run
		a.results[o] = r
		out.Objects = append(out.Objects, r.result)
		a.observed += len(r.result.Certificates)
	}
	for o, r := range a.results {
		if r.run != a.run {
			delete(a.results, o)
		}
	}
	a.contexts = contexts
	out.Meshes = a.meshCAs(contexts)
	// Signature checks of certificates that left the mesh are forgotten once the cache holds
	// clearly more entries than this mesh needs.
	a.cache.sigs.rotateOver(4*a.observed + 1024)
	return out
}

// meshCAs are the current anchors and signing CAs of each mesh of contexts, in the order of their
// names, with the anchor sets of the digests each published (remembered across runs).
func (a *Analyzer) meshCAs(contexts map[model.Mesh]*meshContext) []model.MeshCAs {
	var out []model.MeshCAs
	for _, m := range slices.Sorted(maps.Keys(contexts)) {
		ctx := contexts[m]
		if ctx.anchors.len() == 0 && ctx.intermediates.len() == 0 {
			continue
		}
		cas := model.MeshCAs{Mesh: m, Anchors: slices.Clone(ctx.anchors.certs), AnchorsSign: a.rulesOf(m).AnchorsSign()}
		for _, c := range ctx.intermediates.certs {
			if c.IsCA() {
				cas.Issuers = append(cas.Issuers, c)
			}
		}
		history := a.digests[m]
		for _, d := range slices.Backward(ctx.settings.TrustAnchorDigests) {
			history = slices.DeleteFunc(history, func(s model.DigestSet) bool { return s.Digest == d })
			history = slices.Insert(history, 0, model.DigestSet{Digest: d, Anchors: cas.Anchors})
		}
		a.digests[m] = history[:min(len(history), maxDigestSets)]
		cas.Digests = a.digests[m]
		out = append(out, cas)
	}
	return out
}

// unique returns objects without those that repeat the location of an earlier one (a later object
// repeating a location is ignored, so locations stay unique). The objects of the previous run had
// unique locations, so only a location that a new object holds can repeat: only those are
// tracked, and the Analyzer keeps no index of every location between runs.
func (a *Analyzer) unique(objects []*model.Object) []*model.Object {
	var fresh map[objectKey]bool // locations of the objects not in the previous run
	for _, o := range objects {
		if _, ok := a.results[o]; !ok {
			if fresh == nil {
				fresh = map[objectKey]bool{}
			}
			fresh[objectKey{o.Source, o.Namespace, o.Name}] = true
		}
	}
	taken := make(map[objectKey]bool, len(fresh))
	unique := make([]*model.Object, 0, len(objects))
	for _, o := range objects {
		r, old := a.results[o]
		if old && r.run == a.run {
			continue // the same object twice
		}
		if k := (objectKey{o.Source, o.Namespace, o.Name}); fresh[k] {
			if taken[k] {
				continue
			}
			taken[k] = true
		}
		if old {
			r.run = a.run
			a.results[o] = r
		}
		unique = append(unique, o)
	}
	return unique
}

// newMeshContext collects the anchors and intermediates of a mesh's authoritative objects.
func newMeshContext(authoritative []*model.Object, settings model.MeshSettings) *meshContext {
	c := &meshContext{authoritative: authoritative, settings: settings, anchors: newPool(), intermediates: newPool()}
	for _, o := range authoritative {
		anchors, intermediates := objectPools(o)
		c.anchors.addAll(anchors)
		c.intermediates.addAll(intermediates)
	}
	return c
}

// sameSettings reports whether two mesh settings are equal.
func sameSettings(a, b model.MeshSettings) bool {
	return a.TrustDomain == b.TrustDomain && a.ControlPlaneNamespace == b.ControlPlaneNamespace && a.TrustAnchorDigestKey == b.TrustAnchorDigestKey &&
		slices.Equal(a.TrustDomainAliases, b.TrustDomainAliases) && slices.Equal(a.TrustAnchorDigests, b.TrustAnchorDigests)
}

// analyse finds what one object holds, in its mesh's context.
func (a *Analyzer) analyse(o *model.Object, ctx *meshContext) *model.ObjectAnalysis {
	out := &model.ObjectAnalysis{Object: o}
	anchors, intermediates := objectPools(o)
	allAnchors, allIntermediates := pools{anchors, ctx.anchors}, pools{intermediates, ctx.intermediates}
	trustOwn := trustsOwnRoots(o)
	keys := make(map[string]bool, len(o.Bundles))
	for bi := range o.Bundles {
		b := &o.Bundles[bi]
		if keys[b.Key] {
			continue // a source repeated a key: keep the first, labels stay unique
		}
		keys[b.Key] = true
		if b.Error != model.ReasonNone {
			out.BundleErrors = append(out.BundleErrors, model.BundleError{Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: b.Key, Reason: b.Error})
		}
		export, federated := b.Export, false
		if b.Purpose == model.PurposeTrustBundleCopy && o.Mesh != model.MeshNone && !anyPartial(b.Certificates) {
			switch td := b.TrustDomain(); {
			case td != "" && !slices.Contains(ctx.settings.TrustDomains(), td):
				// Another trust domain's anchors (federation): exported as that domain's, and
				// never compared with this mesh's.
				out.TrustBundles = append(out.TrustBundles, model.TrustBundleFinding{Key: b.Key, Federated: true})
				export, federated = model.ExportAll, true
			case ctx.anchors.len() > 0:
				out.TrustBundles = append(out.TrustBundles, model.TrustBundleFinding{Key: b.Key, Current: sameSet(b.Certificates, ctx.anchors)})
			}
		}
		anchorPosition := b.Purpose != model.PurposeCertificates || trustOwn
		var presented pools // the chain's own certificates, when its owner presents it
		if b.Presented {
			presented = pools{bundlePool(b)}
		}
		// A CA's chain (a bundle holding a CA certificate) may list its root anywhere: a
		// self-signed X.509 v1 certificate there, which is no CA anywhere else, is that root,
		// never a workload leaf (a v3 self-signed CA is classified by its own constraints).
		caChain := slices.ContainsFunc(b.Certificates, (*model.Certificate).IsCA)
		for i, c := range b.Certificates {
			if export == model.ExportNone || export == model.ExportFirst && i > 0 {
				break
			}
			obs := model.CertificateFinding{Key: b.Key, Index: i, Role: Classify(c, b.RoleHint(), anchorPosition || caChain && c.SelfSigned && !c.IsCA()), Certificate: c}
			// Another trust domain's certificates chain to that domain's anchors, not to this mesh's.
			if obs.Role != model.RoleTrustAnchor && !c.Partial && !b.NoChain && !federated {
				if presented != nil {
					obs.Chain = buildPresentedChain(c, allAnchors, presented, allIntermediates, a.cache)
				} else {
					obs.Chain = buildChain(c, allAnchors, allIntermediates, a.cache)
				}
			}
			if obs.Role == model.RoleLeaf && o.Mesh != model.MeshNone && !b.NoIdentity {
				expect := o.Expect
				if b.Expect != nil {
					expect = b.Expect
				}
				obs.Identity = share.Of(a.cache.identities, a.rulesOf(o.Mesh).CheckIdentity(c, ctx.settings, expect))
			}
			if obs.Role != model.RoleLeaf && !c.Partial && (b.Purpose == model.PurposeCertificates || o.Authoritative && b.Purpose == model.PurposeTrustBundle) {
				if r, ok := a.rulesOf(o.Mesh).CheckRequirements(c, obs.Role, ctx.settings); ok {
					obs.Requirement = share.Of(a.cache.requirements, r)
				}
			}
			out.Certificates = append(out.Certificates, obs)
		}
	}
	if digests := ctx.settings.TrustAnchorDigests; o.TrustRootDigest != "" && len(digests) > 0 {
		out.TrustBundles = append(out.TrustBundles, model.TrustBundleFinding{Key: ctx.settings.TrustAnchorDigestKey, Current: slices.Contains(digests, o.TrustRootDigest)})
	}
	if len(o.KeyPairs) > 0 {
		out.RootKeys = append(out.RootKeys, model.RootKeyStatus{Mesh: o.Mesh, Source: o.Source,
			Namespace: o.Namespace, Name: o.Name, Stored: holdsRootKey(o)})
	}
	return out
}

// bundlePool is a pool of a bundle's certificates.
func bundlePool(b *model.Bundle) *pool {
	p := newPool()
	for _, c := range b.Certificates {
		if !c.Partial {
			p.add(c)
		}
	}
	return p
}

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
	return len(seen) == p.len()
}

// holdsRootKey reports whether one of o's private keys belongs to a root (a self-signed CA, or a
// self-signed v1 certificate): the root key of a PKI, which must not live in the cluster. The key
// is never looked at: a key stored next to a certificate is that certificate's key in every layout
// the exporter reads.
func holdsRootKey(o *model.Object) bool {
	for _, kp := range o.KeyPairs {
		for _, b := range o.Bundles {
			if b.Key == kp.Certificate && len(b.Certificates) > 0 && b.Certificates[0].MayAnchor() {
				return true
			}
		}
	}
	return false
}

// trustsOwnRoots reports whether the self-signed CAs of o's presented certificates are anchors: a
// generic object without a trust bundle (a PEM bundle holding leaf, intermediates and root) trusts
// its own root; a mesh object trusts only its mesh's anchors and its own trust bundles.
func trustsOwnRoots(o *model.Object) bool {
	if o.Mesh != model.MeshNone {
		return false
	}
	for _, b := range o.Bundles {
		if b.Purpose == model.PurposeTrustBundle {
			return false
		}
	}
	return true
}

// objectPools returns the trust anchors and intermediates an object holds. A root is an anchor in
// a trust-anchor position (a trust bundle, or the certificates of an object that trusts its own
// roots), whatever its X.509 version; copies of trust bundles are never trusted.
func objectPools(o *model.Object) (anchors, intermediates *pool) {
	anchors, intermediates = newPool(), newPool()
	trustOwn := trustsOwnRoots(o)
	for _, b := range o.Bundles {
		anchorPosition := b.Purpose == model.PurposeTrustBundle || b.Purpose == model.PurposeCertificates && trustOwn
		for _, c := range b.Certificates {
			switch {
			case c.Partial:
				// Facts from a summary cannot sign or verify anything.
			case anchorPosition && c.MayAnchor():
				anchors.add(c)
			case c.IsCA() && c.SelfSigned:
				// A root outside a trust-anchor position is not trusted here.
			default:
				// Intermediates, and certificates that may not sign (leaves, v1 certificates), so
				// that a certificate signed by one is reported as not_ca rather than as an
				// unknown authority.
				intermediates.add(c)
			}
		}
	}
	return anchors, intermediates
}

// addAll adds every certificate of from.
func (p *pool) addAll(from *pool) {
	for _, c := range from.certs {
		p.add(c)
	}
}
