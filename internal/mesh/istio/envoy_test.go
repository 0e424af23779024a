package istio

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testmodel"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	"github.com/meshcert/meshcert-exporter/internal/testproxy"
	"github.com/meshcert/meshcert-exporter/sources"
	"google.golang.org/protobuf/encoding/protojson"
)

func TestEnvoyProxies(t *testing.T) {
	now := time.Now()
	from := now.Add(-time.Hour)
	oldRoot := testpki.Issue(testpki.Spec{CommonName: "old root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	newRoot := testpki.Issue(testpki.Spec{CommonName: "new root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: newRoot, NotBefore: testpki.From(), NotAfter: testpki.Until()})
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
		admin testadmin.Answers
		want  want
	}{
		{"valid chain of 3", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(chain(good)), testadmin.RootSecret(testpki.Bundle(oldRoot, newRoot)))}},
			want{true, "config_dump", "", "valid/3", "", "current", 1}},
		{"wrapped shape", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: testadmin.EnvoyDump(testadmin.EnvoyJSON(), true, testadmin.WorkloadSecret(chain(good)), testadmin.RootSecret(testpki.Bundle(newRoot, oldRoot)))}},
			want{true, "config_dump", "", "valid/3", "", "current", 1}},
		{"wrong service account", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(chain(leafFor("spiffe://cluster.local/ns/shop/sa/default"))))}},
			want{true, "config_dump", "", "valid/3", model.ReasonWrongServiceAccount, "", 1}},
		{"wrong trust domain", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(chain(leafFor("spiffe://evil.example/ns/shop/sa/cart"))))}},
			want{true, "config_dump", "", "valid/3", model.ReasonWrongTrustDomain, "", 1}},
		{"alias trust domain", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(chain(leafFor("spiffe://old.example/ns/shop/sa/cart"))))}},
			want{true, "config_dump", "", "valid/3", "", "", 1}},
		{"ROOTCA with only the old root", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(chain(good)), testadmin.RootSecret(oldRoot.PEM()))}},
			want{true, "config_dump", "", "valid/3", "", "stale", 1}},
		{"SPIFFE validator bundles", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(chain(good)),
			testadmin.SPIFFERootSecret(map[string][]byte{"cluster.local": testpki.Bundle(oldRoot, newRoot)}))}},
			want{true, "config_dump", "", "valid/3", "", "current", 1}},
		{"expired leaf", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(chain(expired)))}},
			want{true, "config_dump", "", "expired/3", "", "", 1}},
		{"certs fallback", testadmin.Answers{EnvoySecretsPath: {Status: 404, Body: nil}, EnvoyCertsPath: {Status: 200, Body: testadmin.EnvoyCerts(testadmin.EnvoyJSON(), good, newRoot)}},
			want{true, "certs", "", "", "", "", 1}},
		{"garbage JSON", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: []byte(`{"configs": [`)}},
			want{false, "config_dump", model.ReasonBadResponse, "", "-", "", 0}},
		{"HTML with 200", testadmin.Answers{EnvoySecretsPath: {Status: 200, Body: []byte("<html><body>login</body></html>")}},
			want{false, "config_dump", model.ReasonBadResponse, "", "-", "", 0}},
		{"HTTP 500", testadmin.Answers{EnvoySecretsPath: {Status: 500, Body: []byte("upstream error")}},
			want{false, "config_dump", model.ReasonBadResponse, "", "-", "", 0}},
		{"a proxy that hangs", testadmin.Answers{EnvoySecretsPath: {Status: -1, Body: nil}},
			want{false, "config_dump", model.ReasonTimeout, "", "-", "", 0}},
	}
	meshes := map[model.Mesh]model.MeshSettings{Name: {TrustDomain: "cluster.local", TrustDomainAliases: []string{"old.example"}}}
	authority := &model.Object{Source: "secret", Namespace: "istio-system", Name: "cacerts", Mesh: Name, Authoritative: true,
		Bundles: []model.Bundle{
			{Key: "root-cert.pem", Purpose: model.PurposeTrustBundle, Certificates: []*model.Certificate{pki.NewCertificate(oldRoot.X509), pki.NewCertificate(newRoot.X509)}},
			{Key: "ca-cert.pem", Certificates: []*model.Certificate{pki.NewCertificate(inter.X509)}}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := sources.Target{Namespace: "shop", Name: "cart-7d9", ServiceAccount: "cart", URL: tt.admin.Serve(t)}
			st := testproxy.ReadOnce(t, testproxy.Static(EnvoyKind(), []sources.Target{target}, testproxy.Fast()))
			if len(st.Proxies) != 1 {
				t.Fatalf("proxy statuses: %+v", st.Proxies)
			}
			ps := st.Proxies[0]
			if ps.Up != tt.want.up || ps.Endpoint != tt.want.endpoint || (tt.want.reason != "" && st.Errors[tt.want.reason] != 1) {
				t.Fatalf("status %+v errors %v; want up %v endpoint %s reason %s", ps, st.Errors, tt.want.up, tt.want.endpoint, tt.want.reason)
			}
			a := newAnalyzer().Analyze(append([]*model.Object{authority}, st.Objects...), meshes)
			var leaf *testmodel.Observation
			n := 0
			certs := testmodel.Certificates(a)
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
			for _, b := range testmodel.TrustBundles(a) {
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
	s := testadmin.WorkloadSecret(root.PEM())
	s.GetTlsCertificate().PrivateKey = testadmin.Inline(root.KeyPEM())
	bundles, err := ParseEnvoyConfigDump(testCache(), testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, s))
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

func TestZtunnelConfigDump(t *testing.T) {
	now := time.Now()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)})
	leaf := func(ns, sa string) *testpki.Cert {
		return testpki.Issue(testpki.Spec{Issuer: root, URIs: []string{"spiffe://cluster.local/ns/" + ns + "/sa/" + sa}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(23 * time.Hour)})
	}
	entry := func(id string, c *testpki.Cert) map[string]any {
		return testadmin.ZtunnelIdentity(id, []*testpki.Cert{c}, root)
	}
	body := testadmin.ZtunnelDump(
		entry("spiffe://cluster.local/ns/shop/sa/cart", leaf("shop", "cart")),
		entry("spiffe://cluster.local/ns/gone/sa/old", leaf("gone", "old")),
		entry("spiffe://cluster.local/ns/shop/sa/web", leaf("shop", "other")),
		map[string]any{"identity": "spiffe://cluster.local/ns/shop/sa/new", "state": "Initializing"},
		map[string]any{"identity": "spiffe://cluster.local/ns/shop/sa/broken", "state": "Unavailable: signing failed"},
		// Without a PEM: the decimal serial is normalised to hex.
		map[string]any{"identity": "spiffe://cluster.local/ns/shop/sa/nopem", "state": "Available", "certChain": []map[string]any{{"serialNumber": "255",
			"validFrom": "2026-01-01T00:00:00Z", "expirationTime": "2026-01-02T00:00:00Z"}}},
	)
	onNode := func(ns, sa string) bool { return ns == "shop" }
	bundles, err := ParseZtunnelConfigDump(testCache(), body, "node-1", onNode)
	if err != nil {
		t.Fatal(err)
	}
	o := &model.Object{Source: SourceZtunnel, Namespace: "istio-system", Name: "ztunnel-x", Mesh: Name, Bundles: bundles}
	a := newAnalyzer().Analyze([]*model.Object{o}, map[model.Mesh]model.MeshSettings{Name: {TrustDomain: "cluster.local"}})
	got := map[string]string{}
	for _, c := range testmodel.Certificates(a) {
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
	for _, e := range testmodel.BundleErrors(a) {
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

// TestEnvoyParsersReadBothSpellings: Envoy writes proto field names, protojson-based tools write
// lowerCamelCase; both parse to the same bundles, in both config_dump shapes and in /certs.
func TestEnvoyParsersReadBothSpellings(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until(),
		URIs: []string{"spiffe://cluster.local/ns/a/sa/b"}})
	parse := func(enc protojson.MarshalOptions) (dump, wrapped, certs []model.Bundle) {
		var err error
		if dump, err = ParseEnvoyConfigDump(testCache(), testadmin.EnvoyDump(enc, false, testadmin.WorkloadSecret(testpki.Bundle(leaf, root)), testadmin.RootSecret(root.PEM()))); err != nil {
			t.Fatal(err)
		}
		if wrapped, err = ParseEnvoyConfigDump(testCache(), testadmin.EnvoyDump(enc, true, testadmin.WorkloadSecret(testpki.Bundle(leaf, root)),
			testadmin.SPIFFERootSecret(map[string][]byte{"cluster.local": root.PEM()}))); err != nil {
			t.Fatal(err)
		}
		if certs, err = ParseEnvoyCerts(testadmin.EnvoyCerts(enc, leaf, root), "a/b"); err != nil {
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
	snakeDump, snakeWrapped, snakeCerts := parse(testadmin.EnvoyJSON())
	camelDump, camelWrapped, camelCerts := parse(testadmin.CamelJSON())
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

// TestEnvoyFullConfigDump: an Envoy that ignores ?resource= answers the whole dump (bootstrap,
// clusters, listeners, routes and the secrets among them, as go-control-plane's admin types write
// it): the secrets are read and the other elements passed over; an element of a type that is no
// part of Envoy's admin dump is still an unknown shape.
func TestEnvoyFullConfigDump(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	leaf := testpki.Issue(testpki.Spec{CommonName: "leaf", Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until(),
		URIs: []string{"spiffe://cluster.local/ns/shop/sa/web"}})
	for name, enc := range map[string]protojson.MarshalOptions{"proto names": testadmin.EnvoyJSON(), "JSON names": testadmin.CamelJSON()} {
		body := testadmin.EnvoyFullDump(enc, testadmin.WorkloadSecret(testpki.Bundle(leaf, root)), testadmin.RootSecret(root.PEM()))
		bundles, err := ParseEnvoyConfigDump(testCache(), body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var keys []string
		for _, b := range bundles {
			keys = append(keys, fmt.Sprintf("%s:%d", b.Key, len(b.Certificates)))
		}
		if strings.Join(keys, " ") != "ROOTCA:1 default:2" {
			t.Errorf("%s: bundles %v, want ROOTCA with the root and default with the chain", name, keys)
		}
	}
	odd := []byte(`{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump","bootstrap":{}},{"@type":"type.googleapis.com/example.Other"}]}`)
	if _, err := ParseEnvoyConfigDump(testCache(), odd); !errors.Is(err, sources.ErrUnknownShape) {
		t.Errorf("an element of an unknown type: %v, want unknown_shape", err)
	}
}

// TestZtunnelIdentityStates: every identity keeps the state ztunnel reports, without its error
// text: an identity still Initializing is kept (with no certificate), an Unavailable one keeps
// the certificate it still holds and is a bundle error, and an Available one whose chain is empty
// (a failed renewal, istio#56452) is a no_certificate error.
func TestZtunnelIdentityStates(t *testing.T) {
	now := time.Now()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)})
	old := testpki.Issue(testpki.Spec{Issuer: root, URIs: []string{"spiffe://cluster.local/ns/shop/sa/renewing"}, NotBefore: now.Add(-20 * time.Hour), NotAfter: now.Add(4 * time.Hour)})
	failing := testadmin.ZtunnelIdentity("spiffe://cluster.local/ns/shop/sa/renewing", []*testpki.Cert{old}, root)
	failing["state"] = "Unavailable: signing failed: connection refused"
	body := testadmin.ZtunnelDump(
		map[string]any{"identity": "spiffe://cluster.local/ns/shop/sa/new", "state": "Initializing", "certChain": []any{}, "rootCerts": []any{}},
		failing,
		map[string]any{"identity": "spiffe://cluster.local/ns/shop/sa/emptied", "state": "Available", "certChain": []any{}, "rootCerts": []any{}},
	)
	bundles, err := ParseZtunnelConfigDump(testCache(), body, "node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		state string
		err   model.ErrorReason
		certs int
	}
	states := map[string]got{}
	for _, b := range bundles {
		if b.State != model.IdentityStateNone {
			states[strings.TrimPrefix(b.Key, "spiffe://cluster.local/ns/shop/sa/")] = got{b.State.Label(), b.Error, len(b.Certificates)}
		}
	}
	want := map[string]got{
		"new":      {"initializing", model.ReasonNone, 0},
		"renewing": {"unavailable", model.ReasonUnavailable, 1},
		"emptied":  {"available", model.ReasonNoCertificate, 0},
	}
	if len(states) != len(want) {
		t.Errorf("states %+v, want %+v", states, want)
	}
	for id, w := range want {
		if states[id] != w {
			t.Errorf("%s: %+v, want %+v", id, states[id], w)
		}
	}
	for _, b := range bundles {
		if strings.Contains(b.Key, "connection refused") || strings.Contains(string(b.Error), "signing failed") {
			t.Errorf("ztunnel's error text reached a bundle: %+v", b)
		}
	}
}
