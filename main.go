// Command meshcert-exporter exports the certificate health of a service mesh (Istio, Linkerd) as one
// connected PKI: trust anchors, issuers, the bundles handed to workloads and the certificates
// proxies serve.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	slgk "github.com/tjhop/slog-gokit"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshcert/meshcert-exporter/collector"
	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/inventory"
	"github.com/meshcert/meshcert-exporter/sources"
)

// defaultListenAddress is outside every port a mesh uses (Istio 15000-15090, Linkerd 4140-4191 and
// 9990-9998, Envoy 9901, cert-manager 9402) and the other certificate exporters (9219, 9793).
const defaultListenAddress = ":9733"

const programName = "meshcert_exporter"

// options are the command-line flags.
type options struct {
	configFile  string
	files       []string
	secretTypes []string
	kubeconfig  string
	metricsPath string
	maxRequests int
	logLevel    string
	logFormat   string
	web         *web.FlagConfig

	envoy, ztunnel, linkerdProxy *proxyFlags
	shard, totalShards           int
	shardSet, totalSet, nodeSet  bool
	nodeName                     string
}

func parseFlags(args []string) (*options, error) {
	app := kingpin.New("meshcert-exporter", "Exports the certificate health of an Istio or Linkerd mesh as one PKI.")
	o := &options{}
	app.Flag("config.file", "Path to the YAML configuration file. Without it the built-in defaults apply.").
		StringVar(&o.configFile)
	app.Flag("source.files", "Certificate file, directory or glob to read (repeatable); added to the config file's files.targets.").
		StringsVar(&o.files)
	app.Flag("source.secret-type", "Watch every Secret of this type in all namespaces (repeatable; e.g. kubernetes.io/tls), reading tls.crt and ca.crt. The API server filters by type: other Secrets never reach the exporter. For other keys or namespaces use kubernetes.secrets in the config file.").
		StringsVar(&o.secretTypes)
	app.Flag("kubeconfig", "Path to a kubeconfig file. Without it the in-cluster configuration is used when running in a pod; elsewhere the Kubernetes sources are off.").
		StringVar(&o.kubeconfig)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&o.metricsPath)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests; more get a 503. 0 means no limit.").
		Default("40").IntVar(&o.maxRequests)
	app.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").
		Default("info").EnumVar(&o.logLevel, "debug", "info", "warn", "error")
	app.Flag("log.format", "Output format of log messages. One of: [logfmt, json]").
		Default("logfmt").EnumVar(&o.logFormat, "logfmt", "json")
	o.envoy = addProxyFlags(app, "envoy", "envoy", "Istio sidecars and gateways (Envoy admin)")
	o.ztunnel = addProxyFlags(app, "ztunnel", "ztunnel", "ztunnel, Istio ambient's node proxy")
	o.linkerdProxy = addProxyFlags(app, "linkerd-proxy", "linkerd-proxy", "Linkerd proxies")
	app.Flag("shard", "This replica's shard of the meshed pods, from 0.").IsSetByUser(&o.shardSet).IntVar(&o.shard)
	app.Flag("total-shards", "How many replicas split the meshed pods.").IsSetByUser(&o.totalSet).IntVar(&o.totalShards)
	app.Flag("proxy.node-name", "Read only the proxies of pods on this node (a per-node DaemonSet; set it from spec.nodeName).").
		IsSetByUser(&o.nodeSet).StringVar(&o.nodeName)
	o.web = kingpinflag.AddFlags(app, defaultListenAddress)
	app.Version(version.Print(programName))
	app.HelpFlag.Short('h')
	if _, err := app.Parse(args); err != nil {
		return nil, err
	}
	return o, nil
}

// newLogger returns the go-kit logger and its bridge to the *slog.Logger exporter-toolkit wants.
func newLogger(format, lvl string) (log.Logger, *slog.Logger) {
	var base log.Logger
	if format == "json" {
		base = log.NewJSONLogger(log.NewSyncWriter(os.Stderr))
	} else {
		base = log.NewLogfmtLogger(log.NewSyncWriter(os.Stderr))
	}
	base = log.With(base, "ts", log.DefaultTimestampUTC)
	var (
		filter  level.Option
		slogLvl slog.Level
	)
	switch lvl {
	case "debug":
		filter, slogLvl = level.AllowDebug(), slog.LevelDebug
	case "warn":
		filter, slogLvl = level.AllowWarn(), slog.LevelWarn
	case "error":
		filter, slogLvl = level.AllowError(), slog.LevelError
	default:
		filter, slogLvl = level.AllowInfo(), slog.LevelInfo
	}
	base = level.NewFilter(base, filter)
	return log.With(base, "caller", log.DefaultCaller), slog.New(slgk.NewGoKitHandler(base, slogLvl))
}

// loadConfig reads the configuration file, or the defaults, and adds the files given as flags.
func loadConfig(o *options) (*config.Config, error) {
	cfg := config.Default()
	if o.configFile != "" {
		var err error
		if cfg, err = config.Load(o.configFile); err != nil {
			return nil, err
		}
	}
	for _, f := range o.files {
		cfg.Files.Targets = append(cfg.Files.Targets, config.FileTarget{Path: f})
	}
	for _, t := range o.secretTypes {
		cfg.Kubernetes.Secrets = append(cfg.Kubernetes.Secrets, config.Selector{Type: t, Keys: []string{"tls.crt", "ca.crt"}})
	}
	o.envoy.apply("envoy", "envoy", &cfg.Proxies.Envoy)
	o.ztunnel.apply("ztunnel", "ztunnel", &cfg.Proxies.Ztunnel)
	o.linkerdProxy.apply("linkerd-proxy", "linkerd-proxy", &cfg.Proxies.Linkerd)
	if o.shardSet {
		cfg.Proxies.Shard = o.shard
	}
	if o.totalSet {
		cfg.Proxies.TotalShards = o.totalShards
	}
	if o.nodeSet {
		cfg.Proxies.NodeName = o.nodeName
	}
	return cfg, cfg.Validate()
}

// exporter is the running exporter: its sources, their inventory and the HTTP handler.
type exporter struct {
	sources   []sources.Source
	inventory *inventory.Inventory
	metrics   *collector.Handler
	handler   http.Handler
}

// prepareInterval is how often the metrics handler brings its cache up to date in the background,
// so that a scrape has at most this much change to render.
const prepareInterval = 100 * time.Millisecond

// kubeClient returns a client for the cluster named by kubeconfig, or the in-cluster one, or nil
// when there is neither: then the Kubernetes sources are off.
func kubeClient(kubeconfig string) (*kube, error) {
	var (
		rc  *rest.Config
		err error
	)
	switch {
	case kubeconfig != "":
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		rc, err = rest.InClusterConfig()
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	// The exporter lists and watches, and opens port-forwards at the proxy concurrency; the
	// defaults (5/s, burst 10) would throttle a sweep for no benefit to the API server.
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = "meshcert-exporter/" + version.Version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &kube{config: rc, client: client}, nil
}

// kube is a Kubernetes client and the configuration it was built from (port-forward needs both).
type kube struct {
	config *rest.Config
	client kubernetes.Interface
}

// maxAdminBody bounds a proxy's admin answer: a config_dump of secrets is tens of kilobytes.
const maxAdminBody = 8 << 20

// proxySources returns the proxy sources cfg enables, and the pod watcher they share.
func proxySources(cfg *config.Config, k *kube, logger log.Logger) ([]sources.Source, error) {
	p := cfg.Proxies
	var statics []sources.Target
	for _, t := range p.Envoy.Static {
		statics = append(statics, sources.Target{Name: t.Name, URL: t.URL})
	}
	if !p.NeedsPods() {
		if len(statics) == 0 {
			return nil, nil
		}
		s := settings(p.Envoy)
		return []sources.Source{sources.NewEnvoyProxies(nil, statics, sources.NewDirectTransport(maxAdminBody), s, logger)}, nil
	}
	if k == nil {
		return nil, errors.New("the proxy sources need Kubernetes: give --kubeconfig or run in a cluster")
	}
	pods := sources.NewPodWatcher(k.client, sources.Sharding{Shard: p.Shard, Total: p.TotalShards, NodeName: p.NodeName}, logger)
	transport := func(x config.Proxy) sources.Transport {
		if x.Transport == config.TransportPortForward {
			return sources.NewPortForwardTransport(k.config, k.client, maxAdminBody, x.Timeout)
		}
		return sources.NewDirectTransport(maxAdminBody)
	}
	out := []sources.Source{pods}
	if p.Envoy.Enabled || len(statics) > 0 {
		var w *sources.PodWatcher
		if p.Envoy.Enabled {
			w = pods
		}
		out = append(out, sources.NewEnvoyProxies(w, statics, transport(p.Envoy), settings(p.Envoy), logger))
	}
	if p.Ztunnel.Enabled {
		out = append(out, sources.NewZtunnelProxies(pods, transport(p.Ztunnel), settings(p.Ztunnel), logger))
	}
	if p.Linkerd.Enabled {
		out = append(out, sources.NewLinkerdProxies(pods, transport(p.Linkerd), settings(p.Linkerd), logger))
	}
	return out, nil
}

func settings(p config.Proxy) sources.ProxySettings {
	return sources.ProxySettings{AdminPort: p.AdminPort, Interval: p.Interval, Timeout: p.Timeout, Concurrency: p.Concurrency,
		StartSpread: min(p.Interval/10, 10*time.Second)}
}

// newExporter wires the sources of cfg to an inventory, a collector and the HTTP endpoints. k may
// be nil: the Kubernetes sources are then off.
func newExporter(cfg *config.Config, k *kube, metricsPath string, maxRequests int, logger log.Logger, extra ...prometheus.Collector) (*exporter, error) {
	var targets []sources.FileTarget
	for _, t := range cfg.Files.Targets {
		mesh, err := config.ParseMesh(t.Mesh)
		if err != nil {
			return nil, err
		}
		targets = append(targets, sources.FileTarget{Path: t.Path, Mesh: mesh})
	}
	srcs := []sources.Source{sources.NewFiles(targets, cfg.Files.Interval, logger)}
	if k != nil {
		srcs = append(srcs, sources.NewSecretSource(k.client, cfg, logger), sources.NewConfigMapSource(k.client, cfg, logger))
	}
	proxies, err := proxySources(cfg, k, logger)
	if err != nil {
		return nil, err
	}
	srcs = append(srcs, proxies...)
	inv := inventory.New(srcs, cfg.MeshSettings())

	// The mesh's families come from the handler; these are gathered on every scrape.
	status := prometheus.NewRegistry()
	status.MustRegister(
		versioncollector.NewCollector(programName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	status.MustRegister(extra...)

	mux := http.NewServeMux()
	metrics := collector.NewHandler(inv, status, logger, maxRequests)
	mux.Handle(metricsPath, metrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !inv.Ready() {
			http.Error(w, "sources have not read their material yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "meshcert-exporter",
			Description: "Certificate health of the service mesh PKI: trust anchors, issuers, bundles and workload certificates",
			Version:     version.Info(),
			Links: []web.LandingLinks{
				{Address: metricsPath, Text: "Metrics"},
				{Address: "/healthz", Text: "Health", Description: "200 while the process runs"},
				{Address: "/readyz", Text: "Readiness", Description: "200 once every source has read its material"},
			},
		})
		if err != nil {
			return nil, err
		}
		mux.Handle("/", landing)
	}
	return &exporter{sources: srcs, inventory: inv, metrics: metrics, handler: mux}, nil
}

// run starts every source and the metrics handler's background rendering; it returns when ctx is
// done and all of them have stopped.
func (e *exporter) run(ctx context.Context, logger log.Logger) {
	var wg sync.WaitGroup
	wg.Go(func() { e.metrics.Run(ctx, prepareInterval) })
	for _, s := range e.sources {
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				level.Error(logger).Log("msg", "source stopped", "source", s.Name(), "err", err)
			}
		})
	}
	wg.Wait()
}

func main() {
	setGCPercent()
	setVersion()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "meshcert-exporter:", err)
		os.Exit(1)
	}
}

// run runs the exporter until ctx is done.
func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	logger, slogger := newLogger(o.logFormat, o.logLevel)
	client, err := kubeClient(o.kubeconfig)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	r := newReloader(ctx, o, client, logger)
	if err := r.init(); err != nil {
		return err
	}
	defer r.stop()
	level.Info(logger).Log("msg", "starting meshcert-exporter", "version", version.Info(), "build_context", version.BuildContext())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = r.reload() // logged; the old configuration stays on failure
			case <-ctx.Done():
				return
			}
		}
	}()

	server := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(server, o.web, slogger) }()
	select {
	case err = <-serveErr:
	case <-ctx.Done():
		err = server.Shutdown(context.Background())
	}
	stop()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
