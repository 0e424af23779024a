package sources

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-kit/log/level"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// SourcePosture is the name of the posture source's health series.
const SourcePosture = "posture"

// PostureSettings configure the posture source (the configuration's posture section).
type PostureSettings struct {
	// Enabled turns the source on: it watches the meshes' policies and the namespaces.
	Enabled bool `yaml:"enabled"`
	// RetryInterval is how often a kind the API server does not serve (a mesh's CRD not
	// installed) is looked for again.
	RetryInterval time.Duration `yaml:"retry_interval"`
}

// DefaultPostureSettings are the posture source's defaults: off, a missing kind looked for every
// minute.
func DefaultPostureSettings() PostureSettings { return PostureSettings{RetryInterval: time.Minute} }

// Validate checks the settings; an error starts with the name of the wrong field.
func (s PostureSettings) Validate() error {
	if s.RetryInterval < 100*time.Millisecond {
		return fmt.Errorf("retry_interval: %s is shorter than 100ms", s.RetryInterval)
	}
	return nil
}

// ResourceWatch watches one kind of object through the dynamic client and reads each into a
// posture record. Versions are tried in order: the first the API server serves is watched; when it
// serves none (the mesh's CRD is not installed), the kind is absent, which is no error.
type ResourceWatch struct {
	Group, Resource string
	Versions        []string
	Read            func(u *unstructured.Unstructured) *model.PostureRecord
}

// Resources is the posture source: one informer per resource kind the meshes judge posture by
// (meshes that watch the same kind, the namespaces, share it), whose transform keeps only each
// mesh's record of each object.
type Resources struct {
	dyn      dynamic.Interface
	disc     discovery.DiscoveryInterface
	watches  []*kindWatch
	retry    time.Duration
	env      Env
	reporter *errorReporter

	mu       sync.Mutex
	records  map[string]*model.PostureRecord // by watch index and namespace/name
	dirty    bool
	started  []bool // per watch: its informer runs
	checked  []bool // per watch: discovery has answered once
	handlers []cache.ResourceEventHandlerRegistration
	failing  map[int]model.ErrorReason
	state    model.State
}

// kindWatch is the watches of one kind: one informer, each watch's Read applied to every object.
type kindWatch struct {
	group, resource string
	versions        []string
	reads           []func(u *unstructured.Unstructured) *model.PostureRecord
}

// NewResources returns the posture source of watches; a kind not served yet is looked for again
// every retry.
func NewResources(dyn dynamic.Interface, disc discovery.DiscoveryInterface, watches []*ResourceWatch, retry time.Duration, env Env) *Resources {
	var kinds []*kindWatch
	for _, w := range watches {
		i := slices.IndexFunc(kinds, func(k *kindWatch) bool { return k.group == w.Group && k.resource == w.Resource })
		if i < 0 {
			kinds = append(kinds, &kindWatch{group: w.Group, resource: w.Resource, versions: w.Versions})
			i = len(kinds) - 1
		}
		kinds[i].reads = append(kinds[i].reads, w.Read)
	}
	return &Resources{dyn: dyn, disc: disc, watches: kinds, retry: retry, env: env,
		reporter: newErrorReporter(SourcePosture, env.Logger), records: map[string]*model.PostureRecord{},
		started: make([]bool, len(kinds)), checked: make([]bool, len(kinds)), failing: map[int]model.ErrorReason{}}
}

// Name implements model.Source.
func (r *Resources) Name() string { return SourcePosture }

// Reasons implements model.ReasonLister.
func (r *Resources) Reasons() []model.ErrorReason { return watchReasons }

// Run implements model.Source: each watch starts once its kind is served.
func (r *Resources) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, w := range r.watches {
		wg.Go(func() { r.runWatch(ctx, i, w) })
	}
	<-ctx.Done()
	return nil
}

// runWatch waits until the API server serves w's kind, then runs its informer until ctx is done.
func (r *Resources) runWatch(ctx context.Context, i int, w *kindWatch) {
	for {
		gvr, err := r.served(w)
		r.mu.Lock()
		r.checked[i] = true
		r.mu.Unlock()
		if err == nil {
			r.inform(ctx, i, w, gvr)
			return
		}
		level.Debug(r.env.Logger).Log("msg", "resource not served, looked for again later", "source", SourcePosture,
			"resource", w.resource+"."+w.group, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.retry):
		}
	}
}

var errNotServed = errors.New("not served")

// served returns the first version of w's kind the API server serves.
func (r *Resources) served(w *kindWatch) (schema.GroupVersionResource, error) {
	for _, v := range w.versions {
		gv := schema.GroupVersion{Group: w.group, Version: v}
		list, err := r.disc.ServerResourcesForGroupVersion(gv.String())
		if err != nil {
			continue
		}
		for _, res := range list.APIResources {
			if res.Name == w.resource {
				return gv.WithResource(w.resource), nil
			}
		}
	}
	return schema.GroupVersionResource{}, fmt.Errorf("%s.%s: %w", w.resource, w.group, errNotServed)
}

// postureObject is all the informer keeps of an object: its identity and each mesh's record.
type postureObject struct {
	metav1.ObjectMeta
	records []*model.PostureRecord
}

// GetObjectKind implements runtime.Object.
func (p *postureObject) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object; the record is immutable and shared.
func (p *postureObject) DeepCopyObject() runtime.Object {
	cp := *p
	cp.ObjectMeta = *p.ObjectMeta.DeepCopy()
	return &cp
}

// inform runs the informer of watch i on gvr until ctx is done.
func (r *Resources) inform(ctx context.Context, i int, w *kindWatch, gvr schema.GroupVersionResource) {
	res := r.dyn.Resource(gvr)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			list, err := res.List(ctx, o)
			r.observe(i, err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			wi, err := res.Watch(ctx, o)
			r.observe(i, err)
			return wi, err
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	_ = inf.SetTransform(func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil // already read
		}
		p := &postureObject{ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion()}}
		for _, read := range w.reads {
			p.records = append(p.records, read(u))
		}
		return p, nil
	})
	object := func(obj any) (*postureObject, bool) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		p, ok := obj.(*postureObject)
		return p, ok
	}
	key := func(p *postureObject, read int) string {
		return fmt.Sprintf("%d/%d/%s/%s", i, read, p.Namespace, p.Name)
	}
	store := func(obj any) {
		p, ok := object(obj)
		if !ok {
			return
		}
		r.mu.Lock()
		for j, rec := range p.records {
			if rec != nil {
				r.records[key(p, j)] = rec
			} else {
				delete(r.records, key(p, j))
			}
		}
		r.dirty = true
		r.mu.Unlock()
	}
	reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    store,
		UpdateFunc: func(_, obj any) { store(obj) },
		DeleteFunc: func(obj any) {
			if p, ok := object(obj); ok {
				r.mu.Lock()
				for j := range p.records {
					delete(r.records, key(p, j))
				}
				r.dirty = true
				r.mu.Unlock()
			}
		},
	})
	r.mu.Lock()
	r.started[i] = true
	r.handlers = append(r.handlers, reg)
	r.mu.Unlock()
	inf.RunWithContext(ctx)
}

// observe records the outcome of a list or watch call of watch i. A kind removed while watched
// (its CRD deleted) answers NotFound: it is absent, not failing.
func (r *Resources) observe(i int, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if apierrors.IsNotFound(err) {
		err = nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	observeWatch(r.failing, r.reporter, &r.state, i, err)
}

// State implements model.Source.
func (r *Resources) State() model.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	synced := !slices.Contains(r.checked, false)
	for _, h := range r.handlers {
		synced = synced && h.HasSynced()
	}
	if r.dirty {
		keys := slices.Sorted(maps.Keys(r.records))
		records := make([]*model.PostureRecord, len(keys))
		for i, k := range keys {
			records[i] = r.records[k]
		}
		r.state.Posture = records
		r.state.PostureGeneration++
		r.dirty = false
	}
	r.state.Synced = synced
	r.state.Up = synced && len(r.failing) == 0
	if r.state.Up {
		r.state.LastSuccess = time.Now()
	}
	s := r.state
	s.Errors = maps.Clone(s.Errors)
	return s
}
