// Package realmesh checks the exporter against what the meshes' own code and tools write: istiod's
// CA code (hack/istio-ca, built from istio.io/istio) creating, rotating and distributing its root
// through a real API server, a plug-in CA made with the real OpenSSL, and Linkerd's PKI made with
// the real step CLI as Linkerd's docs make it, in the object shapes `linkerd install` writes. The
// exporter binary reads those objects and the tests read its /metrics.
package realmesh

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testexpo"
)

var cp *testenv.ControlPlane

func TestMain(m *testing.M) { os.Exit(testenv.RunShared(m, &cp)) }

// controlPlane returns the shared API server and an admin client, or skips without binaries.
func controlPlane(t *testing.T) kubernetes.Interface {
	t.Helper()
	if cp == nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no test control plane: set " + testenv.EnvVar)
		}
		t.Skip("no test control plane: set " + testenv.EnvVar)
	}
	return kubernetes.NewForConfigOrDie(cp.AdminConfig())
}

// istioCAEnv names the istio-ca binary hack/build-istio-ca.sh builds.
const istioCAEnv = "MESHCERT_ISTIO_CA"

// istioCA returns the path of the istio-ca binary; missing, it fails in CI and skips elsewhere.
func istioCA(t *testing.T) string {
	t.Helper()
	p := os.Getenv(istioCAEnv)
	if st, err := os.Stat(p); p != "" && err == nil && st.Mode()&0o111 != 0 {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s does not name the istio-ca binary: `make testenv` builds it", istioCAEnv)
	}
	t.Skipf("%s does not name the istio-ca binary: `make testenv` builds it", istioCAEnv)
	return ""
}

// run starts a program until the test ends (or it is stopped).
func run(t *testing.T, dir, name string, args ...string) *testenv.Process {
	t.Helper()
	return testenv.StartProcess(t, dir, name, args...)
}

// command runs a tool to its end and fails the test when it fails.
func command(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// exporter builds the exporter binary and runs it with the kubeconfig and configuration given; it
// returns the base URL of its listener once it is ready.
func exporter(t *testing.T, dir, kubeconfig, config string) string {
	t.Helper()
	bin := filepath.Join(dir, "meshcert-exporter")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshcert/meshcert-exporter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	configFile := filepath.Join(dir, "meshcert.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	run(t, dir, bin, "--config.file="+configFile, "--kubeconfig="+kubeconfig, "--web.listen-address="+addr, "--log.level=debug")
	base := "http://" + addr
	eventually(t, 60*time.Second, func() string {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "not ready: " + resp.Status
		}
		return ""
	})
	return base
}

// series is one scraped sample.
type series struct {
	labels map[string]string
	value  float64
}

// exposition is a scrape of the exporter, by family.
type exposition map[string][]series

func scrape(t *testing.T, base string) exposition {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fams := testexpo.Parse(t, resp.Body)
	out := exposition{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := series{labels: map[string]string{}, value: sampleValue(m)}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

// find returns the series of family whose labels include match.
func (e exposition) find(family string, match map[string]string) []series {
	var out []series
	for _, s := range e[family] {
		ok := true
		for k, v := range match {
			ok = ok && s.labels[k] == v
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// is says why the one series of family matching match does not have value want, or "".
func (e exposition) is(family string, match map[string]string, want float64) string {
	got := e.find(family, match)
	switch {
	case len(got) == 0:
		return fmt.Sprintf("no %s%v", family, match)
	case len(got) > 1:
		return fmt.Sprintf("%d series %s%v", len(got), family, match)
	case got[0].value != want:
		return fmt.Sprintf("%s%v = %v, want %v", family, match, got[0].value, want)
	}
	return ""
}

// label is the value of label of the one series of family matching match, or "".
func (e exposition) label(family string, match map[string]string, label string) string {
	if got := e.find(family, match); len(got) == 1 {
		return got[0].labels[label]
	}
	return ""
}

// eventually retries check until it returns "" or timeout passes.
func eventually(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last = check(); last == "" {
			return
		}
	}
	t.Fatalf("after %s: %s", timeout, last)
}

// checks joins the first failing check's message, or "".
func checks(msgs ...string) string {
	for _, m := range msgs {
		if m != "" {
			return m
		}
	}
	return ""
}

// serials lists the serials of every certificate the exporter exports, sorted.
func (e exposition) serials() []string {
	var out []string
	for _, s := range e["meshcert_certificate_info"] {
		out = append(out, s.labels["serial"])
	}
	sort.Strings(out)
	return out
}

func ensureNamespaces(t *testing.T, client kubernetes.Interface, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := testenv.EnsureNamespace(context.Background(), client, n); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}
