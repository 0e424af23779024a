package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testexpo"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// staticProvider analyses fixed objects once.
type staticProvider struct{ snap *model.Snapshot }

func (p staticProvider) Snapshot() *model.Snapshot { return p.snap }

func analysed(objects []*model.Object, sources ...model.SourceStatus) staticProvider {
	meshes := map[model.Mesh]model.MeshSettings{
		istio.Name: {TrustDomain: "cluster.local", ControlPlaneNamespace: "istio-system"},
	}
	return staticProvider{&model.Snapshot{Analysis: pki.NewAnalyzer(pki.NewCache(), mesh.Rules(config.Default().Meshes)).Analyze(objects, meshes), Sources: sources}}
}

// gatherer parses what the Handler serves for a snapshot at an instant.
func gatherer(t *testing.T, p SnapshotProvider, now time.Time) prometheus.Gatherer {
	return prometheus.Gatherers{prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		h := NewHandler(p, prometheus.NewRegistry(), log.NewNopLogger(), 0)
		h.now = func() time.Time { return now }
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		families := testexpo.Parse(t, rec.Body)
		out := make([]*dto.MetricFamily, 0, len(families))
		for _, f := range families {
			out = append(out, f)
		}
		return out, nil
	})}
}

func bundle(key string, purpose model.Purpose, certs ...*testpki.Cert) model.Bundle {
	b := model.Bundle{Key: key, Purpose: purpose}
	for _, c := range certs {
		b.Certificates = append(b.Certificates, pki.NewCertificate(c.X509))
	}
	return b
}

var (
	from   = testpki.From()
	scrape = func() time.Time { return testpki.Date(2026, 6, 1) }
)

func TestCollectIstioPKI(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, Serial: 1, Key: testpki.RSA2048, NotBefore: from, NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Serial: 2, Issuer: root, NotBefore: from, NotAfter: testpki.Date(2031, 1, 1)})
	leaf := testpki.Issue(testpki.Spec{CommonName: "istiod", Serial: 3, Issuer: inter, NotBefore: from, NotAfter: testpki.Date(2026, 5, 1),
		URIs: []string{"spiffe://cluster.local/ns/istio-system/sa/istiod"}})
	objects := []*model.Object{
		{Source: "file", Name: "/etc/cacerts", Mesh: istio.Name, Authoritative: true, Bundles: []model.Bundle{
			bundle("ca-cert.pem", model.PurposeCertificates, inter),
			bundle("root-cert.pem", model.PurposeTrustBundle, root),
			{Key: "junk.pem", Error: model.ReasonNoCertificate},
		}},
		{Source: "secret", Namespace: "istio-system", Name: "istiod-tls", Mesh: istio.Name, Bundles: []model.Bundle{
			bundle("tls.crt", model.PurposeCertificates, leaf),
		}},
	}
	p := analysed(objects, model.SourceStatus{Name: "file", Up: true, Errors: map[model.ErrorReason]uint64{model.ReasonNoCertificate: 1}})

	want := `
# HELP meshcert_certificate_not_after_timestamp_seconds End of the certificate's validity window (NotAfter), as a Unix timestamp.
# TYPE meshcert_certificate_not_after_timestamp_seconds gauge
meshcert_certificate_not_after_timestamp_seconds{index="0",key="ca-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="intermediate",source="file"} 1.924992e+09
meshcert_certificate_not_after_timestamp_seconds{index="0",key="root-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="trust_anchor",source="file"} 2.0827584e+09
meshcert_certificate_not_after_timestamp_seconds{index="0",key="tls.crt",mesh="istio",name="istiod-tls",namespace="istio-system",role="leaf",source="secret"} 1.7775936e+09
# HELP meshcert_certificate_not_before_timestamp_seconds Start of the certificate's validity window (NotBefore), as a Unix timestamp.
# TYPE meshcert_certificate_not_before_timestamp_seconds gauge
meshcert_certificate_not_before_timestamp_seconds{index="0",key="ca-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="intermediate",source="file"} 1.7672256e+09
meshcert_certificate_not_before_timestamp_seconds{index="0",key="root-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="trust_anchor",source="file"} 1.7672256e+09
meshcert_certificate_not_before_timestamp_seconds{index="0",key="tls.crt",mesh="istio",name="istiod-tls",namespace="istio-system",role="leaf",source="secret"} 1.7672256e+09
# HELP meshcert_certificate_info Descriptive facts of a certificate; always 1.
# TYPE meshcert_certificate_info gauge
meshcert_certificate_info{index="0",issuer="CN=inter",key="tls.crt",key_algorithm="ECDSA-P256",mesh="istio",name="istiod-tls",namespace="istio-system",role="leaf",serial="3",source="secret",spiffe_id="spiffe://cluster.local/ns/istio-system/sa/istiod",subject="CN=istiod"} 1
meshcert_certificate_info{index="0",issuer="CN=root",key="ca-cert.pem",key_algorithm="ECDSA-P256",mesh="istio",name="/etc/cacerts",namespace="",role="intermediate",serial="2",source="file",spiffe_id="",subject="CN=inter"} 1
meshcert_certificate_info{index="0",issuer="CN=root",key="root-cert.pem",key_algorithm="RSA-2048",mesh="istio",name="/etc/cacerts",namespace="",role="trust_anchor",serial="1",source="file",spiffe_id="",subject="CN=root"} 1
# HELP meshcert_chain_depth Certificates in the chain from this certificate to its trust anchor, both included; for a chain that does not verify, the longest path that could be built.
# TYPE meshcert_chain_depth gauge
meshcert_chain_depth{index="0",key="ca-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="intermediate",source="file"} 2
meshcert_chain_depth{index="0",key="tls.crt",mesh="istio",name="istiod-tls",namespace="istio-system",role="leaf",source="secret"} 3
# HELP meshcert_chain_valid 1 when the certificate verifies now up to a current trust anchor of its mesh (signatures, validity windows, CA constraints), else 0.
# TYPE meshcert_chain_valid gauge
meshcert_chain_valid{index="0",key="ca-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="intermediate",source="file"} 1
meshcert_chain_valid{index="0",key="tls.crt",mesh="istio",name="istiod-tls",namespace="istio-system",role="leaf",source="secret"} 0
# HELP meshcert_mesh_requirements_info Which rule of its mesh a CA certificate breaks (reason is empty when it meets them all); always 1.
# TYPE meshcert_mesh_requirements_info gauge
meshcert_mesh_requirements_info{index="0",key="ca-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",reason="",role="intermediate",source="file"} 1
meshcert_mesh_requirements_info{index="0",key="root-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",reason="",role="trust_anchor",source="file"} 1
# HELP meshcert_mesh_requirements_met 1 when a CA certificate of a mesh meets the rules the mesh itself enforces for its role (Linkerd: ECDSA P-256 anchor and issuer, the issuer named identity.<control plane namespace>.<trust domain>; Istio: RSA of at least 2048 bits or ECDSA P-256/P-384), else 0.
# TYPE meshcert_mesh_requirements_met gauge
meshcert_mesh_requirements_met{index="0",key="ca-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="intermediate",source="file"} 1
meshcert_mesh_requirements_met{index="0",key="root-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="trust_anchor",source="file"} 1
# HELP meshcert_chain_info Why the chain does not verify (reason is empty when it does) and the serial of the trust anchor it ends at; always 1.
# TYPE meshcert_chain_info gauge
meshcert_chain_info{anchor_serial="1",index="0",key="ca-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",reason="",role="intermediate",source="file"} 1
meshcert_chain_info{anchor_serial="1",index="0",key="tls.crt",mesh="istio",name="istiod-tls",namespace="istio-system",reason="expired",role="leaf",source="secret"} 1
# HELP meshcert_chain_not_after_timestamp_seconds Earliest NotAfter along the certificate's chain, as a Unix timestamp: when the chain stops verifying.
# TYPE meshcert_chain_not_after_timestamp_seconds gauge
meshcert_chain_not_after_timestamp_seconds{index="0",key="ca-cert.pem",mesh="istio",name="/etc/cacerts",namespace="",role="intermediate",source="file"} 1.924992e+09
meshcert_chain_not_after_timestamp_seconds{index="0",key="tls.crt",mesh="istio",name="istiod-tls",namespace="istio-system",role="leaf",source="secret"} 1.7775936e+09
# HELP meshcert_san_valid 1 when the certificate carries exactly the mesh identity expected of it (SPIFFE ID or Linkerd identity, trust domain, namespace, service account), else 0.
# TYPE meshcert_san_valid gauge
meshcert_san_valid{index="0",key="tls.crt",mesh="istio",name="istiod-tls",namespace="istio-system",role="leaf",source="secret"} 1
# HELP meshcert_san_info Why the certificate's mesh identity is not valid (reason is empty when it is); always 1.
# TYPE meshcert_san_info gauge
meshcert_san_info{index="0",key="tls.crt",mesh="istio",name="istiod-tls",namespace="istio-system",reason="",role="leaf",source="secret"} 1
# HELP meshcert_bundle_error 1 for each key of an object that could not be read completely, with the reason; the readable certificates in it are still exported.
# TYPE meshcert_bundle_error gauge
meshcert_bundle_error{key="junk.pem",name="/etc/cacerts",namespace="",reason="no_certificate",source="file"} 1
# HELP meshcert_source_up 1 when the source's last attempt to read its material worked, else 0.
# TYPE meshcert_source_up gauge
meshcert_source_up{source="file"} 1
# HELP meshcert_source_errors_total Read errors of a source by reason. A broken object counts once each time it starts failing; a failing source counts each attempt.
# TYPE meshcert_source_errors_total counter
meshcert_source_errors_total{reason="no_certificate",source="file"} 1
`
	if err := testutil.GatherAndCompare(gatherer(t, p, scrape()), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// TestCollectSurvivesHostileLabels feeds values client_golang would reject or that would bloat the
// exposition: the scrape must still succeed.
func TestCollectSurvivesHostileLabels(t *testing.T) {
	c := testpki.Issue(testpki.Spec{RawSubject: testpki.T61Subject("bad\xff\xfe" + strings.Repeat("x", 1000)), NotBefore: from, NotAfter: testpki.Date(9999, 12, 31)})
	p := analysed([]*model.Object{{Source: "file", Name: "dir\xff", Bundles: []model.Bundle{bundle("a.pem", 0, c)}}})
	families, err := gatherer(t, p, scrape()).Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if len(l.GetValue()) > maxLabelValueLength {
					t.Errorf("%s %s has %d bytes", f.GetName(), l.GetName(), len(l.GetValue()))
				}
			}
			if f.GetName() == "meshcert_certificate_not_after_timestamp_seconds" && m.GetGauge().GetValue() != 253402214400 {
				t.Errorf("year 9999 NotAfter = %v", m.GetGauge().GetValue())
			}
		}
	}
}

// TestCollectNoDuplicateSeries: two sources that repeat one object must not make the scrape fail.
func TestCollectNoDuplicateSeries(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: from, NotAfter: testpki.Until()})
	o := &model.Object{Source: "secret", Namespace: "ns", Name: "a", Bundles: []model.Bundle{
		bundle("ca.crt", model.PurposeTrustBundle, root), bundle("ca.crt", model.PurposeTrustBundle, root)}}
	p := analysed([]*model.Object{o, o})
	families, err := gatherer(t, p, scrape()).Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		seen := map[string]bool{}
		for _, m := range f.GetMetric() {
			key := fmt.Sprint(m.GetLabel())
			if seen[key] {
				t.Errorf("%s: duplicate series %s", f.GetName(), key)
			}
			seen[key] = true
		}
		if f.GetName() == "meshcert_certificate_info" && len(f.GetMetric()) != 1 {
			t.Errorf("%d info series, want 1", len(f.GetMetric()))
		}
	}
}

func TestCollectProxyStatus(t *testing.T) {
	p := staticProvider{&model.Snapshot{Proxies: []*model.ProxyStatus{
		{Mesh: istio.Name, Source: "envoy", Namespace: "shop", Name: "cart-1", Up: true, Endpoint: "config_dump", LastSuccess: testpki.Date(2026, 6, 1)},
		{Mesh: istio.Name, Source: "envoy", Namespace: "shop", Name: "never", Up: false, Endpoint: "config_dump"},
	}}}
	want := `
# HELP meshcert_proxy_last_success_timestamp_seconds When the proxy was last read successfully, as a Unix timestamp: the age of its certificate series.
# TYPE meshcert_proxy_last_success_timestamp_seconds gauge
meshcert_proxy_last_success_timestamp_seconds{mesh="istio",name="cart-1",namespace="shop",source="envoy"} 1.780272e+09
# HELP meshcert_proxy_up 1 when the last read of a proxy's admin endpoint worked, else 0. Proxies are read in the background on an interval; the certificates of a proxy that cannot be read are those of its last successful read.
# TYPE meshcert_proxy_up gauge
meshcert_proxy_up{endpoint="config_dump",mesh="istio",name="cart-1",namespace="shop",source="envoy"} 1
meshcert_proxy_up{endpoint="config_dump",mesh="istio",name="never",namespace="shop",source="envoy"} 0
`
	if err := testutil.GatherAndCompare(gatherer(t, p, scrape()), strings.NewReader(want), "meshcert_proxy_up", "meshcert_proxy_last_success_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

// TestFamiliesMatchDescriptors: the sources' families the collector describes are those Families
// lists, and every family has a unique name, a help text, a type and labels.
func TestFamiliesMatchDescriptors(t *testing.T) {
	ch := make(chan *prometheus.Desc, 64)
	sourcesCollector{sourceDescs: newSourceDescs(), snap: &model.Snapshot{}}.Describe(ch)
	close(ch)
	listed := map[string]Family{}
	for _, f := range Families() {
		if _, dup := listed[f.Name]; dup || f.Help == "" || f.Type == "" || len(f.Labels) == 0 || f.Subject == "" {
			t.Errorf("%s: repeated or incomplete: %+v", f.Name, f)
		}
		listed[f.Name] = f
	}
	for d := range ch {
		s := d.String()
		name := s[strings.Index(s, `fqName: "`)+9:]
		name = name[:strings.IndexByte(name, '"')]
		if f, ok := listed[name]; !ok || f.Subject != SubjectSource {
			t.Errorf("%s is described but not listed as a source family", name)
		}
	}
}

// TestRenderedLabelsAreListed: every series the Handler writes carries exactly the labels its
// family lists.
func TestRenderedLabelsAreListed(t *testing.T) {
	p, _ := handlerFixture()
	labels := map[string][]string{}
	for _, f := range Families() {
		labels[f.Name] = slices.Sorted(slices.Values(f.Labels))
	}
	fams, err := gatherer(t, p, scrape()).Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) < 14 {
		t.Fatalf("%d families in the fixture", len(fams))
	}
	for _, mf := range fams {
		for _, m := range mf.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			slices.Sort(got)
			if !slices.Equal(got, labels[mf.GetName()]) {
				t.Errorf("%s has labels %v, its family lists %v", mf.GetName(), got, labels[mf.GetName()])
			}
		}
	}
}

// TestEveryFamilyIsDocumented: docs/metrics.md describes each family the collector exports.
func TestEveryFamilyIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"meshcert_exporter_build_info", "meshcert_config_last_reload_successful", "meshcert_config_last_reload_success_timestamp_seconds"}
	for _, f := range Families() {
		names = append(names, f.Name)
	}
	for _, f := range names {
		if !strings.Contains(string(doc), "`"+f+"`") {
			t.Errorf("docs/metrics.md does not describe %s", f)
		}
	}
}

// TestFederatedBundleRendering: a federated bundle is named with its trust domain and never
// rendered as a stale copy.
func TestFederatedBundleRendering(t *testing.T) {
	oa := &model.ObjectAnalysis{
		Object: &model.Object{Source: "envoy", Namespace: "shop", Name: "cart-1", Mesh: istio.Name},
		TrustBundles: []model.TrustBundleFinding{
			{Key: "ROOTCA/cluster.local", Current: true},
			{Key: "ROOTCA/partner.example", Federated: true},
		},
	}
	got := rendered(t, &model.Snapshot{Analysis: model.Analysis{Objects: []*model.ObjectAnalysis{oa}}}, scrape())
	want := `# HELP meshcert_trust_bundle_current 1 when a copy of the mesh's trust anchors handed to workloads (a namespace's root ConfigMap, a proxy's root bundle, an issuer's ca.crt) holds exactly the mesh's current trust anchors, else 0. Absent when the current anchors are unknown.
# TYPE meshcert_trust_bundle_current gauge
meshcert_trust_bundle_current{key="ROOTCA/cluster.local",mesh="istio",name="cart-1",namespace="shop",source="envoy"} 1
# HELP meshcert_federated_trust_bundle_info 1 for each trust bundle an object holds for another trust domain than its mesh's (SPIFFE federation): that domain's anchors, exported under the bundle's key and never compared with the mesh's own.
# TYPE meshcert_federated_trust_bundle_info gauge
meshcert_federated_trust_bundle_info{key="ROOTCA/partner.example",mesh="istio",name="cart-1",namespace="shop",source="envoy",trust_domain="partner.example"} 1
`
	if got != want {
		t.Errorf("rendered:\n%s\nwant:\n%s", got, want)
	}
}

// TestPartialCertificateWithoutStart: a certificate known only by its expiry (a Linkerd proxy's
// metric) has a not-after series and no not-before series.
func TestPartialCertificateWithoutStart(t *testing.T) {
	c := pki.NewPartialCertificate(pki.PartialFacts{NotAfter: testpki.Date(2026, 7, 1), Origin: "shop/web-1"})
	o := &model.Object{Source: "linkerd-proxy", Namespace: "shop", Name: "web-1", Mesh: linkerd.Name,
		Bundles: []model.Bundle{{Key: "identity", Certificates: []*model.Certificate{c}, NoIdentity: true}}}
	body := rendered(t, analysed([]*model.Object{o}).snap, scrape())
	if !strings.Contains(body, `meshcert_certificate_not_after_timestamp_seconds{index="0",key="identity",mesh="linkerd",name="web-1",namespace="shop",role="leaf",source="linkerd-proxy"} 1.782864e+09`) {
		t.Errorf("no not-after series:\n%s", body)
	}
	if strings.Contains(body, "meshcert_certificate_not_before_timestamp_seconds") {
		t.Errorf("a not-before series for a certificate without a known start:\n%s", body)
	}
}

// TestRotationVerdicts: a mesh in a rotation's phase 3 and one that cannot sign, as the rotation
// families write them: the anchor the mesh signs under, the older one it left (retired), a newer
// one published ahead of the next step (neither), and a broken mesh's anchor (not retired).
func TestRotationVerdicts(t *testing.T) {
	ca := func(serial string) *model.Certificate { return &model.Certificate{Serial: serial} }
	snap := &model.Snapshot{Share: "all", Rotation: model.Rotation{
		Anchors: []model.AnchorRadius{
			{Mesh: "istio", Anchor: ca("a1"), Dependents: 3, Retired: true},
			{Mesh: "istio", Anchor: ca("b2"), Dependents: 5, Signing: true},
			{Mesh: "istio", Anchor: ca("c3")},
			{Mesh: "linkerd", Anchor: ca("d4"), Dependents: 2},
		},
		Signing: []model.MeshSigning{{Mesh: "istio", CanSign: true}, {Mesh: "linkerd", Reason: model.SigningExpired}},
	}}
	body := rendered(t, snap, testpki.Now())
	for _, want := range []string{
		`meshcert_trust_anchor_retired{anchor_serial="a1",mesh="istio"} 1`,
		`meshcert_trust_anchor_retired{anchor_serial="b2",mesh="istio"} 0`,
		`meshcert_trust_anchor_retired{anchor_serial="c3",mesh="istio"} 0`,
		`meshcert_trust_anchor_retired{anchor_serial="d4",mesh="linkerd"} 0`,
		`meshcert_trust_anchor_signing{anchor_serial="b2",mesh="istio"} 1`,
		`meshcert_trust_anchor_signing{anchor_serial="c3",mesh="istio"} 0`,
		`meshcert_mesh_can_sign{mesh="istio",reason=""} 1`,
		`meshcert_mesh_can_sign{mesh="linkerd",reason="signing_ca_expired"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("the exposition lacks %s", want)
		}
	}
}
