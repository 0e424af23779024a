package istio

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sort"
	"strings"
	"time"
	"unique"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// Envoy secret names Istio uses: the workload certificate and the trust bundle.
const (
	envoyWorkloadSecret = "default"
	envoyRootSecret     = "ROOTCA"
)

// Envoy's admin answers are protobuf messages in protojson's JSON form. Envoy writes the proto
// field names (snake_case); protojson, and so any tool built on it, writes and accepts the
// lowerCamelCase JSON names too. The types below read the few fields the exporter needs under both
// names with encoding/json, in one pass and without a protobuf registry, which would hold every
// Envoy message type in memory for the few fields read here. The tests render their fixtures with
// go-control-plane's own types, in both spellings.

// envoyBytes is a protobuf bytes field: base64, standard or URL-safe, padded or not.
type envoyBytes []byte

// base64Encodings are the spellings of a protobuf bytes field, the usual one first.
var base64Encodings = []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding}

// UnmarshalJSON implements json.Unmarshaler. A JSON string without escapes (base64 needs none) is
// decoded where it lies, without a string copy of it first: every proxy's chain is decoded every
// interval.
func (b *envoyBytes) UnmarshalJSON(data []byte) error {
	var text []byte
	if len(data) >= 2 && data[0] == '"' && data[len(data)-1] == '"' && bytes.IndexByte(data, '\\') < 0 {
		text = data[1 : len(data)-1]
	} else {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		text = []byte(s)
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(text))) // the longest of the four
	for _, enc := range base64Encodings {
		if n, err := enc.Decode(out, text); err == nil {
			*b = out[:n:n]
			return nil
		}
	}
	return errors.New("bytes field is not base64")
}

// envoyDataSource is envoy.config.core.v3.DataSource; file and environment sources name data the
// exporter cannot see.
type envoyDataSource struct {
	InlineBytes       envoyBytes `json:"inline_bytes"`
	InlineBytesCamel  envoyBytes `json:"inlineBytes"`
	InlineString      string     `json:"inline_string"`
	InlineStringCamel string     `json:"inlineString"`
}

// data returns the inline content.
func (d *envoyDataSource) data() []byte {
	switch {
	case d == nil:
		return nil
	case len(d.InlineBytes) > 0:
		return d.InlineBytes
	case len(d.InlineBytesCamel) > 0:
		return d.InlineBytesCamel
	case d.InlineString != "":
		return []byte(d.InlineString)
	default:
		return []byte(d.InlineStringCamel)
	}
}

// either returns a when set, else b: the same field under its two names.
func either[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// envoySecret is envoy.extensions.transport_sockets.tls.v3.Secret. The private key is not a field
// here: it arrives redacted and is never decoded.
type envoySecret struct {
	Type                   string                  `json:"@type"`
	TLSCertificate         *envoyTLSCertificate    `json:"tls_certificate"`
	TLSCertificateCamel    *envoyTLSCertificate    `json:"tlsCertificate"`
	ValidationContext      *envoyValidationContext `json:"validation_context"`
	ValidationContextCamel *envoyValidationContext `json:"validationContext"`
}

// envoyTLSCertificate is a Secret's TlsCertificate: the chain it presents.
type envoyTLSCertificate struct {
	CertificateChain      *envoyDataSource `json:"certificate_chain"`
	CertificateChainCamel *envoyDataSource `json:"certificateChain"`
}

// envoyValidationContext is a Secret's CertificateValidationContext: the CAs it trusts, inline or
// through a custom validator.
type envoyValidationContext struct {
	TrustedCA                  *envoyDataSource     `json:"trusted_ca"`
	TrustedCACamel             *envoyDataSource     `json:"trustedCa"`
	CustomValidatorConfig      *envoyTypedExtension `json:"custom_validator_config"`
	CustomValidatorConfigCamel *envoyTypedExtension `json:"customValidatorConfig"`
}

// envoyTypedExtension is a TypedExtensionConfig whose config the exporter reads only when it is
// the SPIFFE certificate validator's.
type envoyTypedExtension struct {
	TypedConfig      *envoySPIFFEValidator `json:"typed_config"`
	TypedConfigCamel *envoySPIFFEValidator `json:"typedConfig"`
}

// envoySPIFFEValidator is SPIFFECertValidatorConfig: a trust bundle per trust domain.
type envoySPIFFEValidator struct {
	Type              string             `json:"@type"`
	TrustDomains      []envoyTrustDomain `json:"trust_domains"`
	TrustDomainsCamel []envoyTrustDomain `json:"trustDomains"`
}

// envoyTrustDomain is one trust domain of the SPIFFE validator and its bundle.
type envoyTrustDomain struct {
	Name             string           `json:"name"`
	TrustBundle      *envoyDataSource `json:"trust_bundle"`
	TrustBundleCamel *envoyDataSource `json:"trustBundle"`
}

// envoyNamedSecret is a SecretsConfigDump's DynamicSecret or StaticSecret.
type envoyNamedSecret struct {
	Name   string       `json:"name"`
	Secret *envoySecret `json:"secret"`
}

// envoyConfig is one element of a config_dump's configs: a DynamicSecret, or a SecretsConfigDump.
type envoyConfig struct {
	Type string `json:"@type"`
	envoyNamedSecret
	StaticSecrets             []envoyNamedSecret `json:"static_secrets"`
	StaticSecretsCamel        []envoyNamedSecret `json:"staticSecrets"`
	DynamicActiveSecrets      []envoyNamedSecret `json:"dynamic_active_secrets"`
	DynamicActiveSecretsCamel []envoyNamedSecret `json:"dynamicActiveSecrets"`
}

// Protobuf type names the parser checks.
const (
	typeDynamicSecret   = ".SecretsConfigDump.DynamicSecret"
	typeSecretsDump     = ".SecretsConfigDump"
	typeAdminPrefix     = "/envoy.admin.v3."
	typeTLSSecret       = "/envoy.extensions.transport_sockets.tls.v3.Secret"
	typeSPIFFEValidator = "/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
)

// ParseEnvoyConfigDump reads the secrets of Envoy's
// /config_dump?resource=dynamic_active_secrets, in the shapes Envoy answers with: one
// DynamicSecret per element of "configs", (with ?mask=) a SecretsConfigDump wrapping them, or (an
// Envoy that ignores ?resource=) the whole dump, whose other admin elements are passed over. An
// element of any other type is an unknown shape.
// The workload certificate ("default") exports its leaf and keeps the rest of its chain for chain
// building; the trust bundle ("ROOTCA", or the SPIFFE validator's per-trust-domain bundles) is a
// copy compared with the mesh's anchors. Other secrets (a gateway's kubernetes:// certificates)
// export their leaf's facts only: the exporter cannot know who verifies them. Private keys arrive
// redacted and are never decoded.
func ParseEnvoyConfigDump(cache *pki.Cache, body []byte) ([]model.Bundle, error) {
	var dump struct {
		Configs *[]envoyConfig `json:"configs"`
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		return nil, err
	}
	if dump.Configs == nil {
		// Envoy answers {} when it holds no secret of the kind asked for.
		if string(bytes.TrimSpace(body)) == "{}" {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: config_dump without configs", sources.ErrUnknownShape)
	}
	var secrets []envoyNamedSecret
	for _, c := range *dump.Configs {
		switch {
		case strings.HasSuffix(c.Type, typeDynamicSecret):
			secrets = append(secrets, c.envoyNamedSecret)
		case strings.HasSuffix(c.Type, typeSecretsDump):
			secrets = append(secrets, c.DynamicActiveSecrets...)
			secrets = append(secrets, c.DynamicActiveSecretsCamel...)
			secrets = append(secrets, c.StaticSecrets...)
			secrets = append(secrets, c.StaticSecretsCamel...)
		case strings.Contains(c.Type, typeAdminPrefix) && strings.HasSuffix(c.Type, "ConfigDump"):
			// The rest of a full dump (bootstrap, clusters, listeners, routes...), from an Envoy
			// that ignores ?resource=: nothing the exporter reads.
		default:
			return nil, fmt.Errorf("%w: config_dump element of type %q", sources.ErrUnknownShape, c.Type)
		}
	}
	var bundles []model.Bundle
	for _, ns := range secrets {
		// Every sidecar names its secrets alike ("default", "ROOTCA"): one copy of each name.
		bundles = append(bundles, envoySecretBundles(cache, unique.Make(ns.Name).Value(), ns.Secret)...)
	}
	sort.SliceStable(bundles, func(i, j int) bool { return bundles[i].Key < bundles[j].Key })
	return bundles, nil
}

// envoySecretBundles turns one SDS secret into bundles.
func envoySecretBundles(cache *pki.Cache, name string, secret *envoySecret) []model.Bundle {
	if secret == nil {
		return nil
	}
	if !strings.HasSuffix(secret.Type, typeTLSSecret) {
		return []model.Bundle{{Key: name, Error: model.ReasonBadResponse}}
	}
	var out []model.Bundle
	if tc := either(secret.TLSCertificate, secret.TLSCertificateCamel); tc != nil {
		if data := either(tc.CertificateChain, tc.CertificateChainCamel).data(); len(data) > 0 {
			// The workload certificate is presented to peers, who verify it with their roots alone.
			b := model.Bundle{Key: name, Export: model.ExportFirst, Presented: name == envoyWorkloadSecret}
			b.Certificates, b.Error = cache.ParseBundle(data)
			if name != envoyWorkloadSecret {
				b.NoChain, b.NoIdentity = true, true
			}
			out = append(out, b)
		}
	}
	if vc := either(secret.ValidationContext, secret.ValidationContextCamel); vc != nil {
		purpose := model.PurposeTrustBundle
		if name == envoyRootSecret {
			purpose = model.PurposeTrustBundleCopy
		}
		if data := either(vc.TrustedCA, vc.TrustedCACamel).data(); len(data) > 0 {
			b := model.Bundle{Key: name, Purpose: purpose}
			if purpose == model.PurposeTrustBundleCopy {
				b.Export = model.ExportNone // compared with the mesh's anchors, never repeated per proxy
			}
			b.Certificates, b.Error = cache.ParseBundle(data)
			out = append(out, b)
		}
		if cv := either(vc.CustomValidatorConfig, vc.CustomValidatorConfigCamel); cv != nil {
			spiffe := either(cv.TypedConfig, cv.TypedConfigCamel)
			if spiffe == nil || !strings.HasSuffix(spiffe.Type, typeSPIFFEValidator) {
				return append(out, model.Bundle{Key: name, Error: model.ReasonBadResponse})
			}
			for _, td := range append(spiffe.TrustDomains, spiffe.TrustDomainsCamel...) {
				if !pki.ValidTrustDomain(td.Name) {
					out = append(out, model.Bundle{Key: name, Error: model.ReasonBadResponse})
					continue
				}
				// One bundle per trust domain: the analysis compares the mesh's own (or an
				// alias's) with the current anchors and exports a federated domain's as its own.
				b := model.Bundle{Key: name + "/" + td.Name, Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone, TrustDomainKeyed: true}
				b.Certificates, b.Error = cache.ParseBundle(either(td.TrustBundle, td.TrustBundleCamel).data())
				out = append(out, b)
			}
		}
	}
	return out
}

// envoyCertificateDetails is envoy.admin.v3.CertificateDetails.
type envoyCertificateDetails struct {
	SerialNumber         string            `json:"serial_number"`
	SerialNumberCamel    string            `json:"serialNumber"`
	SubjectAltNames      []envoySubjectAlt `json:"subject_alt_names"`
	SubjectAltNamesCamel []envoySubjectAlt `json:"subjectAltNames"`
	ValidFrom            *time.Time        `json:"valid_from"`
	ValidFromCamel       *time.Time        `json:"validFrom"`
	ExpirationTime       *time.Time        `json:"expiration_time"`
	ExpirationTimeCamel  *time.Time        `json:"expirationTime"`
}

type envoySubjectAlt struct {
	DNS string `json:"dns"`
	URI string `json:"uri"`
}

// envoyTime is a protobuf Timestamp; an absent one is the Unix epoch, as protobuf reads it.
func envoyTime(a, b *time.Time) time.Time {
	if t := either(a, b); t != nil {
		return t.UTC()
	}
	return time.Unix(0, 0).UTC()
}

// ParseEnvoyCerts reads Envoy's /certs: a summary per TLS context with the leaf (cert_chain) and
// the first trusted CA (ca_cert), repeated across contexts. It is the fallback when config_dump is
// refused: it has no PEM, so the certificates are partial facts (no chain, no depth, no drift).
// Serials are normalised (hex, lowercase, no leading zeros) and repeats dropped.
func ParseEnvoyCerts(body []byte, origin string) ([]model.Bundle, error) {
	var certs struct {
		Certificates *[]struct {
			CACert         []envoyCertificateDetails `json:"ca_cert"`
			CACertCamel    []envoyCertificateDetails `json:"caCert"`
			CertChain      []envoyCertificateDetails `json:"cert_chain"`
			CertChainCamel []envoyCertificateDetails `json:"certChain"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(body, &certs); err != nil {
		return nil, err
	}
	if certs.Certificates == nil {
		return nil, fmt.Errorf("%w: /certs without certificates", sources.ErrUnknownShape)
	}
	leaves := model.Bundle{Key: "cert_chain", Export: model.ExportFirst}
	roots := model.Bundle{Key: "ca_cert", Purpose: model.PurposeTrustBundleCopy, Export: model.ExportNone}
	seen := map[string]bool{}
	add := func(b *model.Bundle, d envoyCertificateDetails, ca bool) {
		serialText := d.SerialNumber
		if serialText == "" {
			serialText = d.SerialNumberCamel
		}
		serial, ok := new(big.Int).SetString(strings.ToLower(serialText), 16)
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
			NotBefore: envoyTime(d.ValidFrom, d.ValidFromCamel), NotAfter: envoyTime(d.ExpirationTime, d.ExpirationTimeCamel)}
		for _, san := range append(d.SubjectAltNames, d.SubjectAltNamesCamel...) {
			switch {
			case san.URI != "":
				if u, err := url.Parse(san.URI); err == nil {
					f.URIs = append(f.URIs, u)
				}
			case san.DNS != "":
				f.DNSNames = append(f.DNSNames, san.DNS)
			}
		}
		b.Certificates = append(b.Certificates, pki.NewPartialCertificate(f))
	}
	for _, c := range *certs.Certificates {
		for _, d := range append(c.CertChain, c.CertChainCamel...) {
			add(&leaves, d, false)
		}
		for _, d := range append(c.CACert, c.CACertCamel...) {
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
