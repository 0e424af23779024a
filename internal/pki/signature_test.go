package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// TestVerifiesAsX509 checks the exporter's signature check, made on the digest a certificate keeps
// instead of its DER, against crypto/x509's own check, for every algorithm a mesh can use, and
// that a changed signature, another CA's key or a key of the wrong kind does not verify.
func TestVerifiesAsX509(t *testing.T) {
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rsaKey := must(rsa.GenerateKey(rand.Reader, 2048))
	otherRSA := must(rsa.GenerateKey(rand.Reader, 2048))
	p256 := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	p384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	otherP256 := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherEd, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// issue signs a certificate for key with signer under algo; a nil parent makes it self-signed.
	issue := func(name string, key crypto.PublicKey, ca bool, parent *x509.Certificate, signer crypto.Signer, algo x509.SignatureAlgorithm) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: from, NotAfter: from.AddDate(1, 0, 0),
			BasicConstraintsValid: true, IsCA: ca, SignatureAlgorithm: algo}
		if ca {
			tmpl.KeyUsage = x509.KeyUsageCertSign
		}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key, signer)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		x, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	ca := func(signer crypto.Signer) *x509.Certificate {
		return issue("ca", signer.Public(), true, nil, signer, 0)
	}

	for _, tt := range []struct {
		name          string
		signer, other crypto.Signer
		algo          x509.SignatureAlgorithm
	}{
		{"RSA PKCS#1 SHA-256", rsaKey, otherRSA, x509.SHA256WithRSA},
		{"RSA PKCS#1 SHA-384", rsaKey, otherRSA, x509.SHA384WithRSA},
		{"RSA PKCS#1 SHA-512", rsaKey, otherRSA, x509.SHA512WithRSA},
		{"RSA-PSS SHA-256", rsaKey, otherRSA, x509.SHA256WithRSAPSS},
		{"RSA-PSS SHA-384", rsaKey, otherRSA, x509.SHA384WithRSAPSS},
		{"RSA-PSS SHA-512", rsaKey, otherRSA, x509.SHA512WithRSAPSS},
		{"ECDSA P-256 SHA-256", p256, otherP256, x509.ECDSAWithSHA256},
		{"ECDSA P-256 SHA-384", p256, otherP256, x509.ECDSAWithSHA384},
		{"ECDSA P-384 SHA-384", p384, otherP256, x509.ECDSAWithSHA384},
		{"ECDSA P-384 SHA-512", p384, otherP256, x509.ECDSAWithSHA512},
		{"Ed25519", edKey, otherEd, x509.PureEd25519},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parentX := ca(tt.signer)
			childX := issue("leaf", leafKey.Public(), false, parentX, tt.signer, tt.algo)
			if err := parentX.CheckSignature(childX.SignatureAlgorithm, childX.RawTBSCertificate, childX.Signature); err != nil {
				t.Fatalf("crypto/x509 does not verify the test certificate: %v", err)
			}
			parent, child := NewCertificate(parentX), NewCertificate(childX)
			if !verifies(parent, child) {
				t.Error("a good signature does not verify")
			}
			if !parent.SelfSigned {
				t.Error("a self-signed CA is not seen as self-signed")
			}

			sig := []byte(child.Signature)
			sig[len(sig)/2] ^= 0x01
			tampered := &model.Certificate{Signed: child.Signed, Signature: string(sig), SignatureAlgorithm: child.SignatureAlgorithm}
			if verifies(parent, tampered) {
				t.Error("a changed signature verifies")
			}
			if verifies(NewCertificate(ca(tt.other)), child) {
				t.Error("another CA's key verifies")
			}
			for _, wrong := range []crypto.Signer{rsaKey, p256, edKey} {
				if fmt.Sprintf("%T", wrong) != fmt.Sprintf("%T", tt.signer) && verifies(NewCertificate(ca(wrong)), child) {
					t.Errorf("a %T verifies", wrong.Public())
				}
			}
		})
	}

	// A certificate that is not a CA keeps no key: nothing it signed verifies.
	notCAX := issue("not a CA", p256.Public(), false, nil, p256, 0)
	signedX := issue("signed by a leaf", leafKey.Public(), false, notCAX, p256, 0)
	if verifies(NewCertificate(notCAX), NewCertificate(signedX)) {
		t.Error("a certificate that is not a CA verifies a signature")
	}
	// An algorithm crypto/x509 refuses (MD5) or does not support leaves nothing to verify.
	for _, algo := range []x509.SignatureAlgorithm{x509.MD5WithRSA, x509.DSAWithSHA256, x509.UnknownSignatureAlgorithm} {
		if got := signedPart(algo, []byte("tbs")); got != nil {
			t.Errorf("%v keeps %d bytes to verify", algo, len(got))
		}
	}
	c := NewCertificate(issue("leaf", leafKey.Public(), false, ca(p256), p256, 0))
	c.SignatureAlgorithm = x509.MD5WithRSA
	if verifies(NewCertificate(ca(p256)), c) {
		t.Error("an MD5 signature verifies")
	}
}
