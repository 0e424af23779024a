package sources

import (
	"slices"
	"strings"

	"github.com/go-kit/log"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// Env is what every mechanism is built with: the cache parsed certificates are shared through,
// how the keys of an object are read, and the logger.
type Env struct {
	Cache *pki.Cache
	// Layouts decides how an object is read from the names of its keys; the meshes give it.
	Layouts LayoutFunc
	Logger  log.Logger
}

// parse parses a stored value; an empty value holds nothing and is no error.
func (e Env) parse(data []byte) ([]*model.Certificate, model.ErrorReason) {
	if len(data) == 0 {
		return nil, model.ReasonNone
	}
	return e.Cache.ParseBundle(data)
}

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
	// KeyPairs are the private keys the object holds, by name, with the key of each one's
	// certificate.
	KeyPairs []model.KeyPair
}

// Has reports whether key is among keys.
func Has(keys []string, key string) bool { return slices.Contains(keys, key) }

// LayoutFunc decides how to read an object with the given keys. mesh, when set, names the mesh
// the object belongs to; otherwise the mesh is detected from the key names, and an object no mesh
// recognises is read with GenericLayout.
type LayoutFunc func(mesh model.Mesh, keys []string) Layout

// genericTrustKeys are keys that hold trust anchors in objects of no mesh's layout.
var genericTrustKeys = []string{"ca.crt", "ca.pem", "ca-bundle.crt", "ca-bundle.pem", "trust-bundle.pem"}

// GenericLayout reads every key that is not a private key: the keys named like a CA bundle as
// trust bundles, the others as certificates.
func GenericLayout(mesh model.Mesh, keys []string) Layout {
	l := Layout{Mesh: mesh}
	for _, k := range keys {
		if IgnoredKey(k) {
			continue
		}
		purpose := model.PurposeCertificates
		if slices.Contains(genericTrustKeys, strings.ToLower(k)) {
			purpose = model.PurposeTrustBundle
		}
		l.Read = append(l.Read, KeyRule{Key: k, Purpose: purpose})
	}
	slices.SortFunc(l.Read, func(a, b KeyRule) int { return strings.Compare(a.Key, b.Key) })
	l.KeyPairs = PresentKeyPairs(keys, model.KeyPair{PrivateKey: "tls.key", Certificate: "tls.crt"})
	return l
}

// PresentKeyPairs returns the pairs whose private key is among keys.
func PresentKeyPairs(keys []string, pairs ...model.KeyPair) []model.KeyPair {
	var out []model.KeyPair
	for _, kp := range pairs {
		if Has(keys, kp.PrivateKey) {
			out = append(out, kp)
		}
	}
	return out
}

// IgnoredKey reports whether a key is never read: private keys, CRLs, CSRs, markers and hidden
// entries (a mounted Secret's ..data links).
func IgnoredKey(key string) bool {
	k := strings.ToLower(key)
	return strings.HasPrefix(k, ".") ||
		strings.HasSuffix(k, ".key") || strings.HasSuffix(k, "key.pem") || strings.Contains(k, "private") ||
		strings.HasSuffix(k, ".csr") || strings.Contains(k, "crl") || k == "istio-generated"
}

// AsCopies turns the trust bundles of a layout into copies and the object into a non-authoritative
// one: its anchors are compared with the mesh's, not trusted.
func AsCopies(l Layout) Layout {
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

// BuildObject builds an object from a layout. parsed returns the parsed content of one key: no
// certificates and ReasonNone for an empty value, which is skipped (a mesh may keep empty keys
// next to the ones it uses). Keys the layout lacks become bundles with the reason
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
