package sources_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/exporter"
	"github.com/meshcert/meshcert-exporter/internal/inventory"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	. "github.com/meshcert/meshcert-exporter/sources"
)

// TestIstioPosture: the posture source on the real API server with Istio's real CRDs, under the
// RBAC internal/rbac derives: absent CRDs are no error (the source is up, the enrolled namespaces
// are judged by the default); then a mesh-wide STRICT policy, a namespace that overrides it to
// PERMISSIVE with a workload on DISABLE, and a deny-all policy in one namespace only; then a
// policy edited and one deleted, each followed without a restart.
func TestIstioPosture(t *testing.T) {
	k := newKubeTest(t)
	const root, shop, books = "posture-istio", "posture-shop", "posture-books"
	cfg := config.Default()
	is := istio.In(cfg.Meshes)
	is.Namespace, is.Watch = root, false // the root namespace is istiod's
	linkerd.In(cfg.Meshes).Watch = false
	cfg.Posture.Enabled, cfg.Posture.RetryInterval = true, 200*time.Millisecond
	inv := k.runAs(cfg, "exporter-posture")

	for _, ns := range []string{root, books} {
		k.must(testenv.EnsureNamespace(k.ctx, k.admin, ns))
	}
	_, err := k.admin.CoreV1().Namespaces().Create(k.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shop,
		Labels: map[string]string{"istio-injection": "enabled"}}}, metav1.CreateOptions{})
	k.must(err)

	// 1. No Istio CRDs: the source is up; the enrolled namespace is PERMISSIVE, Istio's default.
	eventually(t, inv, func(s *model.Snapshot) string {
		v := postureView{s}
		if msg := v.sourceUp(); msg != "" {
			return msg
		}
		return checks(v.namespace(shop, "PERMISSIVE", false), v.absent(books), v.policies(0))
	})

	// 2. The CRDs and the policies.
	dyn := dynamic.NewForConfigOrDie(controlPlane.AdminConfig())
	testenv.InstallCRDs(t, k.ctx, dyn, testenv.IstioCRDs(t), "peerauthentications.security.istio.io", "authorizationpolicies.security.istio.io")
	pa := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}
	ap := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}
	apply := func(gvr schema.GroupVersionResource, kind, ns, name string, spec map[string]any) {
		t.Helper()
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.istio.io/v1", "kind": kind,
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec}}
		if old, err := dyn.Resource(gvr).Namespace(ns).Get(k.ctx, name, metav1.GetOptions{}); err == nil {
			u.SetResourceVersion(old.GetResourceVersion())
			_, err = dyn.Resource(gvr).Namespace(ns).Update(k.ctx, u, metav1.UpdateOptions{})
			k.must(err)
			return
		}
		_, err := dyn.Resource(gvr).Namespace(ns).Create(k.ctx, u, metav1.CreateOptions{})
		k.must(err)
	}
	apply(pa, "PeerAuthentication", root, "default", map[string]any{"mtls": map[string]any{"mode": "STRICT"}})
	apply(pa, "PeerAuthentication", shop, "legacy", map[string]any{"mtls": map[string]any{"mode": "PERMISSIVE"}})
	apply(pa, "PeerAuthentication", shop, "cart", map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "cart"}},
		"mtls": map[string]any{"mode": "DISABLE"}, "portLevelMtls": map[string]any{"9090": map[string]any{"mode": "PERMISSIVE"}}})
	apply(ap, "AuthorizationPolicy", books, "deny-all", map[string]any{})
	apply(ap, "AuthorizationPolicy", shop, "allow-cart", map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "cart"}}})
	eventually(t, inv, func(s *model.Snapshot) string {
		v := postureView{s}
		return checks(v.policy(root, "default", istio.ScopeMesh, "STRICT", 0), v.policy(shop, "legacy", istio.ScopeNamespace, "PERMISSIVE", 0),
			v.policy(shop, "cart", istio.ScopeWorkload, "DISABLE", 1), v.policies(3),
			v.namespace(root, "STRICT", false), v.namespace(shop, "PERMISSIVE", false), v.namespace(books, "STRICT", true))
	})

	// 3. Edited and deleted, followed without a restart.
	apply(pa, "PeerAuthentication", shop, "legacy", map[string]any{"mtls": map[string]any{"mode": "STRICT"}})
	k.must(dyn.Resource(ap).Namespace(books).Delete(k.ctx, "deny-all", metav1.DeleteOptions{}))
	eventually(t, inv, func(s *model.Snapshot) string {
		v := postureView{s}
		return checks(v.policy(shop, "legacy", istio.ScopeNamespace, "STRICT", 0), v.namespace(shop, "STRICT", false), v.absent(books))
	})
}

// runAs runs the sources of cfg, as the exporter assembles them, as a service account bound to the
// RBAC internal/rbac derives from cfg, until the test ends; it returns their inventory.
func (k *kubeTest) runAs(cfg *config.Config, account string) *inventory.Inventory {
	k.t.Helper()
	client := k.grant(cfg, account, "")
	saConfig := controlPlane.TokenConfig(saToken(k.t, k, account))
	a, err := exporter.Assemble(cfg, &exporter.Kube{Config: saConfig, Client: client}, log.NewNopLogger())
	k.must(err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range a.Sources {
		wg.Go(func() { _ = s.Run(ctx) })
	}
	k.t.Cleanup(func() { cancel(); wg.Wait() })
	return a.Inventory
}

// postureView answers questions about a snapshot's posture.
type postureView struct{ *model.Snapshot }

func (v postureView) sourceUp() string {
	for _, s := range v.Sources {
		if s.Name == SourcePosture {
			if !s.Up {
				return "the posture source is down"
			}
			return ""
		}
	}
	return "no posture source"
}

func (v postureView) namespace(ns, mode string, deny bool) string {
	for _, n := range v.Posture.Namespaces {
		if n.Namespace == ns {
			if n.Mode != mode || n.DefaultDeny != deny {
				return fmt.Sprintf("namespace %s: %+v, want mode %s and default deny %v", ns, n, mode, deny)
			}
			return ""
		}
	}
	return "namespace " + ns + " not judged"
}

func (v postureView) absent(ns string) string {
	for _, n := range v.Posture.Namespaces {
		if n.Namespace == ns {
			return "namespace " + ns + " judged although it holds no policy and is not enrolled"
		}
	}
	return ""
}

func (v postureView) policy(ns, name, scope, mode string, overrides int) string {
	for _, p := range v.Posture.Policies {
		if p.Namespace == ns && p.Name == name {
			if p.Scope != scope || p.Mode != mode || p.PortOverrides != overrides {
				return fmt.Sprintf("policy %s/%s: %+v, want %s %s %d", ns, name, p, scope, mode, overrides)
			}
			return ""
		}
	}
	return "no policy " + ns + "/" + name
}

func (v postureView) policies(n int) string {
	count := 0
	for _, p := range v.Posture.Policies {
		if p.Namespace == "posture-istio" || p.Namespace == "posture-shop" || p.Namespace == "posture-books" {
			count++
		}
	}
	if count != n {
		return fmt.Sprintf("%d policies, want %d", count, n)
	}
	return ""
}

// checks returns the first of msgs that is not empty.
func checks(msgs ...string) string {
	for _, m := range msgs {
		if m != "" {
			return m
		}
	}
	return ""
}

// TestLinkerdPosture: Linkerd's default inbound policy from linkerd-config (the cluster's) and the
// namespaces' annotations, on the real API server under the derived RBAC, with Istio's posture
// watched next to it through the same namespace informer; an annotation edited is followed.
func TestLinkerdPosture(t *testing.T) {
	k := newKubeTest(t)
	const cp, web, api, plain = "posture-linkerd", "posture-l-web", "posture-l-api", "posture-l-plain"
	cfg := config.Default()
	ld := linkerd.In(cfg.Meshes)
	ld.Namespace = cp
	istio.In(cfg.Meshes).Watch = false
	cfg.Posture.Enabled, cfg.Posture.RetryInterval = true, 200*time.Millisecond
	inv := k.runAs(cfg, "exporter-posture-linkerd")

	k.configMap(cp, "linkerd-config", map[string]string{"values": "proxy:\n  defaultInboundPolicy: cluster-authenticated\n"})
	namespace := func(name string, annotations map[string]string) {
		t.Helper()
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
		if old, err := k.admin.CoreV1().Namespaces().Get(k.ctx, name, metav1.GetOptions{}); err == nil {
			n.ResourceVersion = old.ResourceVersion
			_, err = k.admin.CoreV1().Namespaces().Update(k.ctx, n, metav1.UpdateOptions{})
			k.must(err)
			return
		}
		_, err := k.admin.CoreV1().Namespaces().Create(k.ctx, n, metav1.CreateOptions{})
		k.must(err)
	}
	namespace(web, map[string]string{"linkerd.io/inject": "enabled"})
	namespace(api, map[string]string{"linkerd.io/inject": "enabled", "config.linkerd.io/default-inbound-policy": "deny"})
	namespace(plain, nil)
	linkerdNamespace := func(s *model.Snapshot, ns string) *model.NamespaceFinding {
		for _, n := range s.Posture.Namespaces {
			if n.Mesh == linkerd.Name && n.Namespace == ns {
				return &n
			}
		}
		return nil
	}
	eventually(t, inv, func(s *model.Snapshot) string {
		if n := linkerdNamespace(s, web); n == nil || n.Mode != "cluster-authenticated" || n.DefaultDeny {
			return fmt.Sprintf("%s: %+v, want the cluster's cluster-authenticated", web, n)
		}
		if n := linkerdNamespace(s, api); n == nil || n.Mode != "deny" || !n.DefaultDeny {
			return fmt.Sprintf("%s: %+v, want deny", api, n)
		}
		if n := linkerdNamespace(s, plain); n != nil {
			return fmt.Sprintf("%s is judged although Linkerd does not take it in: %+v", plain, n)
		}
		return ""
	})
	namespace(web, map[string]string{"linkerd.io/inject": "enabled", "config.linkerd.io/default-inbound-policy": "all-authenticated"})
	eventually(t, inv, func(s *model.Snapshot) string {
		if n := linkerdNamespace(s, web); n == nil || n.Mode != "all-authenticated" {
			return fmt.Sprintf("%s after its annotation changed: %+v", web, n)
		}
		return ""
	})
}
