package istio

import (
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testmodel"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// sharedTestCache is the cache the tests parse with, as the exporter's sources share one.
var sharedTestCache = pki.NewCache()

func testCache() *pki.Cache { return sharedTestCache }

// newAnalyzer analyses with Istio's rules.
func newAnalyzer() *pki.Analyzer {
	return pki.NewAnalyzer(testCache(), map[model.Mesh]pki.MeshRules{Name: New().Rules()})
}

// shapesPKI is a root, an intermediate and a workload leaf of shop/cart.
func shapesPKI() (root, inter, leaf *testpki.Cert) {
	root = testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter = testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf = testpki.Issue(testpki.Spec{Issuer: inter, URIs: []string{"spiffe://cluster.local/ns/shop/sa/cart"}, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	return root, inter, leaf
}

// analyseProxy analyses a proxy's bundles next to a plug-in CA of root and inter.
func analyseProxy(source string, bundles []model.Bundle, root, inter *testpki.Cert) model.Analysis {
	ca := &model.Object{Source: sources.SourceSecret, Namespace: "istio-system", Name: "cacerts", Mesh: Name, Authoritative: true,
		Bundles: []model.Bundle{{Key: "ca-cert.pem", Certificates: parsed(inter)}, {Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: parsed(root)}}}
	proxy := &model.Object{Source: source, Namespace: "shop", Name: "cart-1", Mesh: Name, Bundles: bundles}
	settings := map[model.Mesh]model.MeshSettings{Name: {TrustDomain: "cluster.local", TrustDomainAliases: []string{"old.local"}}}
	return newAnalyzer().Analyze([]*model.Object{ca, proxy}, settings)
}

func parsed(cs ...*testpki.Cert) []*model.Certificate {
	certs, _ := testCache().ParseBundle(testpki.Bundle(cs...))
	return certs
}

// chainStatus is the chain of the proxy's certificate at key, evaluated at testpki.Now().
func chainStatus(t *testing.T, a model.Analysis, key string) model.ChainStatus {
	t.Helper()
	for _, c := range testmodel.Certificates(a) {
		if c.Name == "cart-1" && c.Key == key && c.Index == 0 {
			if c.Chain == nil {
				t.Fatalf("%s has no chain", key)
			}
			return c.Chain.Evaluate(c.Certificate, testpki.Now())
		}
	}
	t.Fatalf("no certificate at %s", key)
	return model.ChainStatus{}
}

// fuzzCerts are a leaf, its intermediate and root, for the seeds of the proxy formats.
func fuzzCerts() (leaf, inter, root *testpki.Cert) {
	from := testpki.From()
	root = testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: from, NotAfter: from.AddDate(10, 0, 0)})
	inter = testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: from, NotAfter: from.AddDate(5, 0, 0)})
	leaf = testpki.Issue(testpki.Spec{Issuer: inter, URIs: []string{"spiffe://cluster.local/ns/a/sa/b"}, NotBefore: from, NotAfter: from.AddDate(0, 0, 1)})
	return leaf, inter, root
}

// checkBundles holds for every reader: a bounded reason, certificates with facts.
func checkBundles(t *testing.T, bundles []model.Bundle) {
	for _, b := range bundles {
		for _, c := range b.Certificates {
			if c == nil || !c.Partial && c.Fingerprint == ([32]byte{}) {
				t.Fatal("a nil certificate")
			}
		}
	}
}
