package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/exporter"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	"github.com/meshcert/meshcert-exporter/sources"
)

var (
	from  = testpki.From()
	until = testpki.Date(2126, 1, 1)
)

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// scrape serves an exporter over cfg and returns one scrape's status and body.
func scrape(t *testing.T, cfg *config.Config, logger log.Logger) (int, string) {
	t.Helper()
	e, err := exporter.New(cfg, nil, exporter.Options{MetricsPath: "/metrics", MaxRequests: 40}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.Run(ctx, logger) // every source reads once, then returns
	srv := httptest.NewServer(e)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// series returns the value of the one sample of family whose labels include every pair in labels.
func series(t *testing.T, body, family string, labels ...string) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, family+"{") {
			continue
		}
		ok := true
		for i := 0; i < len(labels); i += 2 {
			ok = ok && strings.Contains(line, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
		}
		if ok {
			found = append(found, line[strings.LastIndexByte(line, ' ')+1:])
		}
	}
	if len(found) != 1 {
		t.Errorf("%s%v: %d series, want 1", family, labels, len(found))
		return ""
	}
	return found[0]
}

// keyMaterial returns distinctive pieces of a PEM private key: its base64 lines.
func keyMaterial(keyPEM []byte) []string {
	var out []string
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	block, _ := pem.Decode(keyPEM)
	return append(out, string(block.Bytes[8:40]))
}

func TestIstioCACertsDirectory(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "Istio Root", CA: true, Key: testpki.RSA2048, NotBefore: from, NotAfter: until})
	secondRoot := testpki.Issue(testpki.Spec{CommonName: "Istio Root 2", CA: true, NotBefore: from, NotAfter: until})
	strangerRoot := testpki.Issue(testpki.Spec{CommonName: "Stranger Root", CA: true, NotBefore: from, NotAfter: until})
	inter := testpki.Issue(testpki.Spec{CommonName: "Istio Intermediate", CA: true, Issuer: root, NotBefore: from, NotAfter: until})
	stray := testpki.Issue(testpki.Spec{CommonName: "Stray Intermediate", CA: true, Issuer: strangerRoot, NotBefore: from, NotAfter: until})

	dir := t.TempDir()
	write(t, filepath.Join(dir, "cacerts/root-cert.pem"), testpki.Bundle(root, secondRoot))
	write(t, filepath.Join(dir, "cacerts/ca-cert.pem"), inter.PEM())
	write(t, filepath.Join(dir, "cacerts/cert-chain.pem"), testpki.Bundle(inter, root))
	write(t, filepath.Join(dir, "cacerts/ca-key.pem"), inter.KeyPEM())
	write(t, filepath.Join(dir, "stray/root-cert.pem"), root.PEM())
	write(t, filepath.Join(dir, "stray/ca-cert.pem"), stray.PEM())
	write(t, filepath.Join(dir, "stray/cert-chain.pem"), testpki.Bundle(stray, strangerRoot))
	write(t, filepath.Join(dir, "stray/ca-key.pem"), stray.KeyPEM())
	write(t, filepath.Join(dir, "generic/good.pem"), root.PEM())
	write(t, filepath.Join(dir, "generic/junk.pem"), []byte("-----BEGIN CERTIFICATE-----\nnot base64!\n"))

	cfg := config.Default()
	cfg.Files.Targets = []sources.FileTarget{{Path: filepath.Join(dir, "cacerts")}, {Path: filepath.Join(dir, "stray")}, {Path: filepath.Join(dir, "generic")}}
	var logs bytes.Buffer
	status, body := scrape(t, cfg, level.NewFilter(log.NewLogfmtLogger(&logs), level.AllowDebug()))
	if status != http.StatusOK {
		t.Fatalf("scrape status %d", status)
	}
	cacerts := filepath.Join(dir, "cacerts")
	for i, cn := range []string{"Istio Root", "Istio Root 2"} {
		series(t, body, "meshcert_certificate_info", "name", cacerts, "key", "root-cert.pem", "index", fmt.Sprint(i), "role", "trust_anchor", "mesh", "istio", "subject", "CN="+cn)
	}
	if v := series(t, body, "meshcert_chain_depth", "name", cacerts, "key", "ca-cert.pem", "role", "intermediate"); v != "2" {
		t.Errorf("intermediate chain depth %s, want 2", v)
	}
	if v := series(t, body, "meshcert_chain_valid", "name", cacerts, "key", "ca-cert.pem", "role", "intermediate"); v != "1" {
		t.Errorf("intermediate chain valid %s, want 1", v)
	}
	stray1 := filepath.Join(dir, "stray")
	if v := series(t, body, "meshcert_chain_valid", "name", stray1, "key", "ca-cert.pem"); v != "0" {
		t.Errorf("stray intermediate chain valid %s, want 0", v)
	}
	series(t, body, "meshcert_chain_info", "name", stray1, "key", "ca-cert.pem", "reason", "unknown_authority")
	series(t, body, "meshcert_certificate_info", "name", filepath.Join(dir, "generic"), "key", "good.pem")
	if v := series(t, body, "meshcert_source_errors_total", "source", "file", "reason", "bad_pem"); v != "1" {
		t.Errorf("junk counted %s times, want 1", v)
	}
	if strings.Contains(body, "ca-key.pem") {
		t.Error("the key file appears in the metrics")
	}
	for _, k := range [][]byte{inter.KeyPEM(), stray.KeyPEM()} {
		for _, m := range keyMaterial(k) {
			if strings.Contains(body, m) || strings.Contains(logs.String(), m) {
				t.Fatal("private key material in the metrics or the logs")
			}
		}
	}
	checkWithPromtool(t, body)
}

// checkWithPromtool lints a real scrape with Prometheus' own linter. CI installs promtool; a
// developer without it skips this check.
func checkWithPromtool(t *testing.T, body string) {
	t.Helper()
	promtool := testenv.Tool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestRunServesExamples runs the README's command in-process: the sample PKI is served.
func TestRunServesExamples(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	body := runAndScrape(t, "--config.file=examples/meshcert.yaml")
	want := []*regexp.Regexp{
		regexp.MustCompile(`meshcert_chain_valid\{[^}]*key="ca-cert.pem",mesh="istio",name="examples/istio-cacerts"[^}]*role="intermediate"[^}]*\} 1`),
		regexp.MustCompile(`meshcert_chain_valid\{[^}]*key="crt.pem",mesh="linkerd",name="examples/linkerd-identity-issuer"[^}]*role="issuer"[^}]*\} 1`),
		regexp.MustCompile(`meshcert_certificate_info\{[^}]*key="ca-bundle.crt"[^}]*role="trust_anchor"`),
		regexp.MustCompile(`meshcert_source_up\{source="file"\} 1`),
		regexp.MustCompile(`meshcert_exporter_build_info\{`),
	}
	for _, re := range want {
		if !re.MatchString(body) {
			t.Errorf("scrape of the examples lacks %s", re)
		}
	}
	if strings.Contains(body, `source="secret"`) {
		t.Error("Kubernetes sources ran without a kubeconfig or a cluster")
	}
}

func TestBadConfigFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yml")
	write(t, path, []byte("files:\n  targetz: []\n"))
	err := run(context.Background(), []string{"--config.file=" + path})
	if err == nil || !strings.Contains(err.Error(), "files.targetz (line 2): unknown key") {
		t.Errorf("run with a bad config = %v", err)
	}
}

// TestFlagErrorsNameTheFlag: a value a flag refuses is reported with the flag's name.
func TestFlagErrorsNameTheFlag(t *testing.T) {
	for _, tt := range []struct{ args, want string }{
		{"--envoy.interval=5x", `--envoy.interval=5x: time: unknown unit "x" in duration "5x"`},
		{"--log.level=verbose", "--log.level=verbose: enum value must be one of debug,info,warn,error, got 'verbose'"},
		{"--linkerd-proxy.transport=ssh", "--linkerd-proxy.transport=ssh: enum value must be one of port-forward,direct, got 'ssh'"},
		{"--web.max-requests=many", "--web.max-requests=many: "},
	} {
		_, err := parseFlags(strings.Fields(tt.args))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %s...", tt.args, err, tt.want)
		}
	}
}

// TestSourceStates: the start-up log names every source, on or off, with the reason.
func TestSourceStates(t *testing.T) {
	cfg, err := loadConfig(&options{configFile: "examples/meshcert.yaml", posture: true, postureSet: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range exporter.SourceStates(cfg, nil) {
		got = append(got, fmt.Sprintf("%s %v: %s", s.Source, s.On, s.Reason))
	}
	want := []string{
		"files true: 3 targets (--source.files, files.targets)",
		"kubernetes false: no cluster: no --kubeconfig, $KUBECONFIG is not set, and not running in a pod",
		"envoy false: off by default: --source.envoy or proxies.envoy.enabled",
		"ztunnel false: off by default: --source.ztunnel or proxies.ztunnel.enabled",
		"linkerd-proxy false: off by default: --source.linkerd-proxy or proxies.linkerd.enabled",
		"posture false: turned on, but no cluster: no --kubeconfig, $KUBECONFIG is not set, and not running in a pod",
	}
	if !slices.Equal(got, want) {
		t.Errorf("source states:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	kube := &exporter.Kube{From: "$KUBECONFIG /tmp/k"}
	for _, s := range exporter.SourceStates(cfg, kube) {
		if s.Source == "kubernetes" && (!s.On || s.Reason != "from $KUBECONFIG /tmp/k; meshes watched: istio, linkerd; 0 selectors") {
			t.Errorf("with a cluster: %+v", s)
		}
		if s.Source == "posture" && !s.On {
			t.Errorf("posture with a cluster: %+v", s)
		}
	}
}

// TestLandingPageLinksExist: every link of the landing page to the exporter answers 200, and it
// links nowhere else.
func TestLandingPageLinksExist(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	base := startExporter(t, "http", http.DefaultClient, "--config.file=examples/meshcert.yaml")
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := get(t, http.DefaultClient, http.MethodGet, base+"/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exporter did not become ready")
		}
	}
	_, page := get(t, http.DefaultClient, http.MethodGet, base+"/")
	links := regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(links) < 4 {
		t.Fatalf("%d links on the landing page:\n%s", len(links), page)
	}
	for _, l := range links {
		if !strings.HasPrefix(l[1], "/") {
			t.Errorf("the landing page links outside the exporter: %s", l[1])
			continue
		}
		if code, _ := get(t, http.DefaultClient, http.MethodGet, base+l[1]); code != http.StatusOK {
			t.Errorf("%s: %d", l[1], code)
		}
	}
}
