package chart

import (
	"context"
	"fmt"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
)

// access is one request the exporter's service account may or may not make.
type access struct {
	verb, resource, namespace, name string
	allowed                         bool
}

// TestHelmInstallOnTheClustersPeopleHave: `helm install` of the default chart (not a dry run)
// against the real API server of a cluster with only Istio's namespace, only Linkerd's, and
// both, with the posture on (the default) or off: every object is created, and the exporter's service account may read what the exporter
// needs, its meshes' objects by name, and nothing else (SubjectAccessReviews).
func TestHelmInstallOnTheClustersPeopleHave(t *testing.T) {
	h := helm(t)
	for _, tt := range []struct {
		name       string
		namespaces []string
		posture    bool
	}{
		{"istio only", []string{"istio-system"}, true},
		{"linkerd only", []string{"linkerd"}, true},
		{"istio and linkerd", []string{"istio-system", "linkerd"}, true},
		{"istio only, posture off", []string{"istio-system"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cp := testenv.StartForTest(t)
			ctx := context.Background()
			client := kubernetes.NewForConfigOrDie(cp.AdminConfig())
			for _, ns := range tt.namespaces {
				if err := testenv.EnsureNamespace(ctx, client, ns); err != nil {
					t.Fatal(err)
				}
			}
			kubeconfig, err := cp.Kubeconfig("helm", cp.AdminConfig())
			if err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, h, "install", "meshcert", ".", "--namespace", releaseNamespace, "--create-namespace", "--kubeconfig", kubeconfig,
				"--set", fmt.Sprintf("config.posture.enabled=%v", tt.posture)); err != nil {
				t.Fatalf("helm install: %v\n%s", err, out)
			}
			manifest, err := run(t, h, "get", "manifest", "meshcert", "--namespace", releaseNamespace, "--kubeconfig", kubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			checkCreated(t, ctx, cp, manifest)
			sa := "system:serviceaccount:" + releaseNamespace + ":meshcert-meshcert-exporter"
			for _, a := range []access{
				{"get", "secrets", "istio-system", "cacerts", true},
				{"watch", "secrets", "istio-system", "istio-ca-secret", true},
				{"get", "secrets", "linkerd", "linkerd-identity-issuer", true},
				{"get", "configmaps", "linkerd", "linkerd-identity-trust-roots", true},
				{"get", "configmaps", "shop", "istio-ca-root-cert", true},
				{"list", "pods", "", "", tt.posture}, // the posture's bypass candidates (on by default)
				{"list", "namespaces", "", "", tt.posture},
				{"list", "secrets", "istio-system", "", false},
				{"get", "secrets", "istio-system", "some-app-tls", false},
				{"get", "secrets", "shop", "db-password", false},
				{"get", "configmaps", "shop", "app-config", false},
				{"create", "pods/portforward", "shop", "web-1", false},
				{"delete", "secrets", "istio-system", "cacerts", false},
				{"update", "configmaps", "linkerd", "linkerd-config", false},
			} {
				if got := allowed(t, ctx, client, sa, a); got != a.allowed {
					t.Errorf("%s %s %s/%s: allowed %v, want %v", a.verb, a.resource, a.namespace, a.name, got, a.allowed)
				}
			}
		})
	}
}

// checkCreated reads back every object of a release's manifest from the API server.
func checkCreated(t *testing.T, ctx context.Context, cp *testenv.ControlPlane, manifest string) {
	t.Helper()
	cfg := cp.AdminConfig()
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	objs := decodeObjects(t, manifest)
	for _, u := range objs {
		mapping, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
		if err != nil {
			t.Errorf("%s: %v", u.GetKind(), err)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := u.GetNamespace()
			if ns == "" {
				ns = releaseNamespace
			}
			ri = dyn.Resource(mapping.Resource).Namespace(ns)
		}
		if _, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{}); err != nil {
			t.Errorf("%s %s/%s was not created: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	if len(objs) < 5 {
		t.Errorf("the release holds %d objects", len(objs))
	}
}

// allowed asks the API server whether user may make the request a.
func allowed(t *testing.T, ctx context.Context, client kubernetes.Interface, user string, a access) bool {
	t.Helper()
	resource, sub, _ := strings.Cut(a.resource, "/")
	review, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: a.namespace, Verb: a.verb, Resource: resource, Subresource: sub, Name: a.name},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return review.Status.Allowed
}
