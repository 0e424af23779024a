package sources

import (
	"encoding/json"
	"math/big"
	"net/url"
	"sort"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// Envoy secret names Istio uses: the workload certificate and the trust bundle.
const (
	envoyWorkloadSecret = "default"
	envoyRootSecret     = "ROOTCA"
)

// Envoy admin paths.
const (
	EnvoySecretsPath = "/config_dump?resource=dynamic_active_secrets"
	EnvoyCertsPath   = "/certs"
)

var protojsonOptions = protojson.UnmarshalOptions{DiscardUnknown: true}

// ParseEnvoyConfigDump reads the secrets of Envoy's
// /config_dump?resource=dynamic_active_secrets, in both shapes Envoy answers with: one
// DynamicSecret per element of "configs", or (with ?mask=) a SecretsConfigDump wrapping them.
// The workload certificate ("default") exports its leaf and keeps the rest of its chain for chain
// building; the trust bundle ("ROOTCA", or the SPIFFE validator's per-trust-domain bundles) is a
// copy compared with the mesh's anchors. Other secrets (a gateway's kubernetes:// certificates)
// export their leaf's facts only: the exporter cannot know who verifies them. Private keys arrive
// redacted and are never decoded: the parsed key field is dropped unread.
func ParseEnvoyConfigDump(body []byte) ([]model.Bundle, error) {
	var dump struct {
		Configs []json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		return nil, err
	}
	var secrets []*adminv3.SecretsConfigDump_DynamicSecret
	for _, raw := range dump.Configs {
		var head struct {
			Type string `json:"@type"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, err
		}
		switch {
		case strings.HasSuffix(head.Type, ".SecretsConfigDump.DynamicSecret"):
			s := &adminv3.SecretsConfigDump_DynamicSecret{}
			if err := protojsonOptions.Unmarshal(raw, s); err != nil {
				return nil, err
			}
			secrets = append(secrets, s)
		case strings.HasSuffix(head.Type, ".SecretsConfigDump"):
			d := &adminv3.SecretsConfigDump{}
			if err := protojsonOptions.Unmarshal(raw, d); err != nil {
				return nil, err
			}
			secrets = append(secrets, d.GetDynamicActiveSecrets()...)
			for _, st := range d.GetStaticSecrets() {
				secrets = append(secrets, &adminv3.SecretsConfigDump_DynamicSecret{Name: st.GetName(), Secret: st.GetSecret()})
			}
		}
	}
	var bundles []model.Bundle
	for _, ds := range secrets {
		bundles = append(bundles, envoySecretBundles(ds.GetName(), ds.GetSecret())...)
	}
	sort.SliceStable(bundles, func(i, j int) bool { return bundles[i].Key < bundles[j].Key })
	return bundles, nil
}

// envoySecretBundles turns one SDS secret into bundles.
func envoySecretBundles(name string, packed *anypb.Any) []model.Bundle {
	if packed == nil {
		return nil
	}
	secret := &tlsv3.Secret{}
	if err := packed.UnmarshalTo(secret); err != nil {
		return []model.Bundle{{Key: name, Error: model.ReasonBadResponse}}
	}
	var out []model.Bundle
	if tc := secret.GetTlsCertificate(); tc != nil {
		tc.PrivateKey = nil // "[redacted]" in any Envoy; never looked at
		if data := inlineData(tc.GetCertificateChain()); len(data) > 0 {
			b := model.Bundle{Key: name, Export: model.ExportFirst}
			b.Certificates, b.Error = pki.ParseBundle(data)
			if name != envoyWorkloadSecret {
				b.NoChain, b.NoIdentity = true, true
			}
			out = append(out, b)
		}
	}
	if vc := secret.GetValidationContext(); vc != nil {
		purpose := model.PurposeTrustBundle
		if name == envoyRootSecret {
			purpose = model.PurposeTrustBundleCopy
		}
		if data := inlineData(vc.GetTrustedCa()); len(data) > 0 {
			b := model.Bundle{Key: name, Purpose: purpose}
			if purpose == model.PurposeTrustBundleCopy {
				b.Export = model.ExportNone // compared with the mesh's anchors, never repeated per proxy
			}
			b.Certificates, b.Error = pki.ParseBundle(data)
			out = append(out, b)
		}
		if cv := vc.GetCustomValidatorConfig(); cv != nil {
			spiffe := &tlsv3.SPIFFECertValidatorConfig{}
			if cv.GetTypedConfig() == nil || cv.GetTypedConfig().UnmarshalTo(spiffe) != nil {
				return append(out, model.Bundle{Key: name, Error: model.ReasonBadResponse})
			}
			for _, td := range spiffe.GetTrustDomains() {
				b := model.Bundle{Key: name + "/" + td.GetName(), Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone}
				b.Certificates, b.Error = pki.ParseBundle(inlineData(td.GetTrustBundle()))
				out = append(out, b)
			}
		}
	}
	return out
}

// inlineData returns a data source's inline content; file and environment sources name data the
// exporter cannot see.
func inlineData(ds *corev3.DataSource) []byte {
	switch {
	case ds == nil:
		return nil
	case len(ds.GetInlineBytes()) > 0:
		return ds.GetInlineBytes()
	default:
		return []byte(ds.GetInlineString())
	}
}

// ParseEnvoyCerts reads Envoy's /certs: a summary per TLS context with the leaf (cert_chain) and
// the first trusted CA (ca_cert), repeated across contexts. It is the fallback when config_dump is
// refused: it has no PEM, so the certificates are partial facts (no chain, no depth, no drift).
// Serials are normalised (hex, lowercase, no leading zeros) and repeats dropped.
func ParseEnvoyCerts(body []byte, origin string) ([]model.Bundle, error) {
	certs := &adminv3.Certificates{}
	if err := protojsonOptions.Unmarshal(body, certs); err != nil {
		return nil, err
	}
	leaves := model.Bundle{Key: "cert_chain", Export: model.ExportFirst}
	roots := model.Bundle{Key: "ca_cert", Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone}
	seen := map[string]bool{}
	add := func(b *model.Bundle, d *adminv3.CertificateDetails, ca bool) {
		serial, ok := new(big.Int).SetString(strings.ToLower(d.GetSerialNumber()), 16)
		if !ok {
			b.Error = model.ReasonBadResponse
			return
		}
		id := b.Key + "/" + serial.Text(16)
		if seen[id] {
			return
		}
		seen[id] = true
		f := pki.PartialFacts{Serial: serial, CA: ca, Origin: origin,
			NotBefore: d.GetValidFrom().AsTime(), NotAfter: d.GetExpirationTime().AsTime()}
		for _, san := range d.GetSubjectAltNames() {
			switch {
			case san.GetUri() != "":
				if u, err := url.Parse(san.GetUri()); err == nil {
					f.URIs = append(f.URIs, u)
				}
			case san.GetDns() != "":
				f.DNSNames = append(f.DNSNames, san.GetDns())
			}
		}
		b.Certificates = append(b.Certificates, pki.NewPartialCertificate(f))
	}
	for _, c := range certs.GetCertificates() {
		for _, d := range c.GetCertChain() {
			add(&leaves, d, false)
		}
		for _, d := range c.GetCaCert() {
			add(&roots, d, true)
		}
	}
	var out []model.Bundle
	for _, b := range []model.Bundle{leaves, roots} {
		if len(b.Certificates) > 0 || b.Error != model.ReasonNone {
			out = append(out, b)
		}
	}
	return out, nil
}
