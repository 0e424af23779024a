// Package linkerd is everything the exporter knows of Linkerd: its trust anchors (the
// linkerd-identity-trust-roots ConfigMap since 2.12, of which linkerd-config's copy must match),
// its identity issuer in either scheme, the digest of the anchors injected into every pod, its
// DNS-name identities and the ECDSA P-256 rule for its CAs, and its proxies' expiry metric.
package linkerd

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// Name is Linkerd's value of the `mesh` label.
const Name model.Mesh = "linkerd"

// Key names of Linkerd's objects.
const (
	keyBundle  = "ca-bundle.crt"
	keyCert    = "crt.pem"
	keyKey     = "key.pem"
	keyTLSCert = "tls.crt"
	keyTLSKey  = "tls.key"
	keyCA      = "ca.crt"
	keyValues  = "values"
)

// What a pod shows of Linkerd's proxy.
const (
	containerProxy = "linkerd-proxy"
	// TrustRootAnnotation is where the proxy injector writes the digest of the trust anchors it
	// injected into the pod.
	TrustRootAnnotation = "linkerd.io/trust-root-sha256"
)

// SourceProxy is the `source` label value of Linkerd's proxies.
const SourceProxy = "linkerd-proxy"

// Mesh is Linkerd's configuration section (meshes.linkerd), with Linkerd's defaults.
type Mesh struct {
	mesh.Common `yaml:",inline"`
	// TrustRootsConfigMap holds the trust anchors (key ca-bundle.crt).
	TrustRootsConfigMap string `yaml:"trust_roots_config_map"`
	// ConfigMap is linkerd-config, whose "values" carry identityTrustAnchorsPEM and the trust domain.
	ConfigMap string `yaml:"config_map"`
	// IssuerSecret is the identity issuer (crt.pem/key.pem or tls.crt/tls.key/ca.crt).
	IssuerSecret string `yaml:"issuer_secret"`
}

// Definition registers Linkerd.
func Definition() mesh.Definition {
	return mesh.Definition{Name: Name, New: func() mesh.Mesh { return New() }}
}

// New returns Linkerd's section with Linkerd's defaults.
func New() *Mesh {
	return &Mesh{
		Common:              mesh.Common{Watch: true, Namespace: "linkerd", TrustDomain: "cluster.local"},
		TrustRootsConfigMap: "linkerd-identity-trust-roots",
		ConfigMap:           "linkerd-config",
		IssuerSecret:        "linkerd-identity-issuer",
	}
}

// Name implements mesh.Mesh.
func (m *Mesh) Name() model.Mesh { return Name }

// Validate implements mesh.Mesh.
func (m *Mesh) Validate() error {
	if err := m.Common.Validate(); err != nil {
		return err
	}
	return mesh.RequireNames("trust_roots_config_map", m.TrustRootsConfigMap, "config_map", m.ConfigMap, "issuer_secret", m.IssuerSecret)
}

// Settings implements mesh.Mesh.
func (m *Mesh) Settings() model.MeshSettings {
	s := m.Common.Settings()
	s.TrustAnchorDigestKey = TrustRootAnnotation
	return s
}

// Rules implements mesh.Mesh.
func (m *Mesh) Rules() pki.MeshRules { return rules{} }

// Recognizes implements mesh.Mesh: the trust roots' and the issuer's key names.
func (m *Mesh) Recognizes(keys []string) bool {
	return sources.Has(keys, keyBundle) || sources.Has(keys, keyCert)
}

// Layout implements mesh.Mesh: trust anchors in ca-bundle.crt, the issuer in crt.pem (Linkerd's
// own scheme) or tls.crt (cert-manager's), each with its key.
func (m *Mesh) Layout(keys []string) sources.Layout {
	l := sources.Layout{Mesh: Name, Authoritative: true, KeyPairs: sources.PresentKeyPairs(keys,
		model.KeyPair{PrivateKey: keyKey, Certificate: keyCert}, model.KeyPair{PrivateKey: keyTLSKey, Certificate: keyTLSCert})}
	add := func(key string, purpose model.Purpose, hint model.Role) {
		if sources.Has(keys, key) {
			l.Read = append(l.Read, sources.KeyRule{Key: key, Purpose: purpose, RoleHint: hint})
		}
	}
	add(keyBundle, model.PurposeTrustBundle, "")
	add(keyCert, model.PurposeCertificates, model.RoleIssuer)
	add(keyTLSCert, model.PurposeCertificates, model.RoleIssuer)
	add(keyCA, model.PurposeTrustBundle, "")
	if sources.Has(keys, keyCert) && !sources.Has(keys, keyKey) {
		l.Missing = append(l.Missing, keyKey)
	}
	if sources.Has(keys, keyTLSCert) && !sources.Has(keys, keyTLSKey) {
		l.Missing = append(l.Missing, keyTLSKey)
	}
	return l
}

// Watches implements mesh.Mesh: the issuer Secret, the trust roots and linkerd-config, by name in
// the control plane's namespace.
func (m *Mesh) Watches() []*sources.Watch {
	if !m.Watch {
		return nil
	}
	return []*sources.Watch{
		mesh.Named(sources.Secrets, m.Namespace, m.IssuerSecret, nil, m.readIssuer),
		mesh.Named(sources.ConfigMaps, m.Namespace, m.TrustRootsConfigMap, nil, m.readTrustRoots),
		mesh.Named(sources.ConfigMaps, m.Namespace, m.ConfigMap, func(k string) bool { return k == keyValues }, m.readConfig),
	}
}

// Adjust implements mesh.Mesh: since Linkerd 2.12 the trust roots ConfigMap is the source of the
// anchors; linkerd-config's identityTrustAnchorsPEM is then a copy that should match it.
func (m *Mesh) Adjust(kind sources.Kind) sources.Adjust {
	if kind != sources.ConfigMaps || !m.Watch {
		return nil
	}
	return mesh.DemoteWhenPresent(m.Namespace, m.TrustRootsConfigMap, m.ConfigMap, true)
}

// readIssuer reads the identity issuer in either scheme, and what rotates it. The issuer must
// verify against the trust anchors, never against the ca.crt cert-manager stores next to it: that
// is a copy.
func (m *Mesh) readIssuer(d sources.Data) sources.Result {
	r := d.Object(sources.AsCopies(m.Layout(d.Keys())))
	r.Object.Manager = d.Manager()
	return r
}

// readTrustRoots reads Linkerd's trust anchors and publishes the digest of the bundle's exact
// text: the proxy injector writes the same digest into each pod's TrustRootAnnotation.
func (m *Mesh) readTrustRoots(d sources.Data) sources.Result {
	r := d.Object(m.Layout(d.Keys()))
	if bundle := d.Value(keyBundle); len(bundle) > 0 {
		r.Meshes = map[model.Mesh]model.MeshSettings{Name: {TrustAnchorDigests: []string{digest(bundle)}}}
	}
	return r
}

// digest is the hex SHA-256 of data, as Helm's sha256sum writes it.
func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// readConfig reads the trust anchors, the trust domain and the cluster's default inbound policy
// from linkerd-config's Helm values.
func (m *Mesh) readConfig(d sources.Data) sources.Result {
	var values struct {
		IdentityTrustAnchorsPEM string `yaml:"identityTrustAnchorsPEM"`
		IdentityTrustDomain     string `yaml:"identityTrustDomain"`
		Proxy                   struct {
			DefaultInboundPolicy string `yaml:"defaultInboundPolicy"`
		} `yaml:"proxy"`
		// PolicyController.DefaultAllowPolicy is the same setting before Linkerd 2.12.
		PolicyController struct {
			DefaultAllowPolicy string `yaml:"defaultAllowPolicy"`
		} `yaml:"policyController"`
	}
	if err := yaml.Unmarshal(d.Value(keyValues), &values); err != nil || !mesh.ValidTrustDomains(values.IdentityTrustDomain, nil) {
		return d.ConfigError(keyValues)
	}
	settings := m.Settings()
	if values.IdentityTrustDomain != "" {
		settings.TrustDomain = values.IdentityTrustDomain
	}
	if values.IdentityTrustAnchorsPEM != "" {
		settings.TrustAnchorDigests = []string{digest([]byte(values.IdentityTrustAnchorsPEM))}
	}
	settings.DefaultPolicy = cmp.Or(values.Proxy.DefaultInboundPolicy, values.PolicyController.DefaultAllowPolicy)
	r := sources.Result{Meshes: map[model.Mesh]model.MeshSettings{Name: settings}}
	if values.IdentityTrustAnchorsPEM != "" {
		b := model.Bundle{Key: keyValues, Purpose: model.PurposeTrustBundle}
		b.Certificates, b.Error = d.ParseBundle([]byte(values.IdentityTrustAnchorsPEM))
		r.Object = &model.Object{Source: sources.SourceConfigMap, Namespace: d.Namespace, Name: d.Name, Mesh: Name,
			Authoritative: true, Bundles: []model.Bundle{b}}
	}
	return r
}

// Proxies implements mesh.Mesh: Linkerd's proxy, whose admin port shows its identity
// certificate's expiry.
func (m *Mesh) Proxies() []sources.ProxyKind { return []sources.ProxyKind{ProxyKind()} }

// ProxyKind is Linkerd's proxy: a pod with the linkerd-proxy container, read directly on its
// admin port.
func ProxyKind() sources.ProxyKind {
	return sources.ProxyKind{
		Source: SourceProxy, Key: "linkerd", Flag: "linkerd-proxy", What: "Linkerd proxies", Mesh: Name,
		Defaults:            sources.ProxyConfig{Transport: sources.TransportDirect, AdminPort: 4191, Interval: 5 * time.Minute, Timeout: 5 * time.Second, Concurrency: 16},
		Runs:                func(p *corev1.Pod) bool { return sources.RunsContainer(p, containerProxy) },
		TrustRootAnnotation: TrustRootAnnotation,
		Read:                readProxy,
	}
}

// readProxy reads a proxy's metrics.
func readProxy(ctx context.Context, r sources.ProxyRead) ([]model.Bundle, string, error) {
	body, err := r.Get(ctx, MetricsPath)
	if err != nil {
		return nil, "metrics", err
	}
	b, err := r.Parse(func() ([]model.Bundle, error) { return ParseProxyMetrics(body, r.Origin()) })
	return b, "metrics", err
}

// In returns Linkerd's section among meshes, or nil.
func In(meshes []mesh.Mesh) *Mesh {
	for _, m := range meshes {
		if ld, ok := m.(*Mesh); ok {
			return ld
		}
	}
	return nil
}
