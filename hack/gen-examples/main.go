// Command gen-examples writes the sample mesh PKI under examples/: an Istio plug-in CA directory
// (as istiod mounts cacerts), a Linkerd trust-roots bundle and a Linkerd issuer directory. The
// certificates are valid from 2026 for 50 to 100 years so the samples outlive the repository.
// Like a careful team's mount of a Secret, the directories hold the public items only: the
// exporter never needs a private key. With -demo it writes instead a PKI with problems to show,
// dated from now (writeDemo): what `make run` serves.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

func main() {
	out := flag.String("out", "examples", "directory to write the sample PKI into")
	demo := flag.Bool("demo", false, "write the demo PKI of `make run` (dated from now, with problems to show) and its configuration instead")
	flag.Parse()
	write := write
	if *demo {
		write = func(out string) error { return writeDemo(out, time.Now()) }
	}
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen-examples:", err)
		os.Exit(1)
	}
}

func write(out string) error {
	from := testpki.Date(2026, 1, 1)
	istioRoot := testpki.Issue(testpki.Spec{CommonName: "Example Istio Root CA", CA: true, Key: testpki.RSA2048,
		NotBefore: from, NotAfter: from.AddDate(100, 0, 0)})
	istioInter := testpki.Issue(testpki.Spec{CommonName: "Example Istio Intermediate CA", CA: true, Issuer: istioRoot,
		NotBefore: from, NotAfter: from.AddDate(50, 0, 0)})
	linkerdAnchor := testpki.Issue(testpki.Spec{CommonName: "root.linkerd.cluster.local", CA: true,
		NotBefore: from, NotAfter: from.AddDate(100, 0, 0)})
	linkerdIssuer := testpki.Issue(testpki.Spec{CommonName: "identity.linkerd.cluster.local", CA: true, Issuer: linkerdAnchor,
		MaxPathLen: new(int), NotBefore: from, NotAfter: from.AddDate(50, 0, 0)})

	files := map[string][]byte{
		"istio-cacerts/root-cert.pem":       istioRoot.PEM(),
		"istio-cacerts/ca-cert.pem":         istioInter.PEM(),
		"istio-cacerts/cert-chain.pem":      testpki.Bundle(istioInter, istioRoot),
		"linkerd-trust-roots/ca-bundle.crt": linkerdAnchor.PEM(),
		"linkerd-identity-issuer/crt.pem":   linkerdIssuer.PEM(),
	}
	return writeFiles(out, files)
}

// writeFiles writes each file of files (a path under out, and its content), public certificates
// only, readable by all.
func writeFiles(out string, files map[string][]byte) error {
	for name, data := range files {
		path := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
