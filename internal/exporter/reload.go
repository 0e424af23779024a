package exporter

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// Reloader owns the running exporter and replaces it when the configuration is reloaded (SIGHUP,
// or POST /-/reload). A configuration that does not load leaves the running one in force; a new
// one takes over only once its sources have read their material (or after readyTimeout), so a
// reload never serves a half-read mesh.
type Reloader struct {
	load    func() (*config.Config, error)
	k       *Kube
	o       Options
	logger  log.Logger
	parent  context.Context
	timeout time.Duration

	mu      sync.Mutex // one reload at a time
	current atomic.Pointer[running]

	statusMu sync.Mutex
	lastOK   bool
	lastOKAt time.Time
}

// running is an exporter whose sources run until cancel.
type running struct {
	e      *Exporter
	cancel context.CancelFunc
	done   chan struct{}
}

// readyTimeout bounds how long a reload waits for the new sources before it switches anyway.
const readyTimeout = 30 * time.Second

// NewReloader returns a reloader whose exporters run until ctx is done; load reads the
// configuration as it is now, each time one is built.
func NewReloader(ctx context.Context, load func() (*config.Config, error), k *Kube, o Options, logger log.Logger) *Reloader {
	r := &Reloader{load: load, k: k, logger: logger, parent: ctx, timeout: readyTimeout, lastOK: true, lastOKAt: time.Now()}
	r.o = o
	r.o.Status = append(append([]prometheus.Collector(nil), o.Status...), reloadCollector{r})
	return r
}

// start builds the exporter of the current configuration and starts its sources.
func (r *Reloader) start() (*running, error) {
	cfg, err := r.load()
	if err != nil {
		return nil, err
	}
	e, err := New(cfg, r.k, r.o, r.logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(r.parent)
	run := &running{e: e, cancel: cancel, done: make(chan struct{})}
	go func() {
		e.Run(ctx, r.logger)
		close(run.done)
	}()
	return run, nil
}

// Start starts the first exporter; an error here stops the program.
func (r *Reloader) Start() error {
	run, err := r.start()
	if err != nil {
		return err
	}
	r.current.Store(run)
	return nil
}

// Reload replaces the running exporter with one of the configuration as it is now.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := r.start()
	if err != nil {
		r.setStatus(false)
		level.Error(r.logger).Log("msg", "configuration not reloaded; the previous one stays in force", "err", err)
		return err
	}
	for deadline := time.Now().Add(r.timeout); !next.e.Ready() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	old := r.current.Swap(next)
	old.cancel()
	<-old.done
	r.setStatus(true)
	level.Info(r.logger).Log("msg", "configuration reloaded")
	return nil
}

// Stop stops the running exporter's sources.
func (r *Reloader) Stop() {
	if run := r.current.Load(); run != nil {
		run.cancel()
		<-run.done
	}
}

func (r *Reloader) setStatus(ok bool) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	r.lastOK = ok
	if ok {
		r.lastOKAt = time.Now()
	}
}

// ServeHTTP serves /-/reload and hands everything else to the running exporter. As in Prometheus,
// /-/reload answers only when the lifecycle endpoint is enabled (--web.enable-lifecycle), and
// only to POST: a reload re-lists every informer, which no unauthenticated GET may cause.
func (r *Reloader) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/-/reload" {
		if !r.o.EnableLifecycle {
			http.Error(w, "the lifecycle endpoint is not enabled: start with --web.enable-lifecycle, or send SIGHUP", http.StatusForbidden)
			return
		}
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST to reload the configuration", http.StatusMethodNotAllowed)
			return
		}
		if err := r.Reload(); err != nil {
			http.Error(w, fmt.Sprintf("configuration not reloaded: %v", err), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "reloaded")
		return
	}
	r.current.Load().e.ServeHTTP(w, req)
}

var (
	reloadSuccessDesc = prometheus.NewDesc("meshcert_config_last_reload_successful",
		"1 when the last reload of the configuration file worked (or there was none), 0 when the previous configuration stayed in force.", nil, nil)
	reloadTimeDesc = prometheus.NewDesc("meshcert_config_last_reload_success_timestamp_seconds",
		"When the configuration was last loaded successfully, as a Unix timestamp.", nil, nil)
)

// reloadCollector exports the reload status.
type reloadCollector struct{ r *Reloader }

// Describe implements prometheus.Collector.
func (c reloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- reloadSuccessDesc
	ch <- reloadTimeDesc
}

// Collect implements prometheus.Collector.
func (c reloadCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.statusMu.Lock()
	ok, at := c.r.lastOK, c.r.lastOKAt
	c.r.statusMu.Unlock()
	v := 0.0
	if ok {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(reloadSuccessDesc, prometheus.GaugeValue, v)
	ch <- prometheus.MustNewConstMetric(reloadTimeDesc, prometheus.GaugeValue, float64(at.UnixNano())/1e9)
}
