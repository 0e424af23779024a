//go:build istioca

// Command istio-ca runs istiod's own certificate authority code against an API server, so the
// integration tests judge objects that istio wrote rather than objects shaped the way we believe
// istio shapes them. hack/build-istio-ca.sh builds it in a throwaway module that requires
// istio.io/istio (the exporter's own module never does), and caches the binary.
//
// It does what istiod does with its CA at start and on rotation:
//   - self-signed mode: istio's NewSelfSignedIstioCAOptions loads istio-ca-secret or creates it;
//     istio's root rotator re-signs the root when --rotate-once is given;
//   - plugged mode: istio's NewPluggedCertIstioCAOptions loads a plug-in CA from a directory laid
//     out as the cacerts Secret is mounted at /etc/cacerts;
//
// and in both it publishes the CA's root bundle as istio-ca-root-cert into every namespace with
// istio's own ConfigMap writer (security/pkg/k8s.InsertDataToConfigMap, what istiod's namespace
// controller calls), again after a rotation. With --workload it signs a workload certificate for
// the SPIFFE ID given through istio's CA (SignWithCertChain, what istiod answers a CSR with) and
// writes the chain to --workload-out. It runs until it receives SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/config/constants"
	"istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/kube/kclient"
	"istio.io/istio/security/pkg/k8s"
	"istio.io/istio/security/pkg/pki/ca"
	"istio.io/istio/security/pkg/pki/util"
)

func main() {
	var (
		kubeconfig   = flag.String("kubeconfig", "", "kubeconfig of the API server")
		namespace    = flag.String("namespace", "istio-system", "istiod's namespace")
		mode         = flag.String("mode", "self-signed", "self-signed or plugged")
		cacertsDir   = flag.String("cacerts-dir", "", "plugged mode: the plug-in CA files, laid out as istiod mounts cacerts")
		trustDomain  = flag.String("trust-domain", "cluster.local", "the trust domain (the self-signed root's organisation)")
		rotateOnce   = flag.Bool("rotate-once", false, "self-signed mode: let istio's rotator re-sign the root once, then stop it")
		workload     = flag.String("workload", "", "a SPIFFE ID to sign a workload certificate for")
		workloadOut  = flag.String("workload-out", "", "where to write the workload's certificate chain (PEM)")
		publishEvery = flag.Duration("publish-interval", 500*time.Millisecond, "how often the root bundle is reconciled into the namespaces")
	)
	flag.Parse()
	if err := run(*kubeconfig, *namespace, *mode, *cacertsDir, *trustDomain, *rotateOnce, *workload, *workloadOut, *publishEvery); err != nil {
		fmt.Fprintln(os.Stderr, "istio-ca:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, namespace, mode, cacertsDir, trustDomain string, rotateOnce bool, workload, workloadOut string, publishEvery time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	core, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}

	// rotatorStop is closed by the root rotator's callback after its first rotation, which stops it.
	rotatorStop := make(chan struct{})
	var rotatedOnce sync.Once
	var opts *ca.IstioCAOptions
	switch mode {
	case "self-signed":
		// istiod's defaults (pilot/pkg/bootstrap): a 10-year root, rotation at 20% of its life left,
		// checked hourly. --rotate-once checks every second with a grace period of the whole
		// lifetime, so that the rotator renews the root at its first check.
		grace, interval := 20, time.Duration(0)
		if rotateOnce {
			grace, interval = 100, time.Second
		}
		opts, err = ca.NewSelfSignedIstioCAOptions(ctx, grace, 10*365*24*time.Hour, interval,
			24*time.Hour, 90*24*time.Hour, trustDomain, false, true, namespace, core.CoreV1(),
			filepath.Join(cacertsDir, ca.RootCertFile), false, 2048)
	case "plugged":
		if cacertsDir == "" {
			return fmt.Errorf("plugged mode needs --cacerts-dir")
		}
		opts, err = ca.NewPluggedCertIstioCAOptions(pluggedFiles(cacertsDir), 24*time.Hour, 90*24*time.Hour, 2048)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return fmt.Errorf("istio CA options: %w", err)
	}

	published := make(chan struct{}, 1)
	opts.OnRootCertUpdate = func() error {
		fmt.Println("root rotated")
		select {
		case published <- struct{}{}:
		default:
		}
		if rotateOnce {
			rotatedOnce.Do(func() { close(rotatorStop) })
		}
		return nil
	}
	istioCA, err := ca.NewIstioCA(opts)
	if err != nil {
		return fmt.Errorf("istio CA: %w", err)
	}
	istioCA.Run(rotatorStop)

	if workload != "" {
		if err := signWorkload(istioCA, workload, workloadOut); err != nil {
			return err
		}
	}

	client, err := kube.NewClient(kube.NewClientConfigForRestConfig(restConfig), cluster.ID("Kubernetes"))
	if err != nil {
		return fmt.Errorf("istio kube client: %w", err)
	}
	configMaps := kclient.NewFiltered[*v1.ConfigMap](client, kclient.Filter{FieldSelector: "metadata.name=istio-ca-root-cert"})
	namespaces := kclient.New[*v1.Namespace](client)
	client.RunAndWait(ctx.Done())
	fmt.Println("ready")

	ticker := time.NewTicker(publishEvery)
	defer ticker.Stop()
	for {
		root := istioCA.GetCAKeyCertBundle().GetRootCertPem()
		for _, ns := range namespaces.List("", labels.Everything()) {
			meta := metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: ns.Name, Labels: map[string]string{"istio.io/config": "true"}}
			if err := k8s.InsertDataToConfigMap(configMaps, meta, constants.CACertNamespaceConfigMapDataName, root); err != nil {
				fmt.Fprintln(os.Stderr, "istio-ca: publish:", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-published:
		}
	}
}

// pluggedFiles is the plug-in CA bundle as istiod detects it in its mounted directory: the
// cert-manager layout (tls.crt, tls.key, ca.crt) when tls.crt exists, else istiod's own.
func pluggedFiles(dir string) ca.SigningCAFileBundle {
	if _, err := os.Stat(filepath.Join(dir, ca.TLSSecretCACertFile)); err == nil {
		return ca.SigningCAFileBundle{
			RootCertFile:    filepath.Join(dir, ca.TLSSecretRootCertFile),
			CertChainFiles:  []string{filepath.Join(dir, ca.TLSSecretCACertFile), filepath.Join(dir, ca.TLSSecretRootCertFile)},
			SigningCertFile: filepath.Join(dir, ca.TLSSecretCACertFile),
			SigningKeyFile:  filepath.Join(dir, ca.TLSSecretCAPrivateKeyFile),
		}
	}
	return ca.SigningCAFileBundle{
		RootCertFile:    filepath.Join(dir, ca.RootCertFile),
		CertChainFiles:  []string{filepath.Join(dir, ca.CertChainFile)},
		SigningCertFile: filepath.Join(dir, ca.CACertFile),
		SigningKeyFile:  filepath.Join(dir, ca.CAPrivateKeyFile),
	}
}

// signWorkload has istio's CA sign a CSR for id, as istiod answers an agent's CSR, and writes the
// chain it returns (leaf first) to out.
func signWorkload(istioCA *ca.IstioCA, id, out string) error {
	csr, _, err := util.GenCSR(util.CertOptions{Host: id, ECSigAlg: util.EcdsaSigAlg})
	if err != nil {
		return fmt.Errorf("workload CSR: %w", err)
	}
	chain, err := istioCA.SignWithCertChain(csr, ca.CertOpts{SubjectIDs: []string{id}, TTL: 24 * time.Hour})
	if err != nil {
		return fmt.Errorf("sign workload: %w", err)
	}
	var pem []byte
	for _, c := range chain {
		pem = append(pem, c...)
	}
	return os.WriteFile(out, pem, 0o600)
}
