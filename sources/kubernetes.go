package sources

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// Kind is the kind of Kubernetes object a watch reads.
type Kind uint8

// The kinds of objects the Kubernetes source reads.
const (
	Secrets Kind = iota
	ConfigMaps
)

// The `source` label values of certificates read from Kubernetes.
const (
	SourceSecret    = "secret"
	SourceConfigMap = "configmap"
)

// Source is the kind's value of the `source` label.
func (k Kind) Source() string {
	if k == Secrets {
		return SourceSecret
	}
	return SourceConfigMap
}

// Resource is the kind's API resource, as RBAC names it.
func (k Kind) Resource() string {
	if k == Secrets {
		return "secrets"
	}
	return "configmaps"
}

// Data is a Secret or ConfigMap as a watch reads it: its name and the values of the keys the
// watch keeps. A private key is present by name only, with a nil value.
type Data struct {
	Namespace, Name string
	kind            Kind
	data            map[string][]byte
	tooLarge        []string
	env             Env
	// issuedBy is the certificate cert-manager issued this Secret for, from its annotation.
	issuedBy string
}

// certManagerCertificate is the annotation cert-manager puts on each Secret it issues: the name of
// the Certificate resource that renews it.
const certManagerCertificate = "cert-manager.io/certificate-name"

// Manager is what rotates the certificate d holds, as model.Object's Manager says it.
func (d Data) Manager() string {
	if d.issuedBy != "" {
		return model.ManagerCertManager
	}
	return model.ManagerNone
}

// Keys returns the data keys, sorted.
func (d Data) Keys() []string {
	keys := make([]string, 0, len(d.data))
	for k := range d.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Value returns the value of key; nil for a private key, a value over the size limit or a key
// the watch does not keep.
func (d Data) Value(key string) []byte { return d.data[key] }

// Parse parses the value of key.
func (d Data) Parse(key string) ([]*model.Certificate, model.ErrorReason) {
	if slices.Contains(d.tooLarge, key) {
		return nil, model.ReasonTooLarge
	}
	return d.env.parse(d.data[key])
}

// ParseBundle parses certificates d holds in another form (a PEM bundle inside a YAML value).
func (d Data) ParseBundle(data []byte) ([]*model.Certificate, model.ErrorReason) {
	return d.env.Cache.ParseBundle(data)
}

// Layout decides how d is read from its keys, as a generic object of mesh (detected when empty).
func (d Data) Layout(mesh model.Mesh) Layout { return d.env.Layouts(mesh, d.Keys()) }

// Object builds the object of d in layout l.
func (d Data) Object(l Layout) Result {
	o := BuildObject(d.kind.Source(), d.Namespace, d.Name, l, d.Parse)
	o.KeyPairs = l.KeyPairs
	return Result{Object: o}
}

// ConfigError is the result of an object whose configuration key cannot be read.
func (d Data) ConfigError(key string) Result {
	return Result{Object: &model.Object{Source: d.kind.Source(), Namespace: d.Namespace, Name: d.Name,
		Bundles: []model.Bundle{{Key: key, Error: model.ReasonBadConfig}}}}
}

// Result is what a watch makes of one object: the object, and mesh settings read from it.
type Result struct {
	Object *model.Object
	Meshes map[model.Mesh]model.MeshSettings
}

// Watch is one informer: a selection of objects of one kind and how each is read into the model.
type Watch struct {
	Kind Kind
	// Namespace to watch; empty watches every namespace.
	Namespace string
	// Name selects one object by name (a metadata.name field selector, which RBAC can grant by
	// resource name); empty selects by the other fields.
	Name string
	// LabelSelector in Kubernetes syntax.
	LabelSelector string
	// Type selects Secrets of one type (a server-side field selector).
	Type string
	// Keep says which data keys the transform keeps the values of; nil keeps all. Private keys
	// never keep theirs.
	Keep func(key string) bool
	// Read makes the model of one object.
	Read func(d Data) Result
}

// fieldSelector is the watch's field selector, or nil.
func (w *Watch) fieldSelector() fields.Selector {
	var terms []fields.Selector
	if w.Name != "" {
		terms = append(terms, fields.OneTermEqualSelector("metadata.name", w.Name))
	}
	if w.Type != "" {
		terms = append(terms, fields.OneTermEqualSelector("type", w.Type))
	}
	if len(terms) == 0 {
		return nil
	}
	return fields.AndSelectors(terms...)
}

// keeps reports whether the watch keeps the value of key.
func (w *Watch) keeps(key string) bool { return w.Keep == nil || w.Keep(key) }

// Adjust sees the objects of every watch of one kind together (a mesh that ignores one of its
// objects while another exists): it may return changed copies, never change its input.
type Adjust func([]*model.Object) []*model.Object

// Kube reads certificates from Kubernetes Secrets or ConfigMaps through informers (one list, then
// a watch), never a request per scrape. Each informer watches only what it needs (by name, label
// or field selector) and its transform reads every object into the model before the object is
// cached: no value (no PEM, no private key, no unrelated data) ever sits in the cache.
type Kube struct {
	kind     Kind
	client   kubernetes.Interface
	watches  []*Watch
	adjust   []Adjust
	env      Env
	reporter *errorReporter

	mu        sync.Mutex
	results   map[resultKey]storedResult
	dirty     bool
	informers []cache.SharedIndexInformer
	// handlers have synced once this source's handler has seen every object of the first list,
	// which is later than the informer's own cache.
	handlers []cache.ResourceEventHandlerRegistration
	failing  map[int]model.ErrorReason
	state    model.State
}

// storedResult is the read result of one object at one resource version.
type storedResult struct {
	Result
	resourceVersion string
}

type resultKey struct {
	watch           int
	namespace, name string
}

// NewKube returns the source of the objects of kind that watches select; adjust, in order, see
// them together before they are handed out.
func NewKube(kind Kind, client kubernetes.Interface, watches []*Watch, adjust []Adjust, env Env) *Kube {
	return &Kube{
		kind: kind, client: client, watches: watches, adjust: adjust, env: env,
		reporter: newErrorReporter(kind.Source(), env.Logger),
		results:  map[resultKey]storedResult{},
		failing:  map[int]model.ErrorReason{},
	}
}

// Name implements model.Source.
func (k *Kube) Name() string { return k.kind.Source() }

// Run implements Source: it starts one informer per watch and returns when ctx is done.
func (k *Kube) Run(ctx context.Context) error {
	var (
		informers []cache.SharedIndexInformer
		handlers  []cache.ResourceEventHandlerRegistration
	)
	for i, w := range k.watches {
		inf := cache.NewSharedIndexInformer(k.listWatch(i, w), k.exampleObject(), 0, cache.Indexers{})
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
	if k.kind == Secrets {
		return &corev1.Secret{}
	}
	return &corev1.ConfigMap{}
}

// listWatch lists and watches with the watch's selectors and records whether each call worked,
// which is the source's health.
func (k *Kube) listWatch(i int, w *Watch) *cache.ListWatch {
	selector := w.fieldSelector()
	tweak := func(o *metav1.ListOptions) {
		if selector != nil {
			o.FieldSelector = selector.String()
		}
		o.LabelSelector = w.LabelSelector
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			var (
				obj runtime.Object
				err error
			)
			if k.kind == Secrets {
				obj, err = k.client.CoreV1().Secrets(w.Namespace).List(ctx, o)
			} else {
				obj, err = k.client.CoreV1().ConfigMaps(w.Namespace).List(ctx, o)
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
			if k.kind == Secrets {
				wi, err = k.client.CoreV1().Secrets(w.Namespace).Watch(ctx, o)
			} else {
				wi, err = k.client.CoreV1().ConfigMaps(w.Namespace).Watch(ctx, o)
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
	observeWatch(k.failing, k.reporter, &k.state, i, err)
}

// observeWatch records in failing (by watch) and s the outcome of a list or watch call of watch i,
// and reports a failure or a recovery once.
func observeWatch(failing map[int]model.ErrorReason, reporter *errorReporter, s *model.State, i int, err error) {
	if err == nil {
		delete(failing, i)
		if len(failing) == 0 {
			reporter.recovered()
		}
		return
	}
	reason := apiErrorReason(err)
	failing[i] = reason
	reporter.fail(s, reason, err)
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
	result            Result
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
func (k *Kube) transform(w *Watch) cache.TransformFunc {
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
		d := Data{Namespace: meta.Namespace, Name: meta.Name, kind: k.kind, data: map[string][]byte{}, env: k.env,
			issuedBy: meta.Annotations[certManagerCertificate]}
		for key, v := range data {
			switch {
			case IgnoredKey(key):
				if len(v) > 0 {
					d.data[key] = nil // present, value never kept
				}
				clear(v) // wipe the key from the decoded object before it is garbage
			case !w.keeps(key):
			case len(v) > pki.MaxBundleBytes:
				d.data[key] = nil
				d.tooLarge = append(d.tooLarge, key)
			default:
				d.data[key] = v
			}
		}
		return &cachedObject{
			ObjectMeta: metav1.ObjectMeta{Name: meta.Name, Namespace: meta.Namespace, UID: meta.UID, ResourceVersion: meta.ResourceVersion},
			result:     w.Read(d), // parsing happens here, once per change
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
	k.results[key] = storedResult{Result: c.result, resourceVersion: c.ResourceVersion}
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

// State implements Source. Objects are rebuilt only after a change.
func (k *Kube) State() model.State {
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
		if r.Object != nil {
			objects = append(objects, r.Object)
		}
		for m, s := range r.Meshes {
			meshes[m] = meshes[m].Merge(s)
		}
	}
	for _, adjust := range k.adjust {
		objects = adjust(objects)
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

// KubernetesSettings select further Secrets and ConfigMaps to read (the configuration's
// kubernetes section: cert-manager Certificates, trust-manager Bundles, an external CA's root).
type KubernetesSettings struct {
	Secrets    []Selector `yaml:"secrets"`
	ConfigMaps []Selector `yaml:"config_maps"`
}

// Selector chooses Kubernetes objects and the keys to read from them.
type Selector struct {
	// Namespace to watch; empty watches every namespace.
	Namespace string `yaml:"namespace"`
	// Name of one object; empty selects by the other fields.
	Name string `yaml:"name"`
	// LabelSelector in Kubernetes syntax (app=x,tier!=y).
	LabelSelector string `yaml:"label_selector"`
	// Type of Secret (server-side field selector), e.g. kubernetes.io/tls. Secrets only.
	Type string `yaml:"type"`
	// Keys are glob patterns of the data keys to read; empty reads every key that is not a private key.
	Keys []string `yaml:"keys"`
	// Mesh the objects belong to, or empty.
	Mesh model.Mesh `yaml:"mesh"`
	// TrustAnchors marks the objects' trust bundles as the mesh's current trust anchors (for
	// example an external CA's root in cert-manager's namespace).
	TrustAnchors bool `yaml:"trust_anchors"`
}

// Validate checks the selectors; meshes are the mesh names a selector may name. An error starts
// with the path of the wrong field.
func (s KubernetesSettings) Validate(meshes []model.Mesh) error {
	for i, sel := range s.Secrets {
		if err := sel.validate(true, meshes); err != nil {
			return fmt.Errorf("secrets[%d].%w", i, err)
		}
	}
	for i, sel := range s.ConfigMaps {
		if err := sel.validate(false, meshes); err != nil {
			return fmt.Errorf("config_maps[%d].%w", i, err)
		}
	}
	return nil
}

// validate checks a selector; errors start with the field name, to follow the selector's path.
func (s Selector) validate(secret bool, meshes []model.Mesh) error {
	if _, err := labels.Parse(s.LabelSelector); err != nil {
		return fmt.Errorf("label_selector: %w", err)
	}
	if s.Type != "" && !secret {
		return errors.New("type: only Secrets have a type")
	}
	for i, k := range s.Keys {
		if _, err := path.Match(k, ""); err != nil || k == "" {
			return fmt.Errorf("keys[%d]: %q is not a valid pattern", i, k)
		}
	}
	if err := ValidMesh(s.Mesh, meshes); err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	if s.TrustAnchors && s.Mesh == "" {
		return errors.New("trust_anchors: needs a mesh")
	}
	return nil
}

// Watches are the watches of the selectors, Secrets first.
func (s KubernetesSettings) Watches() []*Watch {
	var out []*Watch
	for _, sel := range s.Secrets {
		out = append(out, sel.watch(Secrets))
	}
	for _, sel := range s.ConfigMaps {
		out = append(out, sel.watch(ConfigMaps))
	}
	return out
}

// watch watches what the selector chooses and reads it as certificates of its keys' layout.
func (s Selector) watch(kind Kind) *Watch {
	return &Watch{
		Kind: kind, Namespace: s.Namespace, Name: s.Name, LabelSelector: s.LabelSelector, Type: s.Type,
		Keep: func(key string) bool { return matchAny(s.Keys, key) },
		Read: func(d Data) Result {
			var keys []string
			for _, k := range d.Keys() {
				if matchAny(s.Keys, k) || IgnoredKey(k) {
					keys = append(keys, k)
				}
			}
			l := d.env.Layouts("", keys)
			l.Mesh, l.Authoritative = s.Mesh, s.TrustAnchors
			return d.Object(l)
		},
	}
}
