package istio

import (
	"errors"
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testmodel"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// TestEnvoyDefaultIsAPresentedChain: a sidecar whose default secret lacks the intermediate is
// reported as peers see it.
func TestEnvoyDefaultIsAPresentedChain(t *testing.T) {
	root, inter, leaf := shapesPKI()
	for _, tt := range []struct {
		name   string
		chain  []byte
		valid  bool
		reason model.ErrorReason
		depth  int
	}{
		{"full chain", testpki.Bundle(leaf, inter, root), true, "", 3},
		{"leaf only", leaf.PEM(), false, model.ReasonIncompleteChain, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bundles, err := ParseEnvoyConfigDump(testCache(), testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(tt.chain), testadmin.RootSecret(root.PEM())))
			if err != nil {
				t.Fatal(err)
			}
			st := chainStatus(t, analyseProxy(SourceEnvoy, bundles, root, inter), "default")
			if st.Valid != tt.valid || st.Reason != tt.reason || st.Depth != tt.depth {
				t.Errorf("chain = valid %v reason %q depth %d, want %v %q %d", st.Valid, st.Reason, st.Depth, tt.valid, tt.reason, tt.depth)
			}
		})
	}
}

// TestEnvoyFederatedBundles: the SPIFFE validator's bundle of the mesh's trust domain (and of an
// alias) is compared; a federated domain's is exported as that domain's anchors, never stale.
func TestEnvoyFederatedBundles(t *testing.T) {
	root, inter, leaf := shapesPKI()
	partner := testpki.Issue(testpki.Spec{CommonName: "partner root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	body := testadmin.EnvoyDump(testadmin.EnvoyJSON(), false, testadmin.WorkloadSecret(testpki.Bundle(leaf, inter)),
		testadmin.SPIFFERootSecret(map[string][]byte{"cluster.local": root.PEM(), "old.local": root.PEM(), "partner.example": partner.PEM()}))
	bundles, err := ParseEnvoyConfigDump(testCache(), body)
	if err != nil {
		t.Fatal(err)
	}
	a := analyseProxy(SourceEnvoy, bundles, root, inter)
	current := map[string]bool{}
	for _, b := range testmodel.TrustBundles(a) {
		current[b.Key] = b.Current
	}
	if len(current) != 2 || !current["ROOTCA/cluster.local"] || !current["ROOTCA/old.local"] {
		t.Errorf("compared bundles %v, want the mesh's domain and its alias, both current", current)
	}
	var federated []model.TrustBundleFinding
	for _, o := range a.Objects {
		for _, f := range o.TrustBundles {
			if f.Federated {
				federated = append(federated, f)
			}
		}
	}
	if len(federated) != 1 || federated[0].TrustDomain() != "partner.example" {
		t.Errorf("federated bundles %+v", federated)
	}
	exported := false
	for _, c := range testmodel.Certificates(a) {
		exported = exported || c.Key == "ROOTCA/partner.example" && c.Role == model.RoleTrustAnchor
	}
	if !exported {
		t.Error("the partner's anchor is not exported")
	}
}

// TestEnvoyUnknownShape: an answer that parses but in no shape Envoy writes is an error, never an
// empty read.
func TestEnvoyUnknownShape(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		unknown    bool
	}{
		{"no secrets at all", `{}`, false},
		{"an empty list", `{"configs":[]}`, false},
		{"no configs", `{"secrets":[{"name":"default"}]}`, true},
		// Part of a whole dump from an Envoy that ignores ?resource=: nothing to read in it.
		{"another element of Envoy's dump", `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump"}]}`, false},
		{"an element of another type", `{"configs":[{"@type":"type.googleapis.com/example.v1.Secrets"}]}`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEnvoyConfigDump(testCache(), []byte(tt.body))
			if got := errors.Is(err, sources.ErrUnknownShape); got != tt.unknown {
				t.Errorf("unknown shape = %v (%v), want %v", got, err, tt.unknown)
			}
		})
	}
}

// TestEnvoyCertsUnknownShape: /certs without its certificates list is no answer Envoy writes.
func TestEnvoyCertsUnknownShape(t *testing.T) {
	if _, err := ParseEnvoyCerts([]byte(`{"certificates":[]}`), "p"); err != nil {
		t.Errorf("an Envoy without TLS contexts: %v", err)
	}
	if _, err := ParseEnvoyCerts([]byte(`{"certs":[]}`), "p"); !errors.Is(err, sources.ErrUnknownShape) {
		t.Errorf("no certificates list: %v", err)
	}
}

// TestZtunnelShapes: every shape a ztunnel release wrote gives the same leaf, chain and roots, and
// an unknown shape is an error with the reason unknown_shape.
func TestZtunnelShapes(t *testing.T) {
	root, inter, leaf := shapesPKI()
	camel, snake, list := testadmin.ZtunnelCamel, testadmin.ZtunnelSnake, testadmin.ZtunnelCerts
	id := "spiffe://cluster.local/ns/shop/sa/cart"
	tests := []struct {
		name    string
		entry   map[string]any
		unknown bool
	}{
		{"current: certChain and rootCerts", map[string]any{"identity": id, "state": "Available", "certChain": list(camel, leaf, inter), "rootCerts": list(camel, root)}, false},
		{"1.21 and before: snake_case ca_cert and cert_chain", map[string]any{"identity": id, "state": "Available", "cert_chain": list(snake, leaf, inter), "ca_cert": list(snake, root)}, false},
		{"in between: cert_chain alone with the root at its end", map[string]any{"identity": id, "state": "Available", "cert_chain": list(snake, leaf, inter, root)}, false},
		{"in between: certChain alone with the root at its end", map[string]any{"identity": id, "state": "Available", "certChain": list(camel, leaf, inter, root)}, false},
		{"the first preview: leaf and chain strings", map[string]any{"identity": id, "leaf": string(leaf.PEM()), "chain": []string{string(inter.PEM())}, "state": "Available"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := testadmin.ZtunnelDump(tt.entry)
			bundles, err := ParseZtunnelConfigDump(testCache(), body, "node-1", nil)
			if tt.unknown {
				if !errors.Is(err, sources.ErrUnknownShape) {
					t.Fatalf("err = %v, want an unknown shape", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a := analyseProxy(SourceZtunnel, bundles, root, inter)
			if st := chainStatus(t, a, id); !st.Valid || st.Depth != 3 {
				t.Errorf("chain %+v, want valid with depth 3", st)
			}
			tb := testmodel.TrustBundles(a)
			if len(tb) != 1 || !tb[0].Current || tb[0].Key != "rootCerts" {
				t.Errorf("root bundles %+v, want one current copy", tb)
			}
		})
	}
	// A dump without a certificates list is no ztunnel answer this reader knows.
	if _, err := ParseZtunnelConfigDump(testCache(), []byte(`{"workloads":{}}`), "node-1", nil); !errors.Is(err, sources.ErrUnknownShape) {
		t.Errorf("dump without certificates: %v", err)
	}
	// An identity presented without its intermediate is incomplete.
	body := testadmin.ZtunnelDump(testadmin.ZtunnelIdentity(id, []*testpki.Cert{leaf}, root))
	bundles, err := ParseZtunnelConfigDump(testCache(), body, "node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := chainStatus(t, analyseProxy(SourceZtunnel, bundles, root, inter), id); st.Reason != model.ReasonIncompleteChain {
		t.Errorf("leaf alone: %+v, want incomplete_chain", st)
	}
}
