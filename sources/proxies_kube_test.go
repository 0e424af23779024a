package sources_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/exporter"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// TestEnvoyThroughPortForward reads sidecars' admin endpoints the way istioctl does: client-go's
// port-forward to the real kube-apiserver, which connects to the node's kubelet (a stand-in
// serving Kubernetes' own streaming code), which connects to the admin double. The exporter runs as
// a ServiceAccount bound to exactly the RBAC the configuration needs.
func TestEnvoyThroughPortForward(t *testing.T) {
	k := newKubeTest(t)
	ctx := k.ctx
	kubelet := testenv.StartKubelet()
	defer kubelet.Close()
	k.must(controlPlane.RegisterNode(ctx, "node-pf", kubelet))

	const istioNS = "istio-pf"
	root := issue("root", true, nil)
	inter := issue("inter", true, root)
	k.secret(istioNS, "cacerts", corev1.SecretTypeOpaque, map[string][]byte{"ca-cert.pem": inter.PEM(), "ca-key.pem": inter.KeyPEM(),
		"cert-chain.pem": testpki.Bundle(inter, root), "root-cert.pem": root.PEM()})

	// Three sidecars: a healthy one, one whose certificate names another service account, and one
	// whose admin endpoint hangs. A pod without a sidecar is not read.
	serve := func(body []byte) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.RequestURI() != istio.EnvoySecretsPath {
				http.NotFound(w, r)
				return
			}
			w.Write(body)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	leaf := func(sa string) *testpki.Cert { return issue("", false, inter, "spiffe://cluster.local/ns/shop/sa/"+sa) }
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	defer hang.Close()
	sidecar := []string{"app", "istio-proxy"}
	for name, addr := range map[string]string{
		"cart-1":  serve(testadmin.EnvoySecrets(testpki.Bundle(leaf("cart"), inter, root), root.PEM())),
		"cart-2":  serve(testadmin.EnvoySecrets(testpki.Bundle(leaf("web"), inter, root), root.PEM())),
		"hanging": strings.TrimPrefix(hang.URL, "http://"),
	} {
		k.must(controlPlane.RunningPod(ctx, "shop", name, "node-pf", "cart", "10.9.0.1", sidecar, map[string]string{"security.istio.io/tlsMode": "istio"}, nil))
		kubelet.Forward("shop", name, 15000, addr)
	}
	k.must(controlPlane.RunningPod(ctx, "shop", "plain", "node-pf", "cart", "10.9.0.2", []string{"app"}, nil, nil))

	cfg := config.Default()
	istio.In(cfg.Meshes).Namespace = istioNS
	istio.In(cfg.Meshes).RootCertConfigMap = "root-cert-pf"
	linkerd.In(cfg.Meshes).Watch = false
	cfg.Proxies.Of(istio.SourceEnvoy).Enabled = true
	saClient := k.grant(cfg, "exporter-pf", "")
	saConfig := controlPlane.TokenConfig(saToken(t, k, "exporter-pf"))

	envoy := cfg.Proxies.Of(istio.SourceEnvoy)
	envoy.Interval, envoy.Timeout, envoy.Concurrency = 10*time.Second, 2*time.Second, 2 // first reads within a second
	a, err := exporter.Assemble(cfg, &exporter.Kube{Config: saConfig, Client: saClient}, log.NewNopLogger())
	k.must(err)
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range a.Sources {
		wg.Go(func() { _ = s.Run(runCtx) })
	}
	defer func() { cancel(); wg.Wait() }()
	inv := a.Inventory

	eventually(t, inv, func(s *model.Snapshot) string {
		v := snapshotView{s}
		if msg := v.up(); msg != "" {
			return msg
		}
		status := map[string]model.ProxyStatus{}
		for _, p := range s.Proxies {
			status[p.Name] = *p
		}
		if len(status) != 3 || !status["cart-1"].Up || !status["cart-2"].Up || status["hanging"].Up || status["hanging"].LastSuccess != (time.Time{}) {
			return fmt.Sprintf("proxy statuses %+v", status)
		}
		good := v.cert(istio.SourceEnvoy, "shop", "cart-1", "default", 0)
		if msg := chainIs(good, model.RoleLeaf, true, "", 3); msg != "" {
			return "cart-1: " + msg
		}
		if good.Identity == nil || !good.Identity.Valid {
			return fmt.Sprintf("cart-1 identity %+v", good.Identity)
		}
		if bad := v.cert(istio.SourceEnvoy, "shop", "cart-2", "default", 0); bad == nil || bad.Identity == nil || bad.Identity.Reason != model.ReasonWrongServiceAccount {
			return "cart-2's foreign identity not reported"
		}
		if cur, found := v.bundleCurrent("shop", "cart-1"); !found || !cur {
			return "cart-1 ROOTCA not current"
		}
		for _, oa := range s.Objects {
			if oa.Object.Source == istio.SourceEnvoy && !oa.Object.FromPods {
				return fmt.Sprintf("%s/%s, read from its pod, is not counted in this replica's share of the pods", oa.Object.Namespace, oa.Object.Name)
			}
		}
		for _, src := range s.Sources {
			if src.Name == istio.SourceEnvoy && src.Errors[model.ReasonTimeout] == 0 {
				return "the hanging proxy's timeout is not counted"
			}
		}
		return ""
	})
	if kubelet.Forwards() < 3 {
		t.Errorf("%d connections reached the kubelet stand-in", kubelet.Forwards())
	}

	// A pod that goes away drops its series.
	k.must(k.admin.CoreV1().Pods("shop").Delete(ctx, "cart-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	eventually(t, inv, func(s *model.Snapshot) string {
		if n := (snapshotView{s}).object(istio.SourceEnvoy, "shop", "cart-1"); n != 0 {
			return "the deleted pod's certificate is still exported"
		}
		return ""
	})
}

// saToken returns a token of the service account the test granted.
func saToken(t *testing.T, k *kubeTest, account string) string {
	t.Helper()
	cfg, err := controlPlane.ServiceAccountConfig(k.ctx, "meshcert", account)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.BearerToken
}
