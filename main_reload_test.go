package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// startExporter runs the exporter with args on a free port until the test ends and returns its
// address once it is ready.
func startExporter(t *testing.T, scheme string, client *http.Client, args ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, append(args, "--web.listen-address="+addr, "--log.level=error")) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return scheme + "://" + addr
		}
	}
	t.Fatal("the exporter did not listen")
	return ""
}

func get(t *testing.T, client *http.Client, method, u string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReload: a bad configuration sent to /-/reload leaves the old one in force and says so; a good
// one on SIGHUP takes over.
func TestReload(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "reload root", CA: true, NotBefore: from, NotAfter: until})
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a/ca.crt"), root.PEM())
	write(t, filepath.Join(dir, "b/ca.crt"), root.PEM())
	cfgPath := filepath.Join(dir, "meshcert.yaml")
	write(t, cfgPath, []byte("files:\n  targets:\n    - path: "+filepath.Join(dir, "a")+"\n"))
	base := startExporter(t, "http", http.DefaultClient, "--config.file="+cfgPath, "--web.enable-lifecycle")
	metrics := func() string {
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if code, _ := get(t, http.DefaultClient, http.MethodGet, base+"/readyz"); code == 200 {
				break
			}
		}
		_, body := get(t, http.DefaultClient, http.MethodGet, base+"/metrics")
		return body
	}
	if body := metrics(); !strings.Contains(body, filepath.Join(dir, "a")) || !strings.Contains(body, "meshcert_config_last_reload_successful 1") {
		t.Fatalf("first configuration not served:\n%s", grepLines(body, "meshcert_config|certificate_info"))
	}

	write(t, cfgPath, []byte("files:\n  targetz: []\n"))
	if code, body := get(t, http.DefaultClient, http.MethodPost, base+"/-/reload"); code != http.StatusBadRequest || !strings.Contains(body, "files.targetz (line 2): unknown key") {
		t.Errorf("bad reload answered %d %q", code, body)
	}
	for _, method := range []string{http.MethodGet, http.MethodPut} {
		if code, _ := get(t, http.DefaultClient, method, base+"/-/reload"); code != http.StatusMethodNotAllowed {
			t.Errorf("%s /-/reload answered %d", method, code)
		}
	}
	if body := metrics(); !strings.Contains(body, filepath.Join(dir, "a")) || !strings.Contains(body, "meshcert_config_last_reload_successful 0") {
		t.Errorf("after a bad reload the old configuration must stay and say so:\n%s", grepLines(body, "meshcert_config|certificate_info"))
	}

	write(t, cfgPath, []byte("files:\n  targets:\n    - path: "+filepath.Join(dir, "b")+"\n"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		body := metrics()
		if strings.Contains(body, filepath.Join(dir, "b")) && !strings.Contains(body, `name="`+filepath.Join(dir, "a")+`"`) &&
			strings.Contains(body, "meshcert_config_last_reload_successful 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not load the new configuration:\n%s", grepLines(body, "meshcert_config|certificate_info"))
		}
	}
}

// TestReloadNeedsLifecycle: without --web.enable-lifecycle, /-/reload reloads nothing, for any
// method: an unauthenticated request cannot make every informer list again.
func TestReloadNeedsLifecycle(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "meshcert.yaml")
	write(t, cfgPath, []byte("files:\n  targets: []\n"))
	base := startExporter(t, "http", http.DefaultClient, "--config.file="+cfgPath)
	write(t, cfgPath, []byte("files:\n  targetz: []\n"))
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodGet} {
		if code, body := get(t, http.DefaultClient, method, base+"/-/reload"); code != http.StatusForbidden || !strings.Contains(body, "--web.enable-lifecycle") {
			t.Errorf("%s /-/reload without the flag answered %d %q", method, code, body)
		}
	}
	if _, body := get(t, http.DefaultClient, http.MethodGet, base+"/metrics"); !strings.Contains(body, "meshcert_config_last_reload_successful 1") {
		t.Error("a refused /-/reload changed the reload status")
	}
}

// TestWebConfigTLSAndBasicAuth: with --web.config.file, the endpoints are served over TLS and a
// scrape without credentials gets 401, with them 200; the PKI API and page likewise.
func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.Issue(testpki.Spec{CommonName: "web ca", CA: true, NotBefore: from, NotAfter: until})
	server := testpki.Issue(testpki.Spec{CommonName: "meshcert", Issuer: ca, NotBefore: from, NotAfter: until, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	write(t, filepath.Join(dir, "tls.crt"), server.PEM())
	write(t, filepath.Join(dir, "tls.key"), server.KeyPEM())
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	write(t, webConfig, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n",
		filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), hash)))
	pool := x509.NewCertPool()
	pool.AddCert(ca.X509)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := startExporter(t, "https", client, "--config.file=examples/meshcert.yaml", "--web.config.file="+webConfig)

	if code, _ := get(t, client, http.MethodGet, base+"/metrics"); code != http.StatusUnauthorized {
		t.Errorf("scrape without credentials: %d, want 401", code)
	}
	// withPassword asks path as the user prometheus.
	withPassword := func(path, password string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.SetBasicAuth("prometheus", password)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// The sample's Istio root, as openssl prints its serial.
	for _, path := range []string{"/api/v1/pki", "/api/v1/what-if?remove_anchor=2133C79C1DFE671803E44AD2C99C3E4C", "/pki"} {
		if code, body := get(t, client, http.MethodGet, base+path); code != http.StatusUnauthorized || strings.Contains(body, "CN=") {
			t.Errorf("%s without credentials: %d, want 401", path, code)
		}
		if code, body := withPassword(path, "s3cret"); code != http.StatusOK || !strings.Contains(body, "CN=Example Istio Root CA") {
			t.Errorf("%s with credentials: %d", path, code)
		}
	}
	if code, _ := withPassword("/metrics", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("scrape with a wrong password: %d", code)
	}
	if code, body := withPassword("/metrics", "s3cret"); code != http.StatusOK || !strings.Contains(body, "meshcert_source_up") {
		t.Errorf("scrape with credentials: %d", code)
	}
	if _, err := http.Get(strings.Replace(base, "https", "http", 1) + "/metrics"); err == nil {
		// Plain HTTP to a TLS port gets a 400 from Go's server, never the metrics.
		code, body := get(t, http.DefaultClient, http.MethodGet, strings.Replace(base, "https", "http", 1)+"/metrics")
		if code == http.StatusOK || strings.Contains(body, "meshcert_") {
			t.Error("metrics served over plain HTTP")
		}
	}
}

// TestConcurrentScrapes: 100 scrapes at once (run with -race in CI) all get a complete answer or a
// fast 503 from the in-flight limit, never a 500 or a partial body.
func TestConcurrentScrapes(t *testing.T) {
	dir := t.TempDir()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: from, NotAfter: until})
	m := testpki.NewMesh(200, from)
	for i, l := range m.Leaves {
		write(t, filepath.Join(dir, fmt.Sprintf("leaf-%03d.pem", i)), testpki.Bundle(l, m.Intermediate, m.Root))
	}
	write(t, filepath.Join(dir, "ca.crt"), root.PEM())
	base := startExporter(t, "http", http.DefaultClient, "--source.files="+dir)
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, _ := get(t, http.DefaultClient, http.MethodGet, base+"/readyz"); code == 200 {
			break
		}
	}
	type result struct {
		code  int
		infos int
	}
	results := make(chan result, 100)
	start := make(chan struct{})
	for range 100 {
		go func() {
			<-start
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				results <- result{code: -1}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{resp.StatusCode, strings.Count(string(body), "\nmeshcert_certificate_info{")}
		}()
	}
	close(start)
	ok := 0
	for range 100 {
		r := <-results
		switch {
		case r.code == http.StatusOK && r.infos == 601:
			ok++
		case r.code == http.StatusServiceUnavailable:
		default:
			t.Errorf("a scrape got %d with %d certificates (want 200 with 601, or 503)", r.code, r.infos)
		}
	}
	if ok < 10 {
		t.Errorf("only %d of 100 concurrent scrapes were served", ok)
	}
}
