package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// controlPlane is the real API server of this package's tests, or nil when the binaries are not
// built (outside CI the Kubernetes tests are then skipped).
var controlPlane *testenv.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(testenv.RunShared(m, &controlPlane))
}

// TestRunWithKubeconfig runs the exporter as a user would, with --kubeconfig, next to the file
// source: both sources' series are served and the scrape passes promtool.
func TestRunWithKubeconfig(t *testing.T) {
	if controlPlane == nil {
		t.Skip(testenv.ErrNoBinaries)
	}
	ctx := t.Context()
	admin := kubernetes.NewForConfigOrDie(controlPlane.AdminConfig())
	if err := testenv.EnsureNamespace(ctx, admin, "istio-system"); err != nil {
		t.Fatal(err)
	}
	root := testpki.Issue(testpki.Spec{CommonName: "cluster root", CA: true, NotBefore: from, NotAfter: until})
	_, err := admin.CoreV1().Secrets("istio-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-secret"},
		Type: "istio.io/ca-root", Data: map[string][]byte{"ca-cert.pem": root.PEM(), "ca-key.pem": root.KeyPEM(), "root-cert.pem": root.PEM()}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := controlPlane.Kubeconfig("admin", controlPlane.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	body := runAndScrape(t, "--config.file=examples/meshcert.yaml", "--kubeconfig="+kubeconfig)
	for _, want := range []string{
		`meshcert_source_up{source="secret"} 1`,
		`meshcert_source_up{source="configmap"} 1`,
		`meshcert_source_up{source="file"} 1`,
		`meshcert_root_key_in_cluster{mesh="istio",name="istio-ca-secret",namespace="istio-system",source="secret"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s\n%s", want, grepLines(body, "root_key|source_up|secret"))
		}
	}
	if strings.Contains(body, "meshcert_bundle_error{") {
		t.Errorf("istio-ca-secret with its certificate and key reported incomplete:\n%s", grepLines(body, "bundle_error"))
	}
	series(t, body, "meshcert_certificate_info", "source", "secret", "name", "istio-ca-secret", "key", "ca-cert.pem", "role", "trust_anchor")
	for _, m := range keyMaterial(root.KeyPEM()) {
		if strings.Contains(body, m) {
			t.Fatal("private key material in the metrics")
		}
	}
	checkWithPromtool(t, body)
}

// TestRunWithKUBECONFIG: without --kubeconfig the exporter finds its cluster as kubectl does,
// through $KUBECONFIG (a list of files, merged).
func TestRunWithKUBECONFIG(t *testing.T) {
	if controlPlane == nil {
		t.Skip(testenv.ErrNoBinaries)
	}
	kubeconfig, err := controlPlane.Kubeconfig("env", controlPlane.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "absent.yaml")+string(filepath.ListSeparator)+kubeconfig)
	body := runAndScrape(t, "--config.file=examples/meshcert.yaml")
	for _, want := range []string{`meshcert_source_up{source="secret"} 1`, `meshcert_source_up{source="configmap"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s\n%s", want, grepLines(body, "source_up"))
		}
	}
}

// runAndScrape runs the exporter with args until it is ready, checks its landing and health pages,
// and returns one scrape.
func runAndScrape(t *testing.T, args ...string) string {
	t.Helper()
	base := startExporter(t, "http", http.DefaultClient, args...)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := get(t, http.DefaultClient, http.MethodGet, base+"/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exporter did not become ready")
		}
	}
	for _, path := range []string{"/", "/healthz"} {
		if code, _ := get(t, http.DefaultClient, http.MethodGet, base+path); code != http.StatusOK {
			t.Errorf("GET %s: %d", path, code)
		}
	}
	code, body := get(t, http.DefaultClient, http.MethodGet, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("scrape status %d", code)
	}
	return body
}

func grepLines(body, pattern string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, p := range strings.Split(pattern, "|") {
			if strings.Contains(l, p) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestSecretTypeFlag: --source.secret-type watches every Secret of the type in every namespace and
// reads tls.crt and ca.crt; Secrets of other types never arrive.
func TestSecretTypeFlag(t *testing.T) {
	if controlPlane == nil {
		t.Skip(testenv.ErrNoBinaries)
	}
	ctx := t.Context()
	admin := kubernetes.NewForConfigOrDie(controlPlane.AdminConfig())
	root := testpki.Issue(testpki.Spec{CommonName: "typed root", CA: true, NotBefore: from, NotAfter: until})
	leaf := testpki.Issue(testpki.Spec{CommonName: "typed leaf", Issuer: root, NotBefore: from, NotAfter: until})
	for i, ns := range []string{"team-a", "team-b"} {
		if err := testenv.EnsureNamespace(ctx, admin, ns); err != nil {
			t.Fatal(err)
		}
		for _, s := range []*corev1.Secret{
			{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i)}, Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{"tls.crt": leaf.PEM(), "tls.key": leaf.KeyPEM(), "ca.crt": root.PEM()}},
			{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("opaque-%d", i)}, Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{"tls.crt": leaf.PEM()}},
		} {
			if _, err := admin.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	kubeconfig, err := controlPlane.Kubeconfig("typed", controlPlane.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	body := runAndScrape(t, "--kubeconfig="+kubeconfig, "--source.secret-type=kubernetes.io/tls")
	for i, ns := range []string{"team-a", "team-b"} {
		series(t, body, "meshcert_chain_valid", "namespace", ns, "name", fmt.Sprintf("web-%d", i), "key", "tls.crt")
		series(t, body, "meshcert_certificate_info", "namespace", ns, "name", fmt.Sprintf("web-%d", i), "key", "ca.crt", "role", "trust_anchor")
		if strings.Contains(body, fmt.Sprintf(`name="opaque-%d"`, i)) {
			t.Errorf("an Opaque Secret was read")
		}
	}
}
