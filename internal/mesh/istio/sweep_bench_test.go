package istio

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	"github.com/meshcert/meshcert-exporter/internal/testproxy"
	"github.com/meshcert/meshcert-exporter/sources"
)

// BenchmarkSweep2000 reads 2,000 Envoy admin doubles on loopback (each answering a config_dump with
// its own workload certificate, intermediate and root) at the default concurrency (16) and timeout,
// and reports the sweep's wall time and the heap the source holds per proxy afterwards: the bytes
// of live objects after a collection (HeapAlloc), which do not depend on how the runtime's spans
// happen to be filled by earlier iterations, as HeapInuse did.
func BenchmarkSweep2000(b *testing.B) {
	const n = 2000
	m := testpki.NewMesh(n, time.Now().Add(-time.Hour))
	bodies := make([][]byte, n)
	for i, l := range m.Leaves {
		bodies[i] = testadmin.EnvoySecrets(testpki.Bundle(l, m.Intermediate, m.Root), m.Root.PEM())
	}
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bodies[served.Add(1)%n])
	}))
	defer srv.Close()
	targets := make([]sources.Target, n)
	for i := range targets {
		targets[i] = sources.Target{Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("pod-%d", i), ServiceAccount: fmt.Sprintf("sa-%d", i), URL: srv.URL}
	}
	settings := sources.ProxySettings{AdminPort: 15000, Interval: 5 * time.Minute, Timeout: 10 * time.Second, Concurrency: 16}
	var sweep time.Duration
	var perProxy float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		p := testproxy.Static(EnvoyKind(), targets, settings)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		start := time.Now()
		go func() { _ = p.Run(ctx); close(done) }()
		for !p.State().Synced {
			time.Sleep(5 * time.Millisecond)
		}
		sweep = time.Since(start)
		st := p.State()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perProxy = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / n
		runtime.KeepAlive(st)
		cancel()
		<-done
	}
	b.ReportMetric(sweep.Seconds(), "s/sweep")
	b.ReportMetric(perProxy, "heap-bytes/proxy")
}
