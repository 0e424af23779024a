package realmesh

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
)

// stepPKI makes Linkerd's trust anchor and issuer with the real step CLI, with the commands of
// Linkerd's "Generating your own mTLS root certificates" docs; extra flags go to the issuer. With
// selfSigned the issuer is a self-signed CA that is also the only anchor, as `linkerd install`
// makes when given no certificates.
func stepPKI(t *testing.T, dir, issuerName string, selfSigned bool, issuerFlags ...string) (anchors, crt, key []byte) {
	t.Helper()
	step := testenv.Tool(t, "step")
	if selfSigned {
		command(t, dir, step, append([]string{"certificate", "create", issuerName, "issuer.crt", "issuer.key",
			"--profile", "root-ca", "--no-password", "--insecure", "--not-after", "8760h"}, issuerFlags...)...)
		crt, key = readFile(t, filepath.Join(dir, "issuer.crt")), readFile(t, filepath.Join(dir, "issuer.key"))
		return crt, crt, key
	}
	command(t, dir, step, "certificate", "create", "root.linkerd.cluster.local", "ca.crt", "ca.key",
		"--profile", "root-ca", "--no-password", "--insecure")
	command(t, dir, step, append([]string{"certificate", "create", issuerName, "issuer.crt", "issuer.key",
		"--profile", "intermediate-ca", "--not-after", "8760h", "--no-password", "--insecure", "--ca", "ca.crt", "--ca-key", "ca.key"}, issuerFlags...)...)
	return readFile(t, filepath.Join(dir, "ca.crt")), readFile(t, filepath.Join(dir, "issuer.crt")), readFile(t, filepath.Join(dir, "issuer.key"))
}

// TestLinkerdStepPKI: Linkerd's objects, as `linkerd install` writes them, holding a PKI made by
// the step CLI. The exporter must verify the issuer against the trust roots and judge both by
// Linkerd's own rules.
func TestLinkerdStepPKI(t *testing.T) {
	client := controlPlane(t)
	kubeconfig, err := cp.Kubeconfig("linkerd", cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		namespace  string
		issuerName string // empty: identity.<namespace>.cluster.local
		selfSigned bool
		external   bool // cert-manager's kubernetes.io/tls issuer instead of linkerd.io/tls
		flags      []string
		depth      float64
		reason     string // of the issuer's mesh requirements
		rootKey    float64
	}{
		{name: "the docs' PKI, linkerd.io/tls", namespace: "ld-docs", depth: 2},
		{name: "an external issuer in kubernetes.io/tls", namespace: "ld-external", external: true, depth: 2},
		{name: "an RSA issuer", namespace: "ld-rsa", flags: []string{"--kty", "RSA", "--size", "2048"}, depth: 2, reason: "unsupported_key_algorithm"},
		{name: "an issuer named for another control plane", namespace: "ld-name", issuerName: "identity.linkerd.cluster.local", depth: 2, reason: "wrong_issuer_name"},
		{name: "the default install: a self-signed issuer that is its own anchor", namespace: "ld-default", selfSigned: true, depth: 1, rootKey: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			name := tt.issuerName
			if name == "" {
				name = "identity." + tt.namespace + ".cluster.local"
			}
			anchors, crt, key := stepPKI(t, dir, name, tt.selfSigned, tt.flags...)
			ensureNamespaces(t, client, tt.namespace)
			ctx := context.Background()
			values := fmt.Sprintf("identityTrustDomain: cluster.local\nidentityTrustAnchorsPEM: |\n  %s\nidentity:\n  issuer:\n    scheme: %s\n",
				strings.ReplaceAll(string(anchors), "\n", "\n  "), map[bool]string{false: "linkerd.io/tls", true: "kubernetes.io/tls"}[tt.external])
			for _, cm := range []*corev1.ConfigMap{
				{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-identity-trust-roots"}, Data: map[string]string{"ca-bundle.crt": string(anchors) + "\n"}},
				{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-config"}, Data: map[string]string{"values": values}},
			} {
				if _, err := client.CoreV1().ConfigMaps(tt.namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			issuer := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-identity-issuer"}, Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{"crt.pem": crt, "key.pem": key}}
			issuerKey := "crt.pem"
			if tt.external {
				issuer.Type, issuerKey = corev1.SecretTypeTLS, "tls.crt"
				issuer.Data = map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": anchors}
			}
			if _, err := client.CoreV1().Secrets(tt.namespace).Create(ctx, issuer, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			base := exporter(t, dir, kubeconfig, fmt.Sprintf("meshes:\n  istio: {watch: false}\n  linkerd: {namespace: %s}\n", tt.namespace))
			iss := map[string]string{"source": "secret", "namespace": tt.namespace, "name": "linkerd-identity-issuer", "key": issuerKey}
			roots := map[string]string{"source": "configmap", "namespace": tt.namespace, "name": "linkerd-identity-trust-roots", "key": "ca-bundle.crt"}
			eventually(t, 30*time.Second, func() string {
				e := scrape(t, base)
				want := []string{
					e.is("meshcert_certificate_info", merge(iss, map[string]string{"role": "issuer", "subject": "CN=" + name}), 1),
					e.is("meshcert_chain_valid", iss, 1),
					e.is("meshcert_chain_depth", iss, tt.depth),
					e.is("meshcert_mesh_requirements_info", merge(iss, map[string]string{"reason": tt.reason}), 1),
					e.is("meshcert_mesh_requirements_met", roots, 1),
					e.is("meshcert_root_key_in_cluster", map[string]string{"namespace": tt.namespace, "name": "linkerd-identity-issuer"}, tt.rootKey),
					e.is("meshcert_trust_bundle_current", map[string]string{"namespace": tt.namespace, "name": "linkerd-config", "key": "values"}, 1),
				}
				if tt.selfSigned {
					serial := e.label("meshcert_certificate_info", iss, "serial")
					want = append(want, e.is("meshcert_chain_info", merge(iss, map[string]string{"anchor_serial": serial}), 1))
				}
				if tt.external {
					want = append(want, e.is("meshcert_trust_bundle_current", merge(iss, map[string]string{"key": "ca.crt"}), 1))
				}
				return checks(want...)
			})
		})
	}
}
