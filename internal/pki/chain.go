package pki

import (
	"crypto/sha256"
	"crypto/x509"

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

// pool is a set of candidate issuers indexed by subject.
type pool struct {
	bySubject map[string][]*model.Certificate
	seen      map[[sha256.Size]byte]bool
}

func newPool() *pool {
	return &pool{bySubject: map[string][]*model.Certificate{}, seen: map[[sha256.Size]byte]bool{}}
}

func (p *pool) add(c *model.Certificate) {
	if p.seen[c.Fingerprint] {
		return
	}
	p.seen[c.Fingerprint] = true
	k := string(c.X509.RawSubject)
	p.bySubject[k] = append(p.bySubject[k], c)
}

func (p *pool) contains(c *model.Certificate) bool { return p.seen[c.Fingerprint] }

// issuersOf returns the candidates whose subject is c's issuer and whose key identifier, when both
// sides carry one, matches c's authority key identifier.
func (p *pool) issuersOf(c *model.Certificate) []*model.Certificate {
	var out []*model.Certificate
	for _, cand := range p.bySubject[string(c.X509.RawIssuer)] {
		aki, ski := c.X509.AuthorityKeyId, cand.X509.SubjectKeyId
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

type sigKey struct{ child, parent [sha256.Size]byte }

// signatureCache remembers signature checks across analyses. It is generational: an entry that was
// not used during one whole analysis is forgotten at the end of the next, so the cache follows what
// is currently in the mesh.
type signatureCache struct {
	current, previous map[sigKey]bool
}

func (s *signatureCache) rotate() {
	s.previous, s.current = s.current, make(map[sigKey]bool, len(s.current))
}

func (s *signatureCache) check(child, parent *model.Certificate) bool {
	k := sigKey{child.Fingerprint, parent.Fingerprint}
	if ok, hit := s.current[k]; hit {
		return ok
	}
	ok, hit := s.previous[k]
	if !hit {
		ok = parent.X509.CheckSignature(child.X509.SignatureAlgorithm, child.X509.RawTBSCertificate, child.X509.Signature) == nil
	}
	s.current[k] = ok
	return ok
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
func buildChain(c *model.Certificate, anchors, intermediates pools, sigs *signatureCache) *model.Chain {
	b := &chainBuilder{anchors: anchors, intermediates: intermediates, sigs: sigs}
	b.result.Partial = []*model.Certificate{c}
	b.result.Reason = model.ReasonUnknownAuthority
	b.extend([]*model.Certificate{c})
	if len(b.result.Paths) > 0 {
		b.result.Partial, b.result.Reason = nil, model.ReasonNone
	}
	return &b.result
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
		if reason := caConstraint(parent, path); reason != model.ReasonNone {
			b.fail(next, reason)
			continue
		}
		if b.anchors.contains(parent) {
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

// caConstraint checks that parent may sign the certificates below it: it must be a CA, may sign
// certificates when it restricts its key usage, and must allow the number of intermediates below it.
func caConstraint(parent *model.Certificate, below []*model.Certificate) model.ErrorReason {
	x := parent.X509
	if !parent.IsCA() {
		return model.ReasonNotCA
	}
	if x.KeyUsage != 0 && x.KeyUsage&x509.KeyUsageCertSign == 0 {
		return model.ReasonNotCA
	}
	if x.MaxPathLen > 0 || x.MaxPathLen == 0 && x.MaxPathLenZero {
		// Intermediates below the parent: everything on the path but the first certificate, and
		// self-issued certificates do not count (RFC 5280, 6.1.4).
		n := 0
		for _, c := range below[1:] {
			if string(c.X509.RawSubject) != string(c.X509.RawIssuer) {
				n++
			}
		}
		if n > x.MaxPathLen {
			return model.ReasonPathLenExceeded
		}
	}
	return model.ReasonNone
}
