package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

const (
	// maxChainLength bounds path building: no mesh has more than a handful of CAs in a chain.
	maxChainLength = 8
	// maxPaths is how many complete paths are kept per certificate (cross-signed rotations have two).
	maxPaths = 4
	// maxSignatureChecks bounds the work spent on one certificate, so a hostile bundle of thousands
	// of CAs sharing a subject cannot stall the analysis.
	maxSignatureChecks = 64
)

// pool is a set of candidate issuers. Most pools (one object's certificates) hold two or three and
// are searched in order; a pool that grows past smallPool is indexed by subject and fingerprint.
type pool struct {
	certs     []*model.Certificate
	bySubject map[string][]*model.Certificate
	seen      map[[sha256.Size]byte]bool
}

// smallPool is the size up to which a pool is searched without an index.
const smallPool = 8

func newPool() *pool { return &pool{} }

func (p *pool) add(c *model.Certificate) {
	if p.contains(c) {
		return
	}
	p.certs = append(p.certs, c)
	switch {
	case len(p.certs) <= smallPool:
	case p.seen == nil:
		p.bySubject, p.seen = map[string][]*model.Certificate{}, map[[sha256.Size]byte]bool{}
		for _, c := range p.certs {
			p.index(c)
		}
	default:
		p.index(c)
	}
}

func (p *pool) index(c *model.Certificate) {
	p.seen[c.Fingerprint] = true
	k := string(c.RawSubject)
	p.bySubject[k] = append(p.bySubject[k], c)
}

// len is the number of certificates in the pool.
func (p *pool) len() int { return len(p.certs) }

func (p *pool) contains(c *model.Certificate) bool {
	if p.seen != nil {
		return p.seen[c.Fingerprint]
	}
	for _, x := range p.certs {
		if x.Fingerprint == c.Fingerprint {
			return true
		}
	}
	return false
}

// issuersOf returns the candidates whose subject is c's issuer and whose key identifier, when both
// sides carry one, matches c's authority key identifier.
func (p *pool) issuersOf(c *model.Certificate) []*model.Certificate {
	candidates := p.certs
	if p.bySubject != nil {
		candidates = p.bySubject[string(c.RawIssuer)]
	}
	var out []*model.Certificate
	for _, cand := range candidates {
		if string(cand.RawSubject) != string(c.RawIssuer) {
			continue
		}
		aki, ski := c.AuthorityKeyID, cand.SubjectKeyID
		if len(aki) > 0 && len(ski) > 0 && string(aki) != string(ski) {
			continue
		}
		out = append(out, cand)
	}
	return out
}

// pools is a union of pools; a certificate's anchors are its mesh's and its own object's.
type pools []*pool

func (ps pools) issuersOf(c *model.Certificate) []*model.Certificate {
	var out []*model.Certificate
	for _, p := range ps {
		out = append(out, p.issuersOf(c)...)
	}
	return out
}

func (ps pools) contains(c *model.Certificate) bool {
	for _, p := range ps {
		if p.contains(c) {
			return true
		}
	}
	return false
}

// sigKey names a (child, parent) pair by the SHA-256 of their two fingerprints: one digest rather
// than both fingerprints halves the entry that every workload leaf holds, and a collision is as
// hard to find as one of SHA-256.
type sigKey [sha256.Size]byte

func newSigKey(child, parent *model.Certificate) sigKey {
	var pair [2 * sha256.Size]byte
	copy(pair[:], child.Fingerprint[:])
	copy(pair[sha256.Size:], parent.Fingerprint[:])
	return sha256.Sum256(pair[:])
}

// signatureCache remembers signature checks across analyses: readers fill it as they parse
// presented chains (checkPresentedChain) and the analysis reads it. The check of a leaf by the
// issuer it was presented with, the one most certificates need, is the leaf's own VerifiedBy
// instead of an entry.
// It is generational: rotate forgets the entries not used since the rotation before, so the cache
// follows what is in the mesh. It is safe for concurrent use; a signature is checked outside the
// lock.
type signatureCache struct {
	mu                sync.Mutex
	current, previous map[sigKey]bool
	checks            int // signatures actually checked, for tests
}

func newSignatureCache() *signatureCache {
	return &signatureCache{current: map[sigKey]bool{}}
}

// rotateOver starts a new generation when the current one holds more than limit checks.
func (s *signatureCache) rotateOver(limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.current) > limit {
		s.previous, s.current = s.current, make(map[sigKey]bool, len(s.current))
	}
}

// size is the number of checks remembered, both generations together.
func (s *signatureCache) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.current) + len(s.previous)
}

// check reports whether parent's key verifies child's signature, from what child or the cache
// remembers when it can.
func (s *signatureCache) check(child, parent *model.Certificate) bool {
	if v := child.VerifiedBy; v != nil && v.Fingerprint == parent.Fingerprint {
		return true
	}
	k := newSigKey(child, parent)
	s.mu.Lock()
	ok, hit := s.current[k]
	if !hit {
		ok, hit = s.previous[k]
		if hit {
			s.current[k] = ok
		}
	}
	s.mu.Unlock()
	if hit {
		return ok
	}
	ok = s.verify(child, parent)
	s.remember(child, parent, ok)
	return ok
}

// verify checks the signature, counting the check.
func (s *signatureCache) verify(child, parent *model.Certificate) bool {
	ok := verifies(parent, child)
	s.mu.Lock()
	s.checks++
	s.mu.Unlock()
	return ok
}

// remember keeps the result of a check.
func (s *signatureCache) remember(child, parent *model.Certificate, ok bool) {
	k := newSigKey(child, parent)
	s.mu.Lock()
	s.current[k] = ok
	s.mu.Unlock()
}

// failureRank orders structural failures: when several paths fail, the most specific reason wins.
var failureRank = map[model.ErrorReason]int{
	model.ReasonUnknownAuthority: 1,
	model.ReasonChainTooLong:     2,
	model.ReasonNotCA:            3,
	model.ReasonPathLenExceeded:  4,
	model.ReasonBadSignature:     5,
}

// chainBuilder builds the paths of one certificate.
type chainBuilder struct {
	anchors, intermediates pools
	sigs                   *signatureCache
	checks                 int
	result                 model.Chain
}

// buildChain finds the paths from c through intermediates to anchors. Signature, CA and path length
// constraints are checked here, once; validity windows are checked by Chain.Evaluate at scrape time.
func buildChain(c *model.Certificate, anchors, intermediates pools, cache *Cache) *model.Chain {
	if anchors.contains(c) {
		// The certificate is itself a current anchor (a self-signed issuer that is its own
		// anchor, as a default Linkerd install makes): its one path is empty.
		return cache.chain(&model.Chain{Paths: [][]*model.Certificate{nil}})
	}
	return build(c, anchors, intermediates, cache)
}

// buildPresentedChain builds the chain of a certificate its owner presents, as a peer does: from
// the certificates presented with it (presented) up to the anchors. When a path exists only
// through another CA the exporter knows (intermediates), the chain is incomplete: it reports the
// path the presented certificates give and the reason ReasonIncompleteChain.
func buildPresentedChain(c *model.Certificate, anchors, presented, intermediates pools, cache *Cache) *model.Chain {
	ch := buildChain(c, anchors, presented, cache)
	if len(ch.Paths) > 0 {
		return ch
	}
	if full := build(c, anchors, intermediates, cache); len(full.Paths) > 0 {
		return cache.chain(&model.Chain{Partial: ch.Partial, Reason: model.ReasonIncompleteChain})
	}
	return ch
}

// build finds the paths of c that end at one of anchors.
func build(c *model.Certificate, anchors, intermediates pools, cache *Cache) *model.Chain {
	b := &chainBuilder{anchors: anchors, intermediates: intermediates, sigs: cache.sigs}
	b.result.Partial = []*model.Certificate{c}
	b.result.Reason = model.ReasonUnknownAuthority
	b.extend([]*model.Certificate{c})
	if len(b.result.Paths) > 0 {
		b.result.Partial, b.result.Reason = nil, model.ReasonNone
	}
	// The chain keeps the paths above c, in arrays of its own (a pointer into the builder would
	// keep the builder and the pools it searched alive), and is shared by every certificate whose
	// paths are the same: ten thousand workload leaves hold one chain.
	chain := &model.Chain{Partial: above(b.result.Partial), Reason: b.result.Reason}
	for _, p := range b.result.Paths {
		chain.Paths = append(chain.Paths, above(p))
	}
	return cache.chain(chain)
}

// above returns a copy of the path without its first certificate, or nil.
func above(path []*model.Certificate) []*model.Certificate {
	if len(path) <= 1 {
		return nil
	}
	return append([]*model.Certificate(nil), path[1:]...)
}

func (b *chainBuilder) fail(path []*model.Certificate, reason model.ErrorReason) {
	if len(b.result.Paths) > 0 {
		return
	}
	if len(path) > len(b.result.Partial) ||
		len(path) == len(b.result.Partial) && failureRank[reason] > failureRank[b.result.Reason] {
		b.result.Partial = append([]*model.Certificate(nil), path...)
		b.result.Reason = reason
	}
}

func (b *chainBuilder) extend(path []*model.Certificate) {
	cur := path[len(path)-1]
	if len(path) >= maxChainLength {
		b.fail(path, model.ReasonChainTooLong)
		return
	}
	// Until a candidate proves otherwise, the path ends at an unknown authority; a more specific
	// failure at the same depth, or any failure deeper down, replaces this one.
	b.fail(path, model.ReasonUnknownAuthority)
	candidates := append(b.anchors.issuersOf(cur), b.intermediates.issuersOf(cur)...)
	for _, parent := range candidates {
		if len(b.result.Paths) >= maxPaths {
			return
		}
		if onPath(path, parent) {
			continue // a loop: A signs B signs A
		}
		anchor := b.anchors.contains(parent)
		if !mayIssue(parent, anchor) {
			// A certificate that is not a CA may not sign certificates (and keeps no key to check
			// a signature with): whatever its key signed, the path is broken there.
			b.fail(append(path[:len(path):len(path)], parent), model.ReasonNotCA)
			continue
		}
		if b.checks >= maxSignatureChecks {
			b.fail(path, model.ReasonChainTooLong)
			return
		}
		b.checks++
		if !b.sigs.check(cur, parent) {
			b.fail(path, model.ReasonBadSignature)
			continue
		}
		next := append(path[:len(path):len(path)], parent)
		if reason := caConstraint(parent, anchor, path); reason != model.ReasonNone {
			b.fail(next, reason)
			continue
		}
		if anchor {
			b.result.Paths = append(b.result.Paths, next)
			continue
		}
		b.extend(next)
	}
}

func onPath(path []*model.Certificate, c *model.Certificate) bool {
	for _, p := range path {
		if p.Fingerprint == c.Fingerprint {
			return true
		}
	}
	return false
}

// mayIssue reports whether parent may sign certificates: a CA, or a self-signed v1 certificate
// that is one of the anchors (a v1 root has no extensions to make it a CA).
func mayIssue(parent *model.Certificate, anchor bool) bool {
	return parent.IsCA() || anchor && parent.Version1 && parent.SelfSigned
}

// caConstraint checks that parent may sign the certificates below it: it must be a CA (or a v1
// root among the anchors), may sign certificates when it restricts its key usage, and must allow
// the number of intermediates below it.
func caConstraint(parent *model.Certificate, anchor bool, below []*model.Certificate) model.ErrorReason {
	a := parent.Authority
	if !mayIssue(parent, anchor) || a == nil {
		return model.ReasonNotCA
	}
	if a.KeyUsage != 0 && a.KeyUsage&x509.KeyUsageCertSign == 0 {
		return model.ReasonNotCA
	}
	if a.MaxPathLen > 0 || a.MaxPathLen == 0 && a.MaxPathLenZero {
		// Intermediates below the parent: everything on the path but the first certificate, and
		// self-issued certificates do not count (RFC 5280, 6.1.4).
		n := 0
		for _, c := range below[1:] {
			if string(c.RawSubject) != string(c.RawIssuer) {
				n++
			}
		}
		if n > a.MaxPathLen {
			return model.ReasonPathLenExceeded
		}
	}
	return model.ReasonNone
}
