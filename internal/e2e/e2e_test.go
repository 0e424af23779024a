// Package e2e runs the whole chain a user runs: the exporter binary against a real API server (with
// Istio's real policy CRDs), a real Prometheus scraping it with the shipped alert rules, a real
// Alertmanager routing to a webhook, and every dashboard query against that Prometheus.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/dashboards"
	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// tools returns the paths of prometheus and alertmanager (Debian's packages), or skips the test
// outside CI when they are missing.
func tools(t *testing.T) (prometheus, alertmanager string) {
	t.Helper()
	return testenv.Tool(t, "prometheus"), testenv.Tool(t, "prometheus-alertmanager")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHTTP(t *testing.T, u string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s not ready after %s", u, timeout)
}

// envoyAdmin serves a config_dump with Istio's workload secret and trust bundle.
func envoyAdmin(t *testing.T, chain, roots []byte) string {
	t.Helper()
	return testadmin.Serve(t, testadmin.EnvoySecrets(chain, roots))
}

// webhook collects the alerts Alertmanager sends.
type webhook struct {
	mu     sync.Mutex
	alerts []map[string]string
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var msg struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&msg); err == nil {
		w.mu.Lock()
		for _, a := range msg.Alerts {
			w.alerts = append(w.alerts, a.Labels)
		}
		w.mu.Unlock()
	}
}

func (w *webhook) find(match map[string]string) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.alerts {
		ok := true
		for k, v := range match {
			ok = ok && a[k] == v
		}
		if ok {
			return a
		}
	}
	return nil
}

// query runs an instant query against Prometheus.
func query(t *testing.T, promURL, expr string) ([]map[string]any, error) {
	t.Helper()
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []map[string]any `json:"result"`
		} `json:"data"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", body, err)
	}
	if out.Status != "success" {
		return nil, errors.New(out.Error)
	}
	return out.Data.Result, nil
}

func TestEndToEnd(t *testing.T) {
	prometheus, alertmanager := tools(t)
	cp := testenv.StartForTest(t)
	ctx := context.Background()
	dir := t.TempDir()
	admin := kubernetes.NewForConfigOrDie(cp.AdminConfig())

	// The mesh PKI. Istio: a root with 20 days left (it must page), an intermediate, a namespace
	// whose root ConfigMap is stale. Linkerd: an anchor with years left (it must not alert), an
	// issuer signed by another anchor.
	now := time.Now()
	istioRoot := testpki.Issue(testpki.Spec{CommonName: "E2E Istio Root", CA: true, NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(0, 0, 20)})
	istioInter := testpki.Issue(testpki.Spec{CommonName: "E2E Istio Intermediate", CA: true, Issuer: istioRoot, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 0, 15)})
	oldRoot := testpki.Issue(testpki.Spec{CommonName: "E2E Old Root", CA: true, NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(3, 0, 0)})
	linkerdAnchor := testpki.Issue(testpki.Spec{CommonName: "root.linkerd.cluster.local", CA: true, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0)})
	wrongAnchor := testpki.Issue(testpki.Spec{CommonName: "another root", CA: true, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0)})
	rogueIssuer := testpki.Issue(testpki.Spec{CommonName: "identity.linkerd.cluster.local", CA: true, Issuer: wrongAnchor, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)})
	leaf := func(id string) *testpki.Cert {
		return testpki.Issue(testpki.Spec{Issuer: istioInter, URIs: []string{id}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(23 * time.Hour)})
	}

	create := func(ns string, obj any) {
		t.Helper()
		if err := testenv.EnsureNamespace(ctx, admin, ns); err != nil {
			t.Fatal(err)
		}
		var err error
		switch o := obj.(type) {
		case *corev1.Secret:
			_, err = admin.CoreV1().Secrets(ns).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = admin.CoreV1().ConfigMaps(ns).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	secret := func(name string, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
	}
	cm := func(name string, data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
	}
	create("istio-system", secret("cacerts", map[string][]byte{"ca-cert.pem": istioInter.PEM(), "ca-key.pem": istioInter.KeyPEM(),
		"cert-chain.pem": testpki.Bundle(istioInter, istioRoot), "root-cert.pem": istioRoot.PEM()}))
	create("app-current", cm("istio-ca-root-cert", map[string]string{"root-cert.pem": string(istioRoot.PEM())}))
	create("app-stale", cm("istio-ca-root-cert", map[string]string{"root-cert.pem": string(oldRoot.PEM())}))
	create("linkerd", cm("linkerd-identity-trust-roots", map[string]string{"ca-bundle.crt": string(linkerdAnchor.PEM())}))
	create("linkerd", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-identity-issuer"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": rogueIssuer.PEM(), "tls.key": rogueIssuer.KeyPEM(), "ca.crt": wrongAnchor.PEM()}})
	create("certs", secret("broken-tls", map[string][]byte{"tls.crt": []byte("not a certificate")}))

	// The posture, with Istio's real CRDs: STRICT mesh-wide, shop injected but PERMISSIVE, and in
	// shop a sidecar pod next to one without the proxy and one on the node's network.
	dyn := dynamic.NewForConfigOrDie(cp.AdminConfig())
	testenv.InstallCRDs(t, ctx, dyn, testenv.IstioCRDs(t), "peerauthentications.security.istio.io", "authorizationpolicies.security.istio.io")
	peerAuth := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}
	for _, pa := range []struct{ ns, name, mode string }{{"istio-system", "default", "STRICT"}, {"shop", "legacy", "PERMISSIVE"}} {
		if err := testenv.EnsureNamespace(ctx, admin, pa.ns); err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
			"metadata": map[string]any{"name": pa.name, "namespace": pa.ns}, "spec": map[string]any{"mtls": map[string]any{"mode": pa.mode}}}}
		if _, err := dyn.Resource(peerAuth).Namespace(pa.ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	shop, err := admin.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	shop.Labels = map[string]string{"istio-injection": "enabled"}
	if _, err := admin.CoreV1().Namespaces().Update(ctx, shop, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-7d9f"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "cart"}, {Name: "istio-proxy"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "batch-x2"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "batch"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "agent-q8"}, Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "agent"}}}},
	} {
		if err := cp.RunPod(ctx, p, fmt.Sprintf("10.7.0.%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}

	// Proxies outside Kubernetes: one serving its proper identity, one from a foreign trust domain.
	good := envoyAdmin(t, testpki.Bundle(leaf("spiffe://cluster.local/ns/shop/sa/cart"), istioInter, istioRoot), istioRoot.PEM())
	foreign := envoyAdmin(t, testpki.Bundle(leaf("spiffe://evil.example/ns/shop/sa/cart"), istioInter, istioRoot), istioRoot.PEM())

	// The exporter binary, as built for users.
	bin := buildExporter(t, dir)
	kubeconfig, err := cp.Kubeconfig("e2e", cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "meshcert.yaml")
	os.WriteFile(configFile, []byte(fmt.Sprintf(`kubernetes:
  secrets:
    - namespace: certs
posture:
  enabled: true
proxies:
  envoy:
    interval: 5s
    timeout: 2s
    static:
      - {name: cart, url: %q}
      - {name: foreign, url: %q}
`, good, foreign)), 0o600)
	exporterPort := freePort(t)
	testenv.StartProcess(t, dir, bin, "--config.file="+configFile, "--kubeconfig="+kubeconfig, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", exporterPort))
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", exporterPort), 30*time.Second)

	// Alertmanager routing everything to the test's webhook.
	hook := &webhook{}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	amPort := freePort(t)
	amConfig := filepath.Join(dir, "alertmanager.yml")
	os.WriteFile(amConfig, []byte(fmt.Sprintf(`route:
  receiver: test
  group_by: [alertname, mesh]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: %q
        send_resolved: false
`, hookSrv.URL)), 0o600)
	testenv.StartProcess(t, dir, alertmanager, "--config.file="+amConfig, "--storage.path="+filepath.Join(dir, "am"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", amPort), "--cluster.listen-address=")
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/-/ready", amPort), 30*time.Second)

	// Prometheus with the shipped rules.
	rules, _ := filepath.Abs("../../alerts/meshcert.rules.yml")
	promPort := freePort(t)
	promConfig := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(promConfig, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:%d"]
scrape_configs:
  - job_name: meshcert
    static_configs:
      - targets: ["127.0.0.1:%d"]
`, rules, amPort, exporterPort)), 0o600)
	testenv.StartProcess(t, dir, prometheus, "--config.file="+promConfig, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	waitHTTP(t, promURL+"/-/ready", 30*time.Second)

	// The trust-anchor page reaches the receiver with the right labels.
	serial := istioRoot.X509.SerialNumber.Text(16)
	var page map[string]string
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline) && page == nil; time.Sleep(500 * time.Millisecond) {
		page = hook.find(map[string]string{"alertname": "MeshTrustAnchorExpiringCritical"})
	}
	if page == nil {
		t.Fatal("the trust-anchor page did not reach Alertmanager's webhook")
	}
	want := map[string]string{"severity": "critical", "mesh": "istio", "subject": "CN=E2E Istio Root", "serial": serial}
	for k, v := range want {
		if page[k] != v {
			t.Errorf("page label %s = %q, want %q (%v)", k, page[k], v, page)
		}
	}

	// Alerts that must not fire do not; the ones with a `for` are pending.
	firing, pending := map[string][]map[string]any{}, map[string]bool{}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		res, err := query(t, promURL, "ALERTS")
		if err != nil {
			t.Fatal(err)
		}
		firing, pending = map[string][]map[string]any{}, map[string]bool{}
		for _, r := range res {
			m := r["metric"].(map[string]any)
			name := m["alertname"].(string)
			if m["alertstate"] == "firing" {
				firing[name] = append(firing[name], m)
			} else {
				pending[name] = true
			}
		}
		if pending["MeshChainInvalid"] && pending["MeshTrustBundleStale"] && pending["MeshIdentityMismatch"] &&
			pending["MeshPeerAuthenticationNotStrict"] && pending["MeshPodWithoutProxy"] && pending["MeshPodHostNetwork"] {
			break
		}
	}
	for _, name := range []string{"MeshChainInvalid", "MeshTrustBundleStale", "MeshIdentityMismatch",
		"MeshPeerAuthenticationNotStrict", "MeshPodWithoutProxy", "MeshPodHostNetwork"} {
		if !pending[name] && len(firing[name]) == 0 {
			t.Errorf("%s is neither pending nor firing", name)
		}
	}
	for _, name := range []string{"MeshCertificateExpired", "MeshIssuerExpiringCritical", "MeshCertExporterAbsent", "MeshCertExporterSourceDown",
		"MeshWorkloadCertificateNotRotated", "MeshNoMeshWideStrict", "MeshPodNetAdmin", "MeshCannotSign"} {
		if len(firing[name]) > 0 || pending[name] {
			t.Errorf("%s must not fire: %v", name, firing[name])
		}
	}
	for _, a := range firing["MeshTrustAnchorExpiring"] {
		if a["mesh"] != "istio" {
			t.Errorf("MeshTrustAnchorExpiring fired for an anchor with years left: %v", a)
		}
	}

	// Every panel query of every dashboard returns data from this Prometheus (a rate needs two
	// samples: each query is asked again until it answers, within a generous deadline).
	boards, err := dashboards.Load("../../dashboards")
	if err != nil {
		t.Fatal(err)
	}
	for file, d := range boards {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				var (
					res []map[string]any
					err error
				)
				for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
					if res, err = query(t, promURL, dashboards.Substitute(tg.Expr)); err == nil && len(res) > 0 || time.Now().After(deadline) {
						break
					}
				}
				if err != nil || len(res) == 0 {
					t.Errorf("%s/%s: %q returned %d series, error %v", file, p.Title, tg.Expr, len(res), err)
				}
			}
		}
	}
}
