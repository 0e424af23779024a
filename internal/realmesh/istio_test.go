package realmesh

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/internal/testadmin"
)

// istioSetup returns what every Istio test needs: an admin client of the shared API server with
// the namespaces created, the istio-ca binary, a kubeconfig for it and a directory of the test's.
func istioSetup(t *testing.T, namespaces ...string) (kubernetes.Interface, string, string, string) {
	t.Helper()
	client := controlPlane(t)
	bin := istioCA(t)
	ensureNamespaces(t, client, namespaces...)
	kubeconfig, err := cp.Kubeconfig("istio-ca", cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	return client, bin, kubeconfig, t.TempDir()
}

// istioConfig is the exporter's configuration for an Istio control plane in namespace, reading the
// sidecar admin doubles given as name, URL pairs every second.
func istioConfig(namespace string, sidecars ...string) string {
	c := fmt.Sprintf("meshes:\n  istio: {namespace: %s}\n  linkerd: {watch: false}\nproxies:\n  envoy:\n    interval: 1s\n    timeout: 900ms\n    static:\n", namespace)
	for i := 0; i+1 < len(sidecars); i += 2 {
		c += fmt.Sprintf("      - {name: %s, url: %q}\n", sidecars[i], sidecars[i+1])
	}
	return c
}

// serialOf is the exporter's serial label of the first certificate in pemData.
func serialOf(t *testing.T, pemData []byte) string {
	t.Helper()
	block, _ := pem.Decode(pemData)
	if block == nil {
		t.Fatalf("no PEM in %q", pemData)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

// istioObjects waits until istio's code has written the root copy in each namespace, all holding
// the same root set, different from not, and (when caSecret is named) its CA Secret in istiodNS;
// it returns that Secret's data and the root set.
func istioObjects(t *testing.T, client kubernetes.Interface, istiodNS, caSecret string, not []byte, namespaces ...string) (map[string][]byte, []byte) {
	t.Helper()
	var (
		data  map[string][]byte
		roots []byte
	)
	eventually(t, 60*time.Second, func() string {
		ctx := context.Background()
		if caSecret != "" {
			s, err := client.CoreV1().Secrets(istiodNS).Get(ctx, caSecret, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			data = s.Data
		}
		roots = nil
		for _, ns := range namespaces {
			cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			copyOf := []byte(cm.Data["root-cert.pem"])
			switch {
			case roots == nil:
				roots = copyOf
			case string(roots) != string(copyOf):
				return "istio-ca-root-cert differs between namespaces"
			}
		}
		if string(roots) == string(not) {
			return "istio-ca-root-cert still holds the previous roots"
		}
		return ""
	})
	return data, roots
}

// TestIstiodSelfSignedRootAndRotation runs istiod's own self-signed CA code: it creates
// istio-ca-secret and copies its root into every namespace, signs a sidecar's certificate, then
// its root rotator renews the root. The exporter must take ca-cert.pem as the anchor, find every
// copy current before and after the rotation, and stop reporting the old root.
func TestIstiodSelfSignedRootAndRotation(t *testing.T) {
	client, bin, kubeconfig, dir := istioSetup(t, "istio-system", "app-a", "app-b")
	workload := filepath.Join(dir, "web.pem")
	istiod := run(t, dir, bin, "--kubeconfig="+kubeconfig, "--mode=self-signed",
		"--workload=spiffe://cluster.local/ns/app-a/sa/web", "--workload-out="+workload)
	secret, roots := istioObjects(t, client, "istio-system", "istio-ca-secret", nil, "app-a", "app-b")
	for _, k := range []string{"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem", "key.pem"} {
		if _, ok := secret[k]; !ok {
			t.Errorf("istio-ca-secret has no %s: istiod writes it", k)
		}
	}
	first := serialOf(t, secret["ca-cert.pem"])

	// A sidecar serving the certificate istio's CA signed, with the root it was given.
	sidecar := testadmin.Serve(t, testadmin.EnvoySecrets(readFile(t, workload), roots))
	base := exporter(t, dir, kubeconfig, istioConfig("istio-system", "web", sidecar))

	caCert := map[string]string{"source": "secret", "namespace": "istio-system", "name": "istio-ca-secret", "key": "ca-cert.pem"}
	copyIn := func(ns string) map[string]string {
		return map[string]string{"source": "configmap", "namespace": ns, "name": "istio-ca-root-cert", "key": "root-cert.pem"}
	}
	secretCopy := map[string]string{"source": "secret", "name": "istio-ca-secret", "key": "root-cert.pem"}
	web := map[string]string{"source": "envoy", "name": "web", "key": "default"}
	eventually(t, 30*time.Second, func() string {
		e := scrape(t, base)
		return checks(
			e.is("meshcert_certificate_info", merge(caCert, map[string]string{"role": "trust_anchor", "serial": first}), 1),
			e.is("meshcert_mesh_requirements_met", caCert, 1),
			e.is("meshcert_root_key_in_cluster", map[string]string{"name": "istio-ca-secret"}, 1),
			e.is("meshcert_trust_bundle_current", copyIn("app-a"), 1),
			e.is("meshcert_trust_bundle_current", copyIn("app-b"), 1),
			e.is("meshcert_trust_bundle_current", secretCopy, 1),
			e.is("meshcert_trust_bundle_current", map[string]string{"source": "envoy", "name": "web", "key": "ROOTCA"}, 1),
			// istio's CA signs the leaf with its root directly: leaf and root, depth 2.
			e.is("meshcert_chain_valid", web, 1),
			e.is("meshcert_chain_depth", web, 2),
			e.is("meshcert_san_valid", web, 1),
			e.is("meshcert_chain_info", merge(web, map[string]string{"anchor_serial": first, "reason": ""}), 1),
		)
	})

	// istio's rotator renews the root with the same key; its callback republishes the roots.
	istiod.Stop()
	run(t, dir, bin, "--kubeconfig="+kubeconfig, "--mode=self-signed", "--rotate-once")
	secret, _ = istioObjects(t, client, "istio-system", "istio-ca-secret", roots, "app-a", "app-b")
	second := serialOf(t, secret["ca-cert.pem"])
	if second == first {
		t.Fatal("istio's rotator did not renew the root")
	}
	if serialOf(t, secret["root-cert.pem"]) != first {
		t.Fatal("istio's rotator rewrote root-cert.pem: the premise of this test changed")
	}
	eventually(t, 30*time.Second, func() string {
		e := scrape(t, base)
		if slices.Contains(e.serials(), first) {
			return fmt.Sprintf("the old root %s is still exported: %v", first, e.serials())
		}
		return checks(
			e.is("meshcert_certificate_info", merge(caCert, map[string]string{"role": "trust_anchor", "serial": second}), 1),
			e.is("meshcert_trust_bundle_current", copyIn("app-a"), 1),
			e.is("meshcert_trust_bundle_current", copyIn("app-b"), 1),
			// The copy istiod never rewrites: compared, and stale (MeshTrustBundleStale leaves it out).
			e.is("meshcert_trust_bundle_current", secretCopy, 0),
			// The sidecar still holds the old root: drift, while its leaf, signed with the same key,
			// verifies up to the new root.
			e.is("meshcert_trust_bundle_current", map[string]string{"source": "envoy", "name": "web", "key": "ROOTCA"}, 0),
			e.is("meshcert_chain_info", merge(web, map[string]string{"anchor_serial": second, "reason": ""}), 1),
		)
	})
}

// TestIstiodOldSelfSignedSecret: an istio-ca-secret from an old install holds only ca-cert.pem and
// ca-key.pem. Its root is still the mesh's anchor, so the namespaces' copies are compared.
func TestIstiodOldSelfSignedSecret(t *testing.T) {
	client, bin, kubeconfig, dir := istioSetup(t, "istio-old", "old-app")
	// istio's CA makes its secret; the old install's shape keeps only its two keys.
	istiod := run(t, dir, bin, "--kubeconfig="+kubeconfig, "--namespace=istio-old", "--mode=self-signed")
	secret, _ := istioObjects(t, client, "istio-old", "istio-ca-secret", nil, "old-app")
	istiod.Stop()
	ctx := context.Background()
	s, err := client.CoreV1().Secrets("istio-old").Get(ctx, "istio-ca-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"ca-cert.pem": secret["ca-cert.pem"], "ca-key.pem": secret["ca-key.pem"]}
	if _, err := client.CoreV1().Secrets("istio-old").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	base := exporter(t, dir, kubeconfig, "meshes:\n  istio: {namespace: istio-old}\n  linkerd: {watch: false}\n")
	eventually(t, 30*time.Second, func() string {
		e := scrape(t, base)
		return checks(
			e.is("meshcert_certificate_info", map[string]string{"name": "istio-ca-secret", "key": "ca-cert.pem", "role": "trust_anchor", "serial": serialOf(t, secret["ca-cert.pem"])}, 1),
			e.is("meshcert_trust_bundle_current", map[string]string{"namespace": "old-app", "name": "istio-ca-root-cert"}, 1),
			none(e, "meshcert_bundle_error", map[string]string{"name": "istio-ca-secret"}),
		)
	})
}

// openSSLPluginCA makes a plug-in CA as Istio's multi-level test PKI is made, with the real
// OpenSSL: an X.509 v1 self-signed root (no extensions) and an ECDSA intermediate under it, in
// the files istiod mounts from cacerts.
func openSSLPluginCA(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	openssl := "openssl"
	command(t, dir, openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "root-key.pem", "-subj", "/O=Istio/CN=Root CA", "-out", "root.csr")
	command(t, dir, openssl, "x509", "-req", "-in", "root.csr", "-signkey", "root-key.pem", "-days", "3650", "-out", "root-cert.pem")
	command(t, dir, openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca-key.pem",
		"-subj", "/O=Istio/CN=Intermediate CA/L=cluster1", "-out", "ca.csr")
	ext := "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,keyCertSign\n" +
		"subjectAltName=URI:spiffe://cluster.local/ns/istio-system/sa/citadel\n"
	if err := os.WriteFile(filepath.Join(dir, "ca.ext"), []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	command(t, dir, openssl, "x509", "-req", "-in", "ca.csr", "-CA", "root-cert.pem", "-CAkey", "root-key.pem", "-CAcreateserial",
		"-days", "1825", "-extfile", "ca.ext", "-out", "ca-cert.pem")
	files := map[string][]byte{}
	for _, f := range []string{"ca-cert.pem", "ca-key.pem", "root-cert.pem"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = b
	}
	files["cert-chain.pem"] = append(append([]byte{}, files["ca-cert.pem"]...), files["root-cert.pem"]...)
	root, _ := pem.Decode(files["root-cert.pem"])
	if c, err := x509.ParseCertificate(root.Bytes); err != nil || c.Version != 1 {
		t.Fatalf("OpenSSL's root is not an X.509 v1 certificate (%v)", err)
	}
	return files
}

// TestIstiodPluginCA: a plug-in CA in cacerts, made with OpenSSL on a v1 root, loaded by istio's
// own plug-in CA code, which copies its root into every namespace and signs a sidecar. The v1 root
// is the anchor, the intermediate verifies under it, and the sidecar's chain is judged as its peers
// judge it: complete as istio's CA returns it, incomplete_chain without the intermediate.
func TestIstiodPluginCA(t *testing.T) {
	client, bin, kubeconfig, dir := istioSetup(t, "istio-plug", "shop")
	mount := filepath.Join(dir, "cacerts")
	if err := os.Mkdir(mount, 0o700); err != nil {
		t.Fatal(err)
	}
	files := openSSLPluginCA(t, mount)
	for _, f := range []string{"root-key.pem", "root.csr", "ca.csr", "ca.ext", "root-cert.srl"} {
		os.Remove(filepath.Join(mount, f)) // the mount holds only what cacerts holds
	}
	if err := os.WriteFile(filepath.Join(mount, "cert-chain.pem"), files["cert-chain.pem"], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := client.CoreV1().Secrets("istio-plug").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cacerts"}, Type: corev1.SecretTypeOpaque, Data: files}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	workload := filepath.Join(dir, "cart.pem")
	run(t, dir, bin, "--kubeconfig="+kubeconfig, "--namespace=istio-plug", "--mode=plugged", "--cacerts-dir="+mount,
		"--workload=spiffe://cluster.local/ns/shop/sa/cart", "--workload-out="+workload)
	_, roots := istioObjects(t, client, "istio-plug", "", nil, "shop")
	chain := readFile(t, workload)
	leaf, _ := pem.Decode(chain)
	full := testadmin.Serve(t, testadmin.EnvoySecrets(chain, roots))
	leafOnly := testadmin.Serve(t, testadmin.EnvoySecrets(pem.EncodeToMemory(leaf), roots))
	base := exporter(t, dir, kubeconfig, istioConfig("istio-plug", "cart", full, "cart-leaf-only", leafOnly))
	rootSerial := serialOf(t, files["root-cert.pem"])
	cacerts := func(key string) map[string]string {
		return map[string]string{"source": "secret", "namespace": "istio-plug", "name": "cacerts", "key": key}
	}
	eventually(t, 30*time.Second, func() string {
		e := scrape(t, base)
		return checks(
			e.is("meshcert_certificate_info", merge(cacerts("root-cert.pem"), map[string]string{"role": "trust_anchor", "serial": rootSerial, "key_algorithm": "RSA-2048"}), 1),
			e.is("meshcert_chain_valid", merge(cacerts("ca-cert.pem"), map[string]string{"role": "intermediate"}), 1),
			e.is("meshcert_chain_depth", cacerts("ca-cert.pem"), 2),
			e.is("meshcert_mesh_requirements_met", cacerts("root-cert.pem"), 1),
			e.is("meshcert_root_key_in_cluster", map[string]string{"name": "cacerts"}, 0),
			none(e, "meshcert_bundle_error", map[string]string{"name": "cacerts"}),
			e.is("meshcert_trust_bundle_current", map[string]string{"namespace": "shop", "name": "istio-ca-root-cert"}, 1),
			e.is("meshcert_chain_valid", map[string]string{"source": "envoy", "name": "cart"}, 1),
			e.is("meshcert_chain_depth", map[string]string{"source": "envoy", "name": "cart"}, 3),
			e.is("meshcert_chain_valid", map[string]string{"source": "envoy", "name": "cart-leaf-only"}, 0),
			e.is("meshcert_chain_depth", map[string]string{"source": "envoy", "name": "cart-leaf-only"}, 1),
			e.is("meshcert_chain_info", map[string]string{"source": "envoy", "name": "cart-leaf-only", "reason": "incomplete_chain"}, 1),
		)
	})
}

// merge returns a with b's labels added.
func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// none says which series of family matching match exist, or "" when none does.
func none(e exposition, family string, match map[string]string) string {
	if got := e.find(family, match); len(got) > 0 {
		return fmt.Sprintf("%s%v exists: %v", family, match, got[0].labels)
	}
	return ""
}
