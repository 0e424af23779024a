// Package istio is everything the exporter knows of Istio: where istiod keeps its CA (its
// self-signed root in istio-ca-secret, a plug-in CA in cacerts, which wins), the root copies it
// writes into every namespace, its mesh config, the SPIFFE identities it issues and the keys it
// can sign with, and its proxies (Envoy sidecars and gateways, ztunnel).
package istio

import (
	"go.yaml.in/yaml/v3"

	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// Name is Istio's value of the `mesh` label.
const Name model.Mesh = "istio"

// Key names of istiod's CA layouts (see docs/mesh-formats in the shared notes).
const (
	keyRoot      = "root-cert.pem"
	keyCACert    = "ca-cert.pem"
	keyCAKey     = "ca-key.pem"
	keyCertChain = "cert-chain.pem"
	keyTLSCert   = "tls.crt"
	keyTLSKey    = "tls.key"
	keyCA        = "ca.crt"
	keyMesh      = "mesh"
)

// Mesh is Istio's configuration section (meshes.istio), with istiod's defaults.
type Mesh struct {
	mesh.Common `yaml:",inline"`
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

// Definition registers Istio.
func Definition() mesh.Definition {
	return mesh.Definition{Name: Name, New: func() mesh.Mesh { return New() }}
}

// New returns Istio's section with istiod's defaults.
func New() *Mesh {
	return &Mesh{
		Common:            mesh.Common{Watch: true, Namespace: "istio-system", TrustDomain: "cluster.local"},
		CASecret:          "istio-ca-secret",
		PluginCASecret:    "cacerts",
		IstiodTLSSecret:   "istiod-tls",
		MeshConfigMap:     "istio",
		RootCertConfigMap: "istio-ca-root-cert",
	}
}

// Name implements mesh.Mesh.
func (m *Mesh) Name() model.Mesh { return Name }

// Validate implements mesh.Mesh.
func (m *Mesh) Validate() error {
	if err := m.Common.Validate(); err != nil {
		return err
	}
	return mesh.RequireNames("ca_secret", m.CASecret, "plugin_ca_secret", m.PluginCASecret, "istiod_tls_secret", m.IstiodTLSSecret,
		"mesh_config_map", m.MeshConfigMap, "root_cert_config_map", m.RootCertConfigMap)
}

// Rules implements mesh.Mesh.
func (m *Mesh) Rules() pki.MeshRules { return rules{} }

// Recognizes implements mesh.Mesh: istiod's key names.
func (m *Mesh) Recognizes(keys []string) bool {
	return sources.Has(keys, keyRoot) || sources.Has(keys, keyCACert) || sources.Has(keys, keyCertChain)
}

// keyPairs are the private keys of istiod's layouts, with their certificates.
var keyPairs = []model.KeyPair{{PrivateKey: keyCAKey, Certificate: keyCACert}, {PrivateKey: keyTLSKey, Certificate: keyTLSCert}}

// Layout implements mesh.Mesh: a plug-in CA (cacerts' four files, or a cert-manager style
// tls.crt/tls.key/ca.crt, which wins as in istiod) or istiod's own CA keys.
func (m *Mesh) Layout(keys []string) sources.Layout {
	has := func(k string) bool { return sources.Has(keys, k) }
	l := sources.Layout{Mesh: Name, Authoritative: true, KeyPairs: sources.PresentKeyPairs(keys, keyPairs...)}
	add := func(key string, purpose model.Purpose) {
		if has(key) {
			l.Read = append(l.Read, sources.KeyRule{Key: key, Purpose: purpose})
		}
	}
	need := func(key string) {
		if !has(key) {
			l.Missing = append(l.Missing, key)
		}
	}
	if has(keyTLSCert) {
		add(keyTLSCert, model.PurposeCertificates)
		add(keyCA, model.PurposeTrustBundle)
		need(keyTLSKey)
		need(keyCA)
		return l
	}
	add(keyCACert, model.PurposeCertificates)
	add(keyCertChain, model.PurposeCertificates)
	add(keyRoot, model.PurposeTrustBundle)
	if has(keyCACert) || has(keyCAKey) {
		need(keyCACert)
		need(keyCAKey)
		// A plug-in CA (more than istio-ca-secret's certificate and key) needs all four.
		if has(keyCertChain) || has(keyRoot) {
			need(keyCertChain)
			need(keyRoot)
		}
	}
	return l
}

// Watches implements mesh.Mesh: istiod's CA Secrets and serving certificate by name in its
// namespace, its mesh config, and the root copy in every namespace (by name: unrelated
// ConfigMaps never arrive).
func (m *Mesh) Watches() []*sources.Watch {
	if !m.Watch {
		return nil
	}
	only := func(key string) func(string) bool { return func(k string) bool { return k == key } }
	return []*sources.Watch{
		mesh.Named(sources.Secrets, m.Namespace, m.CASecret, nil, m.readSelfSignedCA),
		mesh.Named(sources.Secrets, m.Namespace, m.PluginCASecret, nil, m.readPluginCA),
		mesh.Named(sources.Secrets, m.Namespace, m.IstiodTLSSecret, nil, readWorkloadSecret),
		mesh.Named(sources.ConfigMaps, m.Namespace, m.MeshConfigMap, only(keyMesh), m.readMeshConfig),
		mesh.Named(sources.ConfigMaps, "", m.RootCertConfigMap, only(keyRoot), readRootCertCopy),
	}
}

// Adjust implements mesh.Mesh: istiod signs with cacerts when it holds a signing certificate and
// ignores istio-ca-secret; then the latter's root is not a current trust anchor.
func (m *Mesh) Adjust(kind sources.Kind) sources.Adjust {
	if kind != sources.Secrets || !m.Watch {
		return nil
	}
	return mesh.DemoteWhenPresent(m.Namespace, m.PluginCASecret, m.CASecret, false, keyCACert, keyTLSCert)
}

// readSelfSignedCA reads istio-ca-secret as istiod does in its self-signed mode: ca-cert.pem is
// the self-signed root it signs with and the mesh's current anchor (istiod distributes it, with
// the roots of a mounted cacerts root-cert.pem appended); root-cert.pem there is a copy of the
// first root that istiod's rotator never rewrites, compared with the current anchors and not
// exported. istiod needs only ca-cert.pem and ca-key.pem (old installs have nothing else): the
// four-key rule of a plug-in CA does not apply.
func (m *Mesh) readSelfSignedCA(d sources.Data) sources.Result {
	keys := d.Keys()
	l := sources.Layout{Mesh: Name, Authoritative: true, KeyPairs: sources.PresentKeyPairs(keys, keyPairs...)}
	for _, k := range []string{keyCACert, keyRoot} {
		if sources.Has(keys, k) {
			l.Read = append(l.Read, sources.KeyRule{Key: k, Purpose: model.PurposeTrustBundle})
		}
	}
	for _, k := range []string{keyCACert, keyCAKey} {
		if !sources.Has(keys, k) {
			l.Missing = append(l.Missing, k)
		}
	}
	r := d.Object(l)
	for i := range r.Object.Bundles {
		if b := &r.Object.Bundles[i]; b.Key == keyRoot {
			b.Purpose, b.Export = model.PurposeTrustBundleCopy, model.ExportNone
		}
	}
	return r
}

// readPluginCA reads cacerts in either layout, and what rotates it. istiod refuses a partial plug-in bundle
// ("incomplete signing CA bundle"): any of its four files without the others is reported as
// incomplete. A cacerts with only a root-cert.pem leaves istiod on its self-signed root, and the
// roots there are added to the current anchors (as istiod appends a mounted root-cert.pem).
func (m *Mesh) readPluginCA(d sources.Data) sources.Result {
	keys := d.Keys()
	l := m.Layout(keys)
	if !sources.Has(keys, keyTLSCert) && !sources.Has(keys, keyCACert) && (sources.Has(keys, keyRoot) || sources.Has(keys, keyCertChain)) {
		for _, k := range []string{keyCACert, keyCAKey, keyCertChain, keyRoot} {
			if !sources.Has(keys, k) && !sources.Has(l.Missing, k) {
				l.Missing = append(l.Missing, k)
			}
		}
	}
	r := d.Object(l)
	// The plug-in CA is what istiod signs with when it holds a signing certificate: the issuer.
	if sources.Has(keys, keyCACert) || sources.Has(keys, keyTLSCert) {
		r.Object.Manager = d.Manager()
	}
	return r
}

// readWorkloadSecret reads istiod's serving certificate Secret (istiod-tls from istio-csr): its
// ca.crt is a copy of the trust anchors to compare, not a source of trust, and its owner serves
// the certificate chain to peers that hold only the trust anchors.
func readWorkloadSecret(d sources.Data) sources.Result {
	l := sources.AsCopies(sources.GenericLayout(Name, d.Keys()))
	r := d.Object(l)
	for i := range r.Object.Bundles {
		if b := &r.Object.Bundles[i]; b.Purpose == model.PurposeCertificates {
			b.Presented = true
		}
	}
	return r
}

// readRootCertCopy reads a namespace's copy of Istio's root certificates.
func readRootCertCopy(d sources.Data) sources.Result {
	return d.Object(sources.Layout{Mesh: Name, Read: []sources.KeyRule{{Key: keyRoot, Purpose: model.PurposeTrustBundleCopy}}})
}

// readMeshConfig reads the trust domain, its aliases and the root namespace (where a policy
// applies mesh-wide) from Istio's mesh config.
func (m *Mesh) readMeshConfig(d sources.Data) sources.Result {
	var mc struct {
		TrustDomain        string   `yaml:"trustDomain"`
		TrustDomainAliases []string `yaml:"trustDomainAliases"`
		RootNamespace      string   `yaml:"rootNamespace"`
	}
	settings := m.Settings()
	if err := yaml.Unmarshal(d.Value(keyMesh), &mc); err != nil || !mesh.ValidTrustDomains(mc.TrustDomain, mc.TrustDomainAliases) {
		return d.ConfigError(keyMesh)
	}
	if mc.TrustDomain != "" {
		settings.TrustDomain = mc.TrustDomain
	}
	if mc.TrustDomainAliases != nil {
		settings.TrustDomainAliases = mc.TrustDomainAliases
	}
	if mc.RootNamespace != "" {
		settings.RootNamespace = mc.RootNamespace
	}
	return sources.Result{Meshes: map[model.Mesh]model.MeshSettings{Name: settings}}
}

// In returns Istio's section among meshes, or nil.
func In(meshes []mesh.Mesh) *Mesh {
	for _, m := range meshes {
		if is, ok := m.(*Mesh); ok {
			return is
		}
	}
	return nil
}
