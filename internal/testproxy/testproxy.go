// Package testproxy runs the proxy mechanism against admin doubles in tests: a proxy kind that
// serves PEM, static targets read directly, and one complete read of them. It is for tests only.
package testproxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// PEMPath is where PEMKind's proxies answer with a PEM bundle.
const PEMPath = "/pem"

// PEMKind is a proxy kind whose admin endpoint answers with the PEM of its certificates: enough
// to test the proxy mechanism without any mesh's format (the meshes test theirs).
func PEMKind() sources.ProxyKind {
	return sources.ProxyKind{Source: "test-proxy", Mesh: "test", Read: func(ctx context.Context, r sources.ProxyRead) ([]model.Bundle, string, error) {
		body, err := r.Get(ctx, PEMPath)
		if err != nil {
			return nil, "pem", err
		}
		b, err := r.Parse(func() ([]model.Bundle, error) {
			certs, reason := r.Cache.ParseBundle(body)
			if reason == model.ReasonNoCertificate {
				return nil, errors.New("no certificate")
			}
			return []model.Bundle{{Key: "pem", Certificates: certs, Error: reason}}, nil
		})
		return b, "pem", err
	}}
}

// Fast are settings that read each target once per test: an hour apart, with a short timeout.
func Fast() sources.ProxySettings {
	return sources.ProxySettings{AdminPort: 15000, Interval: time.Hour, Timeout: 300 * time.Millisecond, Concurrency: 4}
}

// Static returns the source of kind's proxies at static targets, read directly.
func Static(kind sources.ProxyKind, targets []sources.Target, s sources.ProxySettings) *sources.Proxies {
	env := sources.Env{Cache: pki.NewCache(), Layouts: sources.GenericLayout, Logger: log.NewNopLogger()}
	return sources.NewProxies(kind, nil, targets, sources.NewDirectTransport(1<<20), s, sources.NewParseLimit(), env)
}

// ReadOnce runs p until every target has been read once and returns its state.
func ReadOnce(t testing.TB, p *sources.Proxies) model.State {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st := p.State(); st.Synced {
			return st
		}
	}
	t.Fatal("proxies were not read")
	return model.State{}
}
