package sources

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/go-kit/log"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// Envoy admin fixtures, built with Envoy's own types and protojson, as Envoy renders them.

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// workloadSecret is Istio's "default" secret: a chain and the redacted key.
func workloadSecret(chain []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(chain), PrivateKey: inline([]byte("[redacted]"))}}}
}

// rootSecret is Istio's "ROOTCA" secret.
func rootSecret(roots []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(roots)}}}
}

// spiffeRootSecret is a ROOTCA with the SPIFFE validator's per-trust-domain bundles.
func spiffeRootSecret(bundles map[string][]byte) *tlsv3.Secret {
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	for td, b := range bundles {
		cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{Name: td, TrustBundle: inline(b)})
	}
	return &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: "envoy.tls.cert_validator.spiffe", TypedConfig: mustAny(cfg)}}}}
}

// envoyDump renders /config_dump?resource=dynamic_active_secrets: one DynamicSecret per config,
// or, wrapped, one SecretsConfigDump holding them (the ?mask= shape).
func envoyDump(wrapped bool, secrets ...*tlsv3.Secret) []byte {
	var dynamic []*adminv3.SecretsConfigDump_DynamicSecret
	for _, s := range secrets {
		dynamic = append(dynamic, &adminv3.SecretsConfigDump_DynamicSecret{Name: s.Name, VersionInfo: "2026-06-01T00:00:00Z/1",
			LastUpdated: timestamppb.New(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)), Secret: mustAny(s)})
	}
	dump := &adminv3.ConfigDump{}
	if wrapped {
		dump.Configs = append(dump.Configs, mustAny(&adminv3.SecretsConfigDump{DynamicActiveSecrets: dynamic}))
	} else {
		for _, d := range dynamic {
			dump.Configs = append(dump.Configs, mustAny(d))
		}
	}
	out, err := envoyJSON.Marshal(dump)
	if err != nil {
		panic(err)
	}
	return out
}

// envoyJSON renders as Envoy's admin does: proto field names. TestEnvoyParsersReadBothSpellings
// covers protojson's default lowerCamelCase names too.
var envoyJSON = protojson.MarshalOptions{UseProtoNames: true}

// envoyCerts renders /certs for a leaf and a root, repeated as Envoy repeats them per context.
func envoyCerts(leaf, root *testpki.Cert) []byte {
	details := func(c *testpki.Cert) *adminv3.CertificateDetails {
		d := &adminv3.CertificateDetails{Path: "<inline>", SerialNumber: strings.ToUpper(c.X509.SerialNumber.Text(16)),
			ValidFrom: timestamppb.New(c.X509.NotBefore), ExpirationTime: timestamppb.New(c.X509.NotAfter)}
		for _, u := range c.X509.URIs {
			d.SubjectAltNames = append(d.SubjectAltNames, &adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_Uri{Uri: u.String()}})
		}
		return d
	}
	ctx := &adminv3.Certificate{CaCert: []*adminv3.CertificateDetails{details(root)}, CertChain: []*adminv3.CertificateDetails{details(leaf)}}
	out, err := envoyJSON.Marshal(&adminv3.Certificates{Certificates: []*adminv3.Certificate{ctx, ctx}})
	if err != nil {
		panic(err)
	}
	return out
}

// adminDouble serves canned answers per path; a negative status hangs until the client gives up.
type adminDouble map[string]struct {
	status int
	body   []byte
}

func (a adminDouble) serve(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ans, ok := a[r.URL.RequestURI()]
		switch {
		case !ok:
			http.NotFound(w, r)
		case ans.status < 0:
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		default:
			w.WriteHeader(ans.status)
			w.Write(ans.body)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// readOnce reads the static targets once with settings s and returns the source's state.
func readOnce(t *testing.T, p *Proxies) State {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st := p.State(); st.Synced {
			return st
		}
	}
	t.Fatal("proxies were not read")
	return State{}
}

var fastSettings = ProxySettings{AdminPort: 15000, Interval: time.Hour, Timeout: 300 * time.Millisecond, Concurrency: 4}

func TestEnvoyProxies(t *testing.T) {
	now := time.Now()
	from, until := now.Add(-time.Hour), now.AddDate(1, 0, 0)
	oldRoot := testpki.Issue(testpki.Spec{CommonName: "old root", CA: true, NotBefore: from, NotAfter: until})
	newRoot := testpki.Issue(testpki.Spec{CommonName: "new root", CA: true, NotBefore: from, NotAfter: until})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: newRoot, NotBefore: from, NotAfter: until})
	leafFor := func(id string) *testpki.Cert {
		return testpki.Issue(testpki.Spec{CommonName: "", Issuer: inter, URIs: []string{id}, NotBefore: from, NotAfter: now.Add(23 * time.Hour)})
	}
	good := leafFor("spiffe://cluster.local/ns/shop/sa/cart")
	expired := testpki.Issue(testpki.Spec{Issuer: inter, URIs: []string{"spiffe://cluster.local/ns/shop/sa/cart"}, NotBefore: from, NotAfter: now.Add(-time.Minute)})
	chain := func(leaf *testpki.Cert) []byte { return testpki.Bundle(leaf, inter, newRoot) }

	type want struct {
		up       bool
		endpoint string
		reason   model.ErrorReason // of the failed read
		chain    string            // "" no chain; "valid/3" or "<reason>/<depth>"
		san      model.ErrorReason // "-" no identity check
		rootCA   string            // "current", "stale" or "" (no comparison)
		exported int               // certificate observations
	}
	tests := []struct {
		name  string
		admin adminDouble
		want  want
	}{
		{"valid chain of 3", adminDouble{EnvoySecretsPath: {200, envoyDump(false, workloadSecret(chain(good)), rootSecret(testpki.Bundle(oldRoot, newRoot)))}},
			want{true, "config_dump", "", "valid/3", "", "current", 1}},
		{"wrapped shape", adminDouble{EnvoySecretsPath: {200, envoyDump(true, workloadSecret(chain(good)), rootSecret(testpki.Bundle(newRoot, oldRoot)))}},
			want{true, "config_dump", "", "valid/3", "", "current", 1}},
		{"wrong service account", adminDouble{EnvoySecretsPath: {200, envoyDump(false, workloadSecret(chain(leafFor("spiffe://cluster.local/ns/shop/sa/default"))))}},
			want{true, "config_dump", "", "valid/3", model.ReasonWrongServiceAccount, "", 1}},
		{"wrong trust domain", adminDouble{EnvoySecretsPath: {200, envoyDump(false, workloadSecret(chain(leafFor("spiffe://evil.example/ns/shop/sa/cart"))))}},
			want{true, "config_dump", "", "valid/3", model.ReasonWrongTrustDomain, "", 1}},
		{"alias trust domain", adminDouble{EnvoySecretsPath: {200, envoyDump(false, workloadSecret(chain(leafFor("spiffe://old.example/ns/shop/sa/cart"))))}},
			want{true, "config_dump", "", "valid/3", "", "", 1}},
		{"ROOTCA with only the old root", adminDouble{EnvoySecretsPath: {200, envoyDump(false, workloadSecret(chain(good)), rootSecret(oldRoot.PEM()))}},
			want{true, "config_dump", "", "valid/3", "", "stale", 1}},
		{"SPIFFE validator bundles", adminDouble{EnvoySecretsPath: {200, envoyDump(false, workloadSecret(chain(good)),
			spiffeRootSecret(map[string][]byte{"cluster.local": testpki.Bundle(oldRoot, newRoot)}))}},
			want{true, "config_dump", "", "valid/3", "", "current", 1}},
		{"expired leaf", adminDouble{EnvoySecretsPath: {200, envoyDump(false, workloadSecret(chain(expired)))}},
			want{true, "config_dump", "", "expired/3", "", "", 1}},
		{"certs fallback", adminDouble{EnvoySecretsPath: {404, nil}, EnvoyCertsPath: {200, envoyCerts(good, newRoot)}},
			want{true, "certs", "", "", "", "", 1}},
		{"garbage JSON", adminDouble{EnvoySecretsPath: {200, []byte(`{"configs": [`)}},
			want{false, "config_dump", model.ReasonBadResponse, "", "-", "", 0}},
		{"HTML with 200", adminDouble{EnvoySecretsPath: {200, []byte("<html><body>login</body></html>")}},
			want{false, "config_dump", model.ReasonBadResponse, "", "-", "", 0}},
		{"HTTP 500", adminDouble{EnvoySecretsPath: {500, []byte("upstream error")}},
			want{false, "config_dump", model.ReasonBadResponse, "", "-", "", 0}},
		{"a proxy that hangs", adminDouble{EnvoySecretsPath: {-1, nil}},
			want{false, "config_dump", model.ReasonTimeout, "", "-", "", 0}},
	}
	meshes := map[model.Mesh]model.MeshSettings{model.MeshIstio: {TrustDomain: "cluster.local", TrustDomainAliases: []string{"old.example"}}}
	authority := &model.Object{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: model.MeshIstio, Authoritative: true,
		Bundles: []model.Bundle{
			{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: []*model.Certificate{pki.NewCertificate(oldRoot.X509), pki.NewCertificate(newRoot.X509)}},
			{Key: "ca-cert.pem", Certificates: []*model.Certificate{pki.NewCertificate(inter.X509)}}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tt.admin.serve(t)
			target := Target{Namespace: "shop", Name: "cart-7d9", ServiceAccount: "cart", URL: srv.URL}
			p := NewEnvoyProxies(nil, []Target{target}, NewDirectTransport(1<<20), fastSettings, log.NewNopLogger())
			st := readOnce(t, p)
			if len(st.Proxies) != 1 {
				t.Fatalf("proxy statuses: %+v", st.Proxies)
			}
			ps := st.Proxies[0]
			if ps.Up != tt.want.up || ps.Endpoint != tt.want.endpoint || (tt.want.reason != "" && st.Errors[tt.want.reason] != 1) {
				t.Fatalf("status %+v errors %v; want up %v endpoint %s reason %s", ps, st.Errors, tt.want.up, tt.want.endpoint, tt.want.reason)
			}
			a := pki.NewAnalyzer().Analyze(append([]*model.Object{authority}, st.Objects...), meshes)
			var leaf *model.CertificateObservation
			n := 0
			certs := a.Certificates()
			for i := range certs {
				if certs[i].Source == SourceEnvoy {
					n++
					leaf = &certs[i]
				}
			}
			if n != tt.want.exported {
				t.Fatalf("%d envoy certificates exported, want %d", n, tt.want.exported)
			}
			if leaf != nil {
				gotChain := ""
				if leaf.Chain != nil {
					c := leaf.Chain.Evaluate(leaf.Certificate, now)
					gotChain = fmt.Sprintf("%s/%d", map[bool]string{true: "valid", false: string(c.Reason)}[c.Valid], c.Depth)
				}
				gotSAN := model.ErrorReason("-")
				if leaf.Identity != nil {
					gotSAN = leaf.Identity.Reason
				}
				if gotChain != tt.want.chain || gotSAN != tt.want.san {
					t.Errorf("leaf chain %q san %q; want %q %q", gotChain, gotSAN, tt.want.chain, tt.want.san)
				}
			}
			gotRoot := ""
			for _, b := range a.TrustBundles() {
				if b.Source == SourceEnvoy {
					gotRoot = map[bool]string{true: "current", false: "stale"}[b.Current]
				}
			}
			if gotRoot != tt.want.rootCA {
				t.Errorf("ROOTCA %q, want %q", gotRoot, tt.want.rootCA)
			}
		})
	}
}

// TestEnvoyRedactedKeyNeverDecoded: even an Envoy that does not redact its key (a custom build)
// gives the parser a key it drops unread: nothing of it reaches the model.
func TestEnvoyRedactedKeyNeverDecoded(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	s := workloadSecret(root.PEM())
	s.GetTlsCertificate().PrivateKey = inline(root.KeyPEM())
	bundles, err := ParseEnvoyConfigDump(envoyDump(false, s))
	if err != nil {
		t.Fatal(err)
	}
	key := string(root.KeyPEM()[40:100])
	for _, b := range bundles {
		for _, c := range b.Certificates {
			if strings.Contains(fmt.Sprint(c), key) {
				t.Fatal("key material in a parsed certificate")
			}
		}
	}
	if len(bundles) != 1 || len(bundles[0].Certificates) != 1 {
		t.Errorf("bundles = %+v", bundles)
	}
}

// TestProxyHangCostsOneSlot: a hanging proxy holds one slot until its timeout; the others are read.
func TestProxyHangCostsOneSlot(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	hang := adminDouble{EnvoySecretsPath: {-1, nil}}.serve(t)
	ok := adminDouble{EnvoySecretsPath: {200, envoyDump(false, rootSecret(root.PEM()))}}.serve(t)
	var targets []Target
	targets = append(targets, Target{Namespace: "a", Name: "hang", URL: hang.URL})
	for i := range 5 {
		targets = append(targets, Target{Namespace: "a", Name: fmt.Sprintf("ok-%d", i), URL: ok.URL})
	}
	s := fastSettings
	s.Concurrency = 2
	st := readOnce(t, NewEnvoyProxies(nil, targets, NewDirectTransport(1<<20), s, log.NewNopLogger()))
	up := 0
	for _, ps := range st.Proxies {
		if ps.Up {
			up++
		}
	}
	if up != 5 || st.Errors[model.ReasonTimeout] != 1 {
		t.Errorf("%d proxies up, errors %v; want 5 up and one timeout", up, st.Errors)
	}
}

func TestEnvoyRedirectAndSizeLimit(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"configs":[]}`)) }))
	defer other.Close()
	redirect := httptest.NewServer(http.RedirectHandler(other.URL+EnvoySecretsPath, http.StatusFound))
	defer redirect.Close()
	big := adminDouble{EnvoySecretsPath: {200, []byte(`{"configs":[` + strings.Repeat(" ", 2<<20) + `]}`)}}.serve(t)
	st := readOnce(t, NewEnvoyProxies(nil, []Target{{Name: "redirect", URL: redirect.URL}, {Name: "big", URL: big.URL}},
		NewDirectTransport(1<<20), fastSettings, log.NewNopLogger()))
	if st.Errors[model.ReasonBadResponse] != 1 || st.Errors[model.ReasonTooLarge] != 1 {
		t.Errorf("errors %v, want one bad_response (redirect) and one too_large", st.Errors)
	}
}

func TestZtunnelConfigDump(t *testing.T) {
	now := time.Now()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)})
	leaf := func(ns, sa string) *testpki.Cert {
		return testpki.Issue(testpki.Spec{Issuer: root, URIs: []string{"spiffe://cluster.local/ns/" + ns + "/sa/" + sa}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(23 * time.Hour)})
	}
	b64 := func(c *testpki.Cert) string { return base64.StdEncoding.EncodeToString(c.PEM()) }
	entry := func(id string, c *testpki.Cert) map[string]any {
		return map[string]any{"identity": id, "state": "Available",
			"certChain": []map[string]any{{"pem": b64(c), "serialNumber": c.X509.SerialNumber.String(), "validFrom": c.X509.NotBefore.Format(time.RFC3339), "expirationTime": c.X509.NotAfter.Format(time.RFC3339)}},
			"rootCerts": []map[string]any{{"pem": b64(root)}}}
	}
	wrongSA := leaf("shop", "other")
	dump := map[string]any{"certificates": []map[string]any{
		entry("spiffe://cluster.local/ns/shop/sa/cart", leaf("shop", "cart")),
		entry("spiffe://cluster.local/ns/gone/sa/old", leaf("gone", "old")),
		entry("spiffe://cluster.local/ns/shop/sa/web", wrongSA),
		{"identity": "spiffe://cluster.local/ns/shop/sa/new", "state": "Initializing"},
		{"identity": "spiffe://cluster.local/ns/shop/sa/broken", "state": "Unavailable: signing failed"},
		// Without a PEM: the decimal serial is normalised to hex.
		{"identity": "spiffe://cluster.local/ns/shop/sa/nopem", "state": "Available", "certChain": []map[string]any{{"serialNumber": "255",
			"validFrom": "2026-01-01T00:00:00Z", "expirationTime": "2026-01-02T00:00:00Z"}}},
	}, "workloads": map[string]any{"ignored": true}}
	body, _ := json.Marshal(dump)
	onNode := func(ns, sa string) bool { return ns == "shop" }
	bundles, err := ParseZtunnelConfigDump(body, "node-1", onNode)
	if err != nil {
		t.Fatal(err)
	}
	o := &model.Object{Source: SourceZtunnel, Namespace: "istio-system", Name: "ztunnel-x", Mesh: model.MeshIstio, Bundles: bundles}
	a := pki.NewAnalyzer().Analyze([]*model.Object{o}, map[model.Mesh]model.MeshSettings{model.MeshIstio: {TrustDomain: "cluster.local"}})
	got := map[string]string{}
	for _, c := range a.Certificates() {
		r := "-"
		if c.Identity != nil {
			r = string(c.Identity.Reason)
		}
		got[c.Key] = r + "/" + c.Certificate.Serial
	}
	want := map[string]string{
		"spiffe://cluster.local/ns/shop/sa/cart":  "/",
		"spiffe://cluster.local/ns/gone/sa/old":   string(model.ReasonNotOnNode) + "/",
		"spiffe://cluster.local/ns/shop/sa/web":   string(model.ReasonWrongServiceAccount) + "/",
		"spiffe://cluster.local/ns/shop/sa/nopem": string(model.ReasonMissingIdentity) + "/ff",
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok || !strings.HasPrefix(g, strings.Split(w, "/")[0]+"/") || (strings.Split(w, "/")[1] != "" && g != w) {
			t.Errorf("%s: %q, want %q", k, g, w)
		}
	}
	if _, ok := got["spiffe://cluster.local/ns/shop/sa/new"]; ok {
		t.Error("an initializing identity was exported")
	}
	errs := map[string]model.ErrorReason{}
	for _, e := range a.BundleErrors() {
		errs[e.Key] = e.Reason
	}
	if errs["spiffe://cluster.local/ns/shop/sa/broken"] != model.ReasonUnavailable {
		t.Errorf("bundle errors %v", errs)
	}
	roots := 0
	for _, b := range bundles {
		if b.Purpose == model.PurposeTrustBundleCopy {
			roots++
		}
	}
	if roots != 1 {
		t.Errorf("%d root bundles for one distinct root set", roots)
	}
}

func TestLinkerdProxyMetrics(t *testing.T) {
	expiry := time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC)
	v := fmt.Sprintf("%d", expiry.Unix())
	tests := []struct {
		name, body string
		ok         bool
		reason     model.ErrorReason // of a failed read
	}{
		{"current name", "# TYPE control_identity_cert_expiration_timestamp_seconds gauge\ncontrol_identity_cert_expiration_timestamp_seconds " + v + "\n", true, ""},
		{"before April 2024, with the refresh counter", "# TYPE identity_cert_refreshes_total counter\nidentity_cert_refreshes_total{result=\"ok\"} 3\n# TYPE identity_cert_expiration_timestamp_seconds gauge\nidentity_cert_expiration_timestamp_seconds " + v + "\n", true, ""},
		{"old untyped", "identity_cert_expiration_timestamp_seconds " + v + "\n", true, ""},
		{"identity not loaded yet", "control_identity_cert_expiration_timestamp_seconds 0\n", false, model.ReasonUnavailable},
		{"no identity metric: an unknown release", "request_total 3\n", false, model.ReasonUnknownShape},
		{"not metrics", "<html>", false, model.ReasonBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseLinkerdProxyMetrics([]byte(tt.body), "pod")
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			if !tt.ok && errorReason(badResponse(err)) != tt.reason {
				t.Errorf("reason %q, want %q", errorReason(badResponse(err)), tt.reason)
			}
			if tt.ok && (len(b) != 1 || !b[0].Certificates[0].NotAfter().Equal(expiry) || !b[0].Certificates[0].Partial) {
				t.Errorf("bundles %+v", b)
			}
		})
	}
}

// TestProxyThatResets: a proxy that accepts and closes the connection at once is one failed read
// (refused), and does not stop the others.
func TestProxyThatResets(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST instead of FIN
			}
			c.Close()
		}
	}()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	ok := adminDouble{EnvoySecretsPath: {200, envoyDump(false, rootSecret(root.PEM()))}}.serve(t)
	st := readOnce(t, NewEnvoyProxies(nil, []Target{{Name: "reset", URL: "http://" + l.Addr().String()}, {Name: "ok", URL: ok.URL}},
		NewDirectTransport(1<<20), fastSettings, log.NewNopLogger()))
	up := map[string]bool{}
	for _, p := range st.Proxies {
		up[p.Name] = p.Up
	}
	if up["reset"] || !up["ok"] || st.Errors[model.ReasonRefused] != 1 {
		t.Errorf("up %v, errors %v; want reset down (refused) and ok up", up, st.Errors)
	}
}

// TestShardingSplitsPods: with three shards every pod belongs to exactly one, and the split is even
// enough to be worth it.
func TestShardingSplitsPods(t *testing.T) {
	shards := []Sharding{{Shard: 0, Total: 3}, {Shard: 1, Total: 3}, {Shard: 2, Total: 3}}
	counts := make([]int, 3)
	for i := range 3000 {
		owners := 0
		for s, sh := range shards {
			if sh.owns(fmt.Sprintf("ns-%d", i%40), fmt.Sprintf("pod-%d", i)) {
				owners++
				counts[s]++
			}
		}
		if owners != 1 {
			t.Fatalf("pod %d has %d owners", i, owners)
		}
	}
	for s, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("shard %d owns %d of 3000 pods", s, n)
		}
	}
	if !(Sharding{}).owns("a", "b") {
		t.Error("without sharding a replica owns every pod")
	}
}

// TestStripPodKeepsTheTargetAndKind: the pod cache keeps the target and which proxies a pod runs,
// decided as the mesh's injectors mark pods.
func TestStripPodKeepsTheTargetAndKind(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := func(labels map[string]string, containers []string, initContainers ...corev1.Container) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-1", ResourceVersion: "9", Labels: labels,
				Annotations: map[string]string{annotationTrustRoot: "abc", "other": "x"}},
			Spec:   corev1.PodSpec{ServiceAccountName: "cart", NodeName: "node-1", InitContainers: initContainers},
			Status: corev1.PodStatus{PodIP: "10.0.0.7", Phase: corev1.PodRunning},
		}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want podKind
	}{
		{"istio sidecar", pod(nil, []string{"app", "istio-proxy"}), podIstioProxy},
		{"istio gateway by its label", pod(map[string]string{labelIstioTLSMode: "istio"}, []string{"istio-proxy"}), podIstioProxy},
		{"istio native sidecar", pod(nil, []string{"app"}, corev1.Container{Name: "istio-proxy", RestartPolicy: &always}), podIstioProxy},
		{"an init container of that name is not a sidecar", pod(nil, []string{"app"}, corev1.Container{Name: "istio-proxy"}), 0},
		{"ztunnel", pod(map[string]string{labelApp: "ztunnel"}, []string{"istio-proxy"}), podZtunnel},
		{"linkerd", pod(nil, []string{"app", "linkerd-proxy"}), podLinkerdProxy},
		{"linkerd native sidecar", pod(nil, []string{"app"}, corev1.Container{Name: "linkerd-proxy", RestartPolicy: &always}), podLinkerdProxy},
		{"not meshed", pod(map[string]string{labelApp: "cart"}, []string{"app"}), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, _ := stripPod(tt.pod)
			p := obj.(*podInfo)
			want := Target{Namespace: "shop", Name: "cart-1", ServiceAccount: "cart", Node: "node-1", IP: "10.0.0.7", TrustRootDigest: "abc"}
			if p.kind != tt.want || p.Target != want || p.resourceVersion != "9" {
				t.Errorf("stripPod = %+v, want kind %b and target %+v", p, tt.want, want)
			}
			if again, _ := stripPod(p); again != p {
				t.Error("a second pass changed the object")
			}
			if key, err := cache.MetaNamespaceKeyFunc(p); key != "shop/cart-1" || err != nil {
				t.Errorf("store key %q, %v", key, err)
			}
		})
	}
}

// TestDirectTransportClosesConnections: a proxy is read once per interval, so no connection is
// kept open between reads.
func TestDirectTransportClosesConnections(t *testing.T) {
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	tr := NewDirectTransport(1 << 20)
	for range 3 {
		if _, err := tr.Get(context.Background(), Target{IP: "127.0.0.1"}, port, "/"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Errorf("%d connections still open after the reads", n)
	}
}

// TestEnvoyParsersReadBothSpellings: Envoy writes proto field names, protojson-based tools write
// lowerCamelCase; both parse to the same bundles, in both config_dump shapes and in /certs.
func TestEnvoyParsersReadBothSpellings(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: from, NotAfter: until})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: root, NotBefore: from, NotAfter: until,
		URIs: []string{"spiffe://cluster.local/ns/a/sa/b"}})
	defer func(saved protojson.MarshalOptions) { envoyJSON = saved }(envoyJSON)
	parse := func() (dump, wrapped, certs []model.Bundle) {
		var err error
		if dump, err = ParseEnvoyConfigDump(envoyDump(false, workloadSecret(testpki.Bundle(leaf, root)), rootSecret(root.PEM()))); err != nil {
			t.Fatal(err)
		}
		if wrapped, err = ParseEnvoyConfigDump(envoyDump(true, workloadSecret(testpki.Bundle(leaf, root)),
			spiffeRootSecret(map[string][]byte{"cluster.local": root.PEM()}))); err != nil {
			t.Fatal(err)
		}
		if certs, err = ParseEnvoyCerts(envoyCerts(leaf, root), "a/b"); err != nil {
			t.Fatal(err)
		}
		return dump, wrapped, certs
	}
	describe := func(bundles []model.Bundle) string {
		var out []string
		for _, b := range bundles {
			s := fmt.Sprintf("%s purpose=%d export=%d error=%q", b.Key, b.Purpose, b.Export, b.Error)
			for _, c := range b.Certificates {
				s += fmt.Sprintf(" [%s %s %s-%s %v]", c.Subject, c.Serial, c.NotBefore().UTC().Format(time.RFC3339), c.NotAfter().UTC().Format(time.RFC3339), c.SPIFFEIDs)
			}
			out = append(out, s)
		}
		return strings.Join(out, "\n")
	}
	envoyJSON = protojson.MarshalOptions{UseProtoNames: true}
	snakeDump, snakeWrapped, snakeCerts := parse()
	envoyJSON = protojson.MarshalOptions{}
	camelDump, camelWrapped, camelCerts := parse()
	for _, tt := range []struct {
		name         string
		snake, camel []model.Bundle
		want         int
	}{{"config_dump", snakeDump, camelDump, 2}, {"wrapped config_dump", snakeWrapped, camelWrapped, 2}, {"certs", snakeCerts, camelCerts, 2}} {
		if len(tt.snake) != tt.want || describe(tt.snake) != describe(tt.camel) {
			t.Errorf("%s: proto names give\n%s\nJSON names give\n%s", tt.name, describe(tt.snake), describe(tt.camel))
		}
		for _, b := range tt.snake {
			if len(b.Certificates) == 0 || b.Error != model.ReasonNone {
				t.Errorf("%s: %s read nothing (%q)", tt.name, b.Key, b.Error)
			}
		}
	}
}

// TestProxyHealthRecords: a proxy's health record is replaced when its health changes and kept
// when it does not, since the collector re-renders a proxy's series exactly when its record is
// new: a proxy that keeps failing keeps its record, a failure after a success keeps the time of
// that success, and each successful read is a new record with a new time.
func TestProxyHealthRecords(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	var status atomic.Int32
	status.Store(http.StatusInternalServerError)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		w.Write(envoyDump(false, rootSecret(root.PEM())))
	}))
	defer srv.Close()
	p := NewEnvoyProxies(nil, []Target{{Namespace: "shop", Name: "cart", URL: srv.URL}}, NewDirectTransport(1<<20), fastSettings, log.NewNopLogger())
	read := func() *model.ProxyStatus {
		t.Helper()
		due := p.due(time.Now().Add(2 * fastSettings.Interval))
		if len(due) != 1 {
			t.Fatalf("%d proxies due, want 1", len(due))
		}
		p.readOne(context.Background(), due[0])
		st := p.State()
		if len(st.Proxies) != 1 {
			t.Fatalf("statuses %v", st.Proxies)
		}
		return st.Proxies[0]
	}
	failed := read()
	if failed.Up || !failed.LastSuccess.IsZero() || failed.Namespace != "shop" || failed.Name != "cart" || failed.Source != SourceEnvoy {
		t.Fatalf("first failed read: %+v", failed)
	}
	if again := read(); again != failed {
		t.Errorf("a proxy that failed again got a new record %+v", again)
	}
	status.Store(http.StatusOK)
	up := read()
	if up == failed || !up.Up || up.Endpoint != "config_dump" || up.LastSuccess.IsZero() {
		t.Fatalf("read after recovery: %+v", up)
	}
	time.Sleep(10 * time.Millisecond) // the clock moves between reads
	if next := read(); next == up || !next.LastSuccess.After(up.LastSuccess) {
		t.Errorf("a second good read: %+v after %+v, want a new record with a later time", next, up)
	}
	status.Store(http.StatusInternalServerError)
	down := read()
	if down.Up || down.LastSuccess.IsZero() {
		t.Errorf("failure after a success: %+v, want down with the time of the last success", down)
	}
}

// TestReadBody: an answer is read whole whether or not its size is announced, a body shorter than
// announced is an error, and the limit holds both ways.
func TestReadBody(t *testing.T) {
	const limit = 10
	for _, tt := range []struct {
		name    string
		status  int
		length  int64
		body    string
		want    string
		wantErr error
	}{
		{"announced", 200, 5, "hello", "hello", nil},
		{"not announced", 200, -1, "hello", "hello", nil},
		{"empty", 200, 0, "", "", nil},
		{"shorter than announced", 200, 8, "hello", "", io.ErrUnexpectedEOF},
		{"announced over the limit", 200, 11, "hello world", "", errBodyTooLarge},
		{"over the limit, not announced", 200, -1, "hello world", "", errBodyTooLarge},
		{"not 200", 503, 5, "hello", "", statusError{503}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, ContentLength: tt.length, Body: io.NopCloser(strings.NewReader(tt.body))}
			got, err := readBody(resp, limit)
			if !errors.Is(err, tt.wantErr) || string(got) != tt.want {
				t.Errorf("readBody = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestEnvoyBytes: a protobuf bytes field is read in each base64 spelling protojson accepts, with
// or without JSON escapes, and anything else is an error.
func TestEnvoyBytes(t *testing.T) {
	data := []byte("\xfb\xff\xfe certificate bytes?>")
	quote := func(s string) string { return `"` + s + `"` }
	for _, tt := range []struct {
		name, json string
		ok         bool
	}{
		{"standard", quote(base64.StdEncoding.EncodeToString(data)), true},
		{"URL-safe", quote(base64.URLEncoding.EncodeToString(data)), true},
		{"standard, unpadded", quote(base64.RawStdEncoding.EncodeToString(data)), true},
		{"URL-safe, unpadded", quote(base64.RawURLEncoding.EncodeToString(data)), true},
		{"escaped slash", quote(strings.ReplaceAll(base64.StdEncoding.EncodeToString(data), "/", `\/`)), true},
		{"escaped unicode", quote(`\u002b` + base64.StdEncoding.EncodeToString(data)[1:]), true}, // "+"
		{"not base64", quote("not base64!"), false},
		{"not a string", `42`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b envoyBytes
			err := json.Unmarshal([]byte(tt.json), &b)
			if tt.ok && (err != nil || !bytes.Equal(b, data)) {
				t.Errorf("got %q, %v; want %q", b, err, data)
			}
			if !tt.ok && err == nil {
				t.Errorf("no error, got %q", b)
			}
		})
	}
}

// TestReplicasShareTheirExpectedIdentity: proxies of one service account in one namespace point
// at one expected identity; another service account gets its own.
func TestReplicasShareTheirExpectedIdentity(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	srv := adminDouble{EnvoySecretsPath: {200, envoyDump(false, rootSecret(root.PEM()))}}.serve(t)
	targets := []Target{
		{Namespace: "shop", Name: "cart-1", ServiceAccount: "cart", URL: srv.URL},
		{Namespace: "shop", Name: "cart-2", ServiceAccount: "cart", URL: srv.URL},
		{Namespace: "shop", Name: "web-1", ServiceAccount: "web", URL: srv.URL},
	}
	st := readOnce(t, NewEnvoyProxies(nil, targets, NewDirectTransport(1<<20), fastSettings, log.NewNopLogger()))
	expect := map[string]*model.Identity{}
	for _, o := range st.Objects {
		expect[o.Name] = o.Expect
	}
	cart1, cart2, web := expect["cart-1"], expect["cart-2"], expect["web-1"]
	if cart1 == nil || cart1 != cart2 || *cart1 != (model.Identity{Namespace: "shop", ServiceAccount: "cart"}) {
		t.Errorf("replicas expect %+v and %+v, want one shared shop/cart", cart1, cart2)
	}
	if web == nil || web == cart1 || web.ServiceAccount != "web" {
		t.Errorf("web expects %+v", web)
	}
}
