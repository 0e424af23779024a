package sources

import (
	"context"
	"errors"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// The `source` label values of certificates read from Kubernetes.
const (
	SourceSecret    = "secret"
	SourceConfigMap = "configmap"
)

// kubeData is a Secret or ConfigMap as a watch reads it: its name and the values of the keys the
// watch keeps. A private key is present by name only, with a nil value.
type kubeData struct {
	namespace, name string
	data            map[string][]byte
	tooLarge        []string
}

// keys returns the data keys, sorted.
func (d kubeData) keys() []string {
	keys := make([]string, 0, len(d.data))
	for k := range d.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parse parses the value of key.
func (d kubeData) parse(key string) ([]*model.Certificate, model.ErrorReason) {
	if slices.Contains(d.tooLarge, key) {
		return nil, model.ReasonTooLarge
	}
	return parseValue(d.data[key])
}

// readResult is what a watch makes of one object.
type readResult struct {
	object *model.Object
	meshes map[model.Mesh]model.MeshSettings
}

// kubeWatch is one informer: a selection of objects and how each is read into the model.
type kubeWatch struct {
	namespace     string
	fieldSelector fields.Selector
	labelSelector string
	// keep says which data keys the transform keeps the values of. Private keys never keep theirs.
	keep func(key string) bool
	read func(d kubeData) readResult
}

// Kube reads certificates from Kubernetes Secrets or ConfigMaps through informers (one list, then
// a watch), never a request per scrape. Each informer watches only what it needs (by name, label
// or field selector) and its transform reads every object into the model before the object is
// cached: no value (no PEM, no private key, no unrelated data) ever sits in the cache.
type Kube struct {
	name    string
	secrets bool
	client  kubernetes.Interface
	watches []*kubeWatch
	// adjust sees the objects of all watches together (istiod ignores istio-ca-secret when cacerts
	// exists): it may return changed copies, never change its input.
	adjust   func([]*model.Object) []*model.Object
	reporter *errorReporter

	mu        sync.Mutex
	results   map[resultKey]storedResult
	dirty     bool
	informers []cache.SharedIndexInformer
	// handlers have synced once this source's handler has seen every object of the first list,
	// which is later than the informer's own cache.
	handlers []cache.ResourceEventHandlerRegistration
	failing  map[int]model.ErrorReason
	state    State
}

// storedResult is the read result of one object at one resource version.
type storedResult struct {
	readResult
	resourceVersion string
}

type resultKey struct {
	watch           int
	namespace, name string
}

func newKube(name string, secrets bool, client kubernetes.Interface, watches []*kubeWatch, logger log.Logger) *Kube {
	return &Kube{
		name: name, secrets: secrets, client: client, watches: watches,
		reporter: newErrorReporter(name, logger),
		results:  map[resultKey]storedResult{},
		failing:  map[int]model.ErrorReason{},
	}
}

// Name implements Source.
func (k *Kube) Name() string { return k.name }

// Run implements Source: it starts one informer per watch and returns when ctx is done.
func (k *Kube) Run(ctx context.Context) error {
	var (
		informers []cache.SharedIndexInformer
		handlers  []cache.ResourceEventHandlerRegistration
	)
	for i, w := range k.watches {
		inf := cache.NewSharedIndexInformer(k.listWatch(ctx, i, w), k.exampleObject(), 0, cache.Indexers{})
		if err := inf.SetTransform(k.transform(w)); err != nil {
			return err
		}
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { k.store(i, obj) },
			UpdateFunc: func(_, obj any) { k.store(i, obj) },
			DeleteFunc: func(obj any) { k.remove(i, obj) },
		})
		if err != nil {
			return err
		}
		informers, handlers = append(informers, inf), append(handlers, reg)
	}
	k.mu.Lock()
	k.informers, k.handlers = informers, handlers
	k.mu.Unlock()
	var wg sync.WaitGroup
	for _, inf := range informers {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	wg.Wait()
	return nil
}

func (k *Kube) exampleObject() runtime.Object {
	if k.secrets {
		return &corev1.Secret{}
	}
	return &corev1.ConfigMap{}
}

// listWatch lists and watches with the watch's selectors and records whether each call worked,
// which is the source's health.
func (k *Kube) listWatch(ctx context.Context, i int, w *kubeWatch) *cache.ListWatch {
	tweak := func(o *metav1.ListOptions) {
		if w.fieldSelector != nil {
			o.FieldSelector = w.fieldSelector.String()
		}
		o.LabelSelector = w.labelSelector
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			var (
				obj runtime.Object
				err error
			)
			if k.secrets {
				obj, err = k.client.CoreV1().Secrets(w.namespace).List(ctx, o)
			} else {
				obj, err = k.client.CoreV1().ConfigMaps(w.namespace).List(ctx, o)
			}
			k.observeCall(i, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			var (
				wi  watch.Interface
				err error
			)
			if k.secrets {
				wi, err = k.client.CoreV1().Secrets(w.namespace).Watch(ctx, o)
			} else {
				wi, err = k.client.CoreV1().ConfigMaps(w.namespace).Watch(ctx, o)
			}
			k.observeCall(i, err)
			return wi, err
		},
	}
}

// observeCall records the outcome of a list or watch call of watch i.
func (k *Kube) observeCall(i int, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.failing, i)
		if len(k.failing) == 0 {
			k.reporter.recovered()
		}
		return
	}
	reason := apiErrorReason(err)
	k.failing[i] = reason
	k.reporter.fail(&k.state, reason, err)
}

// apiErrorReason maps an API error to a bounded reason.
func apiErrorReason(err error) model.ErrorReason {
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return model.ReasonForbidden
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return model.ReasonTimeout
	default:
		return model.ReasonUnavailable
	}
}

// cachedObject is all the informer cache keeps of a Secret or ConfigMap: its identity and what its
// watch read from it. The transform parses the certificate data when the object arrives and keeps
// no value at all: no PEM (and never a private key) stays in memory, only the parsed model, whose
// certificates are shared with every other object that holds them.
type cachedObject struct {
	metav1.ObjectMeta // name, namespace, UID and resource version only
	result            readResult
}

// GetObjectKind implements runtime.Object.
func (c *cachedObject) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. The read result is immutable and shared.
func (c *cachedObject) DeepCopyObject() runtime.Object {
	cp := *c
	cp.ObjectMeta = *c.ObjectMeta.DeepCopy()
	return &cp
}

// transform reads an object into what the cache keeps of it (see cachedObject). Private keys are
// noted by name and wiped from the decoded object; a value over the size limit is not parsed.
// client-go may hand an object to the transform twice: an object already read is returned as is.
func (k *Kube) transform(w *kubeWatch) cache.TransformFunc {
	return func(obj any) (any, error) {
		var (
			meta metav1.ObjectMeta
			data map[string][]byte
		)
		switch o := obj.(type) {
		case *corev1.Secret:
			meta, data = o.ObjectMeta, o.Data
		case *corev1.ConfigMap:
			meta = o.ObjectMeta
			data = make(map[string][]byte, len(o.Data)+len(o.BinaryData))
			for key, v := range o.Data {
				data[key] = []byte(v)
			}
			for key, v := range o.BinaryData {
				data[key] = v
			}
		default:
			return obj, nil // already read, or a tombstone of an object already read
		}
		d := kubeData{namespace: meta.Namespace, name: meta.Name, data: map[string][]byte{}}
		for key, v := range data {
			switch {
			case IgnoredKey(key):
				if len(v) > 0 {
					d.data[key] = nil // present, value never kept
				}
				clear(v) // wipe the key from the decoded object before it is garbage
			case !w.keep(key):
			case len(v) > pki.MaxBundleBytes:
				d.data[key] = nil
				d.tooLarge = append(d.tooLarge, key)
			default:
				d.data[key] = v
			}
		}
		return &cachedObject{
			ObjectMeta: metav1.ObjectMeta{Name: meta.Name, Namespace: meta.Namespace, UID: meta.UID, ResourceVersion: meta.ResourceVersion},
			result:     w.read(d), // parsing happens here, once per change
		}, nil
	}
}

// cachedOf returns the cached form of an informer object or tombstone.
func cachedOf(obj any) (*cachedObject, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	c, ok := obj.(*cachedObject)
	return c, ok
}

func (k *Kube) store(i int, obj any) {
	c, ok := cachedOf(obj)
	if !ok {
		return
	}
	key := resultKey{i, c.Namespace, c.Name}
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.results[key]; ok && old.resourceVersion == c.ResourceVersion {
		return // a relist handed back an unchanged object: keep its model, no new analysis
	}
	k.results[key] = storedResult{readResult: c.result, resourceVersion: c.ResourceVersion}
	k.dirty = true
}

func (k *Kube) remove(i int, obj any) {
	c, ok := cachedOf(obj)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.results, resultKey{i, c.Namespace, c.Name})
	k.dirty = true
}

// CachedObjects returns every object the informers cache, as their transform left it (a
// *cachedObject): for tests and debugging, to show what the exporter keeps in memory.
func (k *Kube) CachedObjects() []any {
	k.mu.Lock()
	informers := k.informers
	k.mu.Unlock()
	var out []any
	for _, inf := range informers {
		out = append(out, inf.GetStore().List()...)
	}
	return out
}

// State implements Source. Objects are rebuilt only after a change.
func (k *Kube) State() State {
	k.mu.Lock()
	defer k.mu.Unlock()
	synced := len(k.handlers) == len(k.watches)
	for _, h := range k.handlers {
		synced = synced && h.HasSynced()
	}
	if k.dirty {
		k.rebuild()
	}
	k.state.Synced = synced
	// Not up until every informer has synced, and not while any list or watch fails.
	k.state.Up = synced && len(k.failing) == 0
	if k.state.Up {
		k.state.LastSuccess = time.Now() // the watches are live: the cache is current now
	}
	s := k.state
	s.Errors = maps.Clone(s.Errors)
	return s
}

// rebuild turns the read results into the state's objects; k.mu is held.
func (k *Kube) rebuild() {
	keys := make([]resultKey, 0, len(k.results))
	for key := range k.results {
		keys = append(keys, key)
	}
	slices.SortFunc(keys, func(a, b resultKey) int {
		if c := strings.Compare(a.namespace, b.namespace); c != 0 {
			return c
		}
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return a.watch - b.watch
	})
	var objects []*model.Object
	meshes := map[model.Mesh]model.MeshSettings{}
	for _, key := range keys {
		r := k.results[key]
		if r.object != nil {
			objects = append(objects, r.object)
		}
		for m, s := range r.meshes {
			meshes[m] = meshes[m].Merge(s)
		}
	}
	if k.adjust != nil {
		objects = k.adjust(objects)
	}
	k.reporter.observe(&k.state, objects)
	k.state.Objects, k.state.Meshes = objects, meshes
	k.state.Generation++
	k.dirty = false
}

// matchAny reports whether key matches one of the glob patterns; no patterns match everything.
func matchAny(patterns []string, key string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, key); ok {
			return true
		}
	}
	return false
}
