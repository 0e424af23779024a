package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
)

// portForwardFigure is what a port-forward sweep costs the API server and etcd, and the exporter.
type portForwardFigure struct {
	proxies int
	// The first sweep, from the exporter's start until every proxy was read once.
	sweep                 time.Duration
	apiCPU, etcdCPU       float64 // CPU seconds beyond their idle rate
	apiRSSIdle, apiRSSMax float64 // MiB
	exporterCPU           float64 // cores
	exporterRSS           float64 // MiB, after the sweep
	longrunningMax        float64 // apiserver_longrunning_requests for pods/portforward
	longrunningMean       float64
	slowestForward        time.Duration // at the kubelet: upgrade to the end of the streams
	failed                int           // proxies not up after the sweep
	// The window after the first sweep: reads, CPU beyond the idle rate, the busiest 10 seconds.
	window                      time.Duration
	windowReads                 int
	windowAPICPU, windowEtcdCPU float64
	windowPeakReads10s          int
	windowFailed                int
	errors                      float64 // meshcert_source_errors_total of the Envoy source at the end
}

// apiCore is the API server's (and etcd's) share of one core over the default interval.
func (f portForwardFigure) apiCore(cpu float64, reads int) float64 {
	if reads == 0 {
		return math.NaN()
	}
	return cpu / float64(reads) * float64(f.proxies) / (5 * time.Minute).Seconds()
}

// controlPlaneSampler samples the API server and etcd once a second: their CPU time and RSS, the
// API server's long-running port-forward requests and the kubelet's forwards.
type controlPlaneSampler struct {
	cp      *testenv.ControlPlane
	kubelet *testenv.Kubelet

	mu                sync.Mutex
	longrunning       []float64
	forwards          []int // one per sample
	apiRSSMax         float64
	stop              chan struct{}
	done              chan struct{}
	apiCPU0, etcdCPU0 time.Duration
	start             time.Time
}

func startSampler(cp *testenv.ControlPlane, k *testenv.Kubelet) *controlPlaneSampler {
	s := &controlPlaneSampler{cp: cp, kubelet: k, stop: make(chan struct{}), done: make(chan struct{}),
		apiCPU0: cpuTime(cp.APIServerPID()), etcdCPU0: cpuTime(cp.EtcdPID()), start: time.Now()}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			body, err := apiMetrics(cp)
			s.mu.Lock()
			if err == nil {
				s.longrunning = append(s.longrunning, sumSeries(body, "apiserver_longrunning_requests{", `subresource="portforward"`))
			}
			s.forwards = append(s.forwards, k.Forwards())
			s.apiRSSMax = math.Max(s.apiRSSMax, rssMiB(cp.APIServerPID()))
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// sample is what a sampler saw between its start and its end.
type sample struct {
	elapsed            time.Duration
	apiCPU, etcdCPU    float64 // seconds
	longrunningMax     float64
	longrunningMean    float64
	apiRSSMax          float64
	reads, peakReads10 int
}

// end stops the sampler and returns what it saw.
func (s *controlPlaneSampler) end() sample {
	close(s.stop)
	<-s.done
	out := sample{elapsed: time.Since(s.start), apiCPU: (cpuTime(s.cp.APIServerPID()) - s.apiCPU0).Seconds(),
		etcdCPU: (cpuTime(s.cp.EtcdPID()) - s.etcdCPU0).Seconds(), apiRSSMax: s.apiRSSMax}
	for _, v := range s.longrunning {
		out.longrunningMax = math.Max(out.longrunningMax, v)
		out.longrunningMean += v / float64(len(s.longrunning))
	}
	if len(s.forwards) > 0 {
		out.reads = s.kubelet.Forwards() - s.forwards[0]
	}
	for i := range s.forwards {
		if j := i + 10; j < len(s.forwards) {
			out.peakReads10 = max(out.peakReads10, s.forwards[j]-s.forwards[i])
		}
	}
	return out
}

// portForwardScenario reads n sidecars through the API server's pods/portforward at the default
// settings: the API server reaches the kubelet double (Kubernetes' own streaming server, on 10
// nodes), which connects each pod's port 15000 to the Envoy admin double. It measures the control
// plane's idle rate first (sampled the same way), then the first sweep, then window more of the
// default interval.
func portForwardScenario(bin string, n int, window time.Duration) (portForwardFigure, error) {
	f := portForwardFigure{proxies: n, window: window}
	name := fmt.Sprintf("%d sidecar proxies over port-forward", n)
	cp, admin, log, err := startSeeded(name)
	if err != nil {
		return f, err
	}
	defer cp.Stop()
	ctx := context.Background()
	const nodes = 10
	kubelet := testenv.StartKubelet()
	defer kubelet.Close()
	for i := range nodes {
		if err := cp.RegisterNode(ctx, fmt.Sprintf("node-%d", i), kubelet); err != nil {
			return f, err
		}
	}
	adminPort, closeMesh, err := sidecarMesh(ctx, admin, n, nodes, log)
	if err != nil {
		return f, err
	}
	defer closeMesh()
	for i := range n {
		kubelet.Forward("mesh", fmt.Sprintf("app-%d", i), 15000, fmt.Sprintf("%s:%d", podIP(i), adminPort))
	}
	kubeconfig, err := cp.Kubeconfig("bench", cp.AdminConfig())
	if err != nil {
		return f, err
	}

	log("the control plane's idle rate, 30 s")
	idle := startSampler(cp, kubelet)
	time.Sleep(30 * time.Second)
	idleSample := idle.end()
	apiIdle, etcdIdle := idleSample.apiCPU/idleSample.elapsed.Seconds(), idleSample.etcdCPU/idleSample.elapsed.Seconds()
	f.apiRSSIdle = rssMiB(cp.APIServerPID())
	log("idle: API server %.3f cores, etcd %.3f cores, API server RSS %.0f MiB", apiIdle, etcdIdle, f.apiRSSIdle)

	port, _ := freePort()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn", "--source.envoy")
	cmd.Stderr = os.Stderr
	sweep := startSampler(cp, kubelet)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return f, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	cpu0 := cpuTime(cmd.Process.Pid)
	if os.Getenv("BENCH_APISERVER_PROFILE") != "" {
		// The API server's CPU profile over the first 10 seconds of the sweep.
		go func() {
			if p, err := apiGet(cp, "/debug/pprof/profile?seconds=10"); err == nil {
				_ = os.WriteFile(filepath.Join(os.TempDir(), fmt.Sprintf("portforward-%d.apiserver.cpu", n)), []byte(p), 0o644)
			}
		}()
	}
	proxyUp := func() (read, up int, errs float64, err error) {
		body, _, err := get(base+"/metrics", false)
		if err != nil {
			return 0, 0, 0, err
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "meshcert_proxy_up{") {
				read++
				if strings.HasSuffix(line, "} 1") {
					up++
				}
			}
		}
		return read, up, sumSeries(body, "meshcert_source_errors_total{", `source="envoy"`), nil
	}
	for {
		if time.Since(start) > 6*time.Minute {
			return f, fmt.Errorf("sweep not done after 6 minutes (%d forwards)", kubelet.Forwards())
		}
		if kubelet.Forwards() >= n {
			if read, up, _, err := proxyUp(); err == nil && read >= n {
				f.failed = read - up
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	f.sweep = time.Since(start)
	s := sweep.end()
	f.exporterCPU = (cpuTime(cmd.Process.Pid) - cpu0).Seconds() / f.sweep.Seconds()
	f.exporterRSS = rssMiB(cmd.Process.Pid)
	f.apiCPU, f.etcdCPU = s.apiCPU-apiIdle*s.elapsed.Seconds(), s.etcdCPU-etcdIdle*s.elapsed.Seconds()
	f.apiRSSMax, f.longrunningMax, f.longrunningMean = s.apiRSSMax, s.longrunningMax, s.longrunningMean
	f.slowestForward = kubelet.SlowestForward()
	log("first sweep %s: API server %.1f CPU s beyond idle (%.2f ms per read), etcd %.1f s, API server RSS %.0f -> %.0f MiB, long-running port-forwards max %.0f mean %.1f, exporter %.2f cores %.0f MiB, slowest forward %s, %d failed",
		f.sweep.Round(time.Second), f.apiCPU, 1e3*f.apiCPU/float64(n), f.etcdCPU, f.apiRSSIdle, f.apiRSSMax, f.longrunningMax, f.longrunningMean,
		f.exporterCPU, f.exporterRSS, f.slowestForward.Round(time.Millisecond), f.failed)

	if window > 0 {
		log("the next %s of the interval", window)
		w := startSampler(cp, kubelet)
		time.Sleep(window)
		ws := w.end()
		f.windowReads, f.windowPeakReads10s = ws.reads, ws.peakReads10
		f.windowAPICPU, f.windowEtcdCPU = ws.apiCPU-apiIdle*ws.elapsed.Seconds(), ws.etcdCPU-etcdIdle*ws.elapsed.Seconds()
		f.apiRSSMax = math.Max(f.apiRSSMax, ws.apiRSSMax)
		f.longrunningMax = math.Max(f.longrunningMax, ws.longrunningMax)
		read, up, errs, err := proxyUp()
		if err != nil {
			return f, err
		}
		f.windowFailed, f.errors = read-up, errs
		log("window %s: %d reads (busiest 10 s: %d), API server %.1f CPU s beyond idle, etcd %.1f s, %d proxies not up, %.0f read errors",
			window, f.windowReads, f.windowPeakReads10s, f.windowAPICPU, f.windowEtcdCPU, f.windowFailed, f.errors)
	}
	f.slowestForward = kubelet.SlowestForward()
	return f, nil
}
