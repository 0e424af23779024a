// Package testadmin holds the proxies' admin answers for tests, rendered with the proxies' own
// types (Envoy's go-control-plane messages through protojson, as Envoy's admin writes them), and
// servers that answer with them. It is for tests only, never for the exporter.
package testadmin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// EnvoyJSON renders as Envoy's admin does: proto field names.
func EnvoyJSON() protojson.MarshalOptions { return protojson.MarshalOptions{UseProtoNames: true} }

// CamelJSON renders as protojson-based tools do: lowerCamelCase JSON names.
func CamelJSON() protojson.MarshalOptions { return protojson.MarshalOptions{} }

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// Inline is an Envoy data source holding b.
func Inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// WorkloadSecret is Istio's "default" secret: a chain and the redacted key.
func WorkloadSecret(chain []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: Inline(chain), PrivateKey: Inline([]byte("[redacted]"))}}}
}

// RootSecret is Istio's "ROOTCA" secret.
func RootSecret(roots []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: Inline(roots)}}}
}

// SPIFFERootSecret is a ROOTCA with the SPIFFE validator's per-trust-domain bundles.
func SPIFFERootSecret(bundles map[string][]byte) *tlsv3.Secret {
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	for td, b := range bundles {
		cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{Name: td, TrustBundle: Inline(b)})
	}
	return &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: "envoy.tls.cert_validator.spiffe", TypedConfig: mustAny(cfg)}}}}
}

// EnvoyDump renders /config_dump?resource=dynamic_active_secrets with enc: one DynamicSecret per
// config, or, wrapped, one SecretsConfigDump holding them (the ?mask= shape).
func EnvoyDump(enc protojson.MarshalOptions, wrapped bool, secrets ...*tlsv3.Secret) []byte {
	var dynamic []*adminv3.SecretsConfigDump_DynamicSecret
	for _, s := range secrets {
		dynamic = append(dynamic, &adminv3.SecretsConfigDump_DynamicSecret{Name: s.Name, VersionInfo: "2026-06-01T00:00:00Z/1",
			LastUpdated: timestamppb.New(testpki.Date(2026, 6, 1)), Secret: mustAny(s)})
	}
	dump := &adminv3.ConfigDump{}
	if wrapped {
		dump.Configs = append(dump.Configs, mustAny(&adminv3.SecretsConfigDump{DynamicActiveSecrets: dynamic}))
	} else {
		for _, d := range dynamic {
			dump.Configs = append(dump.Configs, mustAny(d))
		}
	}
	out, err := enc.Marshal(dump)
	if err != nil {
		panic(err)
	}
	return out
}

// EnvoyFullDump renders /config_dump as an Envoy that ignores ?resource= answers it (older
// Envoys, some admin proxies): every element of the dump, the secrets in a SecretsConfigDump among
// the bootstrap, clusters, listeners, scoped routes and routes, in the order Envoy writes them.
func EnvoyFullDump(enc protojson.MarshalOptions, secrets ...*tlsv3.Secret) []byte {
	var dynamic []*adminv3.SecretsConfigDump_DynamicSecret
	for _, s := range secrets {
		dynamic = append(dynamic, &adminv3.SecretsConfigDump_DynamicSecret{Name: s.Name, VersionInfo: "2026-06-01T00:00:00Z/1",
			LastUpdated: timestamppb.New(testpki.Date(2026, 6, 1)), Secret: mustAny(s)})
	}
	dump := &adminv3.ConfigDump{Configs: []*anypb.Any{
		mustAny(&adminv3.BootstrapConfigDump{Bootstrap: &bootstrapv3.Bootstrap{Node: &corev3.Node{Id: "sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local"}},
			LastUpdated: timestamppb.New(testpki.Date(2026, 6, 1))}),
		mustAny(&adminv3.ClustersConfigDump{VersionInfo: "2026-06-01T00:00:00Z/1"}),
		mustAny(&adminv3.ListenersConfigDump{VersionInfo: "2026-06-01T00:00:00Z/1"}),
		mustAny(&adminv3.ScopedRoutesConfigDump{}),
		mustAny(&adminv3.RoutesConfigDump{}),
		mustAny(&adminv3.SecretsConfigDump{DynamicActiveSecrets: dynamic}),
	}}
	out, err := enc.Marshal(dump)
	if err != nil {
		panic(err)
	}
	return out
}

// EnvoySecrets renders an Istio sidecar's secrets as Envoy does: the workload secret "default"
// presenting chain and the trust bundle "ROOTCA" holding roots.
func EnvoySecrets(chain, roots []byte) []byte {
	return EnvoyDump(EnvoyJSON(), false, WorkloadSecret(chain), RootSecret(roots))
}

// EnvoyCerts renders /certs with enc for a leaf and a root, repeated as Envoy repeats them per
// context.
func EnvoyCerts(enc protojson.MarshalOptions, leaf, root *testpki.Cert) []byte {
	details := func(c *testpki.Cert) *adminv3.CertificateDetails {
		d := &adminv3.CertificateDetails{Path: "<inline>", SerialNumber: strings.ToUpper(c.X509.SerialNumber.Text(16)),
			ValidFrom: timestamppb.New(c.X509.NotBefore), ExpirationTime: timestamppb.New(c.X509.NotAfter)}
		for _, u := range c.X509.URIs {
			d.SubjectAltNames = append(d.SubjectAltNames, &adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_Uri{Uri: u.String()}})
		}
		return d
	}
	ctx := &adminv3.Certificate{CaCert: []*adminv3.CertificateDetails{details(root)}, CertChain: []*adminv3.CertificateDetails{details(leaf)}}
	out, err := enc.Marshal(&adminv3.Certificates{Certificates: []*adminv3.Certificate{ctx, ctx}})
	if err != nil {
		panic(err)
	}
	return out
}

// Answer is an admin endpoint's answer to one path; a negative Status hangs until the client
// gives up.
type Answer struct {
	Status int
	Body   []byte
}

// Answers are an admin endpoint's answers by request URI; other paths are 404.
type Answers map[string]Answer

// Serve serves the answers until the test ends and returns the server's URL.
func (a Answers) Serve(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ans, ok := a[r.URL.RequestURI()]
		switch {
		case !ok:
			http.NotFound(w, r)
		case ans.Status < 0:
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		default:
			w.WriteHeader(ans.Status)
			_, _ = w.Write(ans.Body)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Serve answers every request with body until the test ends and returns the server's URL.
func Serve(t testing.TB, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	t.Cleanup(srv.Close)
	return srv.URL
}
