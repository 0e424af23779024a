package sources

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/share"
)

// ZtunnelConfigDumpPath is the admin path ztunnel serves its state on.
const ZtunnelConfigDumpPath = "/config_dump"

// ztunnelCert is one certificate of ztunnel's config dump.
type ztunnelCert struct {
	PEM            string `json:"pem"`
	SerialNumber   string `json:"serialNumber"`
	ValidFrom      string `json:"validFrom"`
	ExpirationTime string `json:"expirationTime"`
}

// ParseZtunnelConfigDump reads the certificates of ztunnel's /config_dump: one entry per workload
// identity on the node, with its chain (leaf first) and roots. Each identity's leaf is exported and
// expected to carry that identity; the roots are a copy compared with the mesh's anchors (one
// bundle per distinct root set). An identity whose certificate is not available is a bundle error.
// onNode reports whether a namespace and service account runs on the ztunnel's node.
func ParseZtunnelConfigDump(body []byte, origin string, onNode func(namespace, serviceAccount string) bool) ([]model.Bundle, error) {
	var dump struct {
		Certificates []struct {
			Identity  string        `json:"identity"`
			State     string        `json:"state"`
			CertChain []ztunnelCert `json:"certChain"`
			RootCerts []ztunnelCert `json:"rootCerts"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		return nil, err
	}
	var bundles []model.Bundle
	rootSets := map[string]bool{}
	for _, c := range dump.Certificates {
		b := model.Bundle{Key: c.Identity, Export: model.ExportFirst}
		switch {
		case c.State == "Initializing":
			continue
		case c.State != "Available":
			b.Error = model.ReasonUnavailable
			bundles = append(bundles, b)
			continue
		}
		if id, err := pki.ParseSPIFFEID(c.Identity); err == nil {
			if ns, sa, ok := id.Workload(); ok {
				b.Expect = share.Of(expectations, model.Identity{Namespace: ns, ServiceAccount: sa, NotOnNode: onNode != nil && !onNode(ns, sa)})
			}
		}
		b.Certificates, b.Error = ztunnelCerts(c.CertChain, origin, false)
		bundles = append(bundles, b)

		roots, reason := ztunnelCerts(c.RootCerts, origin, true)
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

// ztunnelCerts decodes ztunnel's certificates: the base64 PEM when present, else partial facts
// from the decimal serial and the validity.
func ztunnelCerts(in []ztunnelCert, origin string, ca bool) ([]*model.Certificate, model.ErrorReason) {
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
			certs, r := pki.ParseBundle(data)
			if r != model.ReasonNone {
				reason = r
			}
			out = append(out, certs...)
			continue
		}
		serial, ok := new(big.Int).SetString(zc.SerialNumber, 10) // decimal, unlike Envoy's hex
		from, err1 := time.Parse(time.RFC3339, zc.ValidFrom)
		until, err2 := time.Parse(time.RFC3339, zc.ExpirationTime)
		if !ok || err1 != nil || err2 != nil {
			reason = model.ReasonBadResponse
			continue
		}
		out = append(out, pki.NewPartialCertificate(pki.PartialFacts{Serial: serial, NotBefore: from, NotAfter: until, CA: ca, Origin: origin}))
	}
	return out, reason
}
