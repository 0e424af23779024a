// Command bench-scale measures the exporter binary against the real test API server at scale and
// writes the figures into docs/performance.md (between the bench-scale markers). Scenarios:
//   - secrets-N: N kubernetes.io/tls Secrets over 50 namespaces, built from 20 real certificates,
//     plus 2,000 unrelated 100 KB Opaque Secrets and an Istio and a Linkerd control-plane PKI; the
//     exporter runs with --source.secret-type=kubernetes.io/tls;
//   - proxies-N: N sidecar pods whose Envoy admin endpoints are one double listening on every
//     loopback address (each pod's IP is its own 127.x.y.z), read with the direct transport;
//   - pods-N: N running pods over 100 namespaces (40 injected with Istio, mostly sidecars, a few
//     without the proxy, on the host network or with NET_ADMIN), judged by the posture source:
//     the memory the pod informer keeps per pod, beyond the same exporter without posture;
//   - split-N: N sidecar pods over 10 nodes read by one replica, by 4 with --shard/--total-shards
//     and by one per node with --proxy.node-name: how evenly each split shares the proxies, whether
//     each is read by exactly one replica, and whether the replicas' series add up to one's.
//
// Run it with `make bench-scale`; it needs the test control plane (MESHCERT_TESTENV) and takes a few
// minutes. It is not part of `make test`.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

func main() {
	secrets := flag.String("secrets", "1000,5000", "comma-separated numbers of TLS Secrets")
	proxies := flag.String("proxies", "10000,100000", "comma-separated numbers of sidecar pods read over the direct transport")
	pods := flag.Int("pods", 100000, "number of pods the posture judges (0 to skip)")
	split := flag.Int("split", 10000, "number of sidecar pods split between replicas by shard and by node (0 to skip)")
	portForward := flag.Int("portforward", 10000, "number of sidecar pods read through the API server's port-forward (0 to skip)")
	window := flag.Duration("portforward-window", 5*time.Minute, "how long the port-forward scenario measures after its first sweep")
	doc := flag.String("doc", "docs/performance.md", "file to write the results into")
	flag.Parse()
	if err := run(*secrets, *proxies, *pods, *split, *portForward, *window, *doc); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

// result is one scenario's figures.
type result struct {
	name                           string
	firstScrape                    time.Duration
	rssSynced, rssAfter            float64 // MiB
	heapInuse                      float64 // MiB, the Go heap after the 50 scrapes
	p50, p99                       time.Duration
	cpuPerScrape                   time.Duration
	apiRequestsPerScrape           float64
	bodyBytes, gzipBytes, series   int
	sweep                          time.Duration
	sweepCPU                       float64 // cores
	bytesPerProxy                  float64
	scrapeP50Sweep, scrapeP99Sweep time.Duration
	scrapeP50After, scrapeP99After time.Duration // 50 gzip scrapes after the sweep
	proxiesUp                      int
	machineBusy, harnessCPU        float64 // during the sweep: share of all cores busy, cores the harness used
	// api is the PKI API and page, asked after the sweep.
	api []apiFigure
	// The pods scenario: memory per pod beyond the exporter without posture (RSS and Go heap in
	// use), the time to the first judged scrape and the offending pods exported.
	pods                      int
	rssPerPod, heapPerPod     float64 // bytes
	baselineRSS, baselineHeap float64 // MiB
	bypassSeries, judgedPods  int
}

func run(secretCounts, proxyCounts string, pods, split, portForward int, window time.Duration, doc string) error {
	bin, err := buildExporter()
	if err != nil {
		return err
	}
	var results []result
	for _, scenario := range []struct {
		name, counts string
		run          func(bin string, n int) (result, error)
	}{{"secrets", secretCounts, secretsScenario}, {"proxies", proxyCounts, proxiesScenario}} {
		for _, s := range strings.Split(scenario.counts, ",") {
			if strings.TrimSpace(s) == "" {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("-%s: %w", scenario.name, err)
			}
			r, err := scenario.run(bin, n)
			if err != nil {
				return fmt.Errorf("%s-%d: %w", scenario.name, n, err)
			}
			results = append(results, r)
		}
	}
	if pods > 0 {
		r, err := podsScenario(bin, pods)
		if err != nil {
			return fmt.Errorf("pods-%d: %w", pods, err)
		}
		results = append(results, r)
	}
	var splits []splitFigure
	if split > 0 {
		var err error
		if splits, err = shardsScenario(bin, split); err != nil {
			return fmt.Errorf("split-%d: %w", split, err)
		}
	}
	var pf []portForwardFigure
	if portForward > 0 {
		f, err := portForwardScenario(bin, portForward, window)
		if err != nil {
			return fmt.Errorf("portforward-%d: %w", portForward, err)
		}
		pf = append(pf, f)
	}
	return writeDoc(doc, results, splits, split, pf)
}

func buildExporter() (string, error) {
	dir, err := os.MkdirTemp("", "bench-scale-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "meshcert-exporter")
	out, err := exec.Command("go", "build", "-tags="+os.Getenv("BENCH_SCALE_TAGS"), "-o", bin, "github.com/meshcert/meshcert-exporter").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// parallel runs fn for 0..n-1 on 8 workers.
func parallel(n int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		first error
		once  sync.Once
		wg    sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func secretsScenario(bin string, n int) (result, error) {
	res := result{name: fmt.Sprintf("%d TLS Secrets", n)}
	cp, err := testenv.Start()
	if err != nil {
		return res, err
	}
	defer cp.Stop()
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(cp.AdminConfig())
	log := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "%s: "+format+"\n", append([]any{res.name}, a...)...)
	}

	// 20 real certificates: 4 CAs, each signing 4 leaves.
	from := time.Now().Add(-time.Hour)
	type pair struct{ leaf, ca *testpki.Cert }
	var pairs []pair
	for c := range 4 {
		ca := testpki.Issue(testpki.Spec{CommonName: fmt.Sprintf("bench CA %d", c), CA: true, NotBefore: from, NotAfter: from.AddDate(5, 0, 0)})
		for l := range 4 {
			leaf := testpki.Issue(testpki.Spec{CommonName: fmt.Sprintf("svc-%d-%d", c, l), DNSNames: []string{fmt.Sprintf("svc-%d-%d.example", c, l)},
				Issuer: ca, NotBefore: from, NotAfter: from.AddDate(0, 3, 0)})
			pairs = append(pairs, pair{leaf, ca})
		}
	}
	for i := range 50 {
		if err := testenv.EnsureNamespace(ctx, admin, fmt.Sprintf("app-%d", i)); err != nil {
			return res, err
		}
	}
	log("seeding %d TLS Secrets and 2,000 unrelated 100 KB Secrets", n)
	if err := parallel(n, func(i int) error {
		p := pairs[i%len(pairs)]
		_, err := admin.CoreV1().Secrets(fmt.Sprintf("app-%d", i%50)).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tls-%d", i)},
			Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": p.leaf.PEM(), "tls.key": p.leaf.KeyPEM(), "ca.crt": p.ca.PEM()}}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return res, err
	}
	blob := bytes.Repeat([]byte("h"), 100<<10)
	if err := parallel(2000, func(i int) error {
		_, err := admin.CoreV1().Secrets(fmt.Sprintf("app-%d", i%50)).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sh.helm.release.v1.app%d.v1", i)},
			Type: "helm.sh/release.v1", Data: map[string][]byte{"release": blob}}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return res, err
	}
	if err := seedMeshPKI(ctx, admin); err != nil {
		return res, err
	}

	kubeconfig, err := cp.Kubeconfig("bench", cp.AdminConfig())
	if err != nil {
		return res, err
	}
	port, _ := freePort()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	apiBefore, err := apiRequests(cp)
	if err != nil {
		return res, err
	}
	cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, "--source.secret-type=kubernetes.io/tls", fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// First complete scrape: ready, and every Secret's leaf exported.
	want := n
	for {
		if time.Since(start) > 2*time.Minute {
			return res, fmt.Errorf("no complete scrape after 2 minutes")
		}
		body, _, err := get(base+"/metrics", false)
		if err == nil && strings.Count(body, "\nmeshcert_chain_valid{") >= want {
			res.firstScrape = time.Since(start)
			res.bodyBytes = len(body)
			res.series = countSeries(body)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	apiAfterSync, err := apiRequests(cp)
	if err != nil {
		return res, err
	}
	res.rssSynced = rssMiB(cmd.Process.Pid)
	cpuBefore := cpuTime(cmd.Process.Pid)
	lat, gz, err := scrapes(base, 50)
	if err != nil {
		return res, err
	}
	res.gzipBytes = gz
	res.cpuPerScrape = (cpuTime(cmd.Process.Pid) - cpuBefore) / 50
	res.rssAfter = rssMiB(cmd.Process.Pid)
	if body, _, err := get(base+"/metrics", false); err == nil {
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				res.heapInuse = f / (1 << 20)
			}
		}
	}
	res.p50, res.p99 = percentile(lat, 0.5), percentile(lat, 0.99)
	saveProfile(fmt.Sprintf("secrets-%d", n))
	apiAfter, err := apiRequests(cp)
	if err != nil {
		return res, err
	}
	res.apiRequestsPerScrape = (apiAfter - apiAfterSync) / 50
	log("first scrape %s, p50 %s, p99 %s, RSS %.0f/%.0f MiB, Go heap in use %.0f MiB (%.0f API requests to sync)", res.firstScrape, res.p50, res.p99, res.rssSynced, res.rssAfter, res.heapInuse, apiAfterSync-apiBefore)
	return res, nil
}

// seedMeshPKI creates an Istio plug-in CA and a Linkerd trust root and issuer.
func seedMeshPKI(ctx context.Context, admin kubernetes.Interface) error {
	from := time.Now().Add(-time.Hour)
	root := testpki.Issue(testpki.Spec{CommonName: "istio root", CA: true, NotBefore: from, NotAfter: from.AddDate(10, 0, 0)})
	inter := testpki.Issue(testpki.Spec{CommonName: "istio inter", CA: true, Issuer: root, NotBefore: from, NotAfter: from.AddDate(5, 0, 0)})
	anchor := testpki.Issue(testpki.Spec{CommonName: "root.linkerd.cluster.local", CA: true, NotBefore: from, NotAfter: from.AddDate(10, 0, 0)})
	issuer := testpki.Issue(testpki.Spec{CommonName: "identity.linkerd.cluster.local", CA: true, Issuer: anchor, NotBefore: from, NotAfter: from.AddDate(1, 0, 0)})
	// The meshes' objects where the exporter's defaults look for them.
	is, ld := istio.New(), linkerd.New()
	for _, ns := range []string{is.Namespace, ld.Namespace} {
		if err := testenv.EnsureNamespace(ctx, admin, ns); err != nil {
			return err
		}
	}
	if _, err := admin.CoreV1().Secrets(is.Namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: is.PluginCASecret}, Data: map[string][]byte{
		"ca-cert.pem": inter.PEM(), "ca-key.pem": inter.KeyPEM(), "cert-chain.pem": testpki.Bundle(inter, root), "root-cert.pem": root.PEM()}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := admin.CoreV1().ConfigMaps(ld.Namespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ld.TrustRootsConfigMap},
		Data: map[string]string{"ca-bundle.crt": string(anchor.PEM())}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := admin.CoreV1().Secrets(ld.Namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ld.IssuerSecret},
		Data: map[string][]byte{"crt.pem": issuer.PEM(), "key.pem": issuer.KeyPEM()}}, metav1.CreateOptions{})
	return err
}

// startSeeded starts a test control plane seeded with the mesh PKI for the scenario named name; it
// returns the plane, an admin client and the scenario's logger. The caller stops the plane.
func startSeeded(name string) (*testenv.ControlPlane, kubernetes.Interface, func(format string, a ...any), error) {
	log := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "%s: "+format+"\n", append([]any{name}, a...)...)
	}
	cp, err := testenv.Start()
	if err != nil {
		return nil, nil, nil, err
	}
	admin := kubernetes.NewForConfigOrDie(cp.AdminConfig())
	if err := seedMeshPKI(context.Background(), admin); err != nil {
		cp.Stop()
		return nil, nil, nil, err
	}
	return cp, admin, log, nil
}

// sidecarMesh creates n running sidecar pods spread over nodes nodes (node-1 when nodes is 1, else
// node-0 ...), and one Envoy admin double for all of them: it listens on every address and
// answers each loopback address (a pod's IP) with that pod's own certificate. It returns the
// double's port and a function that stops it.
func sidecarMesh(ctx context.Context, admin kubernetes.Interface, n, nodes int, log func(string, ...any)) (int, func(), error) {
	m := testpki.NewMesh(n, time.Now().Add(-time.Hour))
	bodies := make(map[string][]byte, n)
	ips := make([]string, n)
	for i, l := range m.Leaves {
		ips[i] = podIP(i)
		bodies[ips[i]] = envoyBody(testpki.Bundle(l, m.Intermediate, m.Root), m.Root.PEM())
	}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		return 0, nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		host, _, _ := net.SplitHostPort(local.String())
		w.Write(bodies[host])
	})}
	go srv.Serve(ln)
	log("creating %d pods on %d nodes", n, nodes)
	if err := testenv.EnsureNamespace(ctx, admin, "mesh"); err != nil {
		srv.Close()
		return 0, nil, err
	}
	if err := parallel(n, func(i int) error {
		node := "node-1"
		if nodes > 1 {
			node = fmt.Sprintf("node-%d", i%nodes)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", i), Namespace: "mesh", Labels: map[string]string{"security.istio.io/tlsMode": "istio"}},
			Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "x"}, {Name: "istio-proxy", Image: "x"}}}}
		created, err := admin.CoreV1().Pods("mesh").Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status.Phase, created.Status.PodIP = corev1.PodRunning, ips[i]
		_, err = admin.CoreV1().Pods("mesh").UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	}); err != nil {
		srv.Close()
		return 0, nil, err
	}
	return ln.Addr().(*net.TCPAddr).Port, func() { srv.Close() }, nil
}

// podIP is the i-th sidecar pod's IP: a loopback address of its own (the last byte 1-254).
func podIP(i int) string { return fmt.Sprintf("127.%d.%d.%d", 1+i/(254*256), (i/254)%256, 1+i%254) }

func proxiesScenario(bin string, n int) (result, error) {
	res := result{name: fmt.Sprintf("%d sidecar proxies", n)}
	cp, admin, log, err := startSeeded(res.name)
	if err != nil {
		return res, err
	}
	defer cp.Stop()
	ctx := context.Background()

	adminPort, closeMesh, err := sidecarMesh(ctx, admin, n, 1, log)
	if err != nil {
		return res, err
	}
	defer closeMesh()

	kubeconfig, err := cp.Kubeconfig("bench", cp.AdminConfig())
	if err != nil {
		return res, err
	}
	port, _ := freePort()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	// Baseline: the same exporter with the control plane only, once ready.
	baseRSS, _, err := baseline(bin, kubeconfig)
	if err != nil {
		return res, err
	}
	baseArgs := []string{"--kubeconfig=" + kubeconfig, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn"}

	cmd := exec.Command(bin, append(baseArgs, "--source.envoy", "--envoy.transport=direct", fmt.Sprintf("--envoy.admin-port=%d", adminPort))...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	start := time.Now()
	go saveCPUProfile(fmt.Sprintf("proxies-%d", n), 10*time.Second)
	cpu0 := cpuTime(cmd.Process.Pid)
	self0 := cpuTime(os.Getpid())
	busy0, all0 := machineCPU()
	var lat []time.Duration
	for {
		if time.Since(start) > 6*time.Minute {
			return res, fmt.Errorf("sweep not done after 6 minutes")
		}
		t0 := time.Now()
		_, _, err := get(base+"/metrics", true) // as Prometheus scrapes, during the sweep
		if err == nil {
			lat = append(lat, time.Since(t0))
		}
		body, _, err := get(base+"/metrics", false)
		if err == nil {
			read, up := 0, 0
			for _, line := range strings.Split(body, "\n") {
				if strings.HasPrefix(line, "meshcert_proxy_up{") {
					read++
					if strings.HasSuffix(line, "} 1") {
						up++
					}
				}
			}
			if read >= n {
				res.proxiesUp = up
				break
			}
		}
		time.Sleep(time.Second)
	}
	res.sweep = time.Since(start)
	res.sweepCPU = (cpuTime(cmd.Process.Pid) - cpu0).Seconds() / res.sweep.Seconds()
	busy1, all1 := machineCPU()
	res.machineBusy = (busy1 - busy0) / (all1 - all0)
	res.harnessCPU = (cpuTime(os.Getpid()) - self0).Seconds() / res.sweep.Seconds()
	res.rssAfter = rssMiB(cmd.Process.Pid)
	res.bytesPerProxy = (res.rssAfter - baseRSS) * (1 << 20) / float64(n)
	res.scrapeP50Sweep, res.scrapeP99Sweep = percentile(lat, 0.5), percentile(lat, 0.99)
	log("scrapes during the sweep, in order: %v", roundAll(lat, 100*time.Microsecond))
	time.Sleep(2 * time.Second) // the last reads' changes rendered
	after, gz, err := scrapes(base, 50)
	if err != nil {
		return res, err
	}
	res.gzipBytes = gz
	res.scrapeP50After, res.scrapeP99After = percentile(after, 0.5), percentile(after, 0.99)
	if body, _, err := get(base+"/metrics", false); err == nil {
		res.bodyBytes, res.series = len(body), countSeries(body)
	}
	saveProfile(fmt.Sprintf("proxies-%d", n))
	res.api = measureAPI(base)
	for _, a := range res.api {
		log("%s: %s p50, %.0f kB (%.0f kB gzip)", a.path, a.p50, float64(a.bytes)/1e3, float64(a.gzipBytes)/1e3)
	}
	log("sweep %s, %.2f cores, %.0f bytes/proxy, scrape p50 %s during the sweep; machine %.0f%% busy, the harness (doubles and client) %.2f cores",
		res.sweep, res.sweepCPU, res.bytesPerProxy, res.scrapeP50Sweep, 100*res.machineBusy, res.harnessCPU)
	return res, nil
}

// podsScenario creates n running pods over 100 namespaces and measures what the posture source's
// pod informer keeps of them: the exporter with --source.posture against the same exporter
// without it, both after their first complete scrape and a garbage collection's worth of scrapes.
func podsScenario(bin string, n int) (result, error) {
	res := result{name: fmt.Sprintf("%d pods judged for posture", n), pods: n}
	cp, admin, log, err := startSeeded(res.name)
	if err != nil {
		return res, err
	}
	defer cp.Stop()
	ctx := context.Background()
	const namespaces, injected = 100, 40
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%d", i)}}
		if i < injected {
			ns.Labels = map[string]string{"istio-injection": "enabled"}
		}
		if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return res, err
		}
	}
	// In the injected namespaces, of every 200 pods: 2 without the proxy, 1 on the host network,
	// 1 whose application adds NET_ADMIN; the rest sidecars with istio-init. The pods carry the
	// labels and annotations a Deployment's pods have.
	netAdmin := &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}}}
	log("creating %d pods", n)
	t0 := time.Now()
	if err := parallel(n, func(i int) error {
		nsIndex := i % namespaces
		ns, k := fmt.Sprintf("team-%d", nsIndex), i/namespaces
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d-7c9f8d6b5-%05d", k%50, k), Namespace: ns,
			Labels:      map[string]string{"app": fmt.Sprintf("app-%d", k%50), "pod-template-hash": "7c9f8d6b5"},
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-30T10:00:00Z"}},
			Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", i%200), ServiceAccountName: fmt.Sprintf("app-%d", k%50),
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.2.3"}}}}
		if nsIndex < injected {
			switch k % 200 {
			case 0, 1: // no proxy
			case 2:
				pod.Spec.HostNetwork = true
			case 3:
				pod.Spec.Containers[0].SecurityContext = netAdmin
				fallthrough
			default:
				pod.Labels["security.istio.io/tlsMode"] = "istio"
				pod.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "docker.io/istio/proxyv2:1.28.0", SecurityContext: netAdmin}}
				pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.28.0"})
			}
		}
		created, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status.Phase, created.Status.PodIP = corev1.PodRunning, fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256)
		_, err = admin.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	}); err != nil {
		return res, err
	}
	log("created in %s", time.Since(t0).Round(time.Second))
	kubeconfig, err := cp.Kubeconfig("bench", cp.AdminConfig())
	if err != nil {
		return res, err
	}
	port, _ := freePort()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{"--kubeconfig=" + kubeconfig, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn"}
	// measure runs the exporter with extra, waits until done says a scrape is complete, scrapes
	// 50 times more and returns its RSS and Go heap in use (MiB), the time to that scrape and the
	// last body.
	measure := func(extra []string, done func(body string) bool) (rss, heap float64, first time.Duration, last string, err error) {
		cmd := exec.Command(bin, append(args, extra...)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return 0, 0, 0, "", err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		start := time.Now()
		for {
			if time.Since(start) > 5*time.Minute {
				return 0, 0, 0, "", fmt.Errorf("no complete scrape after 5 minutes")
			}
			if body, _, err := get(base+"/metrics", false); err == nil && done(body) {
				first = time.Since(start)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		for range 50 {
			last, _, _ = get(base+"/metrics", false)
			time.Sleep(20 * time.Millisecond)
		}
		for _, line := range strings.Split(last, "\n") {
			if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				heap = f / (1 << 20)
			}
		}
		return rssMiB(cmd.Process.Pid), heap, first, last, nil
	}
	ready := func(body string) bool { return strings.Contains(body, `meshcert_source_up{source="secret"} 1`) }
	res.baselineRSS, res.baselineHeap, _, _, err = measure(nil, ready)
	if err != nil {
		return res, fmt.Errorf("baseline: %w", err)
	}
	// Complete: every injected namespace's pods counted.
	perNamespace := n / namespaces
	judged := func(body string) (pods, bypass int) {
		for _, line := range strings.Split(body, "\n") {
			switch {
			case strings.HasPrefix(line, "meshcert_namespace_pods{"):
				v, _ := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
				pods += v
			case strings.HasPrefix(line, "meshcert_pod_bypass{"):
				bypass++
			}
		}
		return pods, bypass
	}
	rss, heap, first, last, err := measure([]string{"--source.posture"}, func(body string) bool {
		pods, _ := judged(body)
		return pods >= injected*perNamespace
	})
	if err != nil {
		return res, fmt.Errorf("posture: %w", err)
	}
	res.firstScrape, res.rssAfter, res.heapInuse = first, rss, heap
	res.judgedPods, res.bypassSeries = judged(last)
	res.rssPerPod = (rss - res.baselineRSS) * (1 << 20) / float64(n)
	res.heapPerPod = (heap - res.baselineHeap) * (1 << 20) / float64(n)
	log("first judged scrape %s; RSS %.0f MiB (baseline %.0f), Go heap %.0f MiB (baseline %.0f): %.0f bytes/pod RSS, %.0f bytes/pod heap; %d pods judged, %d bypass series",
		first, rss, res.baselineRSS, heap, res.baselineHeap, res.rssPerPod, res.heapPerPod, res.judgedPods, res.bypassSeries)
	return res, nil
}

// apiFigure is one PKI API or page request's answer time (p50 of 5) and size.
type apiFigure struct {
	path             string
	p50              time.Duration
	bytes, gzipBytes int
}

// measureAPI asks the PKI API and page of the exporter at base five times each, with gzip as a
// browser or client asks, and once without for the size. The what-if question removes the first
// mesh's first anchor.
func measureAPI(base string) []apiFigure {
	anchor := "0"
	if body, _, err := get(base+"/api/v1/pki?limit=1", false); err == nil {
		var a struct {
			Meshes []struct {
				Anchors []struct {
					Serial string `json:"serial"`
				} `json:"anchors"`
			} `json:"meshes"`
		}
		if json.Unmarshal([]byte(body), &a) == nil && len(a.Meshes) > 0 && len(a.Meshes[0].Anchors) > 0 {
			anchor = a.Meshes[0].Anchors[0].Serial
		}
	}
	var out []apiFigure
	for _, q := range [][2]string{{"/api/v1/pki", ""}, {"/api/v1/pki?limit=10000", ""}, {"/api/v1/pki?problem=true", ""},
		{"/api/v1/what-if?remove_anchor=" + anchor, "/api/v1/what-if?remove_anchor=<the first anchor>"}, {"/pki", ""}} {
		path := q[0]
		f := apiFigure{path: cmp.Or(q[1], path)}
		var lat []time.Duration
		for range 5 {
			t0 := time.Now()
			_, n, err := get(base+path, true)
			if err != nil {
				continue
			}
			lat = append(lat, time.Since(t0))
			f.gzipBytes = n
		}
		if body, _, err := get(base+path, false); err == nil {
			f.bytes = len(body)
		}
		f.p50 = percentile(lat, 0.5)
		out = append(out, f)
	}
	return out
}

// splitFigure is one way of splitting the proxies between replicas.
type splitFigure struct {
	mode                   string
	replicas               int
	minProxies, maxProxies int
	minRSS, maxRSS         float64 // MiB
	minHeap, maxHeap       float64 // MiB, go_memstats_heap_inuse_bytes
	baseRSS, baseHeap      float64 // MiB, the same exporter without the proxy source
	readOnce, sameSeries   bool
	first                  time.Duration // until every replica has read its proxies
}

// shardsScenario runs one replica over n sidecars, then 4 with --shard/--total-shards, then one
// per node of 10 with --proxy.node-name, and checks that each split reads every proxy exactly once
// and that the union of the replicas' proxy series is the one replica's.
func shardsScenario(bin string, n int) ([]splitFigure, error) {
	name := fmt.Sprintf("%d sidecar proxies split", n)
	cp, admin, log, err := startSeeded(name)
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	const nodes = 10
	adminPort, closeMesh, err := sidecarMesh(context.Background(), admin, n, nodes, log)
	if err != nil {
		return nil, err
	}
	defer closeMesh()
	kubeconfig, err := cp.Kubeconfig("bench", cp.AdminConfig())
	if err != nil {
		return nil, err
	}
	// run starts one exporter per set of extra flags and waits until their proxy series add up
	// to n; it returns each replica's proxy series (label sets), RSS and Go heap in use.
	var heaps []float64
	run := func(extra [][]string) ([]map[string]bool, []float64, time.Duration, error) {
		heaps = nil
		var cmds []*exec.Cmd
		var bases []string
		defer func() {
			for _, c := range cmds {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
		}()
		start := time.Now()
		for _, e := range extra {
			port, _ := freePort()
			args := append([]string{"--kubeconfig=" + kubeconfig, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn",
				"--source.envoy", "--envoy.transport=direct", fmt.Sprintf("--envoy.admin-port=%d", adminPort)}, e...)
			cmd := exec.Command(bin, args...)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				return nil, nil, 0, err
			}
			cmds = append(cmds, cmd)
			bases = append(bases, fmt.Sprintf("http://127.0.0.1:%d", port))
		}
		sets := make([]map[string]bool, len(bases))
		for {
			if time.Since(start) > 5*time.Minute {
				return nil, nil, 0, fmt.Errorf("the replicas did not read %d proxies in 5 minutes", n)
			}
			total := 0
			for i, b := range bases {
				body, _, err := get(b+"/metrics", false)
				if err != nil {
					continue
				}
				sets[i] = map[string]bool{}
				for _, line := range strings.Split(body, "\n") {
					if strings.HasPrefix(line, "meshcert_proxy_up{") || strings.HasPrefix(line, "meshcert_certificate_not_after_timestamp_seconds{") && strings.Contains(line, `source="envoy"`) {
						sets[i][line[:strings.LastIndexByte(line, ' ')]] = true
						if strings.HasPrefix(line, "meshcert_proxy_up{") {
							total++
						}
					}
				}
			}
			if total >= n {
				break
			}
			time.Sleep(time.Second)
		}
		first := time.Since(start)
		time.Sleep(2 * time.Second)
		var rss []float64
		for i, c := range cmds {
			rss = append(rss, rssMiB(c.Process.Pid))
			heaps = append(heaps, heapInUse(bases[i]))
		}
		return sets, rss, first, nil
	}
	baseRSS, baseHeap, err := baseline(bin, kubeconfig)
	if err != nil {
		return nil, err
	}
	one, oneRSS, oneFirst, err := run([][]string{nil})
	if err != nil {
		return nil, fmt.Errorf("one replica: %w", err)
	}
	out := []splitFigure{{mode: "one replica", replicas: 1, minProxies: n, maxProxies: n, minRSS: oneRSS[0], maxRSS: oneRSS[0], readOnce: true, sameSeries: true, first: oneFirst,
		minHeap: heaps[0], maxHeap: heaps[0], baseRSS: baseRSS, baseHeap: baseHeap}}
	for _, split := range []struct {
		mode  string
		flags [][]string
	}{
		{"--shard/--total-shards 4", [][]string{{"--shard=0", "--total-shards=4"}, {"--shard=1", "--total-shards=4"}, {"--shard=2", "--total-shards=4"}, {"--shard=3", "--total-shards=4"}}},
		{"--proxy.node-name, 10 nodes", func() [][]string {
			var f [][]string
			for i := range nodes {
				f = append(f, []string{fmt.Sprintf("--proxy.node-name=node-%d", i)})
			}
			return f
		}()},
	} {
		sets, rss, first, err := run(split.flags)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", split.mode, err)
		}
		f := splitFigure{mode: split.mode, replicas: len(sets), minProxies: n, readOnce: true, first: first, minRSS: math.Inf(1), minHeap: math.Inf(1), baseRSS: baseRSS, baseHeap: baseHeap}
		union := map[string]bool{}
		for i, set := range sets {
			proxies := 0
			for k := range set {
				if union[k] {
					f.readOnce = false // a series two replicas export
				}
				union[k] = true
				if strings.HasPrefix(k, "meshcert_proxy_up{") {
					proxies++
				}
			}
			f.minProxies, f.maxProxies = min(f.minProxies, proxies), max(f.maxProxies, proxies)
			f.minRSS, f.maxRSS = math.Min(f.minRSS, rss[i]), math.Max(f.maxRSS, rss[i])
			f.minHeap, f.maxHeap = math.Min(f.minHeap, heaps[i]), math.Max(f.maxHeap, heaps[i])
		}
		f.sameSeries = len(union) == len(one[0])
		for k := range one[0] {
			f.sameSeries = f.sameSeries && union[k]
		}
		log("%s: %d replicas, %d-%d proxies each, RSS %.0f-%.0f MiB (one replica %.0f), each proxy once %v, union of series equal %v, %s",
			f.mode, f.replicas, f.minProxies, f.maxProxies, f.minRSS, f.maxRSS, oneRSS[0], f.readOnce, f.sameSeries, f.first.Round(time.Second))
		out = append(out, f)
	}
	return out, nil
}

// baseline starts the exporter without a proxy source on the API server of kubeconfig and returns
// its RSS and Go heap in use once ready and scraped a few times.
func baseline(bin, kubeconfig string) (rss, heap float64, err error) {
	port, _ := freePort()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, _, err := get(base+"/readyz", false); err == nil {
			break
		}
	}
	time.Sleep(2 * time.Second)
	for range 5 {
		get(base+"/metrics", true)
	}
	return rssMiB(cmd.Process.Pid), heapInUse(base), nil
}

// heapInUse is the Go heap in use of the exporter at base, in MiB.
func heapInUse(base string) float64 {
	body, _, err := get(base+"/metrics", false)
	if err != nil {
		return math.NaN()
	}
	return sumSeries(body, "go_memstats_heap_inuse_bytes ", "") / (1 << 20)
}

// envoyBody renders an Envoy secrets config_dump.
func envoyBody(chain, roots []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return []byte(`{"configs":[` +
		`{"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret","name":"default","secret":{"@type":"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret","name":"default","tls_certificate":{"certificate_chain":{"inline_bytes":"` + b64(chain) + `"},"private_key":{"inline_bytes":"W3JlZGFjdGVkXQ=="}}}},` +
		`{"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret","name":"ROOTCA","secret":{"@type":"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret","name":"ROOTCA","validation_context":{"trusted_ca":{"inline_bytes":"` + b64(roots) + `"}}}}]}`)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// scrapes scrapes the exporter at base n times in a row asking for gzip, and returns each
// scrape's latency and the last body's size.
func scrapes(base string, n int) ([]time.Duration, int, error) {
	var lat []time.Duration
	size := 0
	for range n {
		t0 := time.Now()
		_, gz, err := get(base+"/metrics", true)
		if err != nil {
			return nil, 0, err
		}
		lat = append(lat, time.Since(t0))
		size = gz
	}
	return lat, size, nil
}

// get fetches a URL; with gz it asks for gzip, as Prometheus does, and reports the wire size.
func get(u string, gz bool) (string, int, error) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	tr := &http.Transport{DisableCompression: true}
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if gz && resp.Header.Get("Content-Encoding") == "gzip" {
		return "", len(body), nil
	}
	return string(body), len(body), nil
}

func countSeries(body string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && line[0] != '#' {
			n++
		}
	}
	return n
}

// apiRequests sums the API server's own apiserver_request_total.
func apiRequests(cp *testenv.ControlPlane) (float64, error) {
	body, err := apiMetrics(cp)
	return sumSeries(body, "apiserver_request_total{", ""), err
}

// apiMetrics fetches the API server's own metrics.
func apiMetrics(cp *testenv.ControlPlane) (string, error) { return apiGet(cp, "/metrics") }

// apiGet fetches a path of the API server as its admin.
func apiGet(cp *testenv.ControlPlane, path string) (string, error) {
	cfg := cp.AdminConfig()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cfg.TLSClientConfig.CAData)
	req, _ := http.NewRequest(http.MethodGet, cp.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+cfg.BearerToken)
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// sumSeries sums the samples of body whose line starts with prefix and contains match.
func sumSeries(body, prefix, match string) float64 {
	var total float64
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, match) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			total += v
		}
	}
	return total
}

// rssMiB is the resident set of a process.
func rssMiB(pid int) float64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return math.NaN()
}

// cpuTime is the user and system time a process has used.
func cpuTime(pid int) time.Duration {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration((utime + stime) / ticks * float64(time.Second))
}

// machineCPU returns the busy and total jiffies of all cores, from /proc/stat.
func machineCPU() (busy, total float64) {
	data, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(data), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		total += v
		if i != 3 && i != 4 { // idle and iowait
			busy += v
		}
	}
	return busy, total
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, i)]
}

const (
	beginMarker = "<!-- bench-scale:begin -->"
	endMarker   = "<!-- bench-scale:end -->"
)

// writeDoc replaces the bench-scale section of doc with the results.
func writeDoc(doc string, results []result, splits []splitFigure, split int, pf []portForwardFigure) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nMeasured %s by `make bench-scale` (hack/bench-scale) on this machine: %d cores, %s, kube-apiserver v1.37.2 and etcd v3.7.3 from the test control plane on loopback.\n\n",
		beginMarker, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), cpuModel())
	fmt.Fprintf(&b, "| scenario | first complete scrape | RSS after sync | RSS after 50 scrapes | Go heap in use | scrape p50 / p99 (gzip) | CPU per scrape | API requests per scrape | body (text / gzip) | series |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.sweep > 0 || r.pods > 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f MiB | %.0f MiB | %.0f MiB | %s / %s | %s | %.1f | %.1f MB / %.2f MB | %d |\n", r.name, r.firstScrape.Round(time.Millisecond),
			r.rssSynced, r.rssAfter, r.heapInuse, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.cpuPerScrape.Round(100*time.Microsecond),
			r.apiRequestsPerScrape, float64(r.bodyBytes)/1e6, float64(r.gzipBytes)/1e6, r.series)
	}
	for _, r := range results {
		if r.sweep == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n| scenario | full sweep (default interval 5 min, concurrency 16) = first complete scrape | exporter CPU during the sweep | RSS after the sweep | memory per proxy beyond the baseline | scrape p50 / p99 during the sweep | scrape p50 / p99 after it (50, gzip) | body (text / gzip), series | proxies up | machine busy during the sweep (all processes) | harness (admin doubles, client) |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		fmt.Fprintf(&b, "| %s | %s | %.2f cores | %.0f MiB | %.1f KiB | %s / %s | %s / %s | %.1f MB / %.2f MB, %d | %d | %.0f%% | %.2f cores |\n", r.name, r.sweep.Round(time.Second), r.sweepCPU, r.rssAfter, r.bytesPerProxy/1024,
			r.scrapeP50Sweep.Round(100*time.Microsecond), r.scrapeP99Sweep.Round(100*time.Microsecond), r.scrapeP50After.Round(100*time.Microsecond), r.scrapeP99After.Round(100*time.Microsecond),
			float64(r.bodyBytes)/1e6, float64(r.gzipBytes)/1e6, r.series, r.proxiesUp, 100*r.machineBusy, r.harnessCPU)
		if len(r.api) > 0 {
			fmt.Fprintf(&b, "\n| %s, after the sweep | answer p50 (gzip) | body (text / gzip) |\n|---|---|---|\n", r.name)
			for _, a := range r.api {
				fmt.Fprintf(&b, "| `%s` | %s | %.1f kB / %.1f kB |\n", a.path, a.p50.Round(100*time.Microsecond), float64(a.bytes)/1e3, float64(a.gzipBytes)/1e3)
			}
		}
	}
	for _, r := range results {
		if r.pods == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n| scenario | first judged scrape | memory per pod (RSS / Go heap in use, beyond the exporter without posture) | RSS / Go heap (without posture) | pods in judged namespaces | bypass series |\n|---|---|---|---|---|---|\n")
		fmt.Fprintf(&b, "| %s | %s | %.0f B / %.0f B | %.0f / %.0f MiB (%.0f / %.0f MiB) | %d | %d |\n", r.name, r.firstScrape.Round(100*time.Millisecond),
			r.rssPerPod, r.heapPerPod, r.rssAfter, r.heapInuse, r.baselineRSS, r.baselineHeap, r.judgedPods, r.bypassSeries)
	}
	if len(splits) > 0 {
		fmt.Fprintf(&b, "\n| %d sidecar proxies split | replicas | proxies per replica | RSS per replica (beyond the exporter without proxies) | Go heap in use per replica (beyond it) | each proxy read by one replica | union of the replicas' proxy series = one replica's | until every replica read its proxies |\n|---|---|---|---|---|---|---|---|\n", split)
		for _, f := range splits {
			fmt.Fprintf(&b, "| %s | %d | %d-%d | %.0f-%.0f MiB (%.0f-%.0f) | %.1f-%.1f MiB (%.1f-%.1f) | %v | %v | %s |\n", f.mode, f.replicas, f.minProxies, f.maxProxies, f.minRSS, f.maxRSS,
				f.minRSS-f.baseRSS, f.maxRSS-f.baseRSS, f.minHeap, f.maxHeap, f.minHeap-f.baseHeap, f.maxHeap-f.baseHeap, f.readOnce, f.sameSeries, f.first.Round(time.Second))
		}
	}
	for _, f := range pf {
		fmt.Fprintf(&b, "\n| %d sidecar proxies over port-forward (10 nodes, default settings) | first sweep | the %s after it |\n|---|---|---|\n", f.proxies, f.window)
		fmt.Fprintf(&b, "| duration | %s | %s |\n", f.sweep.Round(time.Second), f.window)
		fmt.Fprintf(&b, "| reads | %d | %d (busiest 10 s: %d) |\n", f.proxies, f.windowReads, f.windowPeakReads10s)
		fmt.Fprintf(&b, "| API server CPU beyond idle | %.1f s (%.2f ms per read) | %.1f s (%.2f ms per read) |\n", f.apiCPU, 1e3*f.apiCPU/float64(f.proxies),
			f.windowAPICPU, 1e3*f.windowAPICPU/float64(max(1, f.windowReads)))
		fmt.Fprintf(&b, "| etcd CPU beyond idle | %.1f s | %.1f s |\n", f.etcdCPU, f.windowEtcdCPU)
		fmt.Fprintf(&b, "| API server and etcd, share of a core over the 5-minute interval | %.3f | %.3f |\n", f.apiCore(f.apiCPU+f.etcdCPU, f.proxies),
			f.apiCore(f.windowAPICPU+f.windowEtcdCPU, f.windowReads))
		fmt.Fprintf(&b, "| API server RSS (idle %.0f MiB) | max %.0f MiB | |\n", f.apiRSSIdle, f.apiRSSMax)
		fmt.Fprintf(&b, "| `apiserver_longrunning_requests` (pods/portforward) | max %.0f, mean %.1f | |\n", f.longrunningMax, f.longrunningMean)
		fmt.Fprintf(&b, "| slowest forward at the kubelet | %s | |\n", f.slowestForward.Round(time.Millisecond))
		fmt.Fprintf(&b, "| exporter | %.2f cores, %.0f MiB | |\n", f.exporterCPU, f.exporterRSS)
		fmt.Fprintf(&b, "| proxies not up | %d | %d (%.0f read errors counted) |\n", f.failed, f.windowFailed, f.errors)
	}
	b.WriteString(endMarker)
	data, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < 0 {
		s += "\n" + b.String() + "\n"
	} else {
		s = s[:i] + b.String() + s[j+len(endMarker):]
	}
	fmt.Println(b.String())
	return os.WriteFile(doc, []byte(s), 0o644)
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "model name") {
			return strings.TrimSpace(line[strings.IndexByte(line, ':')+1:])
		}
	}
	return "unknown CPU"
}

// saveProfile saves the exporter's heap profile when it was built with pprof (BENCH_SCALE_TAGS=meshcertpprof, MESHCERT_PPROF_ADDR).
func saveProfile(name string) {
	addr := os.Getenv("MESHCERT_PPROF_ADDR")
	if addr == "" {
		return
	}
	// memstats is the heap profile's text form, which ends with the runtime's memory statistics:
	// live heap, heap goal, idle and released spans, stacks.
	for file, p := range map[string]string{"heap": "heap?gc=1", "allocs": "allocs", "mutex": "mutex", "block": "block", "memstats": "heap?debug=1"} {
		resp, err := http.Get("http://" + addr + "/debug/pprof/" + p)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = os.WriteFile(filepath.Join(os.TempDir(), name+"."+file), b, 0o644)
	}
}

// saveCPUProfile saves a CPU profile of the exporter over d when it was built with pprof.
func saveCPUProfile(name string, d time.Duration) {
	addr := os.Getenv("MESHCERT_PPROF_ADDR")
	if addr == "" {
		return
	}
	time.Sleep(time.Second) // the exporter is starting
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
	if err != nil {
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = os.WriteFile(filepath.Join(os.TempDir(), name+".cpu"), b, 0o644)
}

// roundAll returns the durations rounded to m, for a log line.
func roundAll(ds []time.Duration, m time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(m)
	}
	return out
}
