package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/exporter"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// expect is one series a case must produce: family, label pairs, value ("" = any value).
type expect struct {
	family string
	labels []string
	value  string
}

// badCase is one hostile or broken input placed next to a good certificate.
type badCase struct {
	name string
	// files are written into a directory "bad" read by the file source (relative name -> content).
	files map[string][]byte
	// envoy, when set, serves the admin endpoint of a static Envoy target named "proxy".
	envoy http.HandlerFunc
	// timeout of a read of the envoy target; zero is a generous one, so that a busy machine
	// cannot turn another outcome into a timeout. Only a case about hanging sets a short one.
	timeout time.Duration
	want    []expect
	// absent families must not have a series for the bad input's directory or proxy.
	absent []string
}

// runBadCase serves one case through the whole exporter and returns the scrape.
func runBadCase(t *testing.T, c badCase, logs io.Writer) (int, string) {
	t.Helper()
	dir := t.TempDir()
	good := testpki.Issue(testpki.Spec{CommonName: "good root", CA: true, Serial: 42, NotBefore: from, NotAfter: until})
	write(t, filepath.Join(dir, "good", "ca.crt"), good.PEM())
	cfg := config.Default()
	cfg.Files.Targets = []sources.FileTarget{{Path: filepath.Join(dir, "good")}}
	if c.files != nil {
		if err := os.MkdirAll(filepath.Join(dir, "bad"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range c.files {
			write(t, filepath.Join(dir, "bad", name), data)
		}
		cfg.Files.Targets = append(cfg.Files.Targets, sources.FileTarget{Path: filepath.Join(dir, "bad")})
	}
	if c.envoy != nil {
		srv := httptest.NewServer(c.envoy)
		defer srv.Close()
		cfg.Proxies.Of(istio.SourceEnvoy).Static = []sources.StaticTarget{{Name: "proxy", URL: srv.URL}}
		cfg.Proxies.Of(istio.SourceEnvoy).Timeout = cmp.Or(c.timeout, 20*time.Second)
		cfg.Proxies.Of(istio.SourceEnvoy).Interval = time.Second // the first read starts within a tenth of it
	}
	logger := level.NewFilter(log.NewLogfmtLogger(logs), level.AllowDebug())
	e, err := exporter.New(cfg, nil, exporter.Options{MetricsPath: "/metrics", MaxRequests: 40}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.Run(ctx, logger) })
	defer func() { cancel(); wg.Wait() }()
	for deadline := time.Now().Add(60 * time.Second); !e.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sources did not read their material")
		}
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	// Replace the temporary directory so expectations can name "bad".
	return rec.Code, strings.ReplaceAll(body, dir+"/", "")
}

func pemBlock(typ string, data []byte, headers map[string]string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: data})
}

// negativeSerial returns c's DER with its serial number's first byte turned negative. Go refuses
// to parse such certificates (as RFC 5280 wants).
func negativeSerial(c *testpki.Cert) []byte {
	der := bytes.Clone(c.X509.Raw)
	serial, _ := asn1.Marshal(c.X509.SerialNumber)
	i := bytes.Index(der, serial)
	der[i+2] |= 0x80
	return der
}

func bundleError(key, reason string) expect {
	return expect{"meshcert_bundle_error", []string{"name", "bad", "key", key, "reason", reason}, "1"}
}

func certs(key string, n int) expect {
	return expect{"meshcert_certificate_info", []string{"name", "bad", "key", key, "index", fmt.Sprint(n - 1)}, "1"}
}

func chainValid(key string) expect {
	return expect{"meshcert_chain_valid", []string{"name", "bad", "key", key}, "1"}
}

func chainReason(key, reason string) expect {
	return expect{"meshcert_chain_info", []string{"name", "bad", "key", key, "reason", reason}, "1"}
}

func sanReason(key, reason string) expect {
	return expect{"meshcert_san_info", []string{"name", "bad", "key", key, "reason", reason}, "1"}
}

func proxyError(reason string) expect {
	return expect{"meshcert_source_errors_total", []string{"source", "envoy", "reason", reason}, "1"}
}

var proxyDown = expect{"meshcert_proxy_up", []string{"name", "proxy"}, "0"}

func serve(status int, contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		w.Write(body)
	}
}

func TestBadInputCorpus(t *testing.T) {
	now := time.Now()
	root := testpki.Issue(testpki.Spec{CommonName: "corpus root", CA: true, NotBefore: from, NotAfter: until})
	inter := testpki.Issue(testpki.Spec{CommonName: "corpus inter", CA: true, Issuer: root, NotBefore: from, NotAfter: until})
	leaf := testpki.Issue(testpki.Spec{CommonName: "corpus leaf", Issuer: inter, NotBefore: from, NotAfter: until})
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leaf.Key)
	// A legacy encrypted PEM key, as old tools write them: the headers name the cipher, the body is
	// ciphertext.
	encrypted := &pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED",
		"DEK-Info": "AES-256-CBC,9F3A1B2C3D4E5F60718293A4B5C6D7E8"}, Bytes: bytes.Repeat([]byte{0x5a, 0xc3}, 600)}
	aName, bName := pkix.Name{CommonName: "loop A"}, pkix.Name{CommonName: "loop B"}
	bKey := testpki.NewKey(testpki.ECDSAP256)
	bSelf := testpki.Issue(testpki.Spec{Subject: &bName, CA: true, SubjectKey: bKey, NotBefore: from, NotAfter: until})
	loopA := testpki.Issue(testpki.Spec{Subject: &aName, CA: true, Issuer: bSelf, NotBefore: from, NotAfter: until})
	loopB := testpki.Issue(testpki.Spec{Subject: &bName, CA: true, SubjectKey: bKey, Issuer: loopA, NotBefore: from, NotAfter: until})
	selfLeaf := testpki.Issue(testpki.Spec{CommonName: "self-signed leaf", NotBefore: from, NotAfter: until})
	noBC := testpki.Issue(testpki.Spec{CommonName: "CA without basic constraints", CA: true, NoBasicConstraints: true, Issuer: root, NotBefore: from, NotAfter: until})
	signedByNoBC := testpki.Issue(testpki.Spec{CommonName: "signed by noBC", Issuer: noBC, NotBefore: from, NotAfter: until})
	old := testpki.Issue(testpki.Spec{CommonName: "1970", Issuer: root, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(86400, 0)})
	forever := testpki.Issue(testpki.Spec{CommonName: "9999", Issuer: root, NotBefore: from, NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)})
	threeIDs := testpki.Issue(testpki.Spec{Issuer: inter, NotBefore: from, NotAfter: until,
		URIs: []string{"spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/c/sa/d", "spiffe://cluster.local/ns/e/sa/f"}})
	badTD := testpki.Issue(testpki.Spec{Issuer: inter, NotBefore: from, NotAfter: until, URIs: []string{"spiffe://Cluster.Local/ns/a/sa/b"}})
	noSAN := testpki.Issue(testpki.Spec{Issuer: inter, NotBefore: from, NotAfter: until})
	badUTF8 := pemBlock("CERTIFICATE", testpki.IssueDER(testpki.Spec{RawSubject: testpki.StringSubject(asn1.TagUTF8String, "caf\xe9 \xff"), Issuer: root, NotBefore: from, NotAfter: until}), nil)
	t61 := testpki.Issue(testpki.Spec{RawSubject: testpki.T61Subject("caf\xe9 \xff"), Issuer: root, NotBefore: from, NotAfter: until})
	longName := testpki.Issue(testpki.Spec{CommonName: strings.Repeat("x", 60), Subject: &pkix.Name{CommonName: strings.Repeat("long", 15),
		Organization: []string{strings.Repeat("o", 60)}, OrganizationalUnit: []string{strings.Repeat("u", 60)}, Locality: []string{strings.Repeat("l", 60)},
		Province: []string{strings.Repeat("p", 60)}, StreetAddress: []string{strings.Repeat("s", 60)}}, Issuer: root, NotBefore: from, NotAfter: until})
	m := testpki.NewMesh(5001, from)
	many := testpki.Bundle(m.Leaves...)
	manyMinusOne := testpki.Bundle(m.Leaves[:5000]...)
	garbage := bytes.Repeat([]byte{0x30, 0x82, 0xff, 0x17, 0x01}, 100)
	chain := testpki.Bundle(leaf, inter)

	envoyOK := testadmin.EnvoySecrets(testpki.Bundle(leaf, inter, root), root.PEM())
	hundredMB := func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"configs":[`))
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		for range 100 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Write([]byte(`]}`))
	}

	cases := []badCase{
		// PEM and DER framing.
		{name: "truncated PEM", files: map[string][]byte{"x.pem": root.PEM()[:120]}, want: []expect{bundleError("x.pem", "bad_pem")}},
		{name: "truncated second block", files: map[string][]byte{"x.pem": append(root.PEM(), inter.PEM()[:300]...)},
			want: []expect{bundleError("x.pem", "bad_pem"), certs("x.pem", 1)}},
		{name: "CRLF line endings", files: map[string][]byte{"x.pem": bytes.ReplaceAll(chain, []byte("\n"), []byte("\r\n"))}, want: []expect{certs("x.pem", 2)}, absent: []string{"meshcert_bundle_error"}},
		{name: "trailing garbage", files: map[string][]byte{"x.pem": append(bytes.Clone(chain), "garbage after the end\x00\x01"...)}, want: []expect{certs("x.pem", 2)}, absent: []string{"meshcert_bundle_error"}},
		{name: "leading text", files: map[string][]byte{"x.pem": append([]byte("subject=CN=corpus\nissuer=CN=root\n"), chain...)}, want: []expect{certs("x.pem", 2)}},
		{name: "UTF-8 byte order mark", files: map[string][]byte{"x.pem": append([]byte("\xef\xbb\xbf"), root.PEM()...)}, want: []expect{certs("x.pem", 1)}},
		{name: "PKCS8 key where a certificate should be", files: map[string][]byte{"x.pem": leaf.KeyPEM()}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "EC key", files: map[string][]byte{"x.pem": pemBlock("EC PRIVATE KEY", keyDER, nil)}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "RSA key", files: map[string][]byte{"x.pem": pemBlock("RSA PRIVATE KEY", keyDER, nil)}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "legacy encrypted key", files: map[string][]byte{"x.pem": pem.EncodeToMemory(encrypted)}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "PKCS8 encrypted key", files: map[string][]byte{"x.pem": pemBlock("ENCRYPTED PRIVATE KEY", keyDER, nil)}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "key and certificate in one file", files: map[string][]byte{"x.pem": append(leaf.KeyPEM(), chain...)}, want: []expect{certs("x.pem", 2)}, absent: []string{"meshcert_bundle_error"}},
		{name: "10 MB value", files: map[string][]byte{"x.pem": bytes.Repeat([]byte("A"), 10<<20)}, want: []expect{bundleError("x.pem", "too_large")}},
		{name: "one byte over the limit", files: map[string][]byte{"x.pem": bytes.Repeat([]byte("A"), 4<<20+1)}, want: []expect{bundleError("x.pem", "too_large")}},
		{name: "bundle of 5,000 certificates", files: map[string][]byte{"x.pem": manyMinusOne}, want: []expect{certs("x.pem", 5000)}, absent: []string{"meshcert_bundle_error"}},
		{name: "bundle of 5,001 certificates", files: map[string][]byte{"x.pem": many}, want: []expect{certs("x.pem", 5000), bundleError("x.pem", "too_many_certificates")}},
		{name: "empty file", files: map[string][]byte{"x.pem": {}}, absent: []string{"meshcert_bundle_error", "meshcert_certificate_info"}},
		{name: "whitespace only", files: map[string][]byte{"x.pem": []byte(" \n\t\n")}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "binary junk like DER", files: map[string][]byte{"x.pem": garbage}, want: []expect{bundleError("x.pem", "bad_der")}},
		{name: "binary junk", files: map[string][]byte{"x.pem": []byte{0x00, 0xff, 0x13, 0x37}}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "DER certificate", files: map[string][]byte{"x.der": root.X509.Raw}, want: []expect{certs("x.der", 1)}},
		{name: "two DER certificates", files: map[string][]byte{"x.der": append(bytes.Clone(inter.X509.Raw), root.X509.Raw...)}, want: []expect{certs("x.der", 2)}},
		{name: "DER with trailing garbage", files: map[string][]byte{"x.der": append(bytes.Clone(root.X509.Raw), 0x01, 0x02)}, want: []expect{bundleError("x.der", "bad_der")}},
		{name: "corrupt DER in a PEM block", files: map[string][]byte{"x.pem": pemBlock("CERTIFICATE", root.X509.Raw[:200], nil)}, want: []expect{bundleError("x.pem", "bad_der")}},
		{name: "bad base64", files: map[string][]byte{"x.pem": []byte("-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n")}, want: []expect{bundleError("x.pem", "bad_pem")}},
		{name: "BEGIN without END", files: map[string][]byte{"x.pem": []byte("-----BEGIN CERTIFICATE-----\nMIIB\n")}, want: []expect{bundleError("x.pem", "bad_pem")}},
		{name: "a CSR", files: map[string][]byte{"x.pem": pemBlock("CERTIFICATE REQUEST", []byte{0x30, 0x00}, nil)}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "a CRL", files: map[string][]byte{"x.pem": pemBlock("X509 CRL", []byte{0x30, 0x00}, nil)}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "OpenSSL trusted certificate", files: map[string][]byte{"x.pem": pemBlock("TRUSTED CERTIFICATE", root.X509.Raw, nil)}, want: []expect{bundleError("x.pem", "no_certificate")}},
		{name: "PEM headers in a certificate block", files: map[string][]byte{"x.pem": pemBlock("CERTIFICATE", root.X509.Raw, map[string]string{"Comment": "hello"})}, want: []expect{certs("x.pem", 1)}},
		{name: "negative serial", files: map[string][]byte{"x.pem": pemBlock("CERTIFICATE", negativeSerial(root), nil)}, want: []expect{bundleError("x.pem", "bad_der")}},
		// Certificates that parse but are wrong.
		{name: "chain loop", files: map[string][]byte{"x.pem": testpki.Bundle(loopA, loopB)},
			want: []expect{{"meshcert_chain_info", []string{"name", "bad", "key", "x.pem", "index", "0", "reason", "unknown_authority"}, "1"}}},
		{name: "self-signed leaf", files: map[string][]byte{"x.pem": selfLeaf.PEM()}, want: []expect{chainReason("x.pem", "unknown_authority"),
			{"meshcert_certificate_info", []string{"name", "bad", "key", "x.pem", "role", "leaf"}, "1"}}},
		{name: "CA without basic constraints", files: map[string][]byte{"x.pem": testpki.Bundle(signedByNoBC, noBC), "ca.crt": root.PEM()},
			want: []expect{{"meshcert_chain_info", []string{"name", "bad", "key", "x.pem", "index", "0", "reason", "not_ca"}, "1"}}},
		{name: "1970 NotAfter", files: map[string][]byte{"x.pem": old.PEM(), "ca.crt": root.PEM()},
			want: []expect{chainReason("x.pem", "expired"), {"meshcert_certificate_not_after_timestamp_seconds", []string{"name", "bad", "key", "x.pem"}, "86400"}}},
		{name: "9999 NotAfter", files: map[string][]byte{"x.pem": forever.PEM(), "ca.crt": root.PEM()},
			want: []expect{chainReason("x.pem", ""), {"meshcert_certificate_not_after_timestamp_seconds", []string{"name", "bad", "key", "x.pem"}, "2.53402300799e+11"}}},
		{name: "not yet valid", files: map[string][]byte{"x.pem": testpki.Issue(testpki.Spec{Issuer: root, NotBefore: now.AddDate(1, 0, 0), NotAfter: now.AddDate(2, 0, 0)}).PEM(), "ca.crt": root.PEM()},
			want: []expect{chainReason("x.pem", "not_yet_valid")}},
		{name: "Latin-1 subject (T61String)", files: map[string][]byte{"x.pem": t61.PEM()}, want: []expect{{"meshcert_certificate_info", []string{"name", "bad", "key", "x.pem", "subject", "CN=café ÿ"}, "1"}}},
		{name: "non-UTF-8 bytes in a UTF8String subject", files: map[string][]byte{"x.pem": badUTF8}, want: []expect{bundleError("x.pem", "bad_der")}},
		{name: "subject longer than a label may be", files: map[string][]byte{"x.pem": longName.PEM()}, want: []expect{certs("x.pem", 1)}},
		{name: "same certificate in two keys", files: map[string][]byte{"a.pem": root.PEM(), "b.pem": root.PEM()}, want: []expect{certs("a.pem", 1), certs("b.pem", 1)}},
		// Mesh layouts with keys missing or identities wrong (the directory is an Istio CA).
		// A mounted directory without its private keys is complete: the exporter never needs one.
		{name: "plug-in CA without its key", files: map[string][]byte{"ca-cert.pem": inter.PEM(), "root-cert.pem": root.PEM(), "cert-chain.pem": testpki.Bundle(inter, root)},
			want: []expect{chainValid("ca-cert.pem")}, absent: []string{"meshcert_bundle_error"}},
		{name: "cert-manager layout without tls.key", files: map[string][]byte{"tls.crt": inter.PEM(), "ca.crt": root.PEM(), "root-cert.pem": root.PEM()},
			want: []expect{chainValid("tls.crt")}, absent: []string{"meshcert_bundle_error"}},
		{name: "Linkerd issuer without its key", files: map[string][]byte{"crt.pem": inter.PEM(), "ca-bundle.crt": root.PEM()},
			want: []expect{chainValid("crt.pem")}, absent: []string{"meshcert_bundle_error"}},
		{name: "plug-in CA without its chain", files: map[string][]byte{"ca-cert.pem": inter.PEM(), "root-cert.pem": root.PEM()},
			want: []expect{bundleError("cert-chain.pem", "incomplete_bundle")}},
		{name: "three SPIFFE URIs", files: map[string][]byte{"tls.crt": testpki.Bundle(threeIDs, inter), "root-cert.pem": root.PEM(), "tls.key": []byte("x"), "ca.crt": root.PEM()},
			want: []expect{sanReason("tls.crt", "multiple_identities")}},
		{name: "SPIFFE ID with an invalid trust domain", files: map[string][]byte{"tls.crt": testpki.Bundle(badTD, inter), "root-cert.pem": root.PEM(), "tls.key": []byte("x"), "ca.crt": root.PEM()},
			want: []expect{sanReason("tls.crt", "malformed_identity")}},
		{name: "no SAN at all", files: map[string][]byte{"tls.crt": testpki.Bundle(noSAN, inter), "root-cert.pem": root.PEM(), "tls.key": []byte("x"), "ca.crt": root.PEM()},
			want: []expect{sanReason("tls.crt", "missing_identity")}},
		{name: "a directory where a file should be", files: map[string][]byte{"sub/x.pem": root.PEM()}, absent: []string{"meshcert_bundle_error", "meshcert_certificate_info"}},
		// Envoy admin endpoints that lie, hang or flood.
		{name: "Envoy JSON with unknown fields", envoy: serve(200, "application/json", bytes.Replace(envoyOK, []byte(`{"configs":[`), []byte(`{"future":{"x":1},"configs":[`), 1)),
			want: []expect{{"meshcert_proxy_up", []string{"name", "proxy"}, "1"}}},
		{name: "Envoy JSON with wrong types", envoy: serve(200, "application/json", []byte(`{"configs":"all of them"}`)), want: []expect{proxyDown, proxyError("bad_response")}},
		{name: "Envoy 100 MB body", envoy: hundredMB, want: []expect{proxyDown, proxyError("too_large")}},
		{name: "Envoy answers 200 with HTML", envoy: serve(200, "text/html", []byte("<html><body>Sign in</body></html>")), want: []expect{proxyDown, proxyError("bad_response")}},
		{name: "Envoy redirects to another host", envoy: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		}, want: []expect{proxyDown, proxyError("bad_response")}},
		{name: "Envoy garbage JSON", envoy: serve(200, "application/json", []byte(`{"configs": [{"@type": `)), want: []expect{proxyDown, proxyError("bad_response")}},
		{name: "Envoy empty body", envoy: serve(200, "application/json", nil), want: []expect{proxyDown, proxyError("bad_response")}},
		{name: "Envoy secret of an unknown type", envoy: serve(200, "application/json", []byte(`{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret","name":"default","secret":{"@type":"type.googleapis.com/example.Unknown","x":1}}]}`)),
			// The proxy answered: the secret it could not read is that bundle's error.
			want: []expect{{"meshcert_proxy_up", []string{"name", "proxy"}, "1"},
				{"meshcert_bundle_error", []string{"name", "proxy", "key", "default", "reason", "bad_response"}, "1"}, proxyError("bad_response")}},
		{name: "Envoy answers 401", envoy: serve(401, "text/plain", []byte("no")), want: []expect{proxyDown, proxyError("forbidden")}},
		{name: "Envoy answers 500", envoy: serve(500, "text/plain", []byte("oops")), want: []expect{proxyDown, proxyError("bad_response")}},
		{name: "Envoy refuses config_dump and /certs", envoy: serve(404, "text/plain", nil), want: []expect{proxyDown, proxyError("bad_response")}},
		{name: "Envoy /certs with a bad serial", envoy: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/certs" {
				w.Write([]byte(`{"certificates":[{"cert_chain":[{"serial_number":"not hex","expiration_time":"2030-01-01T00:00:00Z"}]}]}`))
				return
			}
			http.NotFound(w, r)
		}, want: []expect{{"meshcert_bundle_error", []string{"name", "proxy", "key", "cert_chain", "reason", "bad_response"}, "1"}}},
		{name: "Envoy hangs", envoy: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, timeout: 300 * time.Millisecond,
			want: []expect{proxyDown, proxyError("timeout")}},
	}
	if len(cases) < 50 {
		t.Fatalf("%d cases; the corpus has at least 50", len(cases))
	}
	keyLine := strings.Split(string(leaf.KeyPEM()), "\n")[2]
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			code, body := runBadCase(t, c, &logs)
			if code != http.StatusOK {
				t.Fatalf("scrape status %d", code)
			}
			if v := series(t, body, "meshcert_certificate_info", "name", "good", "key", "ca.crt", "serial", "2a"); v != "1" {
				t.Errorf("the good certificate's series is lost")
			}
			for _, w := range c.want {
				if v := series(t, body, w.family, w.labels...); w.value != "" && v != w.value {
					t.Errorf("%s%v = %s, want %s", w.family, w.labels, v, w.value)
				}
			}
			for _, f := range c.absent {
				for _, line := range strings.Split(body, "\n") {
					if strings.HasPrefix(line, f+"{") && (strings.Contains(line, `name="bad"`) || strings.Contains(line, `name="proxy"`)) {
						t.Errorf("unexpected %s", line)
					}
				}
			}
			if strings.Contains(body, keyLine) || strings.Contains(logs.String(), keyLine) {
				t.Error("private key material in the metrics or the debug logs")
			}
		})
	}
}
