// Package config is the exporter's YAML configuration file. Decoding is strict: an unknown key is an
// error that names the key and its line. Every setting has a default that matches the meshes'
// upstream defaults, so an empty file is a valid configuration.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// Config is the whole configuration file.
type Config struct {
	Meshes     Meshes     `yaml:"meshes"`
	Files      Files      `yaml:"files"`
	Kubernetes Kubernetes `yaml:"kubernetes"`
	Proxies    Proxies    `yaml:"proxies"`
}

// Proxies configures the sources that read the certificates proxies serve.
type Proxies struct {
	// Shard and TotalShards split the meshed pods between replicas (fnv32a of namespace/name).
	Shard       int `yaml:"shard"`
	TotalShards int `yaml:"total_shards"`
	// NodeName restricts the proxies to one node's pods (a per-node DaemonSet).
	NodeName string `yaml:"node_name"`
	Envoy    Proxy  `yaml:"envoy"`
	Ztunnel  Proxy  `yaml:"ztunnel"`
	Linkerd  Proxy  `yaml:"linkerd"`
}

// Proxy configures one kind of proxy.
type Proxy struct {
	// Enabled turns the source on; it needs list and watch on pods.
	Enabled bool `yaml:"enabled"`
	// Transport is port-forward (through the API server, for an admin port bound to the pod's
	// localhost) or direct (HTTP to the pod's IP).
	Transport string `yaml:"transport"`
	// AdminPort is the proxy's admin port.
	AdminPort int `yaml:"admin_port"`
	// Interval between two reads of one proxy.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one read.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many proxies are read at once.
	Concurrency int `yaml:"concurrency"`
	// Static are admin endpoints outside Kubernetes (Envoy only).
	Static []StaticTarget `yaml:"static"`
}

// StaticTarget is an Envoy admin endpoint outside Kubernetes.
type StaticTarget struct {
	// Name is the value of the name label.
	Name string `yaml:"name"`
	// URL is the admin base URL, e.g. http://10.0.0.5:9901.
	URL string `yaml:"url"`
}

// Transports a proxy can be read through.
const (
	TransportPortForward = "port-forward"
	TransportDirect      = "direct"
)

// NeedsPods reports whether any proxy source discovers pods.
func (p Proxies) NeedsPods() bool {
	return p.Envoy.Enabled || p.Ztunnel.Enabled || p.Linkerd.Enabled
}

// NeedsPortForward reports whether any enabled proxy source uses port-forward.
func (p Proxies) NeedsPortForward() bool {
	for _, x := range []Proxy{p.Envoy, p.Ztunnel, p.Linkerd} {
		if x.Enabled && x.Transport == TransportPortForward {
			return true
		}
	}
	return false
}

// Meshes holds the settings of each mesh.
type Meshes struct {
	Istio   Istio   `yaml:"istio"`
	Linkerd Linkerd `yaml:"linkerd"`
}

// Istio is where Istio keeps its CA material, with istiod's defaults.
type Istio struct {
	Mesh `yaml:",inline"`
	// CASecret is istiod's self-signed root (istio-ca-secret).
	CASecret string `yaml:"ca_secret"`
	// PluginCASecret is the plug-in CA (cacerts); when present istiod uses it instead of CASecret.
	PluginCASecret string `yaml:"plugin_ca_secret"`
	// IstiodTLSSecret is istiod's serving certificate when istio-csr issues it (istiod-tls).
	IstiodTLSSecret string `yaml:"istiod_tls_secret"`
	// MeshConfigMap holds the mesh config (key "mesh") with the trust domain and its aliases.
	MeshConfigMap string `yaml:"mesh_config_map"`
	// RootCertConfigMap is the root bundle istiod copies into every namespace (PILOT_CA_CERT_CONFIGMAP).
	RootCertConfigMap string `yaml:"root_cert_config_map"`
}

// Linkerd is where Linkerd keeps its trust anchors and issuer, with Linkerd's defaults.
type Linkerd struct {
	Mesh `yaml:",inline"`
	// TrustRootsConfigMap holds the trust anchors (key ca-bundle.crt).
	TrustRootsConfigMap string `yaml:"trust_roots_config_map"`
	// ConfigMap is linkerd-config, whose "values" carry identityTrustAnchorsPEM and the trust domain.
	ConfigMap string `yaml:"config_map"`
	// IssuerSecret is the identity issuer (crt.pem/key.pem or tls.crt/tls.key/ca.crt).
	IssuerSecret string `yaml:"issuer_secret"`
}

// Kubernetes selects further Secrets and ConfigMaps to read (cert-manager Certificates,
// trust-manager Bundles, istio-csr's root).
type Kubernetes struct {
	Secrets    []Selector `yaml:"secrets"`
	ConfigMaps []Selector `yaml:"config_maps"`
}

// Selector chooses Kubernetes objects and the keys to read from them.
type Selector struct {
	// Namespace to watch; empty watches every namespace.
	Namespace string `yaml:"namespace"`
	// Name of one object; empty selects by the other fields.
	Name string `yaml:"name"`
	// LabelSelector in Kubernetes syntax (app=x,tier!=y).
	LabelSelector string `yaml:"label_selector"`
	// Type of Secret (server-side field selector), e.g. kubernetes.io/tls. Secrets only.
	Type string `yaml:"type"`
	// Keys are glob patterns of the data keys to read; empty reads every key that is not a private key.
	Keys []string `yaml:"keys"`
	// Mesh the objects belong to: istio, linkerd or empty.
	Mesh string `yaml:"mesh"`
	// TrustAnchors marks the objects' trust bundles as the mesh's current trust anchors (for
	// example istio-csr's root in cert-manager's namespace).
	TrustAnchors bool `yaml:"trust_anchors"`
}

// Mesh is the settings every mesh has.
type Mesh struct {
	// Watch turns the mesh's Kubernetes objects on or off.
	Watch bool `yaml:"watch"`
	// Namespace of the control plane (istio-system, linkerd).
	Namespace string `yaml:"namespace"`
	// TrustDomain of the mesh's identities; cluster.local by default.
	TrustDomain string `yaml:"trust_domain"`
	// TrustDomainAliases are further accepted trust domains (Istio's trustDomainAliases).
	TrustDomainAliases []string `yaml:"trust_domain_aliases"`
}

// Files configures the file source.
type Files struct {
	// Interval between checks of the files for changes.
	Interval time.Duration `yaml:"interval"`
	// Targets are files, directories or globs.
	Targets []FileTarget `yaml:"targets"`
}

// FileTarget is one file, directory or glob.
type FileTarget struct {
	Path string `yaml:"path"`
	// Mesh overrides the mesh detected from the file names: istio, linkerd, or empty.
	Mesh string `yaml:"mesh"`
}

// Default returns the configuration used when no file is given.
func Default() *Config {
	return &Config{
		Meshes: Meshes{
			Istio: Istio{
				Mesh:              Mesh{Watch: true, Namespace: "istio-system", TrustDomain: "cluster.local"},
				CASecret:          "istio-ca-secret",
				PluginCASecret:    "cacerts",
				IstiodTLSSecret:   "istiod-tls",
				MeshConfigMap:     "istio",
				RootCertConfigMap: "istio-ca-root-cert",
			},
			Linkerd: Linkerd{
				Mesh:                Mesh{Watch: true, Namespace: "linkerd", TrustDomain: "cluster.local"},
				TrustRootsConfigMap: "linkerd-identity-trust-roots",
				ConfigMap:           "linkerd-config",
				IssuerSecret:        "linkerd-identity-issuer",
			},
		},
		Files: Files{Interval: 15 * time.Second},
		Proxies: Proxies{
			TotalShards: 1,
			Envoy:       Proxy{Transport: TransportPortForward, AdminPort: 15000, Interval: 5 * time.Minute, Timeout: 10 * time.Second, Concurrency: 16},
			Ztunnel:     Proxy{Transport: TransportPortForward, AdminPort: 15000, Interval: 5 * time.Minute, Timeout: 10 * time.Second, Concurrency: 4},
			Linkerd:     Proxy{Transport: TransportDirect, AdminPort: 4191, Interval: 5 * time.Minute, Timeout: 5 * time.Second, Concurrency: 16},
		},
	}
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse parses a configuration over the defaults and validates it.
func Parse(data []byte) (*Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every setting and names the first one that is wrong.
func (c *Config) Validate() error {
	for _, m := range []struct {
		name string
		mesh Mesh
	}{{"istio", c.Meshes.Istio.Mesh}, {"linkerd", c.Meshes.Linkerd.Mesh}} {
		if m.mesh.Namespace == "" {
			return fmt.Errorf("meshes.%s.namespace: must not be empty", m.name)
		}
		for i, td := range m.mesh.TrustDomains() {
			field := "trust_domain"
			if i > 0 {
				field = fmt.Sprintf("trust_domain_aliases[%d]", i-1)
			}
			if !pki.ValidTrustDomain(td) {
				return fmt.Errorf("meshes.%s.%s: %q is not a valid trust domain", m.name, field, td)
			}
		}
	}
	if c.Files.Interval < time.Second {
		return fmt.Errorf("files.interval: %s is shorter than 1s", c.Files.Interval)
	}
	for _, names := range []struct {
		field, value string
	}{
		{"meshes.istio.ca_secret", c.Meshes.Istio.CASecret}, {"meshes.istio.plugin_ca_secret", c.Meshes.Istio.PluginCASecret},
		{"meshes.istio.istiod_tls_secret", c.Meshes.Istio.IstiodTLSSecret}, {"meshes.istio.mesh_config_map", c.Meshes.Istio.MeshConfigMap},
		{"meshes.istio.root_cert_config_map", c.Meshes.Istio.RootCertConfigMap},
		{"meshes.linkerd.trust_roots_config_map", c.Meshes.Linkerd.TrustRootsConfigMap},
		{"meshes.linkerd.config_map", c.Meshes.Linkerd.ConfigMap}, {"meshes.linkerd.issuer_secret", c.Meshes.Linkerd.IssuerSecret},
	} {
		if names.value == "" {
			return fmt.Errorf("%s: must not be empty", names.field)
		}
	}
	for i, sel := range c.Kubernetes.Secrets {
		if err := sel.validate(true); err != nil {
			return fmt.Errorf("kubernetes.secrets[%d].%w", i, err)
		}
	}
	for i, sel := range c.Kubernetes.ConfigMaps {
		if err := sel.validate(false); err != nil {
			return fmt.Errorf("kubernetes.config_maps[%d].%w", i, err)
		}
	}
	if p := c.Proxies; p.TotalShards < 1 || p.Shard < 0 || p.Shard >= p.TotalShards {
		return fmt.Errorf("proxies.shard: %d is not in [0, total_shards=%d)", p.Shard, p.TotalShards)
	}
	for _, x := range []struct {
		name  string
		proxy Proxy
	}{{"envoy", c.Proxies.Envoy}, {"ztunnel", c.Proxies.Ztunnel}, {"linkerd", c.Proxies.Linkerd}} {
		if err := x.proxy.validate(); err != nil {
			return fmt.Errorf("proxies.%s.%w", x.name, err)
		}
		if x.name != "envoy" && len(x.proxy.Static) > 0 {
			return fmt.Errorf("proxies.%s.static: only Envoy has static targets", x.name)
		}
	}
	for i, t := range c.Files.Targets {
		if strings.TrimSpace(t.Path) == "" {
			return fmt.Errorf("files.targets[%d].path: must not be empty", i)
		}
		if _, err := ParseMesh(t.Mesh); err != nil {
			return fmt.Errorf("files.targets[%d].mesh: %w", i, err)
		}
	}
	return nil
}

// validate checks a proxy source's settings; errors start with the field name.
func (p Proxy) validate() error {
	switch {
	case p.Transport != TransportPortForward && p.Transport != TransportDirect:
		return fmt.Errorf("transport: %q is not port-forward or direct", p.Transport)
	case p.AdminPort < 1 || p.AdminPort > 65535:
		return fmt.Errorf("admin_port: %d is not a port", p.AdminPort)
	case p.Interval < time.Second:
		return fmt.Errorf("interval: %s is shorter than 1s", p.Interval)
	case p.Timeout <= 0 || p.Timeout > p.Interval:
		return fmt.Errorf("timeout: %s is not between 0 and the interval", p.Timeout)
	case p.Concurrency < 1:
		return fmt.Errorf("concurrency: %d is less than 1", p.Concurrency)
	}
	for i, t := range p.Static {
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("static[%d].url: %q is not an http(s) URL", i, t.URL)
		}
		if t.Name == "" {
			return fmt.Errorf("static[%d].name: must not be empty", i)
		}
	}
	return nil
}

// validate checks a selector; errors start with the field name, to follow the selector's path.
func (s Selector) validate(secret bool) error {
	if _, err := labels.Parse(s.LabelSelector); err != nil {
		return fmt.Errorf("label_selector: %w", err)
	}
	if s.Type != "" && !secret {
		return errors.New("type: only Secrets have a type")
	}
	for i, k := range s.Keys {
		if _, err := path.Match(k, ""); err != nil || k == "" {
			return fmt.Errorf("keys[%d]: %q is not a valid pattern", i, k)
		}
	}
	if _, err := ParseMesh(s.Mesh); err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	if s.TrustAnchors && s.Mesh == "" {
		return errors.New("trust_anchors: needs a mesh")
	}
	return nil
}

// TrustDomains returns the trust domain followed by its aliases.
func (m Mesh) TrustDomains() []string {
	return append([]string{m.TrustDomain}, m.TrustDomainAliases...)
}

// ParseMesh returns the mesh named s: istio, linkerd, or empty for none.
func ParseMesh(s string) (model.Mesh, error) {
	switch m := model.Mesh(s); m {
	case model.MeshNone, model.MeshIstio, model.MeshLinkerd:
		return m, nil
	default:
		return "", fmt.Errorf("unknown mesh %q (want istio, linkerd or empty)", s)
	}
}

// MeshSettings returns the settings of each mesh for the analysis.
func (c *Config) MeshSettings() map[model.Mesh]model.MeshSettings {
	settings := func(m Mesh) model.MeshSettings {
		return model.MeshSettings{TrustDomain: m.TrustDomain, TrustDomainAliases: m.TrustDomainAliases, ControlPlaneNamespace: m.Namespace}
	}
	return map[model.Mesh]model.MeshSettings{
		model.MeshIstio:   settings(c.Meshes.Istio.Mesh),
		model.MeshLinkerd: settings(c.Meshes.Linkerd.Mesh),
	}
}
