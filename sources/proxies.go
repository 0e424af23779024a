package sources

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-kit/log/level"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// ProxyKind is one kind of proxy a mesh runs: how its pods are recognised and how one is read.
// The mesh packages define them; the proxy mechanism reads any kind.
type ProxyKind struct {
	// Source is the kind's value of the `source` label, and the name of its --source.<source> flag.
	Source string
	// Key is the kind's section under proxies: in the configuration; Flag the prefix of its flags
	// (--<flag>.interval).
	Key, Flag string
	// What names the proxies in help texts ("Linkerd proxies").
	What string
	// Mesh the proxies belong to.
	Mesh model.Mesh
	// Defaults are the kind's settings where the configuration gives none.
	Defaults ProxyConfig
	// Static says whether the kind can be read at admin URLs outside Kubernetes.
	Static bool
	// Runs reports whether a pod runs the proxy. The pod watcher asks it once per pod change and
	// keeps the answer as one bit.
	Runs func(*corev1.Pod) bool
	// TrustRootAnnotation, when set, is the pod annotation that holds the digest of the trust
	// anchors the proxy was injected with.
	TrustRootAnnotation string
	// NodeProxy marks a proxy that holds the identities of its node's workloads, not
	// its pod's own: its certificates are not expected to carry its pod's identity.
	NodeProxy bool
	// Read reads one proxy into bundles and names the endpoint they came from.
	Read func(ctx context.Context, r ProxyRead) (bundles []model.Bundle, endpoint string, err error)
}

// ProxyRead is one read of one proxy, as a kind's Read gets it.
type ProxyRead struct {
	// Target is the proxy.
	Target Target
	// Port is its admin port.
	Port int
	// Cache shares what the answer's certificates have in common with others.
	Cache *pki.Cache

	transport Transport
	parsers   ParseLimit
	pods      *PodWatcher
}

// Get fetches a path of the proxy's admin endpoint.
func (r ProxyRead) Get(ctx context.Context, path string) ([]byte, error) {
	return r.transport.Get(ctx, r.Target, r.Port, path)
}

// Parse runs parse, which turns an answer into bundles, when a parse slot is free: parsing and
// verifying certificates is the CPU-heavy part of a sweep. A parse error is reported as a bad
// response.
func (r ProxyRead) Parse(parse func() ([]model.Bundle, error)) ([]model.Bundle, error) {
	r.parsers <- struct{}{}
	defer func() { <-r.parsers }()
	b, err := parse()
	return b, badResponse(err)
}

// Origin names the proxy in the partial certificates made from its answer.
func (r ProxyRead) Origin() string { return r.Target.key() }

// OnNode returns whether a workload of namespace and service account runs on the proxy's node,
// for a node proxy; it is nil without pod discovery.
func (r ProxyRead) OnNode() func(namespace, serviceAccount string) bool {
	if r.pods == nil {
		return nil
	}
	onNode := map[string]bool{}
	for _, pod := range r.pods.podsOnNode(r.Target.Node) {
		onNode[pod.Namespace+"/"+pod.ServiceAccount] = true
	}
	return func(ns, sa string) bool { return onNode[ns+"/"+sa] }
}

// IsRefusal reports whether err is an admin endpoint refusing a path (403, 404, 501): an admin
// that filters paths, or a release without it.
func IsRefusal(err error) bool {
	var se statusError
	return errors.As(err, &se) && (se.code == http.StatusForbidden || se.code == http.StatusNotFound || se.code == http.StatusNotImplemented)
}

// ParseLimit bounds how many proxy answers are parsed at once, across every proxy source.
type ParseLimit chan struct{}

// NewParseLimit returns a limit of one less than the cores Go may use (one at least), so that a
// scrape always finds a core free during a sweep.
func NewParseLimit() ParseLimit { return make(ParseLimit, max(1, runtime.GOMAXPROCS(0)-1)) }

// ProxySettings say how often and how hard a proxy source reads its proxies.
type ProxySettings struct {
	// AdminPort is the proxy's admin port.
	AdminPort int
	// Interval between two reads of one proxy. After its first read a proxy is read at its own
	// offset into the interval (a hash of its namespace and name), so the reads of a sweep spread
	// evenly over the whole interval instead of repeating the bunch a start made.
	Interval time.Duration
	// Timeout of one read; a hanging proxy costs one slot for this long.
	Timeout time.Duration
	// Concurrency is how many proxies are read at once.
	Concurrency int
	// StartSpread spreads the first reads of new proxies over this long, so a start does not hit
	// every proxy at the same moment.
	StartSpread time.Duration
}

// Proxies reads the certificates proxies serve, in the background, and serves the last result of
// each at scrape time. Pods come from a PodWatcher (pods that go away drop their series); static
// targets from the configuration.
type Proxies struct {
	kind      ProxyKind
	settings  ProxySettings
	transport Transport
	pods      *PodWatcher
	static    []Target
	env       Env
	parsers   ParseLimit
	reporter  *errorReporter

	mu      sync.Mutex
	proxies map[string]*proxyState
	// epoch is the origin of the source's clock, on which reads are scheduled.
	epoch time.Time
	// podsSeen is the pod watcher's generation the proxies were last listed at; listed says
	// whether they were listed at all.
	podsSeen uint64
	// order is the proxies sorted by key; nil after the set of proxies changed. It holds the
	// states themselves: a snapshot walks it without a map look-up per proxy.
	order  []*proxyState
	listed bool // the targets have been listed at least once
	swept  bool // every proxy known at some point has been tried at least once
	// dirty means the statuses changed; objectsChanged means the certificates did too.
	dirty, objectsChanged bool
	state                 model.State
}

// proxyState is what is known of one proxy.
type proxyState struct {
	// target is the pod cache's (or the configuration's) record of the proxy, shared, not copied.
	target *Target
	object *model.Object // of the last successful read
	// status is the proxy's health as handed out, replaced when it changes; nil until the first
	// read is done.
	status *model.ProxyStatus
	// nextRead is when the proxy is read next, on the source's clock (since its epoch): a
	// duration rather than a time.Time keeps the state of each proxy small.
	nextRead time.Duration
	inFlight bool
	failing  model.ErrorReason
}

// NewProxies returns the source of the proxies of kind: the pods that run one (from pods, which
// may be nil) and the static targets. parsers is shared by every proxy source of the exporter.
func NewProxies(kind ProxyKind, pods *PodWatcher, static []Target, tr Transport, s ProxySettings, parsers ParseLimit, env Env) *Proxies {
	return &Proxies{kind: kind, settings: s, transport: tr, pods: pods, static: static, env: env, parsers: parsers,
		reporter: newErrorReporter(kind.Source, env.Logger), proxies: map[string]*proxyState{}, epoch: time.Now()}
}

// clock is now on the source's clock: time since its epoch, on the monotonic clock.
func (p *Proxies) clock(now time.Time) time.Duration { return now.Sub(p.epoch) }

// Name implements Source.
func (p *Proxies) Name() string { return p.kind.Source }

// Run implements Source: it reads every proxy once, then each again every interval, until ctx is
// done.
func (p *Proxies) Run(ctx context.Context) error {
	if p.pods != nil {
		p.pods.run(ctx)
	}
	slots := make(chan struct{}, max(1, p.settings.Concurrency))
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(max(10*time.Millisecond, min(time.Second, p.settings.Interval/20)))
	defer tick.Stop()
	for {
		for _, ps := range p.due(time.Now()) {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Go(func() {
				defer func() { <-slots }()
				p.readOne(ctx, ps)
			})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// targets returns the proxies to read now: the meshed pods of this shard and the static targets.
func (p *Proxies) targets() []*Target {
	out := make([]*Target, 0, len(p.static))
	for i := range p.static {
		out = append(out, &p.static[i])
	}
	if p.pods == nil {
		return out
	}
	for _, t := range p.pods.Pods(p.kind.Source) {
		if t.IP != "" {
			out = append(out, t)
		}
	}
	return out
}

// due refreshes the set of proxies when the pods changed and returns those whose read is due,
// marking them in flight.
func (p *Proxies) due(now time.Time) []*proxyState {
	podsSynced := p.pods == nil || p.pods.Synced() // before listing: the list is then complete
	var generation uint64
	if p.pods != nil {
		generation = p.pods.generation.Load() // before listing: a change after it lists again
	}
	p.mu.Lock()
	refresh := !p.listed || generation != p.podsSeen
	p.mu.Unlock()
	var targets []*Target
	if refresh {
		targets = p.targets()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if refresh {
		p.refresh(targets, now)
		p.podsSeen = generation
	}
	var due []*proxyState
	clock := p.clock(now)
	for _, ps := range p.proxies {
		if !ps.inFlight && clock >= ps.nextRead {
			ps.inFlight = true
			due = append(due, ps)
		}
	}
	p.listed = p.listed || podsSynced
	sort.Slice(due, func(i, j int) bool { return due[i].nextRead < due[j].nextRead })
	return due
}

// refresh makes the set of proxies that of targets; p.mu is held.
func (p *Proxies) refresh(targets []*Target, now time.Time) {
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		k := t.key()
		seen[k] = true
		ps := p.proxies[k]
		if ps == nil {
			// First read soon, spread over a few seconds so a start does not hit every proxy at once.
			ps = &proxyState{nextRead: p.clock(now) + jitter(min(p.settings.Interval, p.settings.StartSpread))}
			p.proxies[k] = ps
			p.order = nil
		}
		if ps.target == nil || *ps.target != *t {
			p.dirty = true
		}
		ps.target = t // the pod's current record, even when equal: the old one is not kept alive
	}
	for k, ps := range p.proxies {
		if !seen[k] {
			delete(p.proxies, k) // the pod went away: its series go with it
			p.order = nil
			p.dirty, p.objectsChanged = true, p.objectsChanged || ps.object != nil
		}
	}
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// nextSlot is when the proxy namespace/name is read next after a read at clock: the first moment
// at least half an interval later that falls on the proxy's own offset into the interval. The
// offsets of many proxies spread evenly over the interval, so each interval reads the same share
// of the proxies in each of its seconds, whatever bunched their first reads (a start, an outage of
// the API server); the API server sees the steady rate of reads, not bursts at the pace the
// concurrency allows.
func nextSlot(namespace, name string, clock, interval time.Duration) time.Duration {
	if interval <= 0 {
		return clock
	}
	// FNV-1a over namespace "/" name, without building the key.
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for _, s := range [...]string{namespace, "/", name} {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * prime64
		}
	}
	phase := time.Duration(h % uint64(interval))
	earliest := clock + interval/2
	next := earliest - earliest%interval + phase
	if next < earliest {
		next += interval
	}
	return next
}

// readOne reads one proxy and records the outcome.
func (p *Proxies) readOne(ctx context.Context, ps *proxyState) {
	p.mu.Lock()
	t := *ps.target
	p.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, p.settings.Timeout)
	bundles, endpoint, err := p.kind.Read(rctx, ProxyRead{Target: t, Port: p.settings.AdminPort, Cache: p.env.Cache, transport: p.transport, parsers: p.parsers, pods: p.pods})
	cancel()
	if ctx.Err() != nil {
		p.mu.Lock()
		ps.inFlight = false
		p.mu.Unlock()
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	ps.inFlight = false
	ps.nextRead = nextSlot(t.Namespace, t.Name, p.clock(now), p.settings.Interval)
	if err != nil {
		reason := errorReason(err)
		if s := ps.status; s == nil || s.Up || s.Endpoint != endpoint {
			var last time.Time
			if s != nil {
				last = s.LastSuccess
			}
			p.setStatus(ps, false, endpoint, last) // a proxy that keeps failing keeps its record
		}
		countError(&p.state, reason)
		if ps.failing != reason {
			level.Warn(p.env.Logger).Log("msg", "cannot read proxy", "source", p.kind.Source, "namespace", t.Namespace, "name", t.Name,
				"endpoint", endpoint, "reason", reason, "err", err)
		}
		ps.failing = reason
		return
	}
	o := &model.Object{Source: p.kind.Source, Namespace: t.Namespace, Name: t.Name, Mesh: p.kind.Mesh, Bundles: bundles, TrustRootDigest: t.TrustRootDigest,
		FromPods: t.URL == ""}
	if !p.kind.NodeProxy && t.ServiceAccount != "" {
		o.Expect = p.env.Cache.Expectation(model.Identity{Namespace: t.Namespace, ServiceAccount: t.ServiceAccount})
	}
	if !sameObject(ps.object, o) {
		ps.object = o
		p.objectsChanged = true // most reads return what the proxy served before: no new analysis then
	}
	p.setStatus(ps, true, endpoint, now)
	ps.failing = model.ReasonNone
	p.state.LastSuccess = now
}

// setStatus gives a proxy a new health record; p.mu is held.
func (p *Proxies) setStatus(ps *proxyState, up bool, endpoint string, lastSuccess time.Time) {
	ps.status = &model.ProxyStatus{Mesh: p.kind.Mesh, Source: p.kind.Source, Namespace: ps.target.Namespace, Name: ps.target.Name,
		Up: up, Endpoint: endpoint, LastSuccess: lastSuccess}
	p.dirty = true
}

// sameObject reports whether two reads of a proxy found the same certificates and facts.
func sameObject(a, b *model.Object) bool {
	if a == nil || b == nil || a.TrustRootDigest != b.TrustRootDigest || len(a.Bundles) != len(b.Bundles) ||
		(a.Expect == nil) != (b.Expect == nil) || a.Expect != nil && *a.Expect != *b.Expect {
		return false
	}
	for i := range a.Bundles {
		x, y := a.Bundles[i], b.Bundles[i]
		if x.Key != y.Key || x.Purpose != y.Purpose || x.Error != y.Error || x.Export != y.Export || x.NoChain != y.NoChain ||
			x.NoIdentity != y.NoIdentity || (x.Expect == nil) != (y.Expect == nil) || x.Expect != nil && *x.Expect != *y.Expect ||
			!slices.EqualFunc(x.Certificates, y.Certificates, func(c, d *model.Certificate) bool { return c.Fingerprint == d.Fingerprint }) {
			return false
		}
	}
	return true
}

// State implements Source.
func (p *Proxies) State() model.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.swept && p.listed {
		p.swept = true
		for _, ps := range p.proxies {
			p.swept = p.swept && ps.status != nil
		}
	}
	if p.dirty {
		if p.order == nil { // sorted again only when proxies come or go, not on every read
			keys := slices.Sorted(maps.Keys(p.proxies))
			p.order = make([]*proxyState, len(keys))
			for i, k := range keys {
				p.order[i] = p.proxies[k]
			}
		}
		var objects []*model.Object
		if p.objectsChanged {
			objects = make([]*model.Object, 0, len(p.state.Objects)+1)
		}
		statuses := make([]*model.ProxyStatus, 0, len(p.state.Proxies)+1)
		p.state.Unread = 0
		for _, ps := range p.order {
			if ps.status == nil {
				p.state.Unread++ // not read yet
				continue
			}
			if ps.object != nil && p.objectsChanged {
				objects = append(objects, ps.object)
			}
			statuses = append(statuses, ps.status)
		}
		p.state.Proxies = statuses
		if p.objectsChanged {
			p.reporter.observe(&p.state, objects)
			p.state.Objects = objects
			p.state.Generation++
			p.objectsChanged = false
		}
		p.dirty = false
	}
	p.state.Synced = p.swept
	p.state.ReadInterval = p.settings.Interval
	// The source works while it can run reads; each proxy's health is meshcert_proxy_up, and
	// pod discovery's is the "pods" source's.
	p.state.Up = true
	s := p.state
	s.Errors = maps.Clone(s.Errors)
	return s
}

// ProxyConfig configures one kind of proxy: its section under proxies: in the configuration.
type ProxyConfig struct {
	// Enabled turns the source on; it needs list and watch on pods.
	Enabled bool `yaml:"enabled"`
	// Transport is port-forward (through the API server, for an admin port bound to the pod's
	// localhost) or direct (HTTP to the pod's IP).
	Transport string `yaml:"transport"`
	// AdminPort is the proxy's admin port.
	AdminPort int `yaml:"admin_port"`
	// Interval between two reads of one proxy.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one read.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many proxies are read at once.
	Concurrency int `yaml:"concurrency"`
	// Static are admin endpoints outside Kubernetes, for a kind that has them.
	Static []StaticTarget `yaml:"static"`
}

// StaticTarget is a proxy's admin endpoint outside Kubernetes.
type StaticTarget struct {
	// Name is the value of the name label.
	Name string `yaml:"name"`
	// URL is the admin base URL, e.g. http://10.0.0.5:9901.
	URL string `yaml:"url"`
}

// Validate checks the settings of a proxy of kind; an error starts with the name of the wrong
// field.
func (p ProxyConfig) Validate(kind ProxyKind) error {
	switch {
	case p.Transport != TransportPortForward && p.Transport != TransportDirect:
		return fmt.Errorf("transport: %q is not port-forward or direct", p.Transport)
	case p.AdminPort < 1 || p.AdminPort > 65535:
		return fmt.Errorf("admin_port: %d is not a port", p.AdminPort)
	case p.Interval < time.Second:
		return fmt.Errorf("interval: %s is shorter than 1s", p.Interval)
	case p.Timeout <= 0 || p.Timeout > p.Interval:
		return fmt.Errorf("timeout: %s is not between 0 and the interval", p.Timeout)
	case p.Concurrency < 1:
		return fmt.Errorf("concurrency: %d is less than 1", p.Concurrency)
	case len(p.Static) > 0 && !kind.Static:
		return fmt.Errorf("static: %s has no static targets (only a kind read outside Kubernetes has)", kind.Source)
	}
	for i, t := range p.Static {
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("static[%d].url: %q is not an http(s) URL", i, t.URL)
		}
		if t.Name == "" {
			return fmt.Errorf("static[%d].name: must not be empty", i)
		}
	}
	return nil
}

// Settings are how the proxy source reads: first reads of new proxies spread over a tenth of
// the interval, ten seconds at most.
func (p ProxyConfig) Settings() ProxySettings {
	return ProxySettings{AdminPort: p.AdminPort, Interval: p.Interval, Timeout: p.Timeout, Concurrency: p.Concurrency,
		StartSpread: min(p.Interval/10, 10*time.Second)}
}

// Targets are the static targets.
func (p ProxyConfig) Targets() []Target {
	var out []Target
	for _, t := range p.Static {
		out = append(out, Target{Name: t.Name, URL: t.URL})
	}
	return out
}
