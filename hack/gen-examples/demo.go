package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// The demo's serials, fixed so that the README can name them in its queries.
const (
	demoOldRootSerial = 0xa11ce
	demoNewRootSerial = 0xb0b
)

// writeDemo writes into out a mesh PKI in which the exporter has something to say, with dates
// relative to now, and a configuration that reads it (out/meshcert.yaml, with absolute paths):
//   - Istio in the middle of a root rotation, late: cacerts publishes the old root (25 days left)
//     and the new one and still signs with the old intermediate, and a copy of the roots handed
//     to workloads never received the new root: the rotation cannot go on to the new
//     intermediate, and the old root cannot leave;
//   - Linkerd whose issuer expires in three days.
func writeDemo(out string, now time.Time) error {
	day := 24 * time.Hour
	ca := func(cn string, serial int64, issuer *testpki.Cert, from time.Time, life time.Duration) *testpki.Cert {
		return testpki.Issue(testpki.Spec{CommonName: cn, CA: true, Serial: serial, Issuer: issuer, NotBefore: from, NotAfter: from.Add(life)})
	}
	oldRoot := ca("Demo Istio Root CA 2016", demoOldRootSerial, nil, now.Add(-10*365*day+25*day), 10*365*day)
	newRoot := ca("Demo Istio Root CA 2026", demoNewRootSerial, nil, now.Add(-7*day), 10*365*day)
	oldInter := ca("Demo Istio Intermediate CA 2016", 0, oldRoot, now.Add(-2*365*day), 2*365*day+20*day)
	anchor := ca("root.linkerd.cluster.local", 0, nil, now.Add(-365*day), 10*365*day)
	issuer := testpki.Issue(testpki.Spec{CommonName: "identity.linkerd.cluster.local", CA: true, Issuer: anchor, MaxPathLen: new(int),
		NotBefore: now.Add(-362 * day), NotAfter: now.Add(3 * day)})

	files := map[string][]byte{
		"istio-cacerts/root-cert.pem":       testpki.Bundle(oldRoot, newRoot),
		"istio-cacerts/ca-cert.pem":         oldInter.PEM(),
		"istio-cacerts/cert-chain.pem":      testpki.Bundle(oldInter, oldRoot),
		"istio-root-copy/root-cert.pem":     oldRoot.PEM(),
		"linkerd-trust-roots/ca-bundle.crt": anchor.PEM(),
		"linkerd-identity-issuer/crt.pem":   issuer.PEM(),
	}
	if err := writeFiles(out, files); err != nil {
		return err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	config := fmt.Sprintf(`# The demo PKI of `+"`make run`"+`, made by hack/gen-examples -demo at %s.
files:
  targets:
    # Istio's plug-in CA during a root rotation: both roots published, still signing under the old.
    - path: %[2]s/istio-cacerts
    # A copy of the roots handed to workloads (as an istio-ca-root-cert ConfigMap) that still
    # holds the old root only.
    - path: %[2]s/istio-root-copy
      mesh: istio
      copy: true
    # Linkerd's trust anchor and its issuer, three days from expiry.
    - path: %[2]s/linkerd-trust-roots
    - path: %[2]s/linkerd-identity-issuer
`, now.UTC().Format(time.RFC3339), abs)
	return os.WriteFile(filepath.Join(out, "meshcert.yaml"), []byte(config), 0o644)
}
