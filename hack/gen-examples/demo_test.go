package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/exporter"
)

// TestDemoShowsThePoint: the demo `make run` serves, made at a fixed instant, has what the README
// tells a new user to look at: a rotation that cannot go on (a copy without the new root, the old
// root 25 days from expiry with the intermediate still under it), and a Linkerd issuer three days
// from expiry.
func TestDemoShowsThePoint(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	if err := writeDemo(dir, now); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "meshcert.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := exporter.New(cfg, nil, exporter.Options{MetricsPath: "/metrics"}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.Run(ctx, log.NewNopLogger()) })
	defer func() { cancel(); wg.Wait() }()
	for deadline := time.Now().Add(2 * time.Minute); !e.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the demo's sources did not read their material")
		}
	}
	get := func(path string) string {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	var w struct {
		Broken []struct {
			Key string `json:"key"`
		} `json:"broken"`
		Unanchored []struct {
			Name string `json:"name"`
		} `json:"unanchored"`
	}
	if err := json.Unmarshal([]byte(get("/api/v1/what-if?remove_anchor=A11CE")), &w); err != nil {
		t.Fatal(err)
	}
	if len(w.Broken) != 1 || w.Broken[0].Key != "ca-cert.pem" || len(w.Unanchored) != 1 || !strings.HasSuffix(w.Unanchored[0].Name, "istio-root-copy") {
		t.Errorf("what if the old root left: %+v", w)
	}
	page := get("/pki")
	for _, want := range []string{"CN=Demo Istio Root CA 2026", "published, not signing yet", "istio-root-copy", "CN=identity.linkerd.cluster.local"} {
		if !strings.Contains(page, want) {
			t.Errorf("the demo page lacks %q", want)
		}
	}
	metrics := get("/metrics")
	for _, want := range []string{`meshcert_trust_bundle_current{key="root-cert.pem",mesh="istio",name="` + filepath.Join(dir, "istio-root-copy") + `",namespace="",source="file"} 0`,
		`meshcert_trust_anchor_dependents{anchor_serial="a11ce",mesh="istio",partition="shared"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the demo's metrics lack %s", want)
		}
	}
	// The README's promise: the Linkerd issuer expires within days, the old Istio root within a month.
	expiry := func(d time.Duration) string { return strconv.FormatFloat(float64(now.Add(d).Unix()), 'g', -1, 64) }
	for _, want := range []string{`role="issuer",source="file"} ` + expiry(3*24*time.Hour), `key="root-cert.pem",mesh="istio",name="` + filepath.Join(dir, "istio-root-copy") +
		`",namespace="",role="trust_anchor",source="file"} ` + expiry(25*24*time.Hour)} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the demo's metrics lack the expiry %s", want)
		}
	}
}
