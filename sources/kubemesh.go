package sources

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"github.com/go-kit/log"
	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// NewSecretSource watches the meshes' CA Secrets (istio-ca-secret, cacerts, istiod-tls,
// linkerd-identity-issuer, each by name in its mesh's namespace) and the Secrets the configuration
// selects.
func NewSecretSource(client kubernetes.Interface, cfg *config.Config, logger log.Logger) *Kube {
	is, ld := cfg.Meshes.Istio, cfg.Meshes.Linkerd
	var watches []*kubeWatch
	if is.Watch {
		watches = append(watches,
			namedWatch(is.Namespace, is.CASecret, readIstioSelfSignedCA),
			namedWatch(is.Namespace, is.PluginCASecret, readIstioPluginCA),
			namedWatch(is.Namespace, is.IstiodTLSSecret, readWorkloadSecret(model.MeshIstio)),
		)
	}
	if ld.Watch {
		watches = append(watches, namedWatch(ld.Namespace, ld.IssuerSecret, readLinkerdIssuer))
	}
	for _, sel := range cfg.Kubernetes.Secrets {
		watches = append(watches, selectorWatch(SourceSecret, sel))
	}
	k := newKube(SourceSecret, true, client, watches, logger)
	// istiod signs with cacerts when it holds a signing certificate and ignores istio-ca-secret:
	// then the latter's root is not a current trust anchor.
	k.adjust = demoteWhenPresent(is.Namespace, is.PluginCASecret, is.CASecret, false, keyIstioCACert, keyTLSCert)
	return k
}

// NewConfigMapSource watches the meshes' ConfigMaps (Istio's mesh config and the root certificate
// copy in every namespace; Linkerd's trust roots and linkerd-config) and the ConfigMaps the
// configuration selects.
func NewConfigMapSource(client kubernetes.Interface, cfg *config.Config, logger log.Logger) *Kube {
	is, ld := cfg.Meshes.Istio, cfg.Meshes.Linkerd
	var watches []*kubeWatch
	if is.Watch {
		mesh := namedWatch(is.Namespace, is.MeshConfigMap, readIstioMeshConfig(is))
		mesh.keep = func(key string) bool { return key == "mesh" }
		// Every namespace's copy of the root, by name: unrelated ConfigMaps never arrive.
		roots := namedWatch("", is.RootCertConfigMap, readRootCertCopy)
		roots.keep = func(key string) bool { return key == keyIstioRoot }
		watches = append(watches, mesh, roots)
	}
	if ld.Watch {
		cfgMap := namedWatch(ld.Namespace, ld.ConfigMap, readLinkerdConfig(ld))
		cfgMap.keep = func(key string) bool { return key == "values" }
		watches = append(watches, namedWatch(ld.Namespace, ld.TrustRootsConfigMap, readLinkerdTrustRoots), cfgMap)
	}
	for _, sel := range cfg.Kubernetes.ConfigMaps {
		watches = append(watches, selectorWatch(SourceConfigMap, sel))
	}
	k := newKube(SourceConfigMap, false, client, watches, logger)
	// Since Linkerd 2.12 the trust roots ConfigMap is the source of the anchors; linkerd-config's
	// identityTrustAnchorsPEM is then a copy that should match it.
	k.adjust = demoteWhenPresent(ld.Namespace, ld.TrustRootsConfigMap, ld.ConfigMap, true)
	return k
}

// namedWatch watches one object by name (in every namespace when namespace is empty).
func namedWatch(namespace, name string, read func(kubeData) readResult) *kubeWatch {
	return &kubeWatch{
		namespace:     namespace,
		fieldSelector: fields.OneTermEqualSelector("metadata.name", name),
		keep:          func(string) bool { return true },
		read:          read,
	}
}

// selectorWatch watches what a configured selector chooses and reads it as generic certificates.
func selectorWatch(source string, sel config.Selector) *kubeWatch {
	var terms []fields.Selector
	if sel.Name != "" {
		terms = append(terms, fields.OneTermEqualSelector("metadata.name", sel.Name))
	}
	if sel.Type != "" {
		terms = append(terms, fields.OneTermEqualSelector("type", sel.Type))
	}
	w := &kubeWatch{
		namespace:     sel.Namespace,
		labelSelector: sel.LabelSelector,
		keep:          func(key string) bool { return matchAny(sel.Keys, key) },
	}
	if len(terms) > 0 {
		w.fieldSelector = fields.AndSelectors(terms...)
	}
	mesh, _ := config.ParseMesh(sel.Mesh) // validated with the configuration
	w.read = func(d kubeData) readResult {
		var keys []string
		for _, k := range d.keys() {
			if matchAny(sel.Keys, k) || IgnoredKey(k) {
				keys = append(keys, k)
			}
		}
		l := DetectLayout(model.MeshNone, keys)
		l.Mesh, l.Authoritative = mesh, sel.TrustAnchors
		return objectResult(source, d, l)
	}
	return w
}

// readIstioSelfSignedCA reads istio-ca-secret as istiod does in its self-signed mode: ca-cert.pem
// is the self-signed root it signs with and the mesh's current anchor (istiod distributes it,
// with the roots of a mounted cacerts root-cert.pem appended); root-cert.pem there is a copy of
// the first root that istiod's rotator never rewrites, compared with the current anchors and not
// exported. istiod needs only ca-cert.pem and ca-key.pem (old installs have nothing else): the
// four-key rule of a plug-in CA does not apply.
func readIstioSelfSignedCA(d kubeData) readResult {
	l := Layout{Mesh: model.MeshIstio, Authoritative: true}
	for _, k := range []string{keyIstioCACert, keyIstioRoot} {
		if slices.Contains(d.keys(), k) {
			l.Read = append(l.Read, KeyRule{Key: k, Purpose: model.PurposeTrustBundle})
		}
	}
	for _, k := range []string{keyIstioCACert, keyIstioCAKey} {
		if !slices.Contains(d.keys(), k) {
			l.Missing = append(l.Missing, k)
		}
	}
	r := objectResult(SourceSecret, d, l)
	for i := range r.object.Bundles {
		if b := &r.object.Bundles[i]; b.Key == keyIstioRoot {
			b.Purpose, b.Export = model.PurposeTrustBundleCopy, model.ExportNone
		}
	}
	return r
}

// readIstioPluginCA reads cacerts in either layout. istiod refuses a partial plug-in bundle
// ("incomplete signing CA bundle"): any of its four files without the others is reported as
// incomplete. A cacerts with only a root-cert.pem leaves istiod on its self-signed root, and the
// roots there are added to the current anchors (as istiod appends a mounted root-cert.pem).
func readIstioPluginCA(d kubeData) readResult {
	l := DetectLayout(model.MeshIstio, d.keys())
	if !slices.Contains(d.keys(), keyTLSCert) && !slices.Contains(d.keys(), keyIstioCACert) &&
		(slices.Contains(d.keys(), keyIstioRoot) || slices.Contains(d.keys(), keyIstioCertChain)) {
		for _, k := range []string{keyIstioCACert, keyIstioCAKey, keyIstioCertChain, keyIstioRoot} {
			if !slices.Contains(d.keys(), k) && !slices.Contains(l.Missing, k) {
				l.Missing = append(l.Missing, k)
			}
		}
	}
	return objectResult(SourceSecret, d, l)
}

// readWorkloadSecret reads a workload's certificate Secret of a mesh (istiod-tls from istio-csr):
// its ca.crt is a copy of the trust anchors to compare, not a source of trust.
func readWorkloadSecret(mesh model.Mesh) func(kubeData) readResult {
	return func(d kubeData) readResult {
		l := DetectLayout(model.MeshNone, d.keys())
		l.Mesh = mesh
		r := objectResult(SourceSecret, d, asCopies(l))
		// Its owner serves the certificate chain to peers that hold only the trust anchors.
		for i := range r.object.Bundles {
			if b := &r.object.Bundles[i]; b.Purpose == model.PurposeCertificates {
				b.Presented = true
			}
		}
		return r
	}
}

// readLinkerdIssuer reads the identity issuer in either scheme. The issuer must verify against the
// trust anchors, never against the ca.crt cert-manager stores next to it: that is a copy.
func readLinkerdIssuer(d kubeData) readResult {
	return objectResult(SourceSecret, d, asCopies(DetectLayout(model.MeshLinkerd, d.keys())))
}

// readRootCertCopy reads a namespace's copy of Istio's root certificates.
func readRootCertCopy(d kubeData) readResult {
	l := Layout{Mesh: model.MeshIstio, Read: []KeyRule{{Key: keyIstioRoot, Purpose: model.PurposeTrustBundleCopy}}}
	return objectResult(SourceConfigMap, d, l)
}

// readLinkerdTrustRoots reads Linkerd's trust anchors and publishes the digest of the bundle's
// exact text: the proxy injector writes the same digest into each pod's
// linkerd.io/trust-root-sha256 annotation.
func readLinkerdTrustRoots(d kubeData) readResult {
	r := objectResult(SourceConfigMap, d, DetectLayout(model.MeshLinkerd, d.keys()))
	if bundle := d.data[keyLinkerdBundle]; len(bundle) > 0 {
		r.meshes = map[model.Mesh]model.MeshSettings{model.MeshLinkerd: {TrustAnchorDigests: []string{digest(bundle)}}}
	}
	return r
}

// digest is the hex SHA-256 of data, as Helm's sha256sum writes it.
func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// readIstioMeshConfig reads the trust domain and its aliases from Istio's mesh config.
func readIstioMeshConfig(is config.Istio) func(kubeData) readResult {
	return func(d kubeData) readResult {
		var mc struct {
			TrustDomain        string   `yaml:"trustDomain"`
			TrustDomainAliases []string `yaml:"trustDomainAliases"`
		}
		settings := model.MeshSettings{TrustDomain: is.TrustDomain, TrustDomainAliases: is.TrustDomainAliases, ControlPlaneNamespace: is.Namespace}
		if err := yaml.Unmarshal(d.data["mesh"], &mc); err != nil || !validTrustDomains(mc.TrustDomain, mc.TrustDomainAliases) {
			return configError(d, "mesh")
		}
		if mc.TrustDomain != "" {
			settings.TrustDomain = mc.TrustDomain
		}
		if mc.TrustDomainAliases != nil {
			settings.TrustDomainAliases = mc.TrustDomainAliases
		}
		return readResult{meshes: map[model.Mesh]model.MeshSettings{model.MeshIstio: settings}}
	}
}

// readLinkerdConfig reads the trust anchors and trust domain from linkerd-config's Helm values.
func readLinkerdConfig(ld config.Linkerd) func(kubeData) readResult {
	return func(d kubeData) readResult {
		var values struct {
			IdentityTrustAnchorsPEM string `yaml:"identityTrustAnchorsPEM"`
			IdentityTrustDomain     string `yaml:"identityTrustDomain"`
		}
		if err := yaml.Unmarshal(d.data["values"], &values); err != nil || !validTrustDomains(values.IdentityTrustDomain, nil) {
			return configError(d, "values")
		}
		settings := model.MeshSettings{TrustDomain: ld.TrustDomain, TrustDomainAliases: ld.TrustDomainAliases, ControlPlaneNamespace: ld.Namespace}
		if values.IdentityTrustDomain != "" {
			settings.TrustDomain = values.IdentityTrustDomain
		}
		if values.IdentityTrustAnchorsPEM != "" {
			settings.TrustAnchorDigests = []string{digest([]byte(values.IdentityTrustAnchorsPEM))}
		}
		r := readResult{meshes: map[model.Mesh]model.MeshSettings{model.MeshLinkerd: settings}}
		if values.IdentityTrustAnchorsPEM != "" {
			b := model.Bundle{Key: "values", Purpose: model.PurposeTrustBundle}
			b.Certificates, b.Error = pki.ParseBundle([]byte(values.IdentityTrustAnchorsPEM))
			r.object = &model.Object{Source: SourceConfigMap, Namespace: d.namespace, Name: d.name, Mesh: model.MeshLinkerd,
				Authoritative: true, Bundles: []model.Bundle{b}}
		}
		return r
	}
}

// validTrustDomains reports whether the trust domains a mesh's config names are usable; empty
// means the default.
func validTrustDomains(td string, aliases []string) bool {
	for _, d := range append([]string{td}, aliases...) {
		if d != "" && !pki.ValidTrustDomain(d) {
			return false
		}
	}
	return true
}

// configError is an object whose configuration key cannot be read.
func configError(d kubeData, key string) readResult {
	return readResult{object: &model.Object{Source: SourceConfigMap, Namespace: d.namespace, Name: d.name,
		Bundles: []model.Bundle{{Key: key, Error: model.ReasonBadConfig}}}}
}

// objectResult builds the object of d in layout l, with the key pairs it holds.
func objectResult(source string, d kubeData, l Layout) readResult {
	o := BuildObject(source, d.namespace, d.name, l, d.parse)
	o.KeyPairs = keyPairs(d.keys())
	return readResult{object: o}
}

// asCopies turns the trust bundles of a layout into copies and the object into a non-authoritative
// one: its anchors are compared with the mesh's, not trusted.
func asCopies(l Layout) Layout {
	l.Authoritative = false
	read := make([]KeyRule, len(l.Read))
	for i, r := range l.Read {
		if r.Purpose == model.PurposeTrustBundle {
			r.Purpose = model.PurposeTrustBundleCopy
		}
		read[i] = r
	}
	l.Read = read
	return l
}

// knownKeyPairs are the private keys of the layouts the exporter reads, with their certificates.
var knownKeyPairs = []model.KeyPair{
	{PrivateKey: keyIstioCAKey, Certificate: keyIstioCACert},
	{PrivateKey: keyTLSKey, Certificate: keyTLSCert},
	{PrivateKey: keyLinkerdKey, Certificate: keyLinkerdCert},
}

// keyPairs returns the known key pairs whose private key is present among keys.
func keyPairs(keys []string) []model.KeyPair {
	var out []model.KeyPair
	for _, kp := range knownKeyPairs {
		for _, k := range keys {
			if k == kp.PrivateKey {
				out = append(out, kp)
			}
		}
	}
	return out
}

// demoteWhenPresent returns an adjust function: while the object named winner (in namespace) holds
// certificates (in one of keys, when keys are given), the object named loser is not authoritative
// and, when copies is set, its trust bundles become copies to compare with the winner's.
func demoteWhenPresent(namespace, winner, loser string, copies bool, keys ...string) func([]*model.Object) []*model.Object {
	return func(objects []*model.Object) []*model.Object {
		present := false
		for _, o := range objects {
			if o.Namespace == namespace && o.Name == winner {
				for _, b := range o.Bundles {
					present = present || len(b.Certificates) > 0 && (len(keys) == 0 || slices.Contains(keys, b.Key))
				}
			}
		}
		if !present {
			return objects
		}
		out := make([]*model.Object, len(objects))
		for i, o := range objects {
			out[i] = o
			if o.Namespace != namespace || o.Name != loser {
				continue
			}
			demoted := *o
			demoted.Authoritative = false
			if copies {
				demoted.Bundles = make([]model.Bundle, len(o.Bundles))
				for j, b := range o.Bundles {
					if b.Purpose == model.PurposeTrustBundle {
						b.Purpose = model.PurposeTrustBundleCopy
					}
					demoted.Bundles[j] = b
				}
			}
			out[i] = &demoted
		}
		return out
	}
}
