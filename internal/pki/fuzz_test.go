package pki

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testmodel"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// fuzzSeeds are real shapes: chains, roots, DER, keys next to certificates.
func fuzzSeeds() [][]byte {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until(), Key: testpki.RSA2048})
	leaf := testpki.Issue(testpki.Spec{Issuer: inter, URIs: []string{"spiffe://cluster.local/ns/a/sa/b"}, DNSNames: []string{"b.a.serviceaccount.identity.linkerd.cluster.local"},
		NotBefore: testpki.From(), NotAfter: testpki.Until()})
	return [][]byte{
		testpki.Bundle(leaf, inter, root), root.PEM(), root.X509.Raw, append(leaf.KeyPEM(), leaf.PEM()...),
		bytes.ReplaceAll(root.PEM(), []byte("\n"), []byte("\r\n")), []byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), {0x30, 0x82, 0x01}, nil,
	}
}

// FuzzParseBundle: any input gives certificates and a bounded reason, never a panic; what parses
// is a real certificate.
func FuzzParseBundle(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, reason := testCache().ParseBundle(data)
		if len(certs) > MaxBundleCertificates {
			t.Fatalf("%d certificates", len(certs))
		}
		if len(certs) == 0 && reason == model.ReasonNone && len(bytes.TrimSpace(data)) > 0 {
			t.Fatal("no certificate and no reason")
		}
		for _, c := range certs {
			if c.Fingerprint == ([32]byte{}) || c.Partial {
				t.Fatal("a parsed certificate without its facts")
			}
		}
	})
}

// FuzzAnalyze builds chains over whatever two fuzzed bundles hold: no panic, bounded depth, unique
// locations, and a valid chain really ends at an anchor.
func FuzzAnalyze(f *testing.F) {
	seeds := fuzzSeeds()
	for i := range seeds {
		f.Add(seeds[i], seeds[(i+1)%len(seeds)])
	}
	f.Fuzz(func(t *testing.T, chain, roots []byte) {
		c, _ := testCache().ParseBundle(chain)
		r, _ := testCache().ParseBundle(roots)
		objects := []*model.Object{
			{Source: "fuzz", Name: "a", Mesh: meshIstio, Authoritative: true, Bundles: []model.Bundle{{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: r}}},
			{Source: "fuzz", Name: "b", Mesh: meshIstio, Bundles: []model.Bundle{{Key: "default", Certificates: c}, {Key: "ROOTCA", Purpose: model.PurposeTrustBundleCopy, Certificates: r}}},
			{Source: "fuzz", Name: "c", Bundles: []model.Bundle{{Key: "bundle.pem", Certificates: append(append([]*model.Certificate{}, c...), r...)}}},
		}
		a := newAnalyzer().Analyze(objects, map[model.Mesh]model.MeshSettings{meshIstio: {TrustDomain: "cluster.local"}})
		seen := map[testmodel.Location]bool{}
		for _, o := range testmodel.Certificates(a) {
			if seen[o.Location] {
				t.Fatalf("duplicate location %+v", o.Location)
			}
			seen[o.Location] = true
			if o.Chain == nil {
				continue
			}
			st := o.Chain.Evaluate(o.Certificate, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
			if st.Depth < 1 || st.Depth > maxChainLength {
				t.Fatalf("depth %d", st.Depth)
			}
			if st.Valid && (st.Anchor == nil || !st.Anchor.SelfSigned) {
				t.Fatal("a valid chain that does not end at a self-signed anchor")
			}
		}
	})
}

// FuzzParseSPIFFEID: whatever parses writes back to exactly its input.
func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{"spiffe://cluster.local/ns/a/sa/b", "spiffe://td", "spiffe://td/", "spiffe://td//x", "spiffe://t d/x", "SPIFFE://td/x", "spiffe://td/a?b#c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSPIFFEID(s)
		if err != nil {
			return
		}
		back := "spiffe://" + id.TrustDomain
		if len(id.Segments) > 0 {
			back += "/" + strings.Join(id.Segments, "/")
		}
		if back != s || !ValidTrustDomain(id.TrustDomain) {
			t.Fatalf("%q parsed as %+v", s, id)
		}
	})
}
