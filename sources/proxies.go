package sources

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/share"
)

// The `source` label values of the proxy sources.
const (
	SourceEnvoy        = "envoy"
	SourceZtunnel      = "ztunnel"
	SourceLinkerdProxy = "linkerd-proxy"
)

// ProxySettings say how often and how hard a proxy source reads its proxies.
type ProxySettings struct {
	// AdminPort is the proxy's admin port.
	AdminPort int
	// Interval between two reads of one proxy; each read is moved by up to a tenth of it at
	// random, so reads spread out instead of bunching.
	Interval time.Duration
	// Timeout of one read; a hanging proxy costs one slot for this long.
	Timeout time.Duration
	// Concurrency is how many proxies are read at once.
	Concurrency int
	// StartSpread spreads the first reads of new proxies over this long, so a start does not hit
	// every proxy at the same moment.
	StartSpread time.Duration
}

// proxyReader reads one proxy with a transport into bundles, naming the endpoint they came from.
type proxyReader func(ctx context.Context, tr Transport, t Target, port int) (bundles []model.Bundle, endpoint string, err error)

// Proxies reads the certificates proxies serve, in the background, and serves the last result of
// each at scrape time. Pods come from a PodWatcher (pods that go away drop their series); static
// targets from the configuration.
type Proxies struct {
	name      string
	mesh      model.Mesh
	kind      podKind
	read      proxyReader
	settings  ProxySettings
	transport Transport
	pods      *PodWatcher
	static    []Target
	logger    log.Logger
	reporter  *errorReporter
	// expect says whether a target's certificates must carry its pod's identity.
	expect bool

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
	state                 State
}

// proxyState is what is known of one proxy.
type proxyState struct {
	// target is the pod cache's (or the configuration's) record of the proxy, shared, not copied.
	target *Target
	object *model.Object // of the last successful read
	// status is the proxy's health as handed out, replaced when it changes; nil until the first
	// read is done.
	status *model.ProxyStatus
	// nextRead is when the proxy is read next, on the source's clock (since its epoch): 8 bytes
	// where a time.Time takes 24, which puts the state of each of ten thousand proxies in the
	// 64-byte size class instead of 80.
	nextRead time.Duration
	inFlight bool
	failing  model.ErrorReason
}

// NewEnvoyProxies reads Envoy admin endpoints of Istio sidecars and gateways (and static Envoy
// targets): /config_dump for the secrets, /certs when that is refused.
func NewEnvoyProxies(pods *PodWatcher, static []Target, tr Transport, s ProxySettings, logger log.Logger) *Proxies {
	return newProxies(SourceEnvoy, model.MeshIstio, podIstioProxy, readEnvoy, pods, static, tr, s, logger)
}

// NewZtunnelProxies reads ztunnel's /config_dump on every node.
func NewZtunnelProxies(pods *PodWatcher, tr Transport, s ProxySettings, logger log.Logger) *Proxies {
	p := newProxies(SourceZtunnel, model.MeshIstio, podZtunnel, nil, pods, nil, tr, s, logger)
	p.read = p.readZtunnel
	p.expect = false // a ztunnel holds the identities of its node's workloads, not its own
	return p
}

// NewLinkerdProxies reads Linkerd proxies' metrics on their admin port.
func NewLinkerdProxies(pods *PodWatcher, tr Transport, s ProxySettings, logger log.Logger) *Proxies {
	return newProxies(SourceLinkerdProxy, model.MeshLinkerd, podLinkerdProxy, readLinkerdProxy, pods, nil, tr, s, logger)
}

func newProxies(name string, mesh model.Mesh, kind podKind, read proxyReader, pods *PodWatcher, static []Target,
	tr Transport, s ProxySettings, logger log.Logger) *Proxies {
	return &Proxies{name: name, mesh: mesh, kind: kind, read: read, settings: s, transport: tr, pods: pods, static: static,
		logger: logger, reporter: newErrorReporter(name, logger), expect: true, proxies: map[string]*proxyState{}, epoch: time.Now()}
}

// clock is now on the source's clock: time since its epoch, on the monotonic clock.
func (p *Proxies) clock(now time.Time) time.Duration { return now.Sub(p.epoch) }

// Name implements Source.
func (p *Proxies) Name() string { return p.name }

// parseSlots bound how many proxy answers are parsed at once to one less than the cores Go may use
// (one at least): parsing and verifying certificates is the CPU-heavy part of a sweep of thousands
// of proxies, and a scrape must always find a core free.
var parseSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1))

// parsing runs parse in a parse slot.
func parsing(parse func() ([]model.Bundle, error)) ([]model.Bundle, error) {
	parseSlots <- struct{}{}
	defer func() { <-parseSlots }()
	return parse()
}

// readEnvoy prefers /config_dump (whole chains) and falls back to /certs (leaf and first root
// only) when config_dump is refused.
func readEnvoy(ctx context.Context, tr Transport, t Target, port int) ([]model.Bundle, string, error) {
	body, err := tr.Get(ctx, t, port, EnvoySecretsPath)
	if err == nil {
		b, err := parsing(func() ([]model.Bundle, error) { return ParseEnvoyConfigDump(body) })
		clear(body)
		return b, "config_dump", badResponse(err)
	}
	// Only a refusal (an admin that filters paths, an old Envoy) falls back; a failing proxy does not.
	var se statusError
	if !errors.As(err, &se) || se.code != http.StatusForbidden && se.code != http.StatusNotFound && se.code != http.StatusNotImplemented {
		return nil, "config_dump", err
	}
	body, err = tr.Get(ctx, t, port, EnvoyCertsPath)
	if err != nil {
		return nil, "certs", err
	}
	b, err := parsing(func() ([]model.Bundle, error) { return ParseEnvoyCerts(body, t.key()) })
	return b, "certs", badResponse(err)
}

func readLinkerdProxy(ctx context.Context, tr Transport, t Target, port int) ([]model.Bundle, string, error) {
	body, err := tr.Get(ctx, t, port, LinkerdMetricsPath)
	if err != nil {
		return nil, "metrics", err
	}
	b, err := parsing(func() ([]model.Bundle, error) { return ParseLinkerdProxyMetrics(body, t.key()) })
	return b, "metrics", badResponse(err)
}

func (p *Proxies) readZtunnel(ctx context.Context, tr Transport, t Target, port int) ([]model.Bundle, string, error) {
	body, err := tr.Get(ctx, t, port, ZtunnelConfigDumpPath)
	if err != nil {
		return nil, "config_dump", err
	}
	// Workloads on the ztunnel's node, by namespace and service account.
	onNode := map[string]bool{}
	if p.pods != nil {
		for _, pod := range p.pods.podsOnNode(t.Node) {
			onNode[pod.Namespace+"/"+pod.ServiceAccount] = true
		}
	}
	b, err := parsing(func() ([]model.Bundle, error) {
		return ParseZtunnelConfigDump(body, t.key(), func(ns, sa string) bool { return onNode[ns+"/"+sa] })
	})
	return b, "config_dump", badResponse(err)
}

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
	for _, t := range p.pods.Pods(p.kind) {
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

// readOne reads one proxy and records the outcome.
func (p *Proxies) readOne(ctx context.Context, ps *proxyState) {
	p.mu.Lock()
	t := *ps.target
	p.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, p.settings.Timeout)
	bundles, endpoint, err := p.read(rctx, p.transport, t, p.settings.AdminPort)
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
	ps.nextRead = p.clock(now) + p.settings.Interval - p.settings.Interval/20 + jitter(p.settings.Interval/10)
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
			level.Warn(p.logger).Log("msg", "cannot read proxy", "source", p.name, "namespace", t.Namespace, "name", t.Name,
				"endpoint", endpoint, "reason", reason, "err", err)
		}
		ps.failing = reason
		return
	}
	o := &model.Object{Source: p.name, Namespace: t.Namespace, Name: t.Name, Mesh: p.mesh, Bundles: bundles, TrustRootDigest: t.TrustRootDigest}
	if p.expect && t.ServiceAccount != "" {
		o.Expect = share.Of(expectations, model.Identity{Namespace: t.Namespace, ServiceAccount: t.ServiceAccount})
	}
	if !sameObject(ps.object, o) {
		ps.object = o
		p.objectsChanged = true // most reads return what the proxy served before: no new analysis then
	}
	p.setStatus(ps, true, endpoint, now)
	ps.failing = model.ReasonNone
	p.state.LastSuccess = now
}

// expectations hold one record per expected identity: the replicas of a workload, often
// hundreds of pods, expect the same one.
var expectations = share.NewTable[model.Identity, model.Identity]()

// setStatus gives a proxy a new health record; p.mu is held.
func (p *Proxies) setStatus(ps *proxyState, up bool, endpoint string, lastSuccess time.Time) {
	ps.status = &model.ProxyStatus{Mesh: p.mesh, Source: p.name, Namespace: ps.target.Namespace, Name: ps.target.Name,
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
func (p *Proxies) State() State {
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
		for _, ps := range p.order {
			if ps.status == nil {
				continue // not read yet
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
	// The source works while it can run reads; each proxy's health is meshcert_proxy_up, and
	// pod discovery's is the "pods" source's.
	p.state.Up = true
	s := p.state
	s.Errors = maps.Clone(s.Errors)
	return s
}
