package sources

import (
	"slices"
	"strings"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// KeyRule says how one key of an object (a file of a directory, a data key of a Secret) is read.
type KeyRule struct {
	Key      string
	Purpose  model.Purpose
	RoleHint model.Role
}

// Layout is how the keys of one object are read: which mesh it belongs to, which keys hold
// certificates and what they are for, and which keys its layout requires but lacks.
type Layout struct {
	Mesh model.Mesh
	// Authoritative is true when the object's trust bundle is the mesh's current root set.
	Authoritative bool
	// Read are the keys to read, in a stable order. Key files are never among them.
	Read []KeyRule
	// Missing are keys the layout needs but the object lacks: the bundle is incomplete.
	Missing []string
}

// Key names of the meshes' CA layouts (see docs/mesh-formats in the shared notes).
const (
	keyIstioRoot      = "root-cert.pem"
	keyIstioCACert    = "ca-cert.pem"
	keyIstioCAKey     = "ca-key.pem"
	keyIstioCertChain = "cert-chain.pem"
	keyTLSCert        = "tls.crt"
	keyTLSKey         = "tls.key"
	keyCACert         = "ca.crt"
	keyLinkerdBundle  = "ca-bundle.crt"
	keyLinkerdCert    = "crt.pem"
	keyLinkerdKey     = "key.pem"
)

// trustKeyNames are keys that hold trust anchors in generic objects.
var trustKeyNames = []string{keyCACert, "ca.pem", keyLinkerdBundle, "ca-bundle.pem", keyIstioRoot, "trust-bundle.pem"}

// IgnoredKey reports whether a key is never read: private keys, CRLs, CSRs, markers and hidden
// entries (a mounted Secret's ..data links).
func IgnoredKey(key string) bool {
	k := strings.ToLower(key)
	return strings.HasPrefix(k, ".") ||
		strings.HasSuffix(k, ".key") || strings.HasSuffix(k, "key.pem") || strings.Contains(k, "private") ||
		strings.HasSuffix(k, ".csr") || strings.Contains(k, "crl") || k == "istio-generated"
}

// DetectLayout decides how to read an object with the given keys. mesh, when set, overrides the
// detection; otherwise Istio's key names make an Istio CA, Linkerd's a Linkerd issuer or trust
// bundle, and anything else is generic.
func DetectLayout(mesh model.Mesh, keys []string) Layout {
	has := func(k string) bool { return slices.Contains(keys, k) }
	if mesh == model.MeshNone {
		switch {
		case has(keyIstioRoot) || has(keyIstioCACert) || has(keyIstioCertChain):
			mesh = model.MeshIstio
		case has(keyLinkerdBundle) || has(keyLinkerdCert):
			mesh = model.MeshLinkerd
		}
	}
	l := Layout{Mesh: mesh}
	add := func(key string, purpose model.Purpose, hint model.Role) {
		if has(key) {
			l.Read = append(l.Read, KeyRule{Key: key, Purpose: purpose, RoleHint: hint})
		}
	}
	need := func(key string) {
		if !has(key) {
			l.Missing = append(l.Missing, key)
		}
	}
	switch mesh {
	case model.MeshIstio:
		l.Authoritative = true
		if has(keyTLSCert) {
			// istiod's precedence: a cert-manager style bundle wins over the istiod keys.
			add(keyTLSCert, model.PurposeCertificates, "")
			add(keyCACert, model.PurposeTrustBundle, "")
			need(keyTLSKey)
			need(keyCACert)
			break
		}
		add(keyIstioCACert, model.PurposeCertificates, "")
		add(keyIstioCertChain, model.PurposeCertificates, "")
		add(keyIstioRoot, model.PurposeTrustBundle, "")
		if has(keyIstioCACert) || has(keyIstioCAKey) {
			need(keyIstioCACert)
			need(keyIstioCAKey)
			// A plug-in CA (more than istio-ca-secret's certificate and key) needs all four.
			if has(keyIstioCertChain) || has(keyIstioRoot) {
				need(keyIstioCertChain)
				need(keyIstioRoot)
			}
		}
	case model.MeshLinkerd:
		l.Authoritative = true
		add(keyLinkerdBundle, model.PurposeTrustBundle, "")
		add(keyLinkerdCert, model.PurposeCertificates, model.RoleIssuer)
		add(keyTLSCert, model.PurposeCertificates, model.RoleIssuer)
		add(keyCACert, model.PurposeTrustBundle, "")
		if has(keyLinkerdCert) {
			need(keyLinkerdKey)
		}
		if has(keyTLSCert) {
			need(keyTLSKey)
		}
	default:
		for _, k := range keys {
			if IgnoredKey(k) {
				continue
			}
			purpose := model.PurposeCertificates
			if slices.Contains(trustKeyNames, strings.ToLower(k)) {
				purpose = model.PurposeTrustBundle
			}
			l.Read = append(l.Read, KeyRule{Key: k, Purpose: purpose})
		}
		slices.SortFunc(l.Read, func(a, b KeyRule) int { return strings.Compare(a.Key, b.Key) })
	}
	return l
}

// BuildObject builds an object from a layout. parsed returns the parsed content of one key: no
// certificates and ReasonNone for an empty value, which is skipped (istio-ca-secret keeps empty
// cert-chain.pem and key.pem). Keys the layout lacks become bundles with the reason
// ReasonIncomplete.
func BuildObject(source, namespace, name string, l Layout, parsed func(key string) ([]*model.Certificate, model.ErrorReason)) *model.Object {
	o := &model.Object{Source: source, Namespace: namespace, Name: name, Mesh: l.Mesh, Authoritative: l.Authoritative}
	for _, r := range l.Read {
		certs, reason := parsed(r.Key)
		if len(certs) == 0 && reason == model.ReasonNone {
			continue
		}
		o.Bundles = append(o.Bundles, model.Bundle{Key: r.Key, Purpose: r.Purpose, Issuer: r.RoleHint == model.RoleIssuer, Certificates: certs, Error: reason})
	}
	for _, k := range l.Missing {
		o.Bundles = append(o.Bundles, model.Bundle{Key: k, Error: model.ReasonIncomplete})
	}
	return o
}

// parseValue parses a stored value; an empty value holds nothing and is no error.
func parseValue(data []byte) ([]*model.Certificate, model.ErrorReason) {
	if len(data) == 0 {
		return nil, model.ReasonNone
	}
	return pki.ParseBundle(data)
}
