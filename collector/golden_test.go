package collector

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// everyFamilySnapshot is a mesh in which every family has series: an Istio CA (an RSA-1024 root
// that breaks istiod's rule, a P-256 intermediate), a sidecar presenting its chain with a current
// and a stale copy of the roots and a federated bundle, a leaf with the wrong service account, a
// Linkerd proxy known by its expiry only, a Secret holding its root's key, a broken key, and proxies
// up and never read; the CA Secret is rotated by no one.
func everyFamilySnapshot(t *testing.T) *model.Snapshot {
	cache := pki.NewCache()
	parsed := func(c ...*testpki.Cert) []*model.Certificate {
		certs, reason := cache.ParseBundle(testpki.Bundle(c...))
		if reason != model.ReasonNone {
			t.Fatalf("parse: %s", reason)
		}
		return certs
	}
	from, until := testpki.From(), testpki.Until()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, Serial: 1, Key: testpki.RSA1024, NotBefore: from, NotAfter: until})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Serial: 2, Issuer: root, NotBefore: from, NotAfter: testpki.Date(2031, 1, 1)})
	leaf := testpki.Issue(testpki.Spec{CommonName: "cart", Serial: 3, Issuer: inter, NotBefore: from, NotAfter: testpki.Date(2027, 7, 1),
		URIs: []string{"spiffe://cluster.local/ns/shop/sa/default"}})
	partner := testpki.Issue(testpki.Spec{CommonName: "partner root", CA: true, Serial: 4, NotBefore: from, NotAfter: until})
	old := testpki.Issue(testpki.Spec{CommonName: "old root", CA: true, Serial: 5, NotBefore: from, NotAfter: until})
	objects := []*model.Object{
		{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: istio.Name, Authoritative: true, Manager: model.ManagerNone,
			KeyPairs: []model.KeyPair{{PrivateKey: "ca-key.pem", Certificate: "root-cert.pem"}},
			Bundles: []model.Bundle{
				{Key: "ca-cert.pem", Certificates: parsed(inter)},
				{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: parsed(root)},
				{Key: "cert-chain.pem", Error: model.ReasonIncomplete},
			}},
		{Source: "envoy", Namespace: "shop", Name: "cart-1", Mesh: istio.Name, FromPods: true, Expect: &model.Identity{Namespace: "shop", ServiceAccount: "cart"},
			Bundles: []model.Bundle{
				{Key: "default", Export: model.ExportFirst, Presented: true, Certificates: parsed(leaf, inter)},
				{Key: "ROOTCA/cluster.local", Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, TrustDomainKeyed: true, Certificates: parsed(root)},
				{Key: "ROOTCA/partner.example", Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, TrustDomainKeyed: true, Certificates: parsed(partner)},
			}},
		{Source: "configmap", Namespace: "web", Name: "istio-ca-root-cert", Mesh: istio.Name,
			Bundles: []model.Bundle{{Key: "root-cert.pem", Purpose: model.PurposeTrustBundleCopy, Certificates: parsed(old)}}},
		{Source: "ztunnel", Namespace: "istio-system", Name: "ztunnel-a1b2c", Mesh: istio.Name, FromPods: true,
			Bundles: []model.Bundle{{Key: "spiffe://cluster.local/ns/books/sa/batch", Export: model.ExportFirst, Presented: true, State: model.IdentityInitializing}}},
		{Source: "linkerd-proxy", Namespace: "books", Name: "web-1", Mesh: linkerd.Name,
			Bundles: []model.Bundle{{Key: "identity", NoIdentity: true, Certificates: []*model.Certificate{
				pki.NewPartialCertificate(pki.PartialFacts{NotAfter: testpki.Date(2027, 6, 2), Origin: "books/web-1"})}}}},
	}
	meshes := map[model.Mesh]model.MeshSettings{istio.Name: istio.New().Settings(), linkerd.Name: linkerd.New().Settings()}
	rules := map[model.Mesh]pki.MeshRules{istio.Name: istio.New().Rules(), linkerd.Name: linkerd.New().Rules()}
	snap := &model.Snapshot{Analysis: pki.NewAnalyzer(cache, rules).Analyze(objects, meshes)}
	snap.Rotation = pki.RotationAt(snap.Analysis, testpki.Now())
	snap.Share = "shard-1-of-4"
	snap.Proxies = []*model.ProxyStatus{
		{Mesh: istio.Name, Source: "envoy", Namespace: "shop", Name: "cart-1", Up: true, Endpoint: "config_dump", LastSuccess: testpki.Date(2027, 5, 31)},
		{Mesh: linkerd.Name, Source: "linkerd-proxy", Namespace: "books", Name: "web-1", Endpoint: "metrics"},
	}
	// Posture: STRICT mesh-wide, shop PERMISSIVE with one workload DISABLE on a port, books
	// denying by default.
	snap.Posture = istio.New().JudgePosture([]*model.PostureRecord{
		{Mesh: istio.Name, Kind: model.PostureKindPeerAuthentication, Namespace: "istio-system", Name: "default", Mode: "STRICT"},
		{Mesh: istio.Name, Kind: model.PostureKindPeerAuthentication, Namespace: "shop", Name: "legacy", Mode: "PERMISSIVE"},
		{Mesh: istio.Name, Kind: model.PostureKindPeerAuthentication, Namespace: "shop", Name: "cart-metrics", Selector: true, Mode: "DISABLE", PortOverrides: 1},
		{Mesh: istio.Name, Kind: model.PostureKindAuthorization, Namespace: "books", Name: "deny-all", Action: "ALLOW", NoRules: true},
		{Mesh: istio.Name, Kind: model.PostureKindNamespace, Name: "books", Enrolled: true},
	}, []*model.PodRecord{ // books: a meshed pod, one without the proxy though the namespace is injected, one
		// that could flush its redirect rules, one on the node's network
		{Namespace: "books", Name: "web-1", Meshed: []model.Mesh{istio.Name}},
		{Namespace: "books", Name: "batch-1"},
		{Namespace: "books", Name: "debug-1", Meshed: []model.Mesh{istio.Name}, NetAdmin: true},
		{Namespace: "books", Name: "agent-1", HostNetwork: true},
	}, istio.New().Settings())
	snap.Sources = []model.SourceStatus{{Name: "secret", Up: true, LastSuccess: testpki.Date(2027, 5, 31),
		Errors: map[model.ErrorReason]uint64{model.ReasonIncomplete: 1, model.ReasonForbidden: 0}},
		{Name: "envoy", Up: true, Synced: true, LastSuccess: testpki.Date(2027, 5, 31), ReadInterval: 5 * time.Minute}}
	return snap
}

// TestEveryFamilyGolden: what the Handler serves for a mesh in which every family has series, at
// a glance in testdata/families.prom (`-update` writes it anew), with every family of Families in
// it, and promtool check metrics clean.
func TestEveryFamilyGolden(t *testing.T) {
	got := rendered(t, everyFamilySnapshot(t), testpki.Now())
	const golden = "testdata/families.prom"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("the exposition differs from %s (run the test with -update if the change is meant):\n%s", golden, got)
	}
	for _, f := range Families() {
		if !strings.Contains(got, "\n"+f.Name+"{") {
			t.Errorf("%s has no series in the fixture", f.Name)
		}
	}
	if strings.Contains(got, `meshcert_certificate_not_before_timestamp_seconds{index="0",key="identity"`) {
		t.Error("a not-before series for the Linkerd proxy's certificate, which has no known start")
	}
	cmd := exec.Command(testenv.Tool(t, "promtool"), "check", "metrics")
	cmd.Stdin = bytes.NewReader(want)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics %s: %v\n%s", golden, err, out)
	}
}
