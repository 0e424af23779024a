package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// IstioModule is the istio.io/istio version whose code and CRDs the tests run against; the
// default of hack/build-istio-ca.sh.
const IstioModule = "istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad"

// ModuleDir returns the directory of a module in the module cache (go mod download fetches it
// from the module proxy the first time), outside the project's module so its go.mod and go.sum
// stay as they are.
func ModuleDir(t testing.TB, module string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", module, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %v %s", module, err, out)
	}
	return mod.Dir
}

// IstioCRDs returns Istio's real CRDs as its base chart installs them.
func IstioCRDs(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ModuleDir(t, IstioModule), "manifests", "charts", "base", "files", "crd-all.gen.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// InstallCRDs creates the CRDs in data (YAML documents) whose names are among names (all when
// names is empty), and waits until the API server serves them. A CRD that exists already is kept.
func InstallCRDs(t testing.TB, ctx context.Context, dyn dynamic.Interface, data []byte, names ...string) {
	t.Helper()
	crdRes := apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var created []string
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if len(u.Object) == 0 || len(names) > 0 && !slices.Contains(names, u.GetName()) {
			continue
		}
		if _, err := dyn.Resource(crdRes).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		created = append(created, u.GetName())
	}
	if len(names) > 0 && len(created) != len(names) {
		t.Fatalf("created CRDs %v of %v", created, names)
	}
	for _, n := range created {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			u, err := dyn.Resource(crdRes).Get(ctx, n, metav1.GetOptions{})
			if err == nil {
				conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
				established := false
				for _, c := range conds {
					m, _ := c.(map[string]any)
					established = established || m["type"] == "Established" && m["status"] == "True"
				}
				if established {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established", n)
			}
		}
	}
}
