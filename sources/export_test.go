package sources

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Cached returns what the cache keeps of an object: its metadata and its model.
func Cached(obj any) (metav1.ObjectMeta, *model.Object) {
	c := obj.(*cachedObject)
	return c.ObjectMeta, c.result.object
}

// AssertNoKeyMaterial is assertNoKeyMaterial for the external tests.
var AssertNoKeyMaterial = assertNoKeyMaterial
