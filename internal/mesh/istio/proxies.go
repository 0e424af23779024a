package istio

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/sources"
)

// What a pod shows of Istio's proxies.
const (
	containerProxy = "istio-proxy"
	labelTLSMode   = "security.istio.io/tlsMode"
	labelApp       = "app"
	appZtunnel     = "ztunnel"
)

// The `source` label values of Istio's proxies.
const (
	SourceEnvoy   = "envoy"
	SourceZtunnel = "ztunnel"
)

// Envoy admin paths.
const (
	EnvoySecretsPath = "/config_dump?resource=dynamic_active_secrets"
	EnvoyCertsPath   = "/certs"
)

// ZtunnelConfigDumpPath is the admin path ztunnel serves its state on.
const ZtunnelConfigDumpPath = "/config_dump"

// Proxies implements mesh.Mesh: Envoy (sidecars and gateways, and Envoys outside Kubernetes) and
// ztunnel, ambient's node proxy.
func (m *Mesh) Proxies() []sources.ProxyKind {
	return []sources.ProxyKind{EnvoyKind(), ZtunnelKind()}
}

// EnvoyKind is Istio's Envoy: a pod with the istio-proxy container (a sidecar) or Istio's TLS
// mode label (a gateway), read on its admin port through the API server by default, as istioctl
// does.
func EnvoyKind() sources.ProxyKind {
	return sources.ProxyKind{
		Source: SourceEnvoy, Key: "envoy", Flag: "envoy", What: "Istio sidecars and gateways (Envoy admin)", Mesh: Name, Static: true,
		Defaults: sources.ProxyConfig{Transport: sources.TransportPortForward, AdminPort: 15000, Interval: 5 * time.Minute, Timeout: 10 * time.Second, Concurrency: 16},
		Runs: func(p *corev1.Pod) bool {
			return p.Labels[labelApp] != appZtunnel && (sources.RunsContainer(p, containerProxy) || p.Labels[labelTLSMode] == "istio")
		},
		Read: readEnvoy,
	}
}

// ZtunnelKind is ztunnel, one per node, holding the certificates of its node's workloads.
func ZtunnelKind() sources.ProxyKind {
	return sources.ProxyKind{
		Source: SourceZtunnel, Key: "ztunnel", Flag: "ztunnel", What: "ztunnel, Istio ambient's node proxy", Mesh: Name, NodeProxy: true,
		Defaults: sources.ProxyConfig{Transport: sources.TransportPortForward, AdminPort: 15000, Interval: 5 * time.Minute, Timeout: 10 * time.Second, Concurrency: 4},
		Runs:     func(p *corev1.Pod) bool { return p.Labels[labelApp] == appZtunnel },
		Read:     readZtunnel,
	}
}

// readEnvoy prefers /config_dump (whole chains) and falls back to /certs (leaf and first root
// only) when config_dump is refused.
func readEnvoy(ctx context.Context, r sources.ProxyRead) ([]model.Bundle, string, error) {
	body, err := r.Get(ctx, EnvoySecretsPath)
	if err == nil {
		b, err := r.Parse(func() ([]model.Bundle, error) { return ParseEnvoyConfigDump(r.Cache, body) })
		clear(body)
		return b, "config_dump", err
	}
	// Only a refusal (an admin that filters paths, an old Envoy) falls back; a failing proxy does not.
	if !sources.IsRefusal(err) {
		return nil, "config_dump", err
	}
	body, err = r.Get(ctx, EnvoyCertsPath)
	if err != nil {
		return nil, "certs", err
	}
	b, err := r.Parse(func() ([]model.Bundle, error) { return ParseEnvoyCerts(body, r.Origin()) })
	return b, "certs", err
}

// readZtunnel reads ztunnel's config dump; each identity is expected on the ztunnel's node.
func readZtunnel(ctx context.Context, r sources.ProxyRead) ([]model.Bundle, string, error) {
	body, err := r.Get(ctx, ZtunnelConfigDumpPath)
	if err != nil {
		return nil, "config_dump", err
	}
	onNode := r.OnNode()
	b, err := r.Parse(func() ([]model.Bundle, error) { return ParseZtunnelConfigDump(r.Cache, body, r.Origin(), onNode) })
	return b, "config_dump", err
}
