package sources_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/exporter"
	"github.com/meshcert/meshcert-exporter/internal/inventory"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/rbac"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
	"github.com/meshcert/meshcert-exporter/internal/testmodel"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	. "github.com/meshcert/meshcert-exporter/sources"
)

// controlPlane is the real API server shared by this package's integration tests.
var controlPlane *testenv.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(testenv.RunShared(m, &controlPlane))
}

// kubeTest is one integration test's view of the cluster.
type kubeTest struct {
	t     *testing.T
	ctx   context.Context
	admin kubernetes.Interface
}

func newKubeTest(t *testing.T) *kubeTest {
	t.Helper()
	if controlPlane == nil {
		t.Skip(testenv.ErrNoBinaries)
	}
	return &kubeTest{t: t, ctx: t.Context(), admin: kubernetes.NewForConfigOrDie(controlPlane.AdminConfig())}
}

// grant creates a service account bound to the rules rbac.Rules derives from cfg (minus drop, a
// resource to withhold) and returns a client that acts as it.
func (k *kubeTest) grant(cfg *config.Config, account string, drop string) kubernetes.Interface {
	k.t.Helper()
	const saNamespace = "meshcert"
	saCfg, err := controlPlane.ServiceAccountConfig(k.ctx, saNamespace, account)
	k.must(err)
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: account, Namespace: saNamespace}}
	for ns, rules := range rbac.Rules(cfg, rbac.MeshScopeCluster) {
		var kept []rbacv1.PolicyRule
		for _, r := range rules {
			if r.Resources[0] != drop {
				kept = append(kept, r)
			}
		}
		if ns == rbac.ClusterWide {
			_, err = k.admin.RbacV1().ClusterRoles().Create(k.ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: account}, Rules: kept}, metav1.CreateOptions{})
			k.must(err)
			_, err = k.admin.RbacV1().ClusterRoleBindings().Create(k.ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: account},
				RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: account}, Subjects: subject}, metav1.CreateOptions{})
			k.must(err)
			continue
		}
		k.must(testenv.EnsureNamespace(k.ctx, k.admin, ns))
		_, err = k.admin.RbacV1().Roles(ns).Create(k.ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: account}, Rules: kept}, metav1.CreateOptions{})
		k.must(err)
		_, err = k.admin.RbacV1().RoleBindings(ns).Create(k.ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: account},
			RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: account}, Subjects: subject}, metav1.CreateOptions{})
		k.must(err)
	}
	return kubernetes.NewForConfigOrDie(saCfg)
}

// start runs the sources of cfg with client, as the exporter assembles them, until the test
// ends; it returns their inventory and the Secret and ConfigMap sources.
func (k *kubeTest) start(cfg *config.Config, client kubernetes.Interface) (*inventory.Inventory, *Kube, *Kube) {
	a, err := exporter.Assemble(cfg, &exporter.Kube{Client: client}, log.NewNopLogger())
	k.must(err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range a.Sources {
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				k.t.Errorf("%s: %v", s.Name(), err)
			}
		})
	}
	k.t.Cleanup(func() { cancel(); wg.Wait() })
	return a.Inventory, sourceNamed(a, SourceSecret).(*Kube), sourceNamed(a, SourceConfigMap).(*Kube)
}

// sourceNamed returns the source of a named name.
func sourceNamed(a *exporter.Assembly, name string) model.Source {
	for _, s := range a.Sources {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func (k *kubeTest) must(err error) {
	k.t.Helper()
	if err != nil {
		k.t.Fatal(err)
	}
}

func (k *kubeTest) secret(ns, name string, typ corev1.SecretType, data map[string][]byte) {
	k.t.Helper()
	k.annotatedSecret(ns, name, typ, nil, data)
}

// annotatedSecret creates or replaces a Secret with annotations.
func (k *kubeTest) annotatedSecret(ns, name string, typ corev1.SecretType, annotations map[string]string, data map[string][]byte) {
	k.t.Helper()
	k.must(testenv.EnsureNamespace(k.ctx, k.admin, ns))
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations}, Type: typ, Data: data}
	_, err := k.admin.CoreV1().Secrets(ns).Create(k.ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = k.admin.CoreV1().Secrets(ns).Update(k.ctx, s, metav1.UpdateOptions{})
	}
	k.must(err)
}

func (k *kubeTest) configMap(ns, name string, data map[string]string) {
	k.t.Helper()
	k.must(testenv.EnsureNamespace(k.ctx, k.admin, ns))
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data}
	_, err := k.admin.CoreV1().ConfigMaps(ns).Create(k.ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = k.admin.CoreV1().ConfigMaps(ns).Update(k.ctx, cm, metav1.UpdateOptions{})
	}
	k.must(err)
}

// eventually polls check until it returns "" (success) or fails the test after 20 seconds with
// the last complaint.
func eventually(t *testing.T, inv *inventory.Inventory, check func(s *model.Snapshot) string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if last = check(inv.Snapshot()); last == "" {
			return
		}
	}
	t.Fatal(last)
}

// snapshotView answers questions about a snapshot in the integration tests.
type snapshotView struct{ *model.Snapshot }

func (v snapshotView) cert(source, ns, name, key string, index int) *testmodel.Observation {
	certs := testmodel.Certificates(v.Analysis)
	for i := range certs {
		c := &certs[i]
		if c.Source == source && c.Namespace == ns && c.Name == name && c.Key == key && c.Index == index {
			return c
		}
	}
	return nil
}

func (v snapshotView) object(source, ns, name string) int {
	n := 0
	for _, c := range testmodel.Certificates(v.Analysis) {
		if c.Source == source && c.Namespace == ns && c.Name == name {
			n++
		}
	}
	return n
}

// manager is what the snapshot says rotates the Secret ns/name; "" for not an issuer.
func (v snapshotView) manager(ns, name string) string {
	for _, oa := range v.Objects {
		if o := oa.Object; o.Source == SourceSecret && o.Namespace == ns && o.Name == name {
			return o.Manager
		}
	}
	return ""
}

func (v snapshotView) rootKey(ns, name string) (stored, found bool) {
	for _, k := range testmodel.RootKeys(v.Analysis) {
		if k.Namespace == ns && k.Name == name {
			return k.Stored, true
		}
	}
	return false, false
}

func (v snapshotView) bundleCurrent(ns, name string) (current, found bool) {
	for _, b := range testmodel.TrustBundles(v.Analysis) {
		if b.Namespace == ns && b.Name == name {
			return b.Current, true
		}
	}
	return false, false
}

func (v snapshotView) bundleCurrentKey(ns, name, key string) (current, found bool) {
	for _, b := range testmodel.TrustBundles(v.Analysis) {
		if b.Namespace == ns && b.Name == name && b.Key == key {
			return b.Current, true
		}
	}
	return false, false
}

func (v snapshotView) up() string {
	for _, s := range v.Sources {
		if !s.Up {
			return s.Name + " is not up"
		}
	}
	return ""
}

// chainIs describes how c's chain differs from the expectation, or "".
func chainIs(c *testmodel.Observation, role model.Role, valid bool, reason model.ErrorReason, depth int) string {
	if c == nil {
		return "certificate not exported"
	}
	if c.Role != role || c.Chain == nil {
		return fmt.Sprintf("role %q, chain %v; want %q", c.Role, c.Chain != nil, role)
	}
	st := c.Chain.Evaluate(c.Certificate, time.Now())
	if st.Valid != valid || st.Reason != reason || st.Depth != depth {
		return fmt.Sprintf("%s/%s: chain valid %v reason %q depth %d; want %v %q %d", c.Name, c.Key, st.Valid, st.Reason, st.Depth, valid, reason, depth)
	}
	return ""
}

var (
	kubeFrom  = time.Now().Add(-time.Hour).Truncate(time.Second)
	kubeUntil = kubeFrom.AddDate(10, 0, 0)
)

func issue(cn string, ca bool, issuer *testpki.Cert, uris ...string) *testpki.Cert {
	return testpki.Issue(testpki.Spec{CommonName: cn, CA: ca, Issuer: issuer, URIs: uris, NotBefore: kubeFrom, NotAfter: kubeUntil})
}

func TestKubeIstio(t *testing.T) {
	k := newKubeTest(t)
	const ns = "istio-t"
	cfg := config.Default()
	istio.In(cfg.Meshes).Namespace = ns
	linkerd.In(cfg.Meshes).Watch = false
	inv, secrets, _ := k.start(cfg, k.grant(cfg, "exporter-istio", ""))

	// 1. The self-signed CA only: istio-ca-secret, with its root key in the cluster.
	root1 := issue("root 1", true, nil)
	k.secret(ns, "istio-ca-secret", "istio.io/ca-root", map[string][]byte{
		"ca-cert.pem": root1.PEM(), "ca-key.pem": root1.KeyPEM(), "root-cert.pem": root1.PEM(), "cert-chain.pem": {}, "key.pem": {}})
	eventually(t, inv, func(s *model.Snapshot) string {
		v := snapshotView{s}
		if msg := v.up(); msg != "" {
			return msg
		}
		c := v.cert(SourceSecret, ns, "istio-ca-secret", "ca-cert.pem", 0)
		if c == nil || c.Role != model.RoleTrustAnchor || c.Mesh != istio.Name {
			return fmt.Sprintf("istio-ca-secret root: %+v", c)
		}
		if stored, _ := v.rootKey(ns, "istio-ca-secret"); !stored {
			return "the root key in istio-ca-secret is not reported"
		}
		// istiod's root-cert.pem there is a copy of the root it signs with, not the authority.
		if cur, found := v.bundleCurrentKey(ns, "istio-ca-secret", "root-cert.pem"); !found || !cur {
			return fmt.Sprintf("istio-ca-secret root-cert.pem copy: current %v, found %v", cur, found)
		}
		if v.cert(SourceSecret, ns, "istio-ca-secret", "root-cert.pem", 0) != nil {
			return "istio-ca-secret's root-cert.pem copy is exported"
		}
		return ""
	})

	// 2. A plug-in CA in istiod's layout under a new root; istiod now ignores istio-ca-secret.
	root2 := issue("root 2", true, nil)
	inter2 := issue("intermediate 2", true, root2)
	k.secret(ns, "cacerts", corev1.SecretTypeOpaque, map[string][]byte{
		"ca-cert.pem": inter2.PEM(), "ca-key.pem": inter2.KeyPEM(), "cert-chain.pem": testpki.Bundle(inter2, root2), "root-cert.pem": root2.PEM()})
	k.configMap("app-current", "istio-ca-root-cert", map[string]string{"root-cert.pem": string(root2.PEM())})
	k.configMap("app-stale", "istio-ca-root-cert", map[string]string{"root-cert.pem": string(root1.PEM())})
	eventually(t, inv, func(s *model.Snapshot) string {
		v := snapshotView{s}
		if msg := chainIs(v.cert(SourceSecret, ns, "cacerts", "ca-cert.pem", 0), model.RoleIntermediate, true, "", 2); msg != "" {
			return msg
		}
		if stored, found := v.rootKey(ns, "cacerts"); stored || !found {
			return "cacerts reported as holding a root key"
		}
		cur, found1 := v.bundleCurrent("app-current", "istio-ca-root-cert")
		stale, found2 := v.bundleCurrent("app-stale", "istio-ca-root-cert")
		if !found1 || !found2 || !cur || stale {
			return fmt.Sprintf("root copies: current %v/%v, stale %v/%v", cur, found1, stale, found2)
		}
		return ""
	})

	// 3. Both layouts at once: tls.crt wins, as in istiod.
	inter3 := issue("intermediate 3", true, root2)
	k.secret(ns, "cacerts", corev1.SecretTypeOpaque, map[string][]byte{
		"ca-cert.pem": inter2.PEM(), "ca-key.pem": inter2.KeyPEM(), "cert-chain.pem": testpki.Bundle(inter2, root2), "root-cert.pem": root2.PEM(),
		"tls.crt": inter3.PEM(), "tls.key": inter3.KeyPEM(), "ca.crt": root2.PEM()})
	// istio-csr's istiod-tls with the trust domain from the mesh config.
	k.configMap(ns, "istio", map[string]string{"mesh": "trustDomain: prod.example\ndefaultConfig:\n  discoveryAddress: istiod:15012\n"})
	istiod := issue("istiod", false, inter3, "spiffe://prod.example/ns/"+ns+"/sa/istiod")
	// cert-manager writes the issuing CA after the leaf in tls.crt: the chain istiod presents.
	k.secret(ns, "istiod-tls", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": testpki.Bundle(istiod, inter3), "tls.key": istiod.KeyPEM(), "ca.crt": root2.PEM()})
	eventually(t, inv, func(s *model.Snapshot) string {
		v := snapshotView{s}
		if v.cert(SourceSecret, ns, "cacerts", "ca-cert.pem", 0) != nil {
			return "ca-cert.pem still exported although tls.crt wins"
		}
		if msg := chainIs(v.cert(SourceSecret, ns, "cacerts", "tls.crt", 0), model.RoleIntermediate, true, "", 2); msg != "" {
			return msg
		}
		leaf := v.cert(SourceSecret, ns, "istiod-tls", "tls.crt", 0)
		if msg := chainIs(leaf, model.RoleLeaf, true, "", 3); msg != "" {
			return msg
		}
		if leaf.Identity == nil || !leaf.Identity.Valid {
			return fmt.Sprintf("istiod identity in trust domain prod.example: %+v", leaf.Identity)
		}
		if cur, _ := v.bundleCurrent(ns, "istiod-tls"); !cur {
			return "istiod-tls ca.crt not current"
		}
		if m := v.manager(ns, "cacerts"); m != model.ManagerNone {
			return fmt.Sprintf("cacerts written by hand is managed by %q", m)
		}
		if m := v.manager(ns, "istiod-tls"); m != "" {
			return fmt.Sprintf("istiod-tls (not an issuer) has a manager %q", m)
		}
		return ""
	})

	// 4. Rotation: a new intermediate shows on the next snapshot, with no restart; cert-manager
	// issued this one.
	inter4 := issue("intermediate 4", true, root2)
	k.annotatedSecret(ns, "cacerts", corev1.SecretTypeOpaque, map[string]string{"cert-manager.io/certificate-name": "istio-ca"},
		map[string][]byte{"tls.crt": inter4.PEM(), "tls.key": inter4.KeyPEM(), "ca.crt": root2.PEM()})
	eventually(t, inv, func(s *model.Snapshot) string {
		c := snapshotView{s}.cert(SourceSecret, ns, "cacerts", "tls.crt", 0)
		if c == nil || c.Certificate.Serial != inter4.X509.SerialNumber.Text(16) {
			return "the rotated intermediate is not exported"
		}
		if m := (snapshotView{s}).manager(ns, "cacerts"); m != model.ManagerCertManager {
			return fmt.Sprintf("cacerts issued by cert-manager is managed by %q", m)
		}
		return ""
	})

	// 5. Deleting cacerts drops its series; istio-ca-secret's root is current again.
	k.must(k.admin.CoreV1().Secrets(ns).Delete(k.ctx, "cacerts", metav1.DeleteOptions{}))
	eventually(t, inv, func(s *model.Snapshot) string {
		v := snapshotView{s}
		if n := v.object(SourceSecret, ns, "cacerts"); n != 0 {
			return fmt.Sprintf("%d certificates of the deleted cacerts remain", n)
		}
		if cur, _ := v.bundleCurrent("app-stale", "istio-ca-root-cert"); !cur {
			return "istio-ca-secret's root is not current after cacerts was deleted"
		}
		return ""
	})

	// Nothing in the informer caches holds a private key.
	assertNoKeysCached(t, secrets, root1, inter2, inter3, inter4, istiod)
}

// assertNoKeysCached inspects every cached object: only its identity and its model are kept, and
// nothing it reaches holds the private key of certs.
func assertNoKeysCached(t *testing.T, k *Kube, certs ...*testpki.Cert) {
	t.Helper()
	cached := 0
	for _, obj := range k.CachedObjects() {
		cached++
		meta, _ := Cached(obj)
		if len(meta.Labels)+len(meta.Annotations)+len(meta.ManagedFields)+len(meta.Finalizers)+len(meta.OwnerReferences) > 0 {
			t.Errorf("%s/%s cached with its metadata", meta.Namespace, meta.Name)
		}
		for _, cert := range certs {
			AssertNoKeyMaterial(t, obj, cert.KeyPEM())
		}
	}
	if cached == 0 {
		t.Error("no object cached: the check proves nothing")
	}
}

func TestKubeLinkerd(t *testing.T) {
	k := newKubeTest(t)
	const ns = "linkerd-t"
	cfg := config.Default()
	linkerd.In(cfg.Meshes).Namespace = ns
	istio.In(cfg.Meshes).Watch = false
	inv, _, configMaps := k.start(cfg, k.grant(cfg, "exporter-linkerd", ""))

	anchor := issue("root.linkerd.cluster.local", true, nil)
	issuer := issue("identity.linkerd.cluster.local", true, anchor)
	values := "identityTrustDomain: example.org\nidentityTrustAnchorsPEM: |\n  " +
		strings.ReplaceAll(strings.TrimSpace(string(anchor.PEM())), "\n", "\n  ") + "\nidentity:\n  issuer:\n    scheme: linkerd.io/tls\n"
	k.configMap(ns, "linkerd-identity-trust-roots", map[string]string{"ca-bundle.crt": string(anchor.PEM())})
	k.configMap(ns, "linkerd-config", map[string]string{"values": values})
	k.secret(ns, "linkerd-identity-issuer", corev1.SecretTypeOpaque, map[string][]byte{"crt.pem": issuer.PEM(), "key.pem": issuer.KeyPEM()})
	eventually(t, inv, func(s *model.Snapshot) string {
		v := snapshotView{s}
		if msg := v.up(); msg != "" {
			return msg
		}
		if msg := chainIs(v.cert(SourceSecret, ns, "linkerd-identity-issuer", "crt.pem", 0), model.RoleIssuer, true, "", 2); msg != "" {
			return msg
		}
		if a := v.cert(SourceConfigMap, ns, "linkerd-identity-trust-roots", "ca-bundle.crt", 0); a == nil || a.Role != model.RoleTrustAnchor || a.Mesh != linkerd.Name {
			return fmt.Sprintf("trust anchor: %+v", a)
		}
		if cur, found := v.bundleCurrent(ns, "linkerd-config"); !found || !cur {
			return "linkerd-config's identityTrustAnchorsPEM is not compared with the trust roots"
		}
		if m := v.manager(ns, "linkerd-identity-issuer"); m != model.ManagerNone {
			return fmt.Sprintf("the issuer written by hand is managed by %q", m)
		}
		if stored, found := v.rootKey(ns, "linkerd-identity-issuer"); stored || !found {
			return "the issuer's key reported as a root key"
		}
		return ""
	})
	st := configMaps.State().Meshes[linkerd.Name]
	if st.TrustDomain != "example.org" || st.ControlPlaneNamespace != ns {
		t.Errorf("settings from linkerd-config = %+v", st)
	}
	// The digests the proxy injector writes into linkerd.io/trust-root-sha256: of the exact text of
	// identityTrustAnchorsPEM and of the trust roots ConfigMap.
	pemText := strings.TrimSpace(string(anchor.PEM())) + "\n"
	sumValues, sumBundle := sha256.Sum256([]byte(pemText)), sha256.Sum256(anchor.PEM())
	for _, want := range []string{hex.EncodeToString(sumValues[:]), hex.EncodeToString(sumBundle[:])} {
		if !slices.Contains(st.TrustAnchorDigests, want) {
			t.Errorf("digest %s not published: %v", want, st.TrustAnchorDigests)
		}
	}

	// The cert-manager scheme, with an issuer signed by another anchor: it does not verify against
	// the current anchors, and its ca.crt is a stale copy.
	other := issue("another anchor", true, nil)
	rogue := issue("identity.linkerd.cluster.local", true, other)
	k.must(k.admin.CoreV1().Secrets(ns).Delete(k.ctx, "linkerd-identity-issuer", metav1.DeleteOptions{}))
	k.secret(ns, "linkerd-identity-issuer", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": rogue.PEM(), "tls.key": rogue.KeyPEM(), "ca.crt": other.PEM()})
	eventually(t, inv, func(s *model.Snapshot) string {
		v := snapshotView{s}
		if msg := chainIs(v.cert(SourceSecret, ns, "linkerd-identity-issuer", "tls.crt", 0), model.RoleIssuer, false, model.ReasonUnknownAuthority, 1); msg != "" {
			return msg
		}
		if cur, found := v.bundleCurrent(ns, "linkerd-identity-issuer"); !found || cur {
			return "the issuer's stale ca.crt is not reported"
		}
		return ""
	})
}

// TestKubeForbidden: without the ConfigMap permission the ConfigMap source is down with the reason
// forbidden, and the Secret source is unaffected.
func TestKubeForbidden(t *testing.T) {
	k := newKubeTest(t)
	const ns = "istio-forbidden"
	cfg := config.Default()
	istio.In(cfg.Meshes).Namespace = ns
	istio.In(cfg.Meshes).RootCertConfigMap = "root-cert-forbidden"
	linkerd.In(cfg.Meshes).Watch = false
	root := issue("root", true, nil)
	k.secret(ns, "istio-ca-secret", "istio.io/ca-root", map[string][]byte{"ca-cert.pem": root.PEM(), "ca-key.pem": root.KeyPEM()})
	inv, _, _ := k.start(cfg, k.grant(cfg, "exporter-forbidden", "configmaps"))
	eventually(t, inv, func(s *model.Snapshot) string {
		for _, src := range s.Sources {
			switch {
			case src.Name == SourceConfigMap && (src.Up || src.Errors[model.ReasonForbidden] == 0):
				return fmt.Sprintf("configmap source: up %v, errors %v; want down with forbidden", src.Up, src.Errors)
			case src.Name == SourceSecret && !src.Up:
				return "the secret source is down"
			}
		}
		if (snapshotView{s}).cert(SourceSecret, ns, "istio-ca-secret", "ca-cert.pem", 0) == nil {
			return "the readable Secret is not exported"
		}
		return ""
	})
}

// TestKubeGenericSelectors: cert-manager Certificates chosen by type and label, istio-csr's root
// in cert-manager's namespace as the mesh's trust anchors, a trust-manager bundle ConfigMap.
// Secrets the selectors do not choose never reach the exporter, even in a watched namespace.
func TestKubeGenericSelectors(t *testing.T) {
	k := newKubeTest(t)
	cfg := config.Default()
	istio.In(cfg.Meshes).Namespace = "istio-generic"
	istio.In(cfg.Meshes).RootCertConfigMap = "root-cert-generic"
	linkerd.In(cfg.Meshes).Watch = false
	cfg.Kubernetes.Secrets = []Selector{
		{Namespace: "certs", Type: "kubernetes.io/tls", LabelSelector: "team=mesh"},
		{Namespace: "cert-manager", Name: "istio-root-ca", Keys: []string{"ca.pem"}, Mesh: "istio", TrustAnchors: true},
	}
	cfg.Kubernetes.ConfigMaps = []Selector{{Name: "mesh-bundle", Keys: []string{"*.pem"}}}

	root := issue("istio-csr root", true, nil)
	leaf := issue("web", false, root)
	k.secret("cert-manager", "istio-root-ca", corev1.SecretTypeOpaque, map[string][]byte{"ca.pem": root.PEM(), "ca-key.pem": root.KeyPEM()})
	k.configMap("bundles", "mesh-bundle", map[string]string{"trust.pem": string(root.PEM()), "notes.txt": "not read"})
	// Unrelated: the wrong label, the wrong type, and 100 KB blobs like Helm releases.
	k.must(testenv.EnsureNamespace(k.ctx, k.admin, "certs"))
	_, err := k.admin.CoreV1().Secrets("certs").Create(k.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "web-tls", Labels: map[string]string{"team": "mesh"}},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": leaf.PEM(), "tls.key": leaf.KeyPEM(), "ca.crt": root.PEM()}}, metav1.CreateOptions{})
	k.must(err)
	_, err = k.admin.CoreV1().Secrets("certs").Create(k.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other-team", Labels: map[string]string{"team": "x"}},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": leaf.PEM(), "tls.key": leaf.KeyPEM()}}, metav1.CreateOptions{})
	k.must(err)
	blob := bytes.Repeat([]byte("h"), 100<<10)
	for i := range 50 {
		_, err := k.admin.CoreV1().Secrets("certs").Create(k.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sh.helm.release.v1.app.v%d", i),
			Labels: map[string]string{"team": "mesh"}}, Type: "helm.sh/release.v1", Data: map[string][]byte{"release": blob}}, metav1.CreateOptions{})
		k.must(err)
	}

	inv, secrets, configMaps := k.start(cfg, k.grant(cfg, "exporter-generic", ""))
	eventually(t, inv, func(s *model.Snapshot) string {
		v := snapshotView{s}
		if msg := v.up(); msg != "" {
			return msg
		}
		if msg := chainIs(v.cert(SourceSecret, "certs", "web-tls", "tls.crt", 0), model.RoleLeaf, true, "", 2); msg != "" {
			return "web-tls: " + msg
		}
		if a := v.cert(SourceSecret, "cert-manager", "istio-root-ca", "ca.pem", 0); a == nil || a.Mesh != istio.Name {
			return fmt.Sprintf("istio-csr root: %+v", a)
		}
		if stored, _ := v.rootKey("cert-manager", "istio-root-ca"); stored {
			return "ca-key.pem paired with ca.pem is not a known pair and must not be guessed"
		}
		if v.cert(SourceConfigMap, "bundles", "mesh-bundle", "trust.pem", 0) == nil {
			return "trust-manager bundle not exported"
		}
		if v.object(SourceSecret, "certs", "other-team") != 0 {
			return "a Secret outside the label selector was read"
		}
		return ""
	})
	for _, obj := range append(secrets.CachedObjects(), configMaps.CachedObjects()...) {
		meta, o := Cached(obj)
		if strings.HasPrefix(meta.Name, "sh.helm") || meta.Name == "other-team" {
			t.Errorf("unrelated Secret %s cached", meta.Name)
		}
		if o != nil && slices.ContainsFunc(o.Bundles, func(b model.Bundle) bool { return b.Key == "notes.txt" }) {
			t.Error("a key outside the selector's patterns was read")
		}
	}
}

// TestKubeSurvivesAPIServerRestart: with the API server stopped for 30 seconds the sources go down
// but keep serving the last objects, with a last-success time that stops moving; once it is back
// they recover by themselves, and a change made after the restart shows.
func TestKubeSurvivesAPIServerRestart(t *testing.T) {
	k := newKubeTest(t)
	const ns = "istio-restart"
	cfg := config.Default()
	istio.In(cfg.Meshes).Namespace = ns
	istio.In(cfg.Meshes).RootCertConfigMap = "root-cert-restart"
	linkerd.In(cfg.Meshes).Watch = false
	root := issue("root before", true, nil)
	k.secret(ns, "istio-ca-secret", "istio.io/ca-root", map[string][]byte{"ca-cert.pem": root.PEM(), "ca-key.pem": root.KeyPEM()})
	inv, _, _ := k.start(cfg, kubernetes.NewForConfigOrDie(controlPlane.AdminConfig()))
	exported := func(s *model.Snapshot, cn string) bool {
		c := (snapshotView{s}).cert(SourceSecret, ns, "istio-ca-secret", "ca-cert.pem", 0)
		return c != nil && c.Certificate.Subject == "CN="+cn
	}
	eventually(t, inv, func(s *model.Snapshot) string {
		if msg := (snapshotView{s}).up(); msg != "" || !exported(s, "root before") {
			return "not up with the root: " + msg
		}
		return ""
	})

	controlPlane.StopAPIServer()
	restarted := false
	defer func() {
		if !restarted {
			k.must(controlPlane.StartAPIServer())
		}
	}()
	var frozen time.Time
	eventually(t, inv, func(s *model.Snapshot) string {
		for _, src := range s.Sources {
			if src.Name == SourceSecret {
				if src.Up || src.Errors[model.ReasonUnavailable] == 0 {
					return fmt.Sprintf("secret source up %v, errors %v during the outage", src.Up, src.Errors)
				}
				frozen = src.LastSuccess
			}
		}
		if !exported(s, "root before") {
			return "the last known root is no longer served during the outage"
		}
		return ""
	})
	time.Sleep(30 * time.Second)
	s := inv.Snapshot()
	for _, src := range s.Sources {
		if src.Name == SourceSecret && (src.Up || !src.LastSuccess.Equal(frozen)) {
			t.Errorf("during the outage: up %v, last success moved from %s to %s", src.Up, frozen, src.LastSuccess)
		}
	}
	if !exported(s, "root before") {
		t.Error("series lost during the outage")
	}

	k.must(controlPlane.StartAPIServer())
	restarted = true
	k.admin = kubernetes.NewForConfigOrDie(controlPlane.AdminConfig())
	after := issue("root after", true, nil)
	k.secret(ns, "istio-ca-secret", "istio.io/ca-root", map[string][]byte{"ca-cert.pem": after.PEM(), "ca-key.pem": after.KeyPEM()})
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		s := inv.Snapshot()
		if (snapshotView{s}).up() == "" && exported(s, "root after") {
			for _, src := range s.Sources {
				if !src.LastSuccess.After(frozen) {
					t.Errorf("%s: last success did not move after the recovery", src.Name)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sources did not recover after the API server came back")
		}
	}
}
