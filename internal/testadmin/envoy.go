// Package testadmin holds the proxies' admin answers for tests, rendered with the proxies' own
// types (Envoy's go-control-plane messages through protojson, as Envoy's admin writes them), and a
// server that answers with them. It is for tests only, never for the exporter.
package testadmin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// EnvoySecrets renders /config_dump?resource=dynamic_active_secrets of an Istio sidecar: the
// workload secret "default" presenting chain (its key redacted, as Envoy shows it) and the trust
// bundle "ROOTCA" holding roots, one DynamicSecret per element, with Envoy's field names.
func EnvoySecrets(chain, roots []byte) []byte {
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	pack := func(s *tlsv3.Secret) *anypb.Any {
		inner, err := anypb.New(s)
		if err != nil {
			panic(err)
		}
		a, err := anypb.New(&adminv3.SecretsConfigDump_DynamicSecret{Name: s.Name, Secret: inner})
		if err != nil {
			panic(err)
		}
		return a
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&adminv3.ConfigDump{Configs: []*anypb.Any{
		pack(&tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(chain), PrivateKey: inline([]byte("[redacted]"))}}}),
		pack(&tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(roots)}}}),
	}})
	if err != nil {
		panic(err)
	}
	return body
}

// Serve answers every request with body until the test ends and returns the server's URL.
func Serve(t testing.TB, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	t.Cleanup(srv.Close)
	return srv.URL
}
