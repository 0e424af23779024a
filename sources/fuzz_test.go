package sources

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// fuzzCerts are a leaf, its intermediate and root, for the seeds of the proxy formats.
func fuzzCerts() (leaf, inter, root *testpki.Cert) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
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

// FuzzParseEnvoyConfigDump: any answer parses or fails cleanly, in both shapes.
func FuzzParseEnvoyConfigDump(f *testing.F) {
	leaf, inter, root := fuzzCerts()
	f.Add(envoyDump(false, workloadSecret(testpki.Bundle(leaf, inter, root)), rootSecret(root.PEM())))
	f.Add(envoyDump(true, workloadSecret(testpki.Bundle(leaf, inter)), spiffeRootSecret(map[string][]byte{"cluster.local": root.PEM()})))
	f.Add([]byte(`{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret","name":"x","secret":{"@type":"type.googleapis.com/x.Y"}}]}`))
	f.Add([]byte(`{"configs":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		bundles, err := ParseEnvoyConfigDump(body)
		if err == nil {
			checkBundles(t, bundles)
		}
	})
}

// FuzzParseEnvoyCerts: any /certs answer parses or fails cleanly; serials are normalised.
func FuzzParseEnvoyCerts(f *testing.F) {
	leaf, _, root := fuzzCerts()
	f.Add(envoyCerts(leaf, root))
	f.Add([]byte(`{"certificates":[{"cert_chain":[{"serial_number":"0aBc","expiration_time":"2030-01-01T00:00:00Z","subject_alt_names":[{"uri":"spiffe://td/ns/a/sa/b"}]}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		bundles, err := ParseEnvoyCerts(body, "fuzz")
		if err != nil {
			return
		}
		checkBundles(t, bundles)
		for _, b := range bundles {
			for _, c := range b.Certificates {
				if !c.Partial {
					t.Fatal("a /certs certificate that is not partial")
				}
			}
		}
	})
}

// FuzzParseZtunnelConfigDump: any config dump parses or fails cleanly.
func FuzzParseZtunnelConfigDump(f *testing.F) {
	leaf, _, root := fuzzCerts()
	b64 := func(c *testpki.Cert) string { return base64.StdEncoding.EncodeToString(c.PEM()) }
	seed, _ := json.Marshal(map[string]any{"certificates": []map[string]any{
		{"identity": "spiffe://cluster.local/ns/a/sa/b", "state": "Available", "certChain": []map[string]any{{"pem": b64(leaf), "serialNumber": "12345",
			"validFrom": "2026-01-01T00:00:00Z", "expirationTime": "2026-01-02T00:00:00Z"}}, "rootCerts": []map[string]any{{"pem": b64(root)}}},
		{"identity": "spiffe://cluster.local/ns/a/sa/c", "state": "Unavailable: no"},
	}})
	f.Add(seed)
	f.Add([]byte(`{"certificates":[{"identity":"x","state":"Available","certChain":[{"serialNumber":"-1","validFrom":"x"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		bundles, err := ParseZtunnelConfigDump(body, "fuzz", func(string, string) bool { return true })
		if err == nil {
			checkBundles(t, bundles)
		}
	})
}

// FuzzParseLinkerdProxyMetrics: any metrics text parses or fails cleanly.
func FuzzParseLinkerdProxyMetrics(f *testing.F) {
	f.Add([]byte("# TYPE control_identity_cert_expiration_timestamp_seconds gauge\ncontrol_identity_cert_expiration_timestamp_seconds 1.8e9\n"))
	f.Add([]byte("identity_cert_expiration_timestamp_seconds{a=\"b\"} 1780000000\nidentity_cert_refreshes_total{result=\"ok\"} 2\n"))
	f.Add([]byte("identity_cert_expiration_timestamp_seconds NaN\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		bundles, err := ParseLinkerdProxyMetrics(body, "fuzz")
		if err == nil {
			checkBundles(t, bundles)
		}
	})
}
