package chart

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// podman runs the real podman with the settings this kind of machine needs (runc, cgroupfs).
func podman(t *testing.T, args ...string) string {
	t.Helper()
	all := append([]string{"--runtime", "runc", "--cgroup-manager", "cgroupfs"}, args...)
	out, err := exec.Command(testenv.Tool(t, "podman"), all...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// buildImage builds the release image from the repository's Dockerfile, as `make image` does,
// on scratch (no registry is reachable here), and returns its name.
func buildImage(t *testing.T) string {
	t.Helper()
	ctxDir := t.TempDir()
	bin := filepath.Join(ctxDir, ".build", "linux-amd64", "meshcert-exporter")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/meshcert/meshcert-exporter")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Static: no interpreter, so it runs on scratch or distroless/static.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary is dynamically linked")
		}
	}
	f.Close()
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), dockerfile, 0o600); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("localhost/meshcert-exporter:test-%d", time.Now().UnixNano())
	podman(t, "build", "--target", "release", "--build-arg", "BASE=scratch", "-t", name, ctxDir)
	t.Cleanup(func() { _ = exec.Command(testenv.Tool(t, "podman"), "rmi", "-f", name).Run() })
	return name
}

// containerFlags are the podman flags that apply the rendered pod's security settings.
func containerFlags(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var pod corev1.PodSpec
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			spec, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &pod); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("the chart renders %d containers", len(pod.Containers))
	}
	sc, psc := pod.Containers[0].SecurityContext, pod.SecurityContext
	var flags []string
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		flags = append(flags, "--read-only")
	}
	for _, c := range sc.Capabilities.Drop {
		flags = append(flags, "--cap-drop="+string(c))
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		flags = append(flags, "--security-opt=no-new-privileges")
	}
	if psc.RunAsUser == nil || psc.RunAsGroup == nil || *psc.RunAsUser == 0 {
		t.Fatal("the chart runs the exporter without a numeric non-root user")
	}
	flags = append(flags, fmt.Sprintf("--user=%d:%d", *psc.RunAsUser, *psc.RunAsGroup))
	if len(flags) < 4 {
		t.Fatalf("the chart's securityContext asks less than expected: %v", flags)
	}
	return flags
}

// applyRBAC creates the chart's ServiceAccount and RBAC objects for real.
func applyRBAC(t *testing.T, ctx context.Context, cp *testenv.ControlPlane, objs []*unstructured.Unstructured) {
	t.Helper()
	cfg := cp.AdminConfig()
	client := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
		default:
			continue
		}
		if ns := o.GetNamespace(); ns != "" {
			if err := testenv.EnsureNamespace(ctx, client, ns); err != nil {
				t.Fatal(err)
			}
		}
		mapping, err := mapper.RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
		if err != nil {
			t.Fatal(err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// runInCluster runs the image as a pod of serviceAccount would run it: its token from the
// TokenRequest API and the API server's CA mounted where the kubelet mounts them, the
// KUBERNETES_SERVICE_* variables set, the chart's security flags and configuration. It returns the
// exporter's base URL.
func runInCluster(t *testing.T, cp *testenv.ControlPlane, image, serviceAccount, config string, security []string) string {
	t.Helper()
	ctx := context.Background()
	sa, err := cp.ServiceAccountConfig(ctx, releaseNamespace, serviceAccount)
	if err != nil {
		t.Fatal(err)
	}
	mount := t.TempDir()
	for name, data := range map[string][]byte{"token": []byte(sa.BearerToken), "ca.crt": cp.CAPEM(), "namespace": []byte(releaseNamespace)} {
		if err := os.WriteFile(filepath.Join(mount, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	configDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(configDir, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	args := append([]string{"run", "-d", "--rm", "--network=host",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"-e", "KUBERNETES_SERVICE_HOST=127.0.0.1", "-e", fmt.Sprintf("KUBERNETES_SERVICE_PORT=%d", cp.Port()),
		"-v", mount + ":/var/run/secrets/kubernetes.io/serviceaccount:ro",
		"-v", configDir + ":/etc/meshcert:ro"}, security...)
	args = append(args, image, "--config.file=/etc/meshcert/config.yaml", "--web.listen-address="+addr)
	id := podman(t, args...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command(testenv.Tool(t, "podman"), "logs", id).CombinedOutput()
			t.Logf("container log:\n%s", out)
		}
		_ = exec.Command(testenv.Tool(t, "podman"), "rm", "-f", id).Run()
	})
	return "http://" + addr
}

// metricsText returns the container's /metrics, or "" while it does not answer.
func metricsText(base string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestImageInCluster builds the image with the real podman and runs it in-cluster against the real
// API server, under the chart's RBAC and security settings: it finds the mesh objects it was
// given; without the chart's RBAC every source is down with the reason forbidden.
func TestImageInCluster(t *testing.T) {
	cp := testenv.StartForTest(t)
	image := buildImage(t)
	ctx := context.Background()
	objs := render(t, nil)
	applyRBAC(t, ctx, cp, objs)
	client := kubernetes.NewForConfigOrDie(cp.AdminConfig())
	root := testpki.Issue(testpki.Spec{CommonName: "image test root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "image test intermediate", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Date(2031, 1, 1)})
	if err := testenv.EnsureNamespace(ctx, client, "istio-system"); err != nil {
		t.Fatal(err)
	}
	_, err := client.CoreV1().Secrets("istio-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts"},
		Data: map[string][]byte{"ca-cert.pem": inter.PEM(), "ca-key.pem": inter.KeyPEM(), "cert-chain.pem": testpki.Bundle(inter, root), "root-cert.pem": root.PEM()}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	config := configText(t, objs)
	security := containerFlags(t, objs)

	base := runInCluster(t, cp, image, "meshcert-meshcert-exporter", config, security)
	want := []string{
		`meshcert_source_up{source="secret"} 1`,
		`meshcert_source_up{source="configmap"} 1`,
		`meshcert_chain_valid{index="0",key="ca-cert.pem",mesh="istio",name="cacerts",namespace="istio-system",role="intermediate",source="secret"} 1`,
	}
	waitForLines(t, base, want)

	// A service account the chart's RBAC does not name: its sources are forbidden, and say so.
	denied := runInCluster(t, cp, image, "not-granted", config, security)
	waitForLines(t, denied, []string{`meshcert_source_up{source="secret"} 0`})
	// The source is down from the start (not synced yet); the refused list is counted when it
	// comes back.
	forbidden := func(text string) bool {
		return strings.Contains(text, `meshcert_source_errors_total{reason="forbidden",source="secret"} `) &&
			!strings.Contains(text, `meshcert_source_errors_total{reason="forbidden",source="secret"} 0`)
	}
	text := metricsText(denied)
	for deadline := time.Now().Add(2 * time.Minute); !forbidden(text) && time.Now().Before(deadline); text = metricsText(denied) {
		time.Sleep(200 * time.Millisecond)
	}
	if !forbidden(text) {
		t.Errorf("no forbidden error counted:\n%s", grepLines(text, "meshcert_source_errors_total"))
	}
}

// configText is the configuration file the chart renders into its ConfigMap.
func configText(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" {
			if c, ok, _ := unstructured.NestedString(o.Object, "data", "config.yaml"); ok {
				return c
			}
		}
	}
	t.Fatal("the chart renders no configuration")
	return ""
}

// waitForLines waits until the exporter's /metrics holds every line of want.
func waitForLines(t *testing.T, base string, want []string) {
	t.Helper()
	var text string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		text = metricsText(base)
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(text, w+"\n")
		}
		if !missing {
			return
		}
	}
	t.Fatalf("the container's /metrics lacks some of %q:\n%s", want, grepLines(text, "meshcert_source", "meshcert_chain_valid"))
}

// grepLines returns the lines of text that start with one of prefixes.
func grepLines(text string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
