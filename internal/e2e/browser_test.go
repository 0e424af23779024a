package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// buildExporter builds the exporter binary, as users get it, into dir.
func buildExporter(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "meshcert-exporter")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshcert/meshcert-exporter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestPKIPageInBrowser: Debian's chromium, headless and with JavaScript off (checked on a page
// whose script would say otherwise), loads /pki from the exporter binary serving the sample PKI
// and a certificate signed by no known CA: the rendered DOM holds both meshes' anchors, their
// counts and the problem, and a screenshot of it is not blank.
func TestPKIPageInBrowser(t *testing.T) {
	chromium := testenv.Tool(t, "chromium")
	dir := t.TempDir()
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(dir, "stray")
	os.MkdirAll(stray, 0o755)
	elsewhere := testpki.Issue(testpki.Spec{CommonName: "elsewhere", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	leaf := testpki.Issue(testpki.Spec{CommonName: "stray.example", DNSNames: []string{"stray.example"}, Issuer: elsewhere,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(0, 1, 0)})
	os.WriteFile(filepath.Join(stray, "tls.crt"), leaf.PEM(), 0o600)
	config := filepath.Join(dir, "meshcert.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("files:\n  targets:\n    - path: %s/istio-cacerts\n    - path: %s/linkerd-trust-roots\n    - path: %s/linkerd-identity-issuer\n    - path: %s\n",
		examples, examples, examples, stray)), 0o600)
	port := freePort(t)
	testenv.StartProcess(t, dir, buildExporter(t, dir), "--config.file="+config, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, base+"/readyz", 30*time.Second)

	browse := browser(t, chromium, dir)
	dom := string(browse("--dump-dom", base+"/pki"))
	for _, want := range []string{"<h1>Mesh PKI</h1>", "CN=Example Istio Root CA", "CN=root.linkerd.cluster.local", "CN=Example Istio Intermediate CA",
		"1 distinct certificates depend on it only", "unknown_authority", "stray.example", "Every source is up"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if strings.Contains(dom, "<script") {
		t.Error("the page carries a script")
	}

	shot := filepath.Join(dir, "pki.png")
	browse("--screenshot="+shot, "--window-size=1280,1400", "--hide-scrollbars", base+"/pki")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the screenshot: %v", err)
	}
	if inked, colours := ink(img); inked < 0.02 || colours < 8 {
		t.Errorf("the screenshot looks blank: %.1f%% of its pixels inked, %d colours", 100*inked, colours)
	}
}

// browser returns a function that runs Debian's chromium, headless, with a profile in dir whose
// JavaScript is off (checked on a page whose script would say otherwise), and returns its output.
func browser(t *testing.T, chromium, dir string) func(args ...string) []byte {
	t.Helper()
	// A profile with JavaScript off (the content setting; --blink-settings would stop headless
	// chromium from dumping or shooting anything).
	profile := filepath.Join(dir, "chromium")
	os.MkdirAll(filepath.Join(profile, "Default"), 0o755)
	os.WriteFile(filepath.Join(profile, "Default", "Preferences"), []byte(`{"profile":{"default_content_setting_values":{"javascript":2}}}`), 0o600)
	browse := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
			"--user-data-dir=" + profile}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return []byte(stdout.String())
	}
	probe := `data:text/html,<p id="js">off</p><script>document.getElementById("js").textContent="on"</script>`
	if dom := string(browse("--dump-dom", probe)); !strings.Contains(dom, `<p id="js">off</p>`) {
		t.Fatalf("JavaScript is not off in the browser's profile: %s", dom)
	}
	return browse
}

// TestPKIPageWhileBlind: the exporter binary reads a real API server, which then stops. The API
// and the page, in Debian's chromium, say which source is down and since when, give no all-clear,
// and keep listing the last known certificates; a what-if asked then says it is incomplete.
func TestPKIPageWhileBlind(t *testing.T) {
	chromium := testenv.Tool(t, "chromium")
	cp := testenv.StartForTest(t)
	ctx := t.Context()
	admin := kubernetes.NewForConfigOrDie(cp.AdminConfig())
	if err := testenv.EnsureNamespace(ctx, admin, "istio-system"); err != nil {
		t.Fatal(err)
	}
	root := testpki.Issue(testpki.Spec{CommonName: "blind root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0)})
	if _, err := admin.CoreV1().Secrets("istio-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-secret"},
		Type: "istio.io/ca-root", Data: map[string][]byte{"ca-cert.pem": root.PEM(), "ca-key.pem": root.KeyPEM()}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.Kubeconfig("blind", cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	testenv.StartProcess(t, dir, buildExporter(t, dir), "--kubeconfig="+kubeconfig, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, base+"/readyz", 60*time.Second)
	serial := root.X509.SerialNumber.Text(16)

	type answer struct {
		Status struct {
			Complete bool `json:"complete"`
			Sources  []struct {
				Name        string     `json:"name"`
				Up          bool       `json:"up"`
				LastSuccess *time.Time `json:"last_success"`
			} `json:"sources"`
		} `json:"status"`
		Certificates []struct {
			Subject string `json:"subject"`
		} `json:"certificates"`
	}
	pki := func() answer {
		t.Helper()
		resp, err := http.Get(base + "/api/v1/pki")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	holds := func(a answer) bool {
		for _, c := range a.Certificates {
			if c.Subject == "CN=blind root" {
				return true
			}
		}
		return false
	}
	secretDown := func(a answer) bool {
		for _, s := range a.Status.Sources {
			if s.Name == "secret" && !s.Up && s.LastSuccess != nil {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if a := pki(); a.Status.Complete && holds(a) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter never saw the root with every source up: %+v", pki())
		}
	}

	cp.StopAPIServer()
	var a answer
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if a = pki(); secretDown(a) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API never said the secret source is down: %+v", a.Status)
		}
	}
	if a.Status.Complete || !holds(a) {
		t.Errorf("while blind: complete %v, the root still listed %v", a.Status.Complete, holds(a))
	}
	resp, err := http.Get(base + "/api/v1/what-if?remove_anchor=" + strings.ToUpper(serial))
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		Status struct {
			Complete bool `json:"complete"`
		} `json:"status"`
		Removed int `json:"removed"`
	}
	json.NewDecoder(resp.Body).Decode(&w)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || w.Removed != 1 || w.Status.Complete {
		t.Errorf("what-if while blind: %d, removed %d, complete %v", resp.StatusCode, w.Removed, w.Status.Complete)
	}

	browse := browser(t, chromium, dir)
	dom := string(browse("--dump-dom", base+"/pki"))
	for _, want := range []string{"This page is not complete", "Source <code>secret</code> is <strong>down</strong> since", "CN=blind root",
		"None found in what could be read. This is not an all-clear"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if strings.Contains(dom, "Every source is up") {
		t.Error("the page says every source is up while the API server is stopped")
	}
}

// ink returns the share of img's pixels that are not white and how many colours it has.
func ink(img image.Image) (float64, int) {
	b := img.Bounds()
	colours := map[[3]uint32]bool{}
	inked := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				inked++
			}
		}
	}
	return float64(inked) / float64(b.Dx()*b.Dy()), len(colours)
}
