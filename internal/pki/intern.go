package pki

import (
	"crypto/sha256"
	"crypto/x509"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/share"
)

// certificates shares one parsed certificate between every bundle that holds the same DER: ten
// thousand proxies present the same intermediate and root, five thousand Secrets the same ca.crt.
// Certificates are immutable once built, which makes sharing them safe.
var certificates = share.NewTable[[sha256.Size]byte, model.Certificate]()

// sharedCertificate returns the shared certificate for der, parsing it only when no live copy
// exists.
func sharedCertificate(der []byte) (*model.Certificate, error) {
	fp := sha256.Sum256(der)
	if c := certificates.Get(fp); c != nil {
		return c, nil
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	// Parsed concurrently by another bundle: the first one stored is kept.
	return certificates.Share(fp, NewCertificate(x)), nil
}

// chains shares one Chain between the certificates whose paths above them are the same: the
// workload leaves of one issuer.
var chains = share.NewTable[[sha256.Size]byte, model.Chain]()

// sharedChain returns the shared chain equal to ch.
func sharedChain(ch *model.Chain) *model.Chain {
	// Lengths first, so that no two chains write the same bytes.
	h := sha256.New()
	h.Write([]byte{byte(len(ch.Reason)), byte(len(ch.Paths))})
	h.Write([]byte(ch.Reason))
	writePath := func(path []*model.Certificate) {
		h.Write([]byte{byte(len(path))})
		for _, c := range path {
			h.Write(c.Fingerprint[:])
		}
	}
	for _, path := range ch.Paths {
		writePath(path)
	}
	writePath(ch.Partial)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return chains.Share(k, ch)
}
