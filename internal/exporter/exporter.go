// Package exporter assembles a running exporter from a configuration: the meshes' rules and
// layouts, the sources each mechanism builds, the inventory that joins them, and the HTTP
// endpoints. main calls it; a reload builds a new one.
package exporter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshcert/meshcert-exporter/collector"
	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/inventory"
	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/pkiapi"
	"github.com/meshcert/meshcert-exporter/sources"
)

// ProgramName is the exporter's name in its build info metric.
const ProgramName = "meshcert_exporter"

// Options are the settings of the exporter that come from its flags, not its configuration.
type Options struct {
	// MetricsPath is where the metrics are served.
	MetricsPath string
	// MaxRequests bounds the scrapes served at once; 0 means no limit.
	MaxRequests int
	// Status are further collectors gathered on every scrape.
	Status []prometheus.Collector
	// EnableLifecycle serves POST /-/reload (--web.enable-lifecycle).
	EnableLifecycle bool
}

// Exporter is a running exporter: its sources, their inventory and the HTTP handler.
type Exporter struct {
	sources   []model.Source
	inventory *inventory.Inventory
	metrics   *collector.Handler
	handler   http.Handler
}

// Kube is a Kubernetes client and the configuration it was built from (port-forward needs both).
type Kube struct {
	Config *rest.Config
	Client kubernetes.Interface
	// From says where the configuration came from, for the start-up log.
	From string
}

// KubeClient returns a client as Kubernetes tools find their cluster: the kubeconfig given,
// else the files $KUBECONFIG names (a list, merged as kubectl merges it), else the in-cluster
// configuration in a pod; nil when there is none of them: then the Kubernetes sources are off.
// ~/.kube/config is not read unless named, so the exporter on a laptop reads a cluster only when
// asked to.
func KubeClient(kubeconfig string) (*Kube, error) {
	var (
		rc   *rest.Config
		err  error
		from string
	)
	switch env := os.Getenv("KUBECONFIG"); {
	case kubeconfig != "":
		from = "--kubeconfig " + kubeconfig
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	case env != "":
		from = "$KUBECONFIG " + env
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(env)}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		from = "the in-cluster configuration"
		rc, err = rest.InClusterConfig()
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client from %s: %w", from, err)
	}
	// The exporter lists and watches, and opens port-forwards at the proxy concurrency; the
	// defaults (5/s, burst 10) would throttle a sweep for no benefit to the API server.
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = "meshcert-exporter/" + version.Version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &Kube{Config: rc, Client: client, From: from}, nil
}

// SourceState is whether one kind of source runs, and why.
type SourceState struct {
	Source string
	On     bool
	Reason string
}

// SourceStates says, for the start-up log, which sources cfg turns on with k (nil: no cluster),
// and why each is on or off.
func SourceStates(cfg *config.Config, k *Kube) []SourceState {
	noKube := "no cluster: no --kubeconfig, $KUBECONFIG is not set, and not running in a pod"
	out := []SourceState{{Source: "files", On: len(cfg.Files.Targets) > 0, Reason: fmt.Sprintf("%d targets (--source.files, files.targets)", len(cfg.Files.Targets))}}
	if k == nil {
		out = append(out, SourceState{Source: "kubernetes", Reason: noKube})
	} else {
		var watched []string
		for _, m := range cfg.Meshes {
			if len(m.Watches()) > 0 {
				watched = append(watched, string(m.Name()))
			}
		}
		out = append(out, SourceState{Source: "kubernetes", On: true, Reason: fmt.Sprintf("from %s; meshes watched: %s; %d selectors",
			k.From, strings.Join(watched, ", "), len(cfg.Kubernetes.Secrets)+len(cfg.Kubernetes.ConfigMaps))})
	}
	for i, kind := range cfg.Proxies.Kinds {
		st := cfg.Proxies.Settings[i]
		s := SourceState{Source: kind.Source}
		switch {
		case st.Enabled && k == nil:
			s.Reason = "turned on, but " + noKube
		case st.Enabled:
			s.On, s.Reason = true, fmt.Sprintf("%s on port %d every %s", st.Transport, st.AdminPort, st.Interval)
		case len(st.Static) > 0:
			s.On, s.Reason = true, fmt.Sprintf("%d static targets", len(st.Static))
		default:
			s.Reason = fmt.Sprintf("off by default: --source.%s or proxies.%s.enabled", kind.Source, kind.Key)
		}
		out = append(out, s)
	}
	p := SourceState{Source: "posture", Reason: "off by default: --source.posture or posture.enabled"}
	switch {
	case cfg.Posture.Enabled && k == nil:
		p.Reason = "turned on, but " + noKube
	case cfg.Posture.Enabled:
		p.On, p.Reason = true, "the meshes' policies, the namespaces and the pods"
	}
	return append(out, p)
}

// prepareInterval is how often the metrics handler brings its cache up to date in the background,
// so that a scrape has at most this much change to render.
const prepareInterval = 100 * time.Millisecond

// maxAdminBody bounds a proxy's admin answer: a config_dump of secrets is tens of kilobytes.
const maxAdminBody = 8 << 20

// build is what a mechanism builds its sources from.
type build struct {
	cfg     *config.Config
	kube    *Kube // nil: no Kubernetes
	env     sources.Env
	parsers sources.ParseLimit
	// pods is the one pod watcher the proxy sources and the posture judgement share; nil when
	// neither needs pods.
	pods *sources.PodWatcher
}

// mechanism makes the sources of one way of reading certificate material.
type mechanism struct {
	name  string
	build func(b build) ([]model.Source, error)
}

// mechanisms are the ways the exporter reads, by name, in the order their sources are listed.
// Adding a mechanism (a Vault PKI mount, say) is one function and one line here.
func mechanisms() []mechanism {
	return []mechanism{
		{"files", filesSources},
		{"kubernetes", kubernetesSources},
		{"pods", podSources},
		{"proxies", proxySources},
		{"posture", postureSources},
	}
}

// postureSources is the posture source, when it is on: the posture watches of every mesh that
// judges its posture.
func postureSources(b build) ([]model.Source, error) {
	if !b.cfg.Posture.Enabled {
		return nil, nil
	}
	if b.kube == nil || b.kube.Config == nil {
		return nil, errors.New("the posture source needs Kubernetes: give --kubeconfig or run in a cluster")
	}
	dyn, err := dynamic.NewForConfig(b.kube.Config)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	var watches []*sources.ResourceWatch
	for _, m := range b.cfg.Meshes {
		if pm, ok := m.(mesh.PostureMesh); ok {
			watches = append(watches, pm.PostureWatches()...)
		}
	}
	return []model.Source{sources.NewResources(dyn, b.kube.Client.Discovery(), watches, b.cfg.Posture.RetryInterval, b.env)}, nil
}

// enabledProxyKinds are the proxy kinds whose pods are discovered in the cluster.
func enabledProxyKinds(p config.Proxies) []sources.ProxyKind {
	var out []sources.ProxyKind
	for i, k := range p.Kinds {
		if p.Settings[i].Enabled {
			out = append(out, k)
		}
	}
	return out
}

// podWatcher is the pod watcher of cfg: the running pods that the enabled proxy kinds read and, when
// posture is on, how each judged mesh shows in every pod. It is nil when nothing needs pods or
// there is no Kubernetes.
func podWatcher(cfg *config.Config, k *Kube, logger log.Logger) *sources.PodWatcher {
	kinds := enabledProxyKinds(cfg.Proxies)
	var enrolments []sources.PodEnrolment
	if cfg.Posture.Enabled {
		for _, m := range cfg.Meshes {
			if pm, ok := m.(mesh.PostureMesh); ok {
				enrolments = append(enrolments, pm.PodEnrolment())
			}
		}
	}
	if k == nil || len(kinds) == 0 && len(enrolments) == 0 {
		return nil
	}
	return sources.NewPodWatcher(k.Client, cfg.Proxies.Sharding, kinds, enrolments, logger)
}

// podSources is the pod watcher, a source of its own (its health is the pods source's).
func podSources(b build) ([]model.Source, error) {
	if b.pods == nil {
		return nil, nil
	}
	return []model.Source{b.pods}, nil
}

// filesSources is the file source; it always runs (with no targets it holds nothing).
func filesSources(b build) ([]model.Source, error) {
	return []model.Source{sources.NewFiles(b.cfg.Files, b.env)}, nil
}

// kubernetesSources watch the meshes' Secrets and ConfigMaps and the selected ones.
func kubernetesSources(b build) ([]model.Source, error) {
	if b.kube == nil {
		return nil, nil
	}
	var out []model.Source
	for _, kind := range []sources.Kind{sources.Secrets, sources.ConfigMaps} {
		var (
			watches []*sources.Watch
			adjust  []sources.Adjust
		)
		for _, m := range b.cfg.Meshes {
			for _, w := range m.Watches() {
				if w.Kind == kind {
					watches = append(watches, w)
				}
			}
			if a := m.Adjust(kind); a != nil {
				adjust = append(adjust, a)
			}
		}
		for _, w := range b.cfg.Kubernetes.Watches() {
			if w.Kind == kind {
				watches = append(watches, w)
			}
		}
		out = append(out, sources.NewKube(kind, b.kube.Client, watches, adjust, b.env))
	}
	return out, nil
}

// proxySources are the enabled proxy kinds' sources; they find their pods in the shared pod
// watcher.
func proxySources(b build) ([]model.Source, error) {
	p := b.cfg.Proxies
	if len(enabledProxyKinds(p)) > 0 && b.kube == nil {
		return nil, errors.New("the proxy sources need Kubernetes: give --kubeconfig or run in a cluster")
	}
	var out []model.Source
	for i, k := range p.Kinds {
		s := p.Settings[i]
		if !s.Enabled && len(s.Static) == 0 {
			continue
		}
		var (
			w         *sources.PodWatcher
			transport sources.Transport = sources.NewDirectTransport(maxAdminBody)
		)
		if s.Enabled {
			w = b.pods
			if s.Transport == sources.TransportPortForward {
				transport = sources.NewPortForwardTransport(b.kube.Config, b.kube.Client, maxAdminBody, s.Timeout)
			}
		}
		out = append(out, sources.NewProxies(k, w, s.Targets(), transport, s.Settings(), b.parsers, b.env))
	}
	return out, nil
}

// Assembly is the reading part of an exporter: every mechanism's sources and the inventory
// that joins them, sharing one pki.Cache.
type Assembly struct {
	Sources   []model.Source
	Inventory *inventory.Inventory
}

// Assemble builds the sources of cfg and their inventory. k may be nil: the Kubernetes sources
// are then off.
func Assemble(cfg *config.Config, k *Kube, logger log.Logger) (*Assembly, error) {
	meshes := []mesh.Mesh(cfg.Meshes)
	cache := pki.NewCache()
	b := build{cfg: cfg, kube: k, parsers: sources.NewParseLimit(), pods: podWatcher(cfg, k, logger),
		env: sources.Env{Cache: cache, Layouts: mesh.Layouts(meshes), Logger: logger}}
	var srcs []model.Source
	for _, m := range mechanisms() {
		s, err := m.build(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		srcs = append(srcs, s...)
	}
	inv := inventory.New(srcs, cfg.MeshSettings(), mesh.Rules(meshes), cache)
	inv.ReadShare(cfg.Proxies.Sharding.Share())
	for _, m := range meshes {
		if pm, ok := m.(mesh.PostureMesh); ok && cfg.Posture.Enabled {
			inv.JudgePosture(m.Name(), pm.JudgePosture)
		}
	}
	return &Assembly{Sources: srcs, Inventory: inv}, nil
}

// New assembles the exporter of cfg and its HTTP endpoints. k may be nil: the Kubernetes
// sources are then off.
func New(cfg *config.Config, k *Kube, o Options, logger log.Logger) (*Exporter, error) {
	a, err := Assemble(cfg, k, logger)
	if err != nil {
		return nil, err
	}
	for _, s := range SourceStates(cfg, k) {
		state := "off"
		if s.On {
			state = "on"
		}
		level.Info(logger).Log("msg", "source "+state, "source", s.Source, "reason", s.Reason)
	}
	srcs, inv := a.Sources, a.Inventory

	// The mesh's families come from the handler; these are gathered on every scrape.
	status := prometheus.NewRegistry()
	status.MustRegister(
		versioncollector.NewCollector(ProgramName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	status.MustRegister(o.Status...)

	mux := http.NewServeMux()
	metrics := collector.NewHandler(inv, status, logger, o.MaxRequests)
	mux.Handle(o.MetricsPath, metrics)
	var meshNames []string
	for _, m := range cfg.Meshes {
		meshNames = append(meshNames, string(m.Name()))
	}
	pkiapi.NewHandler(inv, meshNames, logger).Register(mux)
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
	if o.MetricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "meshcert-exporter",
			Description: "Certificate health of the service mesh PKI: trust anchors, issuers, bundles and workload certificates",
			Version:     version.Info(),
			// The release binary serves no profiles: link only to pages that exist.
			Profiling: "false",
			Links: []web.LandingLinks{
				{Address: o.MetricsPath, Text: "Metrics"},
				{Address: pkiapi.PathPage, Text: "Mesh PKI", Description: "trust anchors, issuers, rotations and problems, as a page"},
				{Address: pkiapi.PathPKI, Text: "PKI API", Description: "the same as JSON (docs/api.md)"},
				{Address: "/healthz", Text: "Health", Description: "200 while the process runs"},
				{Address: "/readyz", Text: "Readiness", Description: "200 once every source has read its material"},
			},
		})
		if err != nil {
			return nil, err
		}
		mux.Handle("/", landing)
	}
	return &Exporter{sources: srcs, inventory: inv, metrics: metrics, handler: mux}, nil
}

// Ready reports whether every source has read its material at least once.
func (e *Exporter) Ready() bool { return e.inventory.Ready() }

// ServeHTTP serves the exporter's endpoints.
func (e *Exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.handler.ServeHTTP(w, r) }

// Run starts every source and the metrics handler's background rendering; it returns when ctx is
// done and all of them have stopped.
func (e *Exporter) Run(ctx context.Context, logger log.Logger) {
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
