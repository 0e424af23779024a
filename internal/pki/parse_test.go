package pki

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

func TestParseBundle(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until(), Key: testpki.RSA2048})
	two := testpki.Bundle(inter, root)
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 0x01, 0x01, 0xff}})

	tests := []struct {
		name    string
		data    []byte
		want    int
		reason  model.ErrorReason
		subject string
	}{
		{"two PEM certificates", two, 2, model.ReasonNone, "inter"},
		{"CRLF line endings", bytes.ReplaceAll(two, []byte("\n"), []byte("\r\n")), 2, model.ReasonNone, "inter"},
		{"text around blocks", append(append([]byte("subject=root\n"), root.PEM()...), "# end\n"...), 1, model.ReasonNone, "root"},
		{"UTF-8 byte order mark", append([]byte("\xef\xbb\xbf"), root.PEM()...), 1, model.ReasonNone, "root"},
		{"key block skipped", append(root.KeyPEM(), root.PEM()...), 1, model.ReasonNone, "root"},
		{"only a key", root.KeyPEM(), 0, model.ReasonNoCertificate, ""},
		{"truncated second block", append(root.PEM(), inter.PEM()[:200]...), 1, model.ReasonBadPEM, "root"},
		{"undecodable DER in a block", append(corrupt, root.PEM()...), 1, model.ReasonBadDER, "root"},
		{"DER certificate", root.X509.Raw, 1, model.ReasonNone, "root"},
		{"two DER certificates", append(append([]byte{}, inter.X509.Raw...), root.X509.Raw...), 2, model.ReasonNone, "inter"},
		{"corrupt DER", []byte{0x30, 0x82, 0x01}, 0, model.ReasonBadDER, ""},
		{"empty", nil, 0, model.ReasonNoCertificate, ""},
		{"plain text", []byte("hello world\n"), 0, model.ReasonNoCertificate, ""},
		{"too large", bytes.Repeat([]byte{'a'}, MaxBundleBytes+1), 0, model.ReasonTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, reason := testCache().ParseBundle(tt.data)
			if len(certs) != tt.want || reason != tt.reason {
				t.Fatalf("testCache().ParseBundle() = %d certificates, reason %q; want %d, %q", len(certs), reason, tt.want, tt.reason)
			}
			if tt.subject != "" && certs[0].Subject != "CN="+tt.subject {
				t.Errorf("first certificate is %q, want CN=%s", certs[0].Subject, tt.subject)
			}
		})
	}
}

func TestParseBundleClearsKeyBytes(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	keyPEM := root.KeyPEM()
	keyBlock, _ := pem.Decode(keyPEM)
	data := append(append([]byte{}, keyPEM...), root.PEM()...)
	certs, _ := testCache().ParseBundle(data)
	for _, c := range certs {
		if strings.Contains(fmt.Sprint(c), string(keyBlock.Bytes[:32])) {
			t.Fatal("a parsed certificate references private key bytes")
		}
	}
}

func TestNewCertificateFacts(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until(), Serial: 0xABCDEF})
	rsaLeaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: root, Key: testpki.RSA2048, NotBefore: testpki.From(), NotAfter: testpki.Until(),
		URIs: []string{"spiffe://cluster.local/ns/a/sa/b", "https://example.com/x"}})
	p384 := testpki.Issue(testpki.Spec{CommonName: "p384", Key: testpki.ECDSAP384, NotBefore: testpki.From(), NotAfter: testpki.Until()})

	c := NewCertificate(root.X509)
	if !c.SelfSigned || c.Serial != "abcdef" || c.KeyAlgorithm != "ECDSA-P256" || Classify(c, "", true) != model.RoleTrustAnchor {
		t.Errorf("root: self-signed %v, serial %q, key %q, role %q", c.SelfSigned, c.Serial, c.KeyAlgorithm, Classify(c, "", true))
	}
	l := NewCertificate(rsaLeaf.X509)
	if l.SelfSigned || l.KeyAlgorithm != "RSA-2048" || Classify(l, model.RoleIssuer, false) != model.RoleLeaf {
		t.Errorf("leaf: self-signed %v, key %q, role %q", l.SelfSigned, l.KeyAlgorithm, Classify(l, model.RoleIssuer, false))
	}
	if strings.Join(l.SPIFFEIDs, ",") != "spiffe://cluster.local/ns/a/sa/b" {
		t.Errorf("SPIFFE IDs = %v", l.SPIFFEIDs)
	}
	if got := NewCertificate(p384.X509).KeyAlgorithm; got != "ECDSA-P384" {
		t.Errorf("P-384 key = %q", got)
	}
	// A self-signed leaf is a leaf, not an anchor.
	if got := Classify(NewCertificate(p384.X509), "", true); got != model.RoleLeaf {
		t.Errorf("self-signed leaf role = %q", got)
	}
}

func TestParseBundleSharesIdenticalCertificates(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "shared root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	a, _ := testCache().ParseBundle(root.PEM())
	b, _ := testCache().ParseBundle(append([]byte("# another bundle\n"), root.PEM()...))
	if len(a) != 1 || len(b) != 1 || a[0] != b[0] {
		t.Fatal("two bundles holding one certificate got two copies")
	}
}
