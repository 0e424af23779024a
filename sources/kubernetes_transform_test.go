package sources

import (
	"bytes"
	"encoding/pem"
	"reflect"
	"testing"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// TestTransformReadsAndIsIdempotent: the transform reads an object into its model and keeps
// nothing else (no metadata beyond its identity, no value, no key material), wipes private keys
// from the decoded object, and a second pass (client-go may apply it twice) changes nothing.
func TestTransformReadsAndIsIdempotent(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	keyPEM := root.KeyPEM()
	keyCopy := bytes.Clone(keyPEM)
	// A mesh's layout: a certificate and its key, and a key the layout needs that is missing.
	layouts := func(_ model.Mesh, keys []string) Layout {
		l := GenericLayout("", keys)
		l.KeyPairs = PresentKeyPairs(keys, model.KeyPair{PrivateKey: "ca-key.pem", Certificate: "ca-cert.pem"})
		l.Missing = []string{"cert-chain.pem"}
		return l
	}
	env := Env{Cache: pki.NewCache(), Layouts: layouts, Logger: log.NewNopLogger()}
	k := NewKube(Secrets, nil, nil, nil, env)
	w := Selector{Keys: []string{"ca-cert.pem", "root-cert.pem"}}.watch(Secrets)
	in := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: "istio-system", ResourceVersion: "7",
			Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Data: map[string][]byte{"ca-cert.pem": root.PEM(), "ca-key.pem": keyPEM, "key.pem": {}, "skip.pem": root.PEM(),
			"root-cert.pem": bytes.Repeat([]byte("A"), pki.MaxBundleBytes+1)},
	}
	once, err := k.transform(w)(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keyPEM, make([]byte, len(keyPEM))) {
		t.Error("the private key was not wiped from the decoded object")
	}
	if twice, _ := k.transform(w)(once); twice != once {
		t.Errorf("second transform changed the object:\n%+v\n%+v", once, twice)
	}
	c := once.(*cachedObject)
	want := metav1.ObjectMeta{Name: "cacerts", Namespace: "istio-system", ResourceVersion: "7"}
	if !reflect.DeepEqual(c.ObjectMeta, want) {
		t.Errorf("metadata not stripped: %+v", c.ObjectMeta)
	}
	o := c.result.Object
	var keys []string
	for _, b := range o.Bundles {
		keys = append(keys, b.Key+"="+string(b.Error))
	}
	if !reflect.DeepEqual(keys, []string{"ca-cert.pem=", "root-cert.pem=too_large", "cert-chain.pem=incomplete_bundle"}) {
		t.Errorf("bundles = %v, want root-cert.pem too large and ca-cert.pem read (skip.pem is not selected)", keys)
	}
	if !reflect.DeepEqual(o.KeyPairs, []model.KeyPair{{PrivateKey: "ca-key.pem", Certificate: "ca-cert.pem"}}) {
		t.Errorf("key pairs = %v: the private key's presence is lost (the empty key.pem must not count)", o.KeyPairs)
	}
	assertNoKeyMaterial(t, c, keyCopy)
}

// assertNoKeyMaterial walks everything v reaches and fails when a byte slice or string holds the
// key of keyPEM, as DER or as a line of its PEM.
func assertNoKeyMaterial(t *testing.T, v any, keyPEM []byte) {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("not a PEM key")
	}
	der := block.Bytes[len(block.Bytes)/2 : len(block.Bytes)/2+24] // a piece of the secret part
	line := bytes.Split(keyPEM, []byte("\n"))[2]
	seen := map[uintptr]bool{}
	var walk func(reflect.Value, string)
	walk = func(x reflect.Value, path string) {
		switch x.Kind() {
		case reflect.Pointer, reflect.Interface:
			if x.IsNil() {
				return
			}
			if x.Kind() == reflect.Pointer {
				if seen[x.Pointer()] {
					return
				}
				seen[x.Pointer()] = true
			}
			walk(x.Elem(), path)
		case reflect.Struct:
			for i := range x.NumField() {
				walk(x.Field(i), path+"."+x.Type().Field(i).Name)
			}
		case reflect.Slice, reflect.Array:
			if x.Type().Elem().Kind() == reflect.Uint8 && x.Kind() == reflect.Slice {
				if b := x.Bytes(); bytes.Contains(b, der) || bytes.Contains(b, line) {
					t.Errorf("key material at %s", path)
				}
				return
			}
			for i := range x.Len() {
				walk(x.Index(i), path+"[]")
			}
		case reflect.Map:
			for it := x.MapRange(); it.Next(); {
				walk(it.Key(), path+"{key}")
				walk(it.Value(), path+"{}")
			}
		case reflect.String:
			if s := x.String(); bytes.Contains([]byte(s), line) {
				t.Errorf("key material at %s", path)
			}
		}
	}
	walk(reflect.ValueOf(v), "")
}
