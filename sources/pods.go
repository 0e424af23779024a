package sources

import (
	"context"
	"errors"
	"hash/fnv"
	"maps"
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

// Pod facts the proxy sources use; the transform reads these and keeps nothing else.
const (
	containerIstioProxy   = "istio-proxy"
	containerLinkerdProxy = "linkerd-proxy"
	labelApp              = "app"
	labelIstioTLSMode     = "security.istio.io/tlsMode"
	annotationTrustRoot   = "linkerd.io/trust-root-sha256"
)

// Sharding splits the meshed pods between replicas: a pod belongs to shard
// fnv32a(namespace/name) mod Total; with NodeName set only that node's pods are watched (a
// per-node DaemonSet), filtered by the API server.
type Sharding struct {
	Shard, Total int
	NodeName     string
}

// owns reports whether the pod namespace/name belongs to this shard.
func (s Sharding) owns(namespace, name string) bool {
	if s.Total <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(namespace + "/" + name))
	return int(h.Sum32()%uint32(s.Total)) == s.Shard
}

// SourcePods is the name of the pod discovery's health series.
const SourcePods = "pods"

// PodWatcher keeps what the proxy sources need of the running pods (of one node, when sharded by node), for the
// proxy sources to find meshed pods in. One watcher serves every proxy source. It is a Source of
// its own that exports no certificates: its health is meshcert_source_up{source="pods"}.
type PodWatcher struct {
	client   kubernetes.Interface
	sharding Sharding
	reporter *errorReporter

	// generation moves with every change to the pods, so readers list them only after one.
	generation atomic.Uint64

	once     sync.Once
	mu       sync.Mutex
	informer cache.SharedIndexInformer
	handler  cache.ResourceEventHandlerRegistration
	failing  model.ErrorReason
	state    State
}

// NewPodWatcher returns a watcher of running pods; it starts with the first proxy source that runs.
func NewPodWatcher(client kubernetes.Interface, sharding Sharding, logger log.Logger) *PodWatcher {
	return &PodWatcher{client: client, sharding: sharding, reporter: newErrorReporter(SourcePods, logger)}
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
func (w *PodWatcher) State() State {
	synced := w.Synced()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state
	s.Synced, s.Up = synced, synced && w.failing == model.ReasonNone
	if s.Up {
		w.state.LastSuccess = time.Now()
		s.LastSuccess = w.state.LastSuccess
	}
	s.Errors = maps.Clone(s.Errors)
	return s
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
		lw := &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = selector.String()
				list, err := w.client.CoreV1().Pods("").List(ctx, o)
				w.observe(err)
				return list, err
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = selector.String()
				wi, err := w.client.CoreV1().Pods("").Watch(ctx, o)
				w.observe(err)
				return wi, err
			},
		}
		inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
		_ = inf.SetTransform(stripPod)
		changed := func(any) { w.generation.Add(1) }
		reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: changed,
			UpdateFunc: func(_, obj any) { changed(obj) }, DeleteFunc: changed})
		w.mu.Lock()
		w.informer, w.handler = inf, reg
		w.mu.Unlock()
		go inf.RunWithContext(ctx)
	})
}

// Synced reports whether the first list has been received.
func (w *PodWatcher) Synced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.handler != nil && w.handler.HasSynced()
}

// Pods returns the running pods of this shard that run a proxy of kind, as targets. The targets
// are the cache's own: immutable, and replaced when their pod changes.
func (w *PodWatcher) Pods(kind podKind) []*Target {
	return w.list(func(p *podInfo) bool { return p.kind&kind != 0 && w.sharding.owns(p.Namespace, p.Name) })
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

// podKind says which proxies a pod runs.
type podKind uint8

// The proxies a pod can run.
const (
	podIstioProxy podKind = 1 << iota
	podZtunnel
	podLinkerdProxy
)

// podInfo is what the pod cache keeps of a running pod: the target its proxies are read at and
// which proxies it runs. A pod's spec and status can be tens of kilobytes; this is a few hundred
// bytes.
type podInfo struct {
	Target
	resourceVersion string
	kind            podKind
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
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	// Thousands of pods share a few namespaces, service accounts, nodes and trust-root digests:
	// one copy of each text is kept instead of one per pod.
	info := &podInfo{
		Target: Target{Namespace: unique.Make(p.Namespace).Value(), Name: p.Name, ServiceAccount: unique.Make(p.Spec.ServiceAccountName).Value(),
			Node: unique.Make(p.Spec.NodeName).Value(), IP: p.Status.PodIP, TrustRootDigest: unique.Make(p.Annotations[annotationTrustRoot]).Value()},
		resourceVersion: p.ResourceVersion,
	}
	switch {
	case p.Labels[labelApp] == "ztunnel":
		info.kind = podZtunnel
	case hasContainer(p, containerIstioProxy) || p.Labels[labelIstioTLSMode] == "istio":
		info.kind = podIstioProxy // a sidecar or a gateway
	}
	if hasContainer(p, containerLinkerdProxy) {
		info.kind |= podLinkerdProxy
	}
	return info, nil
}

// hasContainer reports whether the pod runs a container of that name, native sidecars included.
func hasContainer(p *corev1.Pod, name string) bool {
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
