package chart

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
)

// renderedContainer returns the exporter container of the rendered workload.
func renderedContainer(t *testing.T, objs []*unstructured.Unstructured) corev1.Container {
	t.Helper()
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "StatefulSet", "DaemonSet":
			spec, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
			var pod corev1.PodSpec
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &pod); err != nil {
				t.Fatal(err)
			}
			for _, c := range pod.Containers {
				if c.Name == "exporter" {
					return c
				}
			}
		}
	}
	t.Fatal("no exporter container rendered")
	return corev1.Container{}
}

// TestExporterRunsWithRenderedArgs starts the exporter binary with exactly the arguments the chart
// renders, in every mode with every option on (extraArgs overriding a flag the chart sets, the web
// configuration's basic auth), the files the chart mounts in their place and the environment the
// pod gets, and scrapes it.
func TestExporterRunsWithRenderedArgs(t *testing.T) {
	cp := testenv.StartForTest(t)
	kubeconfig, err := cp.Kubeconfig("chart", cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "meshcert-exporter")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshcert/meshcert-exporter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, mode := range []string{"deployment", "sharded", "daemonset"} {
		t.Run(mode, func(t *testing.T) {
			values := filepath.Join(t.TempDir(), "mode.yaml")
			if err := os.WriteFile(values, []byte("mode: "+mode+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			objs := render(t, append(append([]string{}, valueSets["all-on"]...), values))
			c := renderedContainer(t, objs)
			mounts := t.TempDir()
			for _, o := range objs {
				var key, file string
				switch o.GetKind() {
				case "ConfigMap":
					key, file = "config.yaml", "config.yaml"
				case "Secret":
					key, file = "web-config.yml", filepath.Join("web", "web-config.yml")
				default:
					continue
				}
				field := "data"
				if o.GetKind() == "Secret" {
					field = "stringData"
				}
				if text, ok, _ := unstructured.NestedString(o.Object, field, key); ok {
					os.MkdirAll(filepath.Dir(filepath.Join(mounts, file)), 0o700)
					if err := os.WriteFile(filepath.Join(mounts, file), []byte(text), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			env := map[string]string{"SHARD": "0", "NODE_NAME": "node-1"}
			// The chart's listen address, moved to a free port: another test run on the machine
			// may hold 9733.
			addr := testenv.FreeAddr(t)
			var args []string
			for _, a := range c.Args {
				a = strings.ReplaceAll(a, "/etc/meshcert", mounts)
				for k, v := range env {
					a = strings.ReplaceAll(a, "$("+k+")", v)
				}
				if listen, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
					if listen != ":9733" {
						t.Errorf("the chart listens on %q, want :9733", listen)
					}
					a = "--web.listen-address=" + addr
				}
				args = append(args, a)
			}
			if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--web.listen-address=") }) {
				t.Error("the chart sets no --web.listen-address")
			}
			if n := strings.Count(strings.Join(args, " "), "--log.level="); n != 1 {
				t.Fatalf("--log.level given %d times: %v", n, args)
			}
			// Outside a pod the kubeconfig stands in for the in-cluster configuration.
			cmd := exec.Command(bin, append(args, "--kubeconfig="+kubeconfig)...)
			logs, _ := os.Create(filepath.Join(t.TempDir(), "exporter.log"))
			cmd.Stdout, cmd.Stderr = logs, logs
			for _, e := range c.Env {
				if e.Value != "" {
					cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
				}
			}
			cmd.Env = append(os.Environ(), cmd.Env...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// done is closed once the exporter has exited, with its error in waitErr: both the
			// wait below and the cleanup may read it.
			var waitErr error
			done := make(chan struct{})
			go func() { waitErr = cmd.Wait(); close(done) }()
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				<-done
				if t.Failed() {
					out, _ := os.ReadFile(logs.Name())
					t.Logf("exporter log:\n%s", out)
				}
			})
			// The chart's listen address and the web configuration's basic auth.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for {
				select {
				case <-done:
					t.Fatalf("the exporter exited with the chart's arguments: %v", waitErr)
				case <-ctx.Done():
					t.Fatal("the exporter did not answer on the chart's port")
				case <-time.After(200 * time.Millisecond):
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("without credentials: %s, want 401", resp.Status)
				}
				req.SetBasicAuth("prometheus", "chart-test-scrape")
				resp, err = http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("with the chart's credentials: %s", resp.Status)
				}
				return
			}
		})
	}
}

// unstructuredVolumes returns the volumes of a rendered workload's pod.
func unstructuredVolumes(o *unstructured.Unstructured) ([]corev1.Volume, bool, error) {
	spec, ok, err := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	if !ok || err != nil {
		return nil, ok, err
	}
	var pod corev1.PodSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &pod); err != nil {
		return nil, true, err
	}
	return pod.Volumes, true, nil
}
