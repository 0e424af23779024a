package sources

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/go-kit/log"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Sharding splits the meshed pods between replicas: a pod belongs to shard
// fnv32a(namespace/name) mod TotalShards, and a shard keeps only its own pods (unless it reads a
// node proxy, whose reader checks every pod of its node); with NodeName set only that node's pods
// are watched (a per-node DaemonSet), filtered by the API server. It is the shard, total_shards
// and node_name of the configuration's proxies section.
type Sharding struct {
	Shard       int `yaml:"shard"`
	TotalShards int `yaml:"total_shards"`
	// NodeName restricts the proxies to one node's pods.
	NodeName string `yaml:"node_name"`
}

// Validate checks the shard; an error starts with the name of the wrong field.
func (s Sharding) Validate() error {
	if s.TotalShards < 1 || s.Shard < 0 || s.Shard >= s.TotalShards {
		return fmt.Errorf("shard: %d is not in [0, total_shards=%d)", s.Shard, s.TotalShards)
	}
	return nil
}

// Share names the share of the pods a replica with these settings reads: "all", "shard-<i>-of-<n>",
// "node-<name>", or "node-<name>-shard-<i>-of-<n>" for a node's pods split between shards.
// Replicas with the same share read the same pods (copies, for availability); replicas with
// different shares read different pods, and their counts of what they read from pods add up.
func (s Sharding) Share() string {
	var parts []string
	if s.NodeName != "" {
		parts = append(parts, "node-"+s.NodeName)
	}
	if s.TotalShards > 1 {
		parts = append(parts, fmt.Sprintf("shard-%d-of-%d", s.Shard, s.TotalShards))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, "-")
}

// owns reports whether the pod namespace/name belongs to this shard.
func (s Sharding) owns(namespace, name string) bool {
	if s.TotalShards <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(namespace + "/" + name))
	return int(h.Sum32()%uint32(s.TotalShards)) == s.Shard
}

// SourcePods is the name of the pod discovery's health series.
const SourcePods = "pods"

// PodEnrolment is how one mesh shows in a pod, for the posture judgement.
type PodEnrolment struct {
	Mesh model.Mesh
	// Meshed reports whether the mesh takes the pod in: its proxy runs there, or a node proxy
	// serves it.
	Meshed func(p *corev1.Pod) bool
	// OwnContainers are the names of the mesh's own containers, which may hold the network rights
	// an application container must not (the init container that writes the redirect rules).
	OwnContainers []string
	// PolicyAnnotation is the pod annotation by which a workload overrides the mesh's default
	// policy; empty for a mesh without one.
	PolicyAnnotation string
}

// maxEnrolments bounds the meshes a pod watcher records: each has a bit of a byte.
const maxEnrolments = 8

// podListInterval is the least time between two lists of the pods for the posture judgement, so
// that a cluster whose pods churn is judged about once a second, not on every change.
const podListInterval = time.Second

// PodWatcher keeps what the proxy sources and the posture judgement need of the running pods (of
// one node, when sharded by node): one informer serves every proxy source and the judgement. It is
// a Source of its own that exports no certificates: its health is meshcert_source_up{source="pods"}.
type PodWatcher struct {
	client     kubernetes.Interface
	sharding   Sharding
	kinds      []ProxyKind
	enrolments []PodEnrolment
	// meshSets are the lists of meshes each combination of enrolment bits stands for, shared by
	// every pod with that combination.
	meshSets [][]model.Mesh
	// own are the containers some mesh calls its own.
	own      map[string]bool
	reporter *errorReporter

	// generation moves with every change to the pods, so readers list them only after one.
	generation atomic.Uint64

	once     sync.Once
	mu       sync.Mutex
	informer cache.SharedIndexInformer
	handler  cache.ResourceEventHandlerRegistration
	failing  model.ErrorReason
	state    model.State
	// listed is the generation the pods of state were listed at, and when.
	listed   uint64
	listedAt time.Time
}

// NewPodWatcher returns a watcher of the running pods that run a proxy of kinds (at most 32) and,
// for the posture judgement, of how each of enrolments (at most 8; none: no posture) shows in every
// pod. It starts with the first source that runs.
func NewPodWatcher(client kubernetes.Interface, sharding Sharding, kinds []ProxyKind, enrolments []PodEnrolment, logger log.Logger) *PodWatcher {
	w := &PodWatcher{client: client, sharding: sharding, kinds: kinds[:min(len(kinds), 32)],
		enrolments: enrolments[:min(len(enrolments), maxEnrolments)], own: map[string]bool{}, reporter: newErrorReporter(SourcePods, logger)}
	w.meshSets = make([][]model.Mesh, 1<<len(w.enrolments))
	for bits := range w.meshSets {
		for i, e := range w.enrolments {
			if bits&(1<<i) != 0 {
				w.meshSets[bits] = append(w.meshSets[bits], e.Mesh)
			}
		}
	}
	for _, e := range w.enrolments {
		for _, c := range e.OwnContainers {
			w.own[c] = true
		}
	}
	return w
}

// Name implements Source.
func (w *PodWatcher) Name() string { return SourcePods }

// Run implements Source.
func (w *PodWatcher) Run(ctx context.Context) error {
	w.run(ctx)
	<-ctx.Done()
	return nil
}

// State implements Source.
func (w *PodWatcher) State() model.State {
	synced := w.Synced()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.enrolments) > 0 && synced {
		w.listPosture()
	}
	s := w.state
	s.Synced, s.Up = synced, synced && w.failing == model.ReasonNone
	if s.Up {
		w.state.LastSuccess = time.Now()
		s.LastSuccess = w.state.LastSuccess
	}
	s.Errors = maps.Clone(s.Errors)
	return s
}

// listPosture lists this shard's pod records into the state when the pods changed, at most once
// every podListInterval. The caller holds w.mu.
func (w *PodWatcher) listPosture() {
	gen := w.generation.Load()
	if gen == w.listed && !w.listedAt.IsZero() || time.Since(w.listedAt) < podListInterval {
		return
	}
	objects := w.informer.GetStore().List()
	pods := make([]*model.PodRecord, 0, len(objects))
	for _, obj := range objects {
		if p, ok := obj.(*podInfo); ok && p.record != nil && w.sharding.owns(p.Namespace, p.Name) {
			pods = append(pods, p.record)
		}
	}
	w.state.Pods = pods
	w.state.PostureGeneration++
	w.listed, w.listedAt = gen, time.Now()
}

// observe records the outcome of a list or watch call.
func (w *PodWatcher) observe(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.failing = model.ReasonNone
		w.reporter.recovered()
		return
	}
	w.failing = apiErrorReason(err)
	w.reporter.fail(&w.state, w.failing, err)
}

// run starts the informer once, for the lifetime of ctx.
func (w *PodWatcher) run(ctx context.Context) {
	w.once.Do(func() {
		selector := fields.OneTermEqualSelector("status.phase", string(corev1.PodRunning))
		if w.sharding.NodeName != "" {
			selector = fields.AndSelectors(selector, fields.OneTermEqualSelector("spec.nodeName", w.sharding.NodeName))
		}
		// A shard keeps only its own pods (the API server cannot filter by hash, so the others
		// are dropped as they arrive), unless a node proxy is read: its reader checks the
		// identities it holds against every pod of its node, whatever their shard.
		keepAll := w.sharding.TotalShards <= 1 || slices.ContainsFunc(w.kinds, func(k ProxyKind) bool { return k.NodeProxy })
		lw := &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = selector.String()
				list, err := w.client.CoreV1().Pods("").List(ctx, o)
				w.observe(err)
				if err == nil && !keepAll {
					list.Items = slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return !w.sharding.owns(p.Namespace, p.Name) })
				}
				return list, err
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = selector.String()
				wi, err := w.client.CoreV1().Pods("").Watch(ctx, o)
				w.observe(err)
				if err == nil && !keepAll {
					wi = watch.Filter(wi, w.ownEvent)
				}
				return wi, err
			},
		}
		inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
		_ = inf.SetTransform(w.stripPod)
		changed := func(any) { w.generation.Add(1) }
		reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: changed,
			UpdateFunc: func(_, obj any) { changed(obj) }, DeleteFunc: changed})
		w.mu.Lock()
		w.informer, w.handler = inf, reg
		w.mu.Unlock()
		go inf.RunWithContext(ctx)
	})
}

// ownEvent keeps the watch events of this shard's pods, and every event that is not of one pod:
// bookmarks (the end of the initial events among them) and errors.
func (w *PodWatcher) ownEvent(e watch.Event) (watch.Event, bool) {
	p, ok := e.Object.(*corev1.Pod)
	return e, !ok || e.Type == watch.Bookmark || w.sharding.owns(p.Namespace, p.Name)
}

// Synced reports whether the first list has been received.
func (w *PodWatcher) Synced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.handler != nil && w.handler.HasSynced()
}

// Pods returns the running pods of this shard that run the proxy kind named source, as targets.
// The targets are the cache's own: immutable, and replaced when their pod changes.
func (w *PodWatcher) Pods(source string) []*Target {
	bit := w.bit(source)
	return w.list(func(p *podInfo) bool { return p.kinds&bit != 0 && w.sharding.owns(p.Namespace, p.Name) })
}

// bit is the bit of the kind named source in a podInfo's kinds; 0 for a kind not watched.
func (w *PodWatcher) bit(source string) uint32 {
	for i, k := range w.kinds {
		if k.Source == source {
			return 1 << i
		}
	}
	return 0
}

// podsOnNode returns every running pod of a node, whatever its shard.
func (w *PodWatcher) podsOnNode(node string) []*Target {
	return w.list(func(p *podInfo) bool { return p.Node == node })
}

func (w *PodWatcher) list(match func(*podInfo) bool) []*Target {
	w.mu.Lock()
	inf := w.informer
	w.mu.Unlock()
	if inf == nil {
		return nil
	}
	var out []*Target
	for _, obj := range inf.GetStore().List() {
		p, ok := obj.(*podInfo)
		if ok && match(p) {
			out = append(out, &p.Target)
		}
	}
	return out
}

// podInfo is what the pod cache keeps of a running pod: the target its proxies are read at,
// which proxies it runs and its posture record. A pod's spec and status can be tens of kilobytes;
// this is a few hundred bytes.
type podInfo struct {
	Target
	resourceVersion string
	// kinds has the bit of each watched proxy kind the pod runs.
	kinds uint32
	// record is the pod's posture record; nil when the watcher has no enrolments, so that proxies
	// alone pay nothing for posture.
	record *model.PodRecord
}

// GetObjectMeta implements metav1.ObjectMetaAccessor, which the informer's store keys objects by.
func (p *podInfo) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, ResourceVersion: p.resourceVersion}
}

// GetObjectKind implements runtime.Object.
func (p *podInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object; a podInfo is immutable.
func (p *podInfo) DeepCopyObject() runtime.Object { cp := *p; return &cp }

// stripPod reads a pod into its podInfo; an object already read is returned as is.
func (w *PodWatcher) stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	// Thousands of pods share a few namespaces, service accounts, nodes and trust-root digests:
	// one copy of each text is kept instead of one per pod.
	info := &podInfo{
		Target: Target{Namespace: unique.Make(p.Namespace).Value(), Name: p.Name, ServiceAccount: unique.Make(p.Spec.ServiceAccountName).Value(),
			Node: unique.Make(p.Spec.NodeName).Value(), IP: p.Status.PodIP},
		resourceVersion: p.ResourceVersion,
	}
	for i, k := range w.kinds {
		if !k.Runs(p) {
			continue
		}
		info.kinds |= 1 << i
		if d := p.Annotations[k.TrustRootAnnotation]; k.TrustRootAnnotation != "" && d != "" {
			info.TrustRootDigest = unique.Make(d).Value()
		}
	}
	if len(w.enrolments) > 0 {
		w.readPosture(p, info)
	}
	return info, nil
}

// readPosture gives info the posture record of p.
func (w *PodWatcher) readPosture(p *corev1.Pod, info *podInfo) {
	r := &model.PodRecord{Namespace: info.Namespace, Name: info.Name, HostNetwork: p.Spec.HostNetwork}
	info.record = r
	var meshed int
	for i, e := range w.enrolments {
		if e.Meshed != nil && e.Meshed(p) {
			meshed |= 1 << i
		}
		if v := p.Annotations[e.PolicyAnnotation]; e.PolicyAnnotation != "" && v != "" {
			r.Policies = append(r.Policies, model.PodPolicy{Mesh: e.Mesh, Value: unique.Make(v).Value()})
		}
	}
	r.Meshed = w.meshSets[meshed]
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			r.NetAdmin = r.NetAdmin || !w.own[cs[i].Name] && mayRewriteNetwork(cs[i].SecurityContext)
		}
	}
}

// mayRewriteNetwork reports whether a container with this security context may change its pod's
// network rules: it is privileged, or adds NET_ADMIN, NET_RAW or ALL.
func mayRewriteNetwork(sc *corev1.SecurityContext) bool {
	if sc == nil {
		return false
	}
	if sc.Privileged != nil && *sc.Privileged {
		return true
	}
	if sc.Capabilities == nil {
		return false
	}
	for _, c := range sc.Capabilities.Add {
		switch strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_") {
		case "NET_ADMIN", "NET_RAW", "ALL":
			return true
		}
	}
	return false
}

// RunsContainer reports whether the pod runs a container of that name, native sidecars included.
func RunsContainer(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range p.Spec.InitContainers {
		if c.Name == name && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return true
		}
	}
	return false
}
