package sources

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// CachedObjects returns every object the informers cache, as their transform left it: what the
// exporter keeps in memory.
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

// Cached returns what the cache keeps of an object: its metadata and its model.
func Cached(obj any) (metav1.ObjectMeta, *model.Object) {
	c := obj.(*cachedObject)
	return c.ObjectMeta, c.result.Object
}

// AssertNoKeyMaterial is assertNoKeyMaterial for the external tests.
var AssertNoKeyMaterial = assertNoKeyMaterial

// CachedPods returns the namespace/name of every pod the watcher's cache keeps.
func (w *PodWatcher) CachedPods() []string {
	w.mu.Lock()
	inf := w.informer
	w.mu.Unlock()
	if inf == nil {
		return nil
	}
	return inf.GetStore().ListKeys()
}
