package sources

import (
	"bytes"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// TestTransformStripsAndIsIdempotent: the transform keeps names and certificate data only, wipes
// private keys, and a second pass (client-go may apply it twice) changes nothing.
func TestTransformStripsAndIsIdempotent(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: from, NotAfter: until})
	keyPEM := root.KeyPEM()
	keyCopy := bytes.Clone(keyPEM)
	k := newKube(SourceSecret, true, nil, nil, nil)
	w := &kubeWatch{keep: func(key string) bool { return key != "skip.pem" }}
	in := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: "istio-system", ResourceVersion: "7",
			Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Data: map[string][]byte{"ca-cert.pem": root.PEM(), "ca-key.pem": keyPEM, "key.pem": {}, "skip.pem": root.PEM(),
			"big.pem": bytes.Repeat([]byte("A"), pki.MaxBundleBytes+1)},
	}
	once, err := k.transform(w)(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keyPEM, make([]byte, len(keyPEM))) {
		t.Error("the private key was not wiped from the decoded object")
	}
	twice, _ := k.transform(w)(once)
	if !reflect.DeepEqual(once, twice) {
		t.Errorf("second transform changed the object:\n%+v\n%+v", once, twice)
	}
	s := twice.(*corev1.Secret)
	if len(s.Labels) != 0 || len(s.ManagedFields) != 0 || s.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "" || s.ResourceVersion != "7" {
		t.Errorf("metadata not stripped: %+v", s.ObjectMeta)
	}
	if len(s.Data) != 1 || s.Data["ca-cert.pem"] == nil {
		t.Errorf("cached keys = %v, want only ca-cert.pem", reflect.ValueOf(s.Data).MapKeys())
	}
	d, _ := dataOf(s)
	if _, ok := d.data["ca-key.pem"]; !ok || d.data["ca-key.pem"] != nil {
		t.Error("the private key's presence is lost, or its value kept")
	}
	if _, ok := d.data["key.pem"]; ok {
		t.Error("an empty key counts as present")
	}
	if _, reason := d.parse("big.pem"); reason != model.ReasonTooLarge {
		t.Errorf("big.pem: %q, want too_large", reason)
	}
	for _, v := range s.Data {
		if bytes.Contains(v, keyCopy[40:80]) {
			t.Error("key material cached")
		}
	}
}
