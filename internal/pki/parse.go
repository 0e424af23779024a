// Package pki is the one place that understands certificates: it parses bundles, classifies
// certificates, builds and checks chains up to the mesh's trust anchors and checks mesh identities.
// Every source uses it; no source re-implements any of it.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"time"
	"unique"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

const (
	// MaxBundleBytes is the largest bundle that is parsed. Kubernetes caps a whole Secret at about
	// 1 MiB; anything much larger is a mistake or an attack.
	MaxBundleBytes = 4 << 20
	// MaxBundleCertificates is the largest number of certificates kept from one bundle.
	MaxBundleCertificates = 5000
)

var pemBegin = []byte("-----BEGIN ")

// ParseBundle parses every certificate in data, which holds concatenated PEM blocks or DER
// certificates. Identical certificates are parsed once and shared through the cache. Private-key blocks and other non-certificate blocks are skipped and their bytes
// zeroed; they never reach the result. The reason is ReasonNone when everything in data was read;
// otherwise it says what went wrong, and the certificates that could be read are still returned.
func (c *Cache) ParseBundle(data []byte) ([]*model.Certificate, model.ErrorReason) {
	if len(data) > MaxBundleBytes {
		return nil, model.ReasonTooLarge
	}
	// A byte order mark (editors on Windows write one) would hide the first BEGIN line from the
	// PEM decoder, which wants it at the start of a line.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !bytes.Contains(data, pemBegin) {
		return c.parseDER(data)
	}
	var (
		certs  []*model.Certificate
		fresh  []bool // not shared yet
		reason = model.ReasonNone
		blocks int
	)
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		blocks++
		if block.Type != "CERTIFICATE" {
			// Keys (plain or encrypted), CSRs, CRLs and parameters are not ours to keep.
			clear(block.Bytes)
			continue
		}
		if len(certs) == MaxBundleCertificates {
			reason = model.ReasonTooMany
			break
		}
		cert, isFresh, err := c.lookup(block.Bytes)
		if err != nil {
			reason = worse(reason, model.ReasonBadDER)
			continue
		}
		certs, fresh = append(certs, cert), append(fresh, isFresh)
	}
	// pem.Decode silently skips a block it cannot decode (bad base64, no END line, a truncated
	// file): a BEGIN line that did not become a block is a broken bundle.
	if reason != model.ReasonTooMany && bytes.Count(data, pemBegin) > blocks {
		reason = worse(reason, model.ReasonBadPEM)
	}
	if len(certs) == 0 && reason == model.ReasonNone {
		reason = model.ReasonNoCertificate
	}
	c.checkPresentedChain(certs, fresh)
	return certs, reason
}

// checkPresentedChain checks the signature of each certificate by the next when the next names
// it as issuer: the order a presented chain (leaf, then its CAs) has. It runs where the bundle is
// read (an informer's transform, a proxy reader), so the analysis that a scrape waits for finds
// the expensive part done. It also shares the certificates not shared yet (fresh; certs is
// updated where an equal one was shared meanwhile), from the last to the first: a fresh
// certificate that its issuer, shared by then, verifies records it in VerifiedBy before it is
// shared itself; other results go to the cache's signature checks. One check per certificate at
// most: a hostile bundle cannot make this quadratic.
func (c *Cache) checkPresentedChain(certs []*model.Certificate, fresh []bool) {
	for i := len(certs) - 1; i >= 0; i-- {
		child := certs[i]
		if i+1 < len(certs) {
			parent := certs[i+1]
			if !child.Partial && !parent.Partial && parent.IsCA() && string(parent.RawSubject) == string(child.RawIssuer) {
				switch {
				case !fresh[i]:
					c.sigs.check(child, parent)
				case c.sigs.verify(child, parent):
					child.VerifiedBy = parent
				default:
					c.sigs.remember(child, parent, false)
				}
			}
		}
		if fresh[i] {
			certs[i] = c.share(child)
		}
	}
}

// worse keeps the first reason found: the earliest problem in a bundle is the one worth naming.
func worse(current, next model.ErrorReason) model.ErrorReason {
	if current != model.ReasonNone {
		return current
	}
	return next
}

// parseDER reads one or more concatenated DER certificates. Data that does not start like an ASN.1
// SEQUENCE is not a certificate at all.
func (c *Cache) parseDER(data []byte) ([]*model.Certificate, model.ErrorReason) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != 0x30 {
		return nil, model.ReasonNoCertificate
	}
	// The parsed certificates keep slices of their input: give them their own copy so the caller
	// may reuse or clear its buffer.
	xs, err := x509.ParseCertificates(bytes.Clone(data))
	if err != nil {
		return nil, model.ReasonBadDER
	}
	reason := model.ReasonNone
	if len(xs) > MaxBundleCertificates {
		xs, reason = xs[:MaxBundleCertificates], model.ReasonTooMany
	}
	certs := make([]*model.Certificate, 0, len(xs))
	fresh := make([]bool, 0, len(xs))
	for _, x := range xs {
		cert, isFresh, err := c.lookup(x.Raw)
		if err != nil {
			c.checkPresentedChain(certs, fresh)
			return certs, model.ReasonBadDER
		}
		certs, fresh = append(certs, cert), append(fresh, isFresh)
	}
	c.checkPresentedChain(certs, fresh)
	return certs, reason
}

// NewCertificate computes once what the analysis needs of x (see model.Certificate).
func NewCertificate(x *x509.Certificate) *model.Certificate {
	// The encodings the certificate keeps of its own share one allocation; the issuer's name and
	// key identifier are shared by every certificate of that issuer (the runtime's unique map drops
	// a text when no certificate holds it).
	signed := signedPart(x.SignatureAlgorithm, x.RawTBSCertificate)
	own := string(slices.Concat(x.RawSubject, x.SubjectKeyId, signed, x.Signature))
	next := func(n int) string {
		s := own[:n]
		own = own[n:]
		return s
	}
	c := &model.Certificate{
		RawSubject: next(len(x.RawSubject)), SubjectKeyID: next(len(x.SubjectKeyId)),
		Signed: next(len(signed)), Signature: next(len(x.Signature)),
		RawIssuer: unique.Make(string(x.RawIssuer)).Value(), AuthorityKeyID: unique.Make(string(x.AuthorityKeyId)).Value(),
		SignatureAlgorithm: x.SignatureAlgorithm,
		Validity:           model.NewValidity(x.NotBefore, x.NotAfter),
		CA:                 x.BasicConstraintsValid && x.IsCA,
		Version1:           x.Version == 1,
		DNSNames:           x.DNSNames,
		Fingerprint:        sha256.Sum256(x.Raw),
		Serial:             x.SerialNumber.Text(16),
		KeyAlgorithm:       unique.Make(KeyAlgorithm(x)).Value(),
		Subject:            x.Subject.String(),
		Issuer:             unique.Make(x.Issuer.String()).Value(),
	}
	// Self-signed means the certificate's own key verifies its signature, not only that the names
	// match: a cross-signed CA can carry its own subject as issuer.
	if bytes.Equal(x.RawSubject, x.RawIssuer) {
		c.SelfSigned = x.CheckSignature(x.SignatureAlgorithm, x.RawTBSCertificate, x.Signature) == nil
	}
	// A self-signed v1 certificate keeps its key too: as a trust anchor it may sign.
	if c.CA || c.Version1 && c.SelfSigned {
		c.Authority = &model.Authority{PublicKey: x.PublicKey, KeyUsage: x.KeyUsage, MaxPathLen: x.MaxPathLen, MaxPathLenZero: x.MaxPathLenZero}
	}
	for _, u := range x.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			// An exact copy: url.URL.String leaves its builder's spare room in the text.
			c.SPIFFEIDs = append(c.SPIFFEIDs, strings.Clone(u.String()))
		}
	}
	return c
}

// KeyAlgorithm describes the public key of x as the exporter labels it, e.g. "ECDSA-P256",
// "RSA-2048" or "Ed25519".
func KeyAlgorithm(x *x509.Certificate) string {
	switch k := x.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + strings.ReplaceAll(k.Curve.Params().Name, "-", "")
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return "unknown"
	}
}

// Classify returns the role of c in a bundle: a root in a trust-anchor position (see
// model.Certificate.MayAnchor) or any other self-signed CA is a trust anchor, except where the
// holder names its CAs otherwise (hint: Linkerd's issuer, self-signed or not); another CA is an
// intermediate; anything else is a leaf.
func Classify(c *model.Certificate, hint model.Role, anchorPosition bool) model.Role {
	switch {
	case anchorPosition && c.MayAnchor():
		return model.RoleTrustAnchor
	case c.IsCA() && hint != "":
		return hint
	case c.IsCA() && c.SelfSigned:
		return model.RoleTrustAnchor
	case c.IsCA():
		return model.RoleIntermediate
	default:
		return model.RoleLeaf
	}
}

// PartialFacts are what a summary says of a certificate it does not show (Envoy's /certs, a
// proxy's expiry metric).
type PartialFacts struct {
	Serial              *big.Int // nil when unknown
	NotBefore, NotAfter time.Time
	URIs                []*url.URL
	DNSNames            []string
	// CA marks a certificate the summary lists as a CA (Envoy's ca_cert): taken as a trust anchor.
	CA bool
	// Origin tells facts with equal fields apart (the proxy they came from).
	Origin string
}

// NewPartialCertificate builds a certificate from partial facts. It carries no signature and no
// key, so it never builds or ends a chain.
func NewPartialCertificate(f PartialFacts) *model.Certificate {
	c := &model.Certificate{Validity: model.NewValidity(f.NotBefore, f.NotAfter), DNSNames: f.DNSNames,
		CA: f.CA, Partial: true, SelfSigned: f.CA, KeyAlgorithm: "unknown"}
	h := sha256.New()
	if f.Serial != nil {
		c.Serial = f.Serial.Text(16)
		h.Write(f.Serial.Bytes())
	}
	fmt.Fprintf(h, "|%d|%d|%s", f.NotBefore.Unix(), f.NotAfter.Unix(), f.Origin)
	h.Sum(c.Fingerprint[:0])
	for _, u := range f.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			c.SPIFFEIDs = append(c.SPIFFEIDs, u.String())
		}
	}
	return c
}
