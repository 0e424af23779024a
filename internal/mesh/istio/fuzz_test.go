package istio

import (
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// FuzzParseEnvoyConfigDump: any answer parses or fails cleanly, in both shapes.
func FuzzParseEnvoyConfigDump(f *testing.F) {
	leaf, inter, root := fuzzCerts()
	f.Add(testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(testpki.Bundle(leaf, inter, root)), testadmin.RootSecret(root.PEM())))
	f.Add(testadmin.EnvoyDump(testadmin.EnvoyJSON(), true, testadmin.WorkloadSecret(testpki.Bundle(leaf, inter)), testadmin.SPIFFERootSecret(map[string][]byte{"cluster.local": root.PEM()})))
	f.Add([]byte(`{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret","name":"x","secret":{"@type":"type.googleapis.com/x.Y"}}]}`))
	f.Add([]byte(`{"configs":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		bundles, err := ParseEnvoyConfigDump(testCache(), body)
		if err == nil {
			checkBundles(t, bundles)
		}
	})
}

// FuzzParseEnvoyCerts: any /certs answer parses or fails cleanly; serials are normalised.
func FuzzParseEnvoyCerts(f *testing.F) {
	leaf, _, root := fuzzCerts()
	f.Add(testadmin.EnvoyCerts(testadmin.EnvoyJSON(), leaf, root))
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
	f.Add(testadmin.ZtunnelDump(testadmin.ZtunnelIdentity("spiffe://cluster.local/ns/a/sa/b", []*testpki.Cert{leaf}, root),
		map[string]any{"identity": "spiffe://cluster.local/ns/a/sa/c", "state": "Unavailable: no"}))
	f.Add([]byte(`{"certificates":[{"identity":"x","state":"Available","certChain":[{"serialNumber":"-1","validFrom":"x"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		bundles, err := ParseZtunnelConfigDump(testCache(), body, "fuzz", func(string, string) bool { return true })
		if err == nil {
			checkBundles(t, bundles)
		}
	})
}
