package istio

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// ztunnelCert is one certificate of ztunnel's config dump. Releases up to 1.21 wrote its fields in
// snake_case, later ones in camelCase: both are read.
type ztunnelCert struct {
	PEM                 string `json:"pem"`
	SerialNumber        string `json:"serialNumber"`
	SerialNumberSnake   string `json:"serial_number"`
	ValidFrom           string `json:"validFrom"`
	ValidFromSnake      string `json:"valid_from"`
	ExpirationTime      string `json:"expirationTime"`
	ExpirationTimeSnake string `json:"expiration_time"`
}

// ztunnelIdentity is the certificate state of one workload identity. Its chain and roots have been
// written in three shapes: ca_cert (the root) and cert_chain (up to 1.21); cert_chain or certChain
// alone, holding the leaf and the root (releases in between); certChain and rootCerts (current).
type ztunnelIdentity struct {
	Identity       string         `json:"identity"`
	State          string         `json:"state"`
	CertChain      *[]ztunnelCert `json:"certChain"`
	CertChainSnake *[]ztunnelCert `json:"cert_chain"`
	RootCerts      *[]ztunnelCert `json:"rootCerts"`
	CACert         *[]ztunnelCert `json:"ca_cert"`
}

// ParseZtunnelConfigDump reads the certificates of ztunnel's /config_dump, in each shape ztunnel
// releases wrote: one entry per workload identity on the node, with its chain (leaf first) and
// roots. Each identity's leaf is exported and expected to carry that identity; its chain is a
// presented one. The roots are a copy compared with the mesh's anchors (one bundle per distinct
// root set); where a release wrote them at the end of the chain, the self-signed CAs there are the
// roots. Each identity keeps ztunnel's state (Available, Initializing, or Unavailable with an
// error whose text is not kept): an unavailable identity is also a bundle error, and an available
// one whose chain is empty (a failed renewal, istio#56452) a no_certificate one; a certificate a
// not-available identity still holds is read. A dump without a certificates list, or an available
// identity without a chain in any known shape, is an error wrapping sources.ErrUnknownShape: a
// release this reader does not know, never an empty result.
// onNode reports whether a namespace and service account runs on the ztunnel's node.
func ParseZtunnelConfigDump(cache *pki.Cache, body []byte, origin string, onNode func(namespace, serviceAccount string) bool) ([]model.Bundle, error) {
	var dump struct {
		Certificates *[]ztunnelIdentity `json:"certificates"`
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		return nil, err
	}
	if dump.Certificates == nil {
		return nil, fmt.Errorf("%w: ztunnel config_dump without certificates", sources.ErrUnknownShape)
	}
	var bundles []model.Bundle
	rootSets := map[string]bool{}
	for _, c := range *dump.Certificates {
		b := model.Bundle{Key: c.Identity, Export: model.ExportFirst, Presented: true, State: ztunnelState(c.State)}
		chainCerts := either(c.CertChain, c.CertChainSnake)
		switch {
		case b.State == model.IdentityUnavailable:
			b.Error = model.ReasonUnavailable
		case b.State == model.IdentityAvailable && chainCerts == nil:
			return nil, fmt.Errorf("%w: ztunnel identity without a certificate chain", sources.ErrUnknownShape)
		case b.State == model.IdentityAvailable && len(*chainCerts) == 0:
			b.Error = model.ReasonNoCertificate // a failed renewal can leave the chain empty (istio#56452)
		}
		if chainCerts == nil || len(*chainCerts) == 0 {
			// Not available, or without a certificate: the state says it, and no chain is read.
			bundles = append(bundles, b)
			continue
		}
		if id, err := pki.ParseSPIFFEID(c.Identity); err == nil {
			if ns, sa, ok := id.Workload(); ok {
				b.Expect = cache.Expectation(model.Identity{Namespace: ns, ServiceAccount: sa, NotOnNode: onNode != nil && !onNode(ns, sa)})
			}
		}
		var reason model.ErrorReason
		b.Certificates, reason = ztunnelCerts(cache, *chainCerts, origin, false)
		if b.Error == model.ReasonNone {
			b.Error = reason
		}
		var roots []*model.Certificate
		reason = model.ReasonNone
		if rc := either(c.RootCerts, c.CACert); rc != nil {
			roots, reason = ztunnelCerts(cache, *rc, origin, true)
		} else {
			b.Certificates, roots = splitRoots(b.Certificates)
		}
		bundles = append(bundles, b)

		var fps []string
		for _, r := range roots {
			fps = append(fps, hex.EncodeToString(r.Fingerprint[:]))
		}
		sort.Strings(fps)
		set := strings.Join(fps, ",")
		if len(roots) == 0 && reason == model.ReasonNone || rootSets[set] {
			continue
		}
		key := "rootCerts"
		if len(rootSets) > 0 {
			key = "rootCerts/" + c.Identity
		}
		rootSets[set] = true
		bundles = append(bundles, model.Bundle{Key: key, Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, Certificates: roots, Error: reason})
	}
	return bundles, nil
}

// ztunnelState reads ztunnel's state of an identity: "Available", "Initializing", or
// "Unavailable: <error>"; anything else is unavailable too.
func ztunnelState(state string) model.IdentityState {
	switch {
	case state == "Available":
		return model.IdentityAvailable
	case state == "Initializing":
		return model.IdentityInitializing
	}
	return model.IdentityUnavailable
}

// splitRoots separates the roots a chain ends with (self-signed CAs, after the leaf) from the
// chain.
func splitRoots(chain []*model.Certificate) (rest, roots []*model.Certificate) {
	n := len(chain)
	for n > 1 && !chain[n-1].Partial && chain[n-1].MayAnchor() {
		n--
	}
	return chain[:n:n], chain[n:]
}

// ztunnelCerts decodes ztunnel's certificates: the base64 PEM when present, else partial facts
// from the decimal serial and the validity.
func ztunnelCerts(cache *pki.Cache, in []ztunnelCert, origin string, ca bool) ([]*model.Certificate, model.ErrorReason) {
	var (
		out    []*model.Certificate
		reason = model.ReasonNone
	)
	for _, zc := range in {
		if zc.PEM != "" {
			data, err := base64.StdEncoding.DecodeString(zc.PEM)
			if err != nil {
				reason = model.ReasonBadResponse
				continue
			}
			certs, r := cache.ParseBundle(data)
			if r != model.ReasonNone {
				reason = r
			}
			out = append(out, certs...)
			continue
		}
		serial, ok := new(big.Int).SetString(firstSet(zc.SerialNumber, zc.SerialNumberSnake), 10) // decimal, unlike Envoy's hex
		from, err1 := time.Parse(time.RFC3339, firstSet(zc.ValidFrom, zc.ValidFromSnake))
		until, err2 := time.Parse(time.RFC3339, firstSet(zc.ExpirationTime, zc.ExpirationTimeSnake))
		if !ok || err1 != nil || err2 != nil {
			reason = model.ReasonBadResponse
			continue
		}
		out = append(out, pki.NewPartialCertificate(pki.PartialFacts{Serial: serial, NotBefore: from, NotAfter: until, CA: ca, Origin: origin}))
	}
	return out, reason
}

// firstSet returns a when it is not empty, else b: one field under its two spellings.
func firstSet(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
