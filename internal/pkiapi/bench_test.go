package pkiapi

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// proxiesSnapshot is an Istio mesh of n sidecars on one intermediate, each with its own leaf and a
// copy of the root, read from pods.
func proxiesSnapshot(b *testing.B, n int) (*model.Snapshot, *testpki.Cert) {
	b.Helper()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, Serial: 1, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Serial: 2, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	cache := pki.NewCache()
	parse := func(cs ...*testpki.Cert) []*model.Certificate {
		certs, reason := cache.ParseBundle(testpki.Bundle(cs...))
		if reason != model.ReasonNone {
			b.Fatal(reason)
		}
		return certs
	}
	spare := testpki.Issue(testpki.Spec{CommonName: "spare root", CA: true, Serial: 3, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	rootCerts, interCerts := parse(root), parse(inter)
	objects := []*model.Object{{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: model.MeshIstio, Authoritative: true,
		Bundles: []model.Bundle{{Key: "ca-cert.pem", Certificates: interCerts}, {Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: parse(root, spare)}}}}
	var proxies []*model.ProxyStatus
	for i := range n {
		ns, name := fmt.Sprintf("ns-%d", i%100), fmt.Sprintf("pod-%d", i)
		leaf := testpki.Issue(testpki.Spec{Issuer: inter, Serial: int64(1000 + i), URIs: []string{"spiffe://cluster.local/ns/" + ns + "/sa/default"},
			NotBefore: testpki.From(), NotAfter: testpki.Until()})
		objects = append(objects, &model.Object{Source: "envoy", Namespace: ns, Name: name, Mesh: model.MeshIstio, FromPods: true,
			Bundles: []model.Bundle{
				{Key: "default", Export: model.ExportFirst, Presented: true, Certificates: append(parse(leaf), interCerts...)},
				{Key: "ROOTCA", Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, Certificates: rootCerts}}})
		proxies = append(proxies, &model.ProxyStatus{Mesh: model.MeshIstio, Source: "envoy", Namespace: ns, Name: name, Up: true, LastSuccess: testpki.Now()})
	}
	an := pki.NewAnalyzer(cache, nil).Analyze(objects, nil)
	return &model.Snapshot{Analysis: an, Rotation: pki.RotationAt(an, testpki.Now()), Proxies: proxies,
		Sources: []model.SourceStatus{{Name: "secret", Up: true, Synced: true}, {Name: "envoy", Up: true, Synced: true, ReadInterval: 300e9}}}, root
}

// BenchmarkWhatIf10k: through the handler, the what-if of removing the root of 10,000 sidecars or
// their intermediate (every leaf breaks), and of removing an anchor nothing depends on (spare, 3).
func BenchmarkWhatIf10k(b *testing.B) {
	snap, root := proxiesSnapshot(b, 10000)
	f := fixture{snap: snap}
	for _, q := range []string{"remove_anchor=" + root.X509.SerialNumber.Text(16), "remove_issuer=2", "remove_anchor=3"} {
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				if rec := f.serve(b, PathWhatIf+"?"+q); rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}

// BenchmarkPKI10k: the default answer of /api/v1/pki and the page over 10,000 sidecars.
func BenchmarkPKI10k(b *testing.B) {
	snap, _ := proxiesSnapshot(b, 10000)
	f := fixture{snap: snap}
	for _, path := range []string{PathPKI, PathPage} {
		b.Run(path, func(b *testing.B) {
			for b.Loop() {
				if rec := f.serve(b, path); rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
