package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// signatureScheme is how a signature algorithm signs: the hash it signs a digest of (none for
// Ed25519, which hashes the message as it signs), the kind of key, and RSA's padding.
type signatureScheme struct {
	hash crypto.Hash
	key  x509.PublicKeyAlgorithm
	pss  bool
}

// signatureSchemes are the algorithms whose signatures the exporter verifies: the ones
// x509.Certificate.CheckSignature verifies. MD5 and MD2 are refused as insecure there and DSA is
// not supported, so a signature made with them never verifies here either.
var signatureSchemes = map[x509.SignatureAlgorithm]signatureScheme{
	x509.SHA1WithRSA:      {crypto.SHA1, x509.RSA, false},
	x509.SHA256WithRSA:    {crypto.SHA256, x509.RSA, false},
	x509.SHA384WithRSA:    {crypto.SHA384, x509.RSA, false},
	x509.SHA512WithRSA:    {crypto.SHA512, x509.RSA, false},
	x509.SHA256WithRSAPSS: {crypto.SHA256, x509.RSA, true},
	x509.SHA384WithRSAPSS: {crypto.SHA384, x509.RSA, true},
	x509.SHA512WithRSAPSS: {crypto.SHA512, x509.RSA, true},
	x509.ECDSAWithSHA1:    {crypto.SHA1, x509.ECDSA, false},
	x509.ECDSAWithSHA256:  {crypto.SHA256, x509.ECDSA, false},
	x509.ECDSAWithSHA384:  {crypto.SHA384, x509.ECDSA, false},
	x509.ECDSAWithSHA512:  {crypto.SHA512, x509.ECDSA, false},
	x509.PureEd25519:      {0, x509.Ed25519, false},
}

// signedPart is what a certificate keeps of its to-be-signed part to have its signature verified
// later: the digest the signature covers, or the part itself for Ed25519, or nothing for an
// algorithm that is not verified. Keeping a 32-byte digest rather than the part (most of a
// certificate) is what lets a certificate drop its DER.
func signedPart(algo x509.SignatureAlgorithm, tbs []byte) []byte {
	scheme, ok := signatureSchemes[algo]
	switch {
	case !ok:
		return nil
	case scheme.hash == 0:
		return tbs
	case !scheme.hash.Available():
		return nil
	}
	h := scheme.hash.New()
	h.Write(tbs)
	return h.Sum(nil)
}

// verifies reports whether parent's key verifies child's signature. Only a CA keeps its key: a
// certificate that is not a CA verifies nothing (it may not sign certificates at all).
func verifies(parent, child *model.Certificate) bool {
	scheme, ok := signatureSchemes[child.SignatureAlgorithm]
	if !ok || child.Signed == "" || parent.Authority == nil {
		return false
	}
	signed, signature := []byte(child.Signed), []byte(child.Signature)
	switch key := parent.Authority.PublicKey.(type) {
	case *rsa.PublicKey:
		if scheme.key != x509.RSA {
			return false
		}
		if scheme.pss {
			return rsa.VerifyPSS(key, scheme.hash, signed, signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(key, scheme.hash, signed, signature) == nil
	case *ecdsa.PublicKey:
		return scheme.key == x509.ECDSA && ecdsa.VerifyASN1(key, signed, signature)
	case ed25519.PublicKey:
		return scheme.key == x509.Ed25519 && ed25519.Verify(key, signed, signature)
	}
	return false
}
