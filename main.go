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
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	slgk "github.com/tjhop/slog-gokit"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/exporter"
	"github.com/meshcert/meshcert-exporter/sources"
)

// defaultListenAddress is outside every port a mesh uses (Istio 15000-15090, Linkerd 4140-4191 and
// 9990-9998, Envoy 9901, cert-manager 9402) and the other certificate exporters (9219, 9793).
const defaultListenAddress = ":9733"

// options are the command-line flags.
type options struct {
	configFile  string
	files       []string
	secretTypes []string
	kubeconfig  string
	metricsPath string
	maxRequests int
	lifecycle   bool
	logLevel    string
	logFormat   string
	web         *web.FlagConfig

	proxies                     []*proxyFlags
	posture, postureSet         bool
	shard, totalShards          int
	shardSet, totalSet, nodeSet bool
	nodeName                    string
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
	app.Flag("web.enable-lifecycle", "Serve POST /-/reload, which reloads the configuration file (SIGHUP does the same without it).").
		BoolVar(&o.lifecycle)
	app.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").
		Default("info").EnumVar(&o.logLevel, "debug", "info", "warn", "error")
	app.Flag("log.format", "Output format of log messages. One of: [logfmt, json]").
		Default("logfmt").EnumVar(&o.logFormat, "logfmt", "json")
	for _, k := range config.Default().Proxies.Kinds {
		o.proxies = append(o.proxies, addProxyFlags(app, k))
	}
	app.Flag("source.posture", "Judge the meshes' mTLS posture: watch their policies (Istio's PeerAuthentication and AuthorizationPolicy) and the namespaces (needs list and watch on them).").
		IsSetByUser(&o.postureSet).BoolVar(&o.posture)
	app.Flag("shard", "This replica's shard of the meshed pods, from 0.").IsSetByUser(&o.shardSet).IntVar(&o.shard)
	app.Flag("total-shards", "How many replicas split the meshed pods.").IsSetByUser(&o.totalSet).IntVar(&o.totalShards)
	app.Flag("proxy.node-name", "Read only the proxies of pods on this node (a per-node DaemonSet; set it from spec.nodeName).").
		IsSetByUser(&o.nodeSet).StringVar(&o.nodeName)
	o.web = kingpinflag.AddFlags(app, defaultListenAddress)
	app.Version(version.Print(exporter.ProgramName))
	app.HelpFlag.Short('h')
	if _, err := app.Parse(args); err != nil {
		return nil, flagError(app, args, err)
	}
	return o, nil
}

// flagError names the flag whose value err refuses: kingpin's value errors ("time: unknown unit",
// "enum value must be one of ...") do not say which flag they are about.
func flagError(app *kingpin.Application, args []string, err error) error {
	ctx, cerr := app.ParseContext(args)
	if cerr != nil {
		return err
	}
	for _, el := range ctx.Elements {
		f, ok := el.Clause.(*kingpin.FlagClause)
		if !ok || el.Value == nil {
			continue
		}
		m := f.Model()
		if serr := m.Value.Set(*el.Value); serr != nil {
			return fmt.Errorf("--%s=%s: %w", m.Name, *el.Value, serr)
		}
	}
	return err
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
		cfg.Files.Targets = append(cfg.Files.Targets, sources.FileTarget{Path: f})
	}
	for _, t := range o.secretTypes {
		cfg.Kubernetes.Secrets = append(cfg.Kubernetes.Secrets, sources.Selector{Type: t, Keys: []string{"tls.crt", "ca.crt"}})
	}
	for _, f := range o.proxies {
		f.apply(cfg.Proxies.Of(f.kind.Source))
	}
	if o.postureSet {
		cfg.Posture.Enabled = o.posture
	}
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
	client, err := exporter.KubeClient(o.kubeconfig)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	r := exporter.NewReloader(ctx, func() (*config.Config, error) { return loadConfig(o) }, client,
		exporter.Options{MetricsPath: o.metricsPath, MaxRequests: o.maxRequests, EnableLifecycle: o.lifecycle}, logger)
	if err := r.Start(); err != nil {
		return err
	}
	defer r.Stop()
	level.Info(logger).Log("msg", "starting meshcert-exporter", "version", version.Info(), "build_context", version.BuildContext())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = r.Reload() // logged; the old configuration stays on failure
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
