package pki

import (
	"crypto/sha256"
	"crypto/x509"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/share"
)

// Cache holds what parsing and analysing certificates can share between objects and between
// runs: one parsed certificate per DER encoding (ten thousand proxies present the same
// intermediate and root), one chain per distinct path (the workload leaves of one issuer), one
// record per identity or requirement result and per expected identity, and the results of
// signature checks. The exporter makes one and hands it to the sources that parse and to the
// inventory that analyses, so that a check made while a reader parsed a presented chain is found
// by the analysis. Values in it are immutable; a Cache is safe for concurrent use.
type Cache struct {
	certificates *share.Table[[sha256.Size]byte, model.Certificate]
	chains       *share.Table[[sha256.Size]byte, model.Chain]
	identities   *share.Table[model.IdentityStatus, model.IdentityStatus]
	requirements *share.Table[model.RequirementStatus, model.RequirementStatus]
	expectations *share.Table[model.Identity, model.Identity]
	sigs         *signatureCache
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		certificates: share.NewTable[[sha256.Size]byte, model.Certificate](),
		chains:       share.NewTable[[sha256.Size]byte, model.Chain](),
		identities:   share.NewTable[model.IdentityStatus, model.IdentityStatus](),
		requirements: share.NewTable[model.RequirementStatus, model.RequirementStatus](),
		expectations: share.NewTable[model.Identity, model.Identity](),
		sigs:         newSignatureCache(),
	}
}

// Expectation returns the shared record of an expected identity: the replicas of a workload,
// often hundreds of pods, expect the same one.
func (c *Cache) Expectation(id model.Identity) *model.Identity {
	return share.Of(c.expectations, id)
}

// certificate returns the shared certificate for der, parsing it only when no live copy exists.
func (c *Cache) certificate(der []byte) (*model.Certificate, error) {
	cert, fresh, err := c.lookup(der)
	if err != nil || !fresh {
		return cert, err
	}
	return c.share(cert), nil
}

// lookup returns the shared certificate for der, or a new one that is not shared yet (fresh):
// nothing but the caller can see it until share.
func (c *Cache) lookup(der []byte) (cert *model.Certificate, fresh bool, err error) {
	if cert := c.certificates.Get(sha256.Sum256(der)); cert != nil {
		return cert, false, nil
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, false, err
	}
	return NewCertificate(x), true, nil
}

// share shares a fresh certificate; when another bundle shared an equal one meanwhile, that one
// is kept and returned.
func (c *Cache) share(cert *model.Certificate) *model.Certificate {
	return c.certificates.Share(cert.Fingerprint, cert)
}

// chain returns the shared chain equal to ch.
func (c *Cache) chain(ch *model.Chain) *model.Chain {
	// Lengths first, so that no two chains write the same bytes.
	h := sha256.New()
	h.Write([]byte{byte(len(ch.Reason)), byte(len(ch.Paths))})
	h.Write([]byte(ch.Reason))
	writePath := func(path []*model.Certificate) {
		h.Write([]byte{byte(len(path))})
		for _, cert := range path {
			h.Write(cert.Fingerprint[:])
		}
	}
	for _, path := range ch.Paths {
		writePath(path)
	}
	writePath(ch.Partial)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return c.chains.Share(k, ch)
}
