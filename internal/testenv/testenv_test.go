package testenv

import (
	"context"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestControlPlane starts the real control plane, checks that RBAC denies an unbound service
// account, and that the API server comes back after a restart on the same address.
func TestControlPlane(t *testing.T) {
	cp := StartForTest(t)
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(cp.AdminConfig())
	v, err := admin.Discovery().ServerVersion()
	if err != nil || v.GitVersion != "v1.37.2" {
		t.Fatalf("server version %v, %v", v, err)
	}
	saCfg, err := cp.ServiceAccountConfig(ctx, "probe", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	_, err = kubernetes.NewForConfigOrDie(saCfg).CoreV1().Secrets("probe").List(ctx, metav1.ListOptions{})
	if err == nil {
		t.Error("an unbound service account could list Secrets")
	}
	cp.StopAPIServer()
	if _, err := admin.CoreV1().Namespaces().Get(ctx, "probe", metav1.GetOptions{}); err == nil {
		t.Error("the API server answered while stopped")
	}
	if err := cp.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Namespaces().Get(ctx, "probe", metav1.GetOptions{}); err != nil {
		t.Errorf("after the restart: %v", err)
	}
}

// TestIstioModuleIsTheBuiltOne: the Istio CRDs the tests install come from the istio.io/istio
// version hack/build-istio-ca.sh builds istiod's CA code from.
func TestIstioModuleIsTheBuiltOne(t *testing.T) {
	script, err := os.ReadFile("../../hack/build-istio-ca.sh")
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimPrefix(IstioModule, "istio.io/istio@")
	if !strings.Contains(string(script), "ISTIO_VERSION:-"+version+"}") {
		t.Errorf("hack/build-istio-ca.sh does not default to %s", version)
	}
}
