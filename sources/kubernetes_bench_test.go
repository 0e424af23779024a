package sources_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/exporter"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	. "github.com/meshcert/meshcert-exporter/sources"
)

// BenchmarkHeapWithUnrelatedSecrets measures the heap the Kubernetes sources hold after their
// informers synced, in a mesh namespace with only the mesh's CA Secrets, and again after 2,000
// unrelated 100 KB Secrets (Helm-release-like blobs) were added to the same namespace. Watching by
// name keeps them out: the two figures should be the same.
func BenchmarkHeapWithUnrelatedSecrets(b *testing.B) {
	if controlPlane == nil {
		b.Skip(testenv.ErrNoBinaries)
	}
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(controlPlane.AdminConfig())
	const ns = "bench-istio"
	cfg := config.Default()
	istio.In(cfg.Meshes).Namespace = ns
	istio.In(cfg.Meshes).RootCertConfigMap = "root-cert-bench"
	linkerd.In(cfg.Meshes).Watch = false
	if err := testenv.EnsureNamespace(ctx, admin, ns); err != nil {
		b.Fatal(err)
	}
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0)})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0)})
	for name, data := range map[string]map[string][]byte{
		"istio-ca-secret": {"ca-cert.pem": root.PEM(), "ca-key.pem": root.KeyPEM(), "root-cert.pem": root.PEM()},
		"cacerts":         {"ca-cert.pem": inter.PEM(), "ca-key.pem": inter.KeyPEM(), "cert-chain.pem": testpki.Bundle(inter, root), "root-cert.pem": root.PEM()},
	} {
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			b.Fatal(err)
		}
	}

	measure := func() float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a, err := exporter.Assemble(cfg, &exporter.Kube{Client: admin}, log.NewNopLogger())
		if err != nil {
			b.Fatal(err)
		}
		secrets, configMaps := sourceNamed(a, SourceSecret), sourceNamed(a, SourceConfigMap)
		runCtx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, s := range a.Sources {
			wg.Go(func() { _ = s.Run(runCtx) })
		}
		for !secrets.State().Synced || !configMaps.State().Synced {
			time.Sleep(10 * time.Millisecond)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(secrets)
		runtime.KeepAlive(configMaps)
		cancel()
		wg.Wait()
		return float64(after.HeapInuse) - float64(before.HeapInuse)
	}

	measure() // warm up: the first start pays for the client's one-time initialisation
	without := measure()
	blob := bytes.Repeat([]byte("x"), 100<<10)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				_, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sh.helm.release.v1.app%d.v1", i), Labels: map[string]string{"owner": "helm"}},
					Type:       "helm.sh/release.v1", Data: map[string][]byte{"release": blob}}, metav1.CreateOptions{})
				if err != nil && !apierrors.IsAlreadyExists(err) {
					b.Error(err)
				}
			}
		})
	}
	for i := range 2000 {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	var with float64
	for b.Loop() {
		with = measure()
	}
	b.ReportMetric(without/1024, "KiB-heap-without")
	b.ReportMetric(with/1024, "KiB-heap-with-2000-unrelated")
}
