package sources

import (
	"context"
	"errors"
	"hash/fnv"
	"maps"
	"sync"
	"time"

	"github.com/go-kit/log"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Pod facts the proxy sources use; the transform keeps these and nothing else.
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

// PodWatcher keeps a stripped copy of the running pods (of one node, when sharded by node), for the
// proxy sources to find meshed pods in. One watcher serves every proxy source. It is a Source of
// its own that exports no certificates: its health is meshcert_source_up{source="pods"}.
type PodWatcher struct {
	client   kubernetes.Interface
	sharding Sharding
	reporter *errorReporter

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
		reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{})
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

// Pods returns the stripped running pods of this shard that match.
func (w *PodWatcher) Pods(match func(*corev1.Pod) bool) []*corev1.Pod {
	return w.list(func(p *corev1.Pod) bool { return w.sharding.owns(p.Namespace, p.Name) && match(p) })
}

// podsOnNode returns every running pod of a node, whatever its shard.
func (w *PodWatcher) podsOnNode(node string) []*corev1.Pod {
	return w.list(func(p *corev1.Pod) bool { return p.Spec.NodeName == node })
}

func (w *PodWatcher) list(match func(*corev1.Pod) bool) []*corev1.Pod {
	w.mu.Lock()
	inf := w.informer
	w.mu.Unlock()
	if inf == nil {
		return nil
	}
	var out []*corev1.Pod
	for _, obj := range inf.GetStore().List() {
		p, ok := obj.(*corev1.Pod)
		if ok && match(p) {
			out = append(out, p)
		}
	}
	return out
}

// stripPod keeps what the proxy sources need: names, service account, node, IP, the container
// names, two labels and Linkerd's trust root annotation. A pod's spec and status can be tens of
// kilobytes; this is a few hundred bytes.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion},
		Spec:       corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName, NodeName: p.Spec.NodeName},
		Status:     corev1.PodStatus{PodIP: p.Status.PodIP, Phase: p.Status.Phase},
	}
	for _, k := range []string{labelApp, labelIstioTLSMode} {
		if v, ok := p.Labels[k]; ok {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[k] = v
		}
	}
	if v, ok := p.Annotations[annotationTrustRoot]; ok {
		out.Annotations = map[string]string{annotationTrustRoot: v}
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name})
	}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways { // native sidecars
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name})
		}
	}
	return out, nil
}

func hasContainer(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// isZtunnel selects ztunnel, Istio ambient's node proxy.
func isZtunnel(p *corev1.Pod) bool { return p.Labels[labelApp] == "ztunnel" }

// isIstioProxy selects Istio sidecars and gateways: an istio-proxy container or the label the
// injector sets; not ztunnel.
func isIstioProxy(p *corev1.Pod) bool {
	return !isZtunnel(p) && (hasContainer(p, containerIstioProxy) || p.Labels[labelIstioTLSMode] == "istio")
}

// isLinkerdProxy selects Linkerd-injected pods.
func isLinkerdProxy(p *corev1.Pod) bool { return hasContainer(p, containerLinkerdProxy) }
