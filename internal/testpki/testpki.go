// Package testpki issues certificates at fixed dates for tests, benchmarks and the example PKI, so
// nothing in the repository depends on checked-in certificates that silently expire.
// Its functions panic on error: they are for tests and generators only, never for the exporter.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"time"
)

// KeyType selects the key of a certificate.
type KeyType int

// Key types.
const (
	ECDSAP256 KeyType = iota
	RSA2048
	ECDSAP384
	// Ed25519 and RSA1024 are keys some mesh refuses for its CAs.
	Ed25519
	RSA1024
)

// Spec describes a certificate to issue.
type Spec struct {
	CommonName string
	// NotBefore and NotAfter are the validity window; give fixed dates.
	NotBefore, NotAfter time.Time
	// CA makes a certificate authority (BasicConstraints CA:true, key usage cert sign).
	CA bool
	// NoBasicConstraints omits the BasicConstraints extension altogether.
	NoBasicConstraints bool
	// MaxPathLen, when not nil, sets the path length constraint of a CA (0 included).
	MaxPathLen *int
	Key        KeyType
	// Serial is the serial number; 0 picks a random one.
	Serial int64
	// URIs and DNSNames are the subject alternative names.
	URIs     []string
	DNSNames []string
	IPs      []net.IP
	// Subject overrides the subject built from CommonName.
	Subject *pkix.Name
	// RawSubject, when set, is the DER subject used as is (see T61Subject).
	RawSubject []byte
	// Issuer signs the certificate; nil makes it self-signed.
	Issuer *Cert
	// SubjectKey reuses a key (to re-sign a root with the same key, as istiod does).
	SubjectKey crypto.Signer
}

// Cert is an issued certificate and its key.
type Cert struct {
	X509 *x509.Certificate
	Key  crypto.Signer
}

// PEM returns the certificate in PEM.
func (c *Cert) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.X509.Raw})
}

// KeyPEM returns the private key in PKCS#8 PEM.
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// PublicKeyPEM returns the public key in PKIX PEM.
func (c *Cert) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(c.Key.Public())
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Bundle concatenates the PEM of certs.
func Bundle(certs ...*Cert) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.PEM()...)
	}
	return out
}

// NewKey generates a key of type t.
func NewKey(t KeyType) crypto.Signer {
	var (
		k   crypto.Signer
		err error
	)
	switch t {
	case RSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case ECDSAP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case RSA1024:
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	default:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		panic(err)
	}
	return k
}

// Issue issues a certificate as s describes.
func Issue(s Spec) *Cert {
	der, key := issue(s)
	x, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &Cert{X509: x, Key: key}
}

// IssueDER issues a certificate as s describes and returns its DER without parsing it: for
// certificates Go's parser refuses (invalid UTF-8 in a name, for one).
func IssueDER(s Spec) []byte {
	der, _ := issue(s)
	return der
}

func issue(s Spec) ([]byte, crypto.Signer) {
	key := s.SubjectKey
	if key == nil {
		key = NewKey(s.Key)
	}
	serial := big.NewInt(s.Serial)
	if s.Serial == 0 {
		var err error
		serial, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
		if err != nil {
			panic(err)
		}
		serial.Add(serial, big.NewInt(1))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.CommonName},
		NotBefore:    s.NotBefore,
		NotAfter:     s.NotAfter,
		DNSNames:     s.DNSNames,
		IPAddresses:  s.IPs,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if s.Subject != nil {
		tmpl.Subject = *s.Subject
	}
	tmpl.RawSubject = s.RawSubject
	for _, u := range s.URIs {
		parsed, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	if !s.NoBasicConstraints {
		tmpl.BasicConstraintsValid = true
	}
	if s.CA {
		tmpl.IsCA = !s.NoBasicConstraints
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = nil
		if s.MaxPathLen != nil {
			tmpl.MaxPathLen = *s.MaxPathLen
			tmpl.MaxPathLenZero = *s.MaxPathLen == 0
		} else {
			tmpl.MaxPathLen = -1
		}
	}
	parent, signer := tmpl, key
	if s.Issuer != nil {
		parent, signer = s.Issuer.X509, s.Issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		panic(err)
	}
	return der, key
}

// Date returns midnight UTC of the given day.
func Date(year int, month time.Month, day int) time.Time {
	return time.Date(year, month, day, 0, 0, 0, 0, time.UTC)
}

// T61Subject returns a DER subject whose common name is a T61String holding raw bytes: the way
// old or hostile CAs get non-UTF-8 text into a certificate, which Go's encoder would refuse.
func T61Subject(commonName string) []byte {
	return StringSubject(asn1.TagT61String, commonName)
}

// StringSubject returns a DER subject whose common name is a string of the given ASN.1 tag holding
// the raw bytes of commonName, valid for that tag or not.
func StringSubject(tag int, commonName string) []byte {
	cn, err := asn1.Marshal(struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}{asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.RawValue{Tag: tag, Bytes: []byte(commonName)}})
	if err != nil {
		panic(err)
	}
	set, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: cn})
	if err != nil {
		panic(err)
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: set})
	if err != nil {
		panic(err)
	}
	return seq
}

// IssueV1 issues an X.509 v1 certificate (no version field, no extensions: no basic constraints,
// no key identifiers, no SANs), as old PKIs and Istio's own multi-level test PKI have for their
// roots. crypto/x509 only writes v3, so the certificate is encoded here and signed with ECDSA or
// RSA over SHA-256. Only CommonName, the dates, Key, Serial, Issuer and SubjectKey of s are used.
func IssueV1(s Spec) *Cert {
	key := s.SubjectKey
	if key == nil {
		key = NewKey(s.Key)
	}
	serial := big.NewInt(s.Serial)
	if s.Serial == 0 {
		serial = big.NewInt(1)
	}
	subject := pkix.Name{CommonName: s.CommonName}
	issuerName, signer := subject, key
	if s.Issuer != nil {
		issuerName, signer = s.Issuer.X509.Subject, s.Issuer.Key
		issuerName.Names, issuerName.ExtraNames = nil, nil
	}
	algo := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}} // ecdsa-with-SHA256
	if _, ok := signer.Public().(*rsa.PublicKey); ok {
		algo = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue} // sha256WithRSAEncryption
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		panic(err)
	}
	name := func(n pkix.Name) asn1.RawValue {
		der, err := asn1.Marshal(n.ToRDNSequence())
		if err != nil {
			panic(err)
		}
		return asn1.RawValue{FullBytes: der}
	}
	tbs, err := asn1.Marshal(struct {
		Serial    *big.Int
		Algorithm pkix.AlgorithmIdentifier
		Issuer    asn1.RawValue
		Validity  struct{ NotBefore, NotAfter time.Time }
		Subject   asn1.RawValue
		PublicKey asn1.RawValue
	}{serial, algo, name(issuerName), struct{ NotBefore, NotAfter time.Time }{s.NotBefore.UTC(), s.NotAfter.UTC()}, name(subject), asn1.RawValue{FullBytes: spki}})
	if err != nil {
		panic(err)
	}
	digest := sha256.Sum256(tbs)
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		panic(err)
	}
	der, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, algo, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		panic(err)
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	if x.Version != 1 {
		panic("not a v1 certificate")
	}
	return &Cert{X509: x, Key: key}
}

// From is the start of the validity window the tests' certificates share: 2026-01-01.
func From() time.Time { return Date(2026, 1, 1) }

// Until is the end of that window: 2036-01-01.
func Until() time.Time { return Date(2036, 1, 1) }

// Now is the moment the tests judge validity at: 2027-06-01, inside the window.
func Now() time.Time { return Date(2027, 6, 1) }
