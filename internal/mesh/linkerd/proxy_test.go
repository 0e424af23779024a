package linkerd

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/sources"
)

func TestLinkerdProxyMetrics(t *testing.T) {
	expiry := time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC)
	v := fmt.Sprintf("%d", expiry.Unix())
	tests := []struct {
		name, body string
		ok         bool
		err        error // what a failed read wraps; nil for a plain parse error (bad_response)
	}{
		{"current name", "# TYPE control_identity_cert_expiration_timestamp_seconds gauge\ncontrol_identity_cert_expiration_timestamp_seconds " + v + "\n", true, nil},
		{"before April 2024, with the refresh counter", "# TYPE identity_cert_refreshes_total counter\nidentity_cert_refreshes_total{result=\"ok\"} 3\n# TYPE identity_cert_expiration_timestamp_seconds gauge\nidentity_cert_expiration_timestamp_seconds " + v + "\n", true, nil},
		{"old untyped", "identity_cert_expiration_timestamp_seconds " + v + "\n", true, nil},
		{"identity not loaded yet", "control_identity_cert_expiration_timestamp_seconds 0\n", false, sources.ErrNotReady},
		{"no identity metric: an unknown release", "request_total 3\n", false, sources.ErrUnknownShape},
		{"not metrics", "<html>", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseProxyMetrics([]byte(tt.body), "pod")
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			if !tt.ok && tt.err != nil && !errors.Is(err, tt.err) || tt.err == nil && (errors.Is(err, sources.ErrNotReady) || errors.Is(err, sources.ErrUnknownShape)) {
				t.Errorf("err %v, want one wrapping %v", err, tt.err)
			}
			if tt.ok && (len(b) != 1 || !b[0].Certificates[0].NotAfter().Equal(expiry) || !b[0].Certificates[0].Partial) {
				t.Errorf("bundles %+v", b)
			}
		})
	}
}

// FuzzParseProxyMetrics: any metrics text parses or fails cleanly.
func FuzzParseProxyMetrics(f *testing.F) {
	f.Add([]byte("# TYPE control_identity_cert_expiration_timestamp_seconds gauge\ncontrol_identity_cert_expiration_timestamp_seconds 1.8e9\n"))
	f.Add([]byte("identity_cert_expiration_timestamp_seconds{a=\"b\"} 1780000000\nidentity_cert_refreshes_total{result=\"ok\"} 2\n"))
	f.Add([]byte("identity_cert_expiration_timestamp_seconds NaN\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		bundles, err := ParseProxyMetrics(body, "fuzz")
		if err == nil {
			checkBundles(t, bundles)
		}
	})
}

// checkBundles holds for every reader: certificates with facts.
func checkBundles(t *testing.T, bundles []model.Bundle) {
	for _, b := range bundles {
		for _, c := range b.Certificates {
			if c == nil || !c.Partial && c.Fingerprint == ([32]byte{}) {
				t.Fatal("a nil certificate")
			}
		}
	}
}
