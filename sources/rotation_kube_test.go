package sources_test

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// TestRotationInProgress: an Istio multi-root rotation on the real API server, with sidecars read
// through port-forward from admin doubles, phase by phase: the blast radius of each root and
// intermediate, the copies that hold each root, and the what-if answers.
func TestRotationInProgress(t *testing.T) {
	k := newKubeTest(t)
	ctx := k.ctx
	kubelet := testenv.StartKubelet()
	defer kubelet.Close()
	k.must(controlPlane.RegisterNode(ctx, "node-rot", kubelet))

	const istioNS, shop, rootCM = "istio-rot", "rot-shop", "root-cert-rot"
	ca := func(cn string, issuer *testpki.Cert) *testpki.Cert {
		return testpki.Issue(testpki.Spec{CommonName: cn, CA: true, Issuer: issuer, NotBefore: kubeFrom, NotAfter: kubeUntil})
	}
	oldRoot, newRoot := ca("rot old root", nil), ca("rot new root", nil)
	oldInter, newInter := ca("rot old intermediate", oldRoot), ca("rot new intermediate", newRoot)
	cacerts := func(inter, interRoot *testpki.Cert, roots ...*testpki.Cert) {
		k.secret(istioNS, "cacerts", corev1.SecretTypeOpaque, map[string][]byte{"ca-cert.pem": inter.PEM(), "ca-key.pem": inter.KeyPEM(),
			"cert-chain.pem": testpki.Bundle(inter, interRoot), "root-cert.pem": testpki.Bundle(roots...)})
	}
	copyIn := func(ns string, roots ...*testpki.Cert) {
		k.configMap(ns, rootCM, map[string]string{"root-cert.pem": string(testpki.Bundle(roots...))})
	}

	// Two sidecars whose admin doubles answer what the phase says they serve.
	bodies := map[string]*atomic.Pointer[[]byte]{}
	serve := func(name string, inter *testpki.Cert, roots ...*testpki.Cert) {
		leaf := issue("", false, inter, "spiffe://cluster.local/ns/"+shop+"/sa/"+name)
		body := testadmin.EnvoySecrets(testpki.Bundle(leaf, inter), testpki.Bundle(roots...))
		bodies[name].Store(&body)
	}
	for _, name := range []string{"rot-1", "rot-2"} {
		bodies[name] = &atomic.Pointer[[]byte]{}
		b := bodies[name]
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(*b.Load()) }))
		t.Cleanup(srv.Close)
		serve(name, oldInter, oldRoot)
		k.runPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: name, Labels: map[string]string{"security.istio.io/tlsMode": "istio"}},
			Spec: corev1.PodSpec{NodeName: "node-rot", ServiceAccountName: name, Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}}}, "10.6.0.1")
		kubelet.Forward(shop, name, 15000, strings.TrimPrefix(srv.URL, "http://"))
	}

	// Phase 1: one root, everything on it.
	cacerts(oldInter, oldRoot, oldRoot)
	copyIn("rot-a", oldRoot)
	copyIn("rot-b", oldRoot)

	cfg := config.Default()
	istio.In(cfg.Meshes).Namespace = istioNS
	istio.In(cfg.Meshes).RootCertConfigMap = rootCM
	linkerd.In(cfg.Meshes).Watch = false
	envoy := cfg.Proxies.Of(istio.SourceEnvoy)
	envoy.Enabled, envoy.Interval, envoy.Timeout = true, time.Second, time.Second
	inv := k.runAs(cfg, "exporter-rot")

	serial := func(c *testpki.Cert) string { return c.X509.SerialNumber.Text(16) }
	// phase checks the rotation: each root's dependents (-1: any above zero) and bundles, each
	// intermediate's served leaves, the mesh's copies.
	type root struct {
		cert                *testpki.Cert
		dependents, bundles int
	}
	phase := func(roots []root, issuers map[*testpki.Cert]int, copies int) func(s *model.Snapshot) string {
		return func(s *model.Snapshot) string {
			r := s.Rotation
			var anchors []string
			for _, a := range r.Anchors {
				if a.Mesh == istio.Name {
					anchors = append(anchors, a.Anchor.Serial)
				}
			}
			var want []string
			for _, w := range roots {
				want = append(want, serial(w.cert))
			}
			slices.Sort(anchors)
			slices.Sort(want)
			if !slices.Equal(anchors, want) {
				return fmt.Sprintf("anchors %v, want %v", anchors, want)
			}
			for _, w := range roots {
				for _, a := range r.Anchors {
					if a.Anchor.Serial == serial(w.cert) && (a.Bundles != w.bundles || w.dependents < 0 && a.Dependents == 0 || w.dependents >= 0 && a.Dependents != w.dependents) {
						return fmt.Sprintf("%s: %d dependents, %d bundles; want %d, %d", a.Anchor.Subject, a.Dependents, a.Bundles, w.dependents, w.bundles)
					}
				}
			}
			for c, n := range issuers {
				got := -1
				for _, i := range r.Issuers {
					if i.Issuer.Serial == serial(c) {
						got = i.Dependents
					}
				}
				if got != n {
					return fmt.Sprintf("%s signed %d served leaves, want %d", c.X509.Subject, got, n)
				}
			}
			for _, b := range r.Bundles {
				if b.Mesh == istio.Name && b.Copies != copies {
					return fmt.Sprintf("%d copies, want %d", b.Copies, copies)
				}
			}
			return ""
		}
	}
	// Copies: rot-a's, rot-b's, and the two proxies' ROOTCA.
	eventually(t, inv, phase([]root{{oldRoot, -1, 4}}, map[*testpki.Cert]int{oldInter: 2}, 4))

	// Phase 2: both roots published, istiod signing with the new intermediate; rot-1 restarted on
	// it with both roots, rot-2 still on the old; rot-a's copy updated, rot-b's not yet.
	cacerts(newInter, newRoot, oldRoot, newRoot)
	copyIn("rot-a", oldRoot, newRoot)
	serve("rot-1", newInter, oldRoot, newRoot)
	eventually(t, inv, phase([]root{{oldRoot, -1, 4}, {newRoot, -1, 2}}, map[*testpki.Cert]int{oldInter: 1, newInter: 1}, 4))
	for _, a := range inv.Snapshot().Rotation.Anchors {
		if a.Mesh == istio.Name && (a.Signing != (a.Anchor.Serial == serial(newRoot)) || a.Retired != (a.Anchor.Serial == serial(oldRoot))) {
			t.Errorf("%s signing %v, retired %v: istiod signs under the new root now", a.Anchor.Subject, a.Signing, a.Retired)
		}
	}
	w := pki.WhatIf(inv.Snapshot().Analysis, time.Now(), istio.Name, map[[32]byte]bool{sha256.Sum256(oldRoot.X509.Raw): true})
	var broken, unanchored []string
	for _, b := range w.Broken {
		broken = append(broken, b.Object.Source+"/"+b.Object.Name+"/"+b.Key)
	}
	for _, u := range w.Unanchored {
		unanchored = append(unanchored, u.Object.Namespace+"/"+u.Object.Name+"/"+u.Key)
	}
	slices.Sort(unanchored)
	if !slices.Equal(broken, []string{"envoy/rot-2/default"}) {
		t.Errorf("what if the old root left now: %v break, want rot-2's leaf", broken)
	}
	if want := []string{"rot-b/" + rootCM + "/root-cert.pem", shop + "/rot-2/ROOTCA"}; !slices.Equal(unanchored, want) {
		t.Errorf("what if the old root left now: %v hold no current root, want %v", unanchored, want)
	}

	// Phase 3: everything on the new root: the old root can go.
	serve("rot-2", newInter, oldRoot, newRoot)
	copyIn("rot-b", oldRoot, newRoot)
	eventually(t, inv, phase([]root{{oldRoot, 0, 4}, {newRoot, -1, 4}}, map[*testpki.Cert]int{newInter: 2}, 4))

	// Phase 4: the old root removed from the authoritative set; the copies still hold the new one.
	cacerts(newInter, newRoot, newRoot)
	eventually(t, inv, phase([]root{{newRoot, -1, 4}}, map[*testpki.Cert]int{newInter: 2}, 4))
}
