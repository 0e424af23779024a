package sources_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
// PERMISSIVE with a workload on DISABLE, a deny-all policy in one namespace only, and pods of
// every bypass kind next to a clean sidecar pod and a clean ambient pod; then a policy edited, one
// deleted and a pod deleted, each followed without a restart.
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

	// The pods, as Istio's injector and istio-cni leave them: shop is injected (PERMISSIVE), books
	// STRICT by the mesh-wide policy, the root namespace is the control plane's.
	yes := true
	netAdmin := &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}}}
	sidecar := func(app ...corev1.Container) corev1.PodSpec {
		return corev1.PodSpec{InitContainers: []corev1.Container{{Name: "istio-init", SecurityContext: netAdmin}},
			Containers: append(app, corev1.Container{Name: "istio-proxy"})}
	}
	pods := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "cart"}, Spec: sidecar(corev1.Container{Name: "cart"})},
		{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "debug"}, Spec: sidecar(corev1.Container{Name: "tools", SecurityContext: netAdmin})},
		{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "batch"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "batch"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "agent"}, Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "agent"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: books, Name: "reader", Annotations: map[string]string{"ambient.istio.io/redirection": "enabled"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "reader"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: books, Name: "lone"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "lone"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: root, Name: "istio-cni-node"}, Spec: corev1.PodSpec{HostNetwork: true,
			Containers: []corev1.Container{{Name: "install-cni", SecurityContext: &corev1.SecurityContext{Privileged: &yes}}}}},
	}
	for i, p := range pods {
		k.runPod(p, fmt.Sprintf("10.8.0.%d", i+1))
	}
	eventually(t, inv, func(s *model.Snapshot) string {
		v := postureView{s}
		return checks(v.policy(root, "default", istio.ScopeMesh, "STRICT", 0), v.policy(shop, "legacy", istio.ScopeNamespace, "PERMISSIVE", 0),
			v.policy(shop, "cart", istio.ScopeWorkload, "DISABLE", 1), v.policies(3),
			v.namespace(root, "STRICT", false), v.namespace(shop, "PERMISSIVE", false), v.namespace(books, "STRICT", true),
			v.bypass([]string{books + "/lone/no_proxy", shop + "/agent/host_network", shop + "/batch/no_proxy", shop + "/debug/net_admin"}),
			v.pods(shop, 2, 1, 1), v.pods(books, 1, 1, 0), v.noPods(root))
	})

	// 3. Edited and deleted, followed without a restart: books keeps its meshed pod, so it is
	// still judged.
	apply(pa, "PeerAuthentication", shop, "legacy", map[string]any{"mtls": map[string]any{"mode": "STRICT"}})
	k.must(dyn.Resource(ap).Namespace(books).Delete(k.ctx, "deny-all", metav1.DeleteOptions{}))
	k.must(k.admin.CoreV1().Pods(shop).Delete(k.ctx, "debug", metav1.DeleteOptions{}))
	eventually(t, inv, func(s *model.Snapshot) string {
		v := postureView{s}
		return checks(v.policy(shop, "legacy", istio.ScopeNamespace, "STRICT", 0), v.namespace(shop, "STRICT", false), v.namespace(books, "STRICT", false),
			v.bypass([]string{books + "/lone/no_proxy", shop + "/agent/host_network", shop + "/batch/no_proxy"}), v.pods(shop, 1, 1, 1))
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

// runPod runs p with ip until the test ends: the API server is shared, and the proxy tests read
// every meshed pod in it.
func (k *kubeTest) runPod(p *corev1.Pod, ip string) {
	k.t.Helper()
	k.must(controlPlane.RunPod(k.ctx, p, ip))
	ns, name := p.Namespace, p.Name
	k.t.Cleanup(func() {
		now := int64(0)
		err := k.admin.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &now})
		if err != nil && !apierrors.IsNotFound(err) {
			k.t.Errorf("deleting pod %s/%s: %v", ns, name, err)
		}
	})
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

// bypass checks Istio's bypass findings in the test's namespaces, as namespace/name/reason, sorted.
func (v postureView) bypass(want []string) string {
	var got []string
	for _, b := range v.Posture.Bypass {
		if b.Mesh == istio.Name && strings.HasPrefix(b.Namespace, "posture-") {
			got = append(got, b.Namespace+"/"+b.Name+"/"+b.Reason)
		}
	}
	if !slices.Equal(got, want) {
		return fmt.Sprintf("bypass %v, want %v", got, want)
	}
	return ""
}

func (v postureView) pods(ns string, meshed, unmeshed, host int) string {
	for _, c := range v.Posture.Pods {
		if c.Mesh == istio.Name && c.Namespace == ns {
			if c.Meshed != meshed || c.Unmeshed != unmeshed || c.HostNetwork != host {
				return fmt.Sprintf("pods of %s: %+v, want %d meshed, %d unmeshed, %d on the host network", ns, c, meshed, unmeshed, host)
			}
			return ""
		}
	}
	return "no pod counts for " + ns
}

func (v postureView) noPods(ns string) string {
	for _, c := range v.Posture.Pods {
		if c.Mesh == istio.Name && c.Namespace == ns {
			return fmt.Sprintf("pods of %s counted: %+v", ns, c)
		}
	}
	return ""
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

// TestLinkerdPosture: Linkerd's default inbound policy from linkerd-config (the cluster's), the
// namespaces' annotations and a meshed pod's own, on the real API server under the derived RBAC,
// with Istio's posture watched next to it through the same namespace and pod informers; a pod
// without the proxy in an injected namespace is a bypass; an annotation edited is followed.
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
	proxy := func(annotations map[string]string, app string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: web, Name: app, Annotations: annotations},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "linkerd-init", SecurityContext: &corev1.SecurityContext{
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}}}}},
				Containers: []corev1.Container{{Name: app}, {Name: "linkerd-proxy"}}}}
	}
	k.runPod(proxy(nil, "web"), "10.8.1.1")
	k.runPod(proxy(map[string]string{"config.linkerd.io/default-inbound-policy": "all-unauthenticated"}, "metrics"), "10.8.1.2")
	k.runPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: web, Name: "skipped",
		Annotations: map[string]string{"linkerd.io/inject": "disabled"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "skipped"}}}}, "10.8.1.3")
	k.runPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: plain, Name: "plain"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "plain"}}}}, "10.8.1.4")
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
		var policies, bypass []string
		for _, p := range s.Posture.Policies {
			if p.Mesh == linkerd.Name {
				policies = append(policies, p.Namespace+"/"+p.Name+"/"+p.Scope+"/"+p.Mode)
			}
		}
		for _, b := range s.Posture.Bypass {
			if b.Mesh == linkerd.Name {
				bypass = append(bypass, b.Namespace+"/"+b.Name+"/"+b.Reason)
			}
		}
		if want := []string{web + "/metrics/workload/all-unauthenticated"}; !slices.Equal(policies, want) {
			return fmt.Sprintf("Linkerd's workload policies %v, want %v", policies, want)
		}
		if want := []string{web + "/skipped/no_proxy"}; !slices.Equal(bypass, want) {
			return fmt.Sprintf("Linkerd's bypass %v, want %v", bypass, want)
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
