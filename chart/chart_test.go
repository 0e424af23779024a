// Package chart holds the Helm chart of meshcert-exporter. Its test lints and renders the chart with
// the real helm, checks the rendered RBAC against internal/rbac, the Pod Security settings and the
// README, and has the real API server validate every rendered object with a server-side dry-run.
package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/rbac"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
)

const (
	kubeVersion      = "1.37.2"
	releaseNamespace = "monitoring"
)

// valueSets are the value files the chart must accept: the defaults, and every option on in each
// mode (all-on itself is the sharded mode).
var valueSets = map[string][]string{
	"defaults":             nil,
	"all-on":               {"ci/all-on-values.yaml"},
	"all-on in deployment": {"ci/all-on-values.yaml", "ci/deployment-values.yaml"},
	"all-on in daemonset":  {"ci/all-on-values.yaml", "ci/daemonset-values.yaml"},
	"namespace scope":      {"ci/namespace-scope-values.yaml"},
}

// meshScope is the rbac.meshScope the value files set, else the chart's default.
func meshScope(t *testing.T, files []string) rbac.MeshScope {
	t.Helper()
	scope := rbac.MeshScopeCluster
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			RBAC struct {
				MeshScope rbac.MeshScope `json:"meshScope"`
			} `json:"rbac"`
		}
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		if v.RBAC.MeshScope != "" {
			scope = v.RBAC.MeshScope
		}
	}
	return scope
}

func helm(t *testing.T) string { return testenv.Tool(t, "helm") }

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

// render renders the chart with the value files and returns its objects.
func render(t *testing.T, files []string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "meshcert", ".", "--namespace", releaseNamespace, "--kube-version", kubeVersion}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	out, err := run(t, helm(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeObjects(t, out)
}

// decodeObjects decodes a stream of YAML documents (a rendered chart, a release's manifest).
func decodeObjects(t *testing.T, text string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// rulesOf are the rules of a rendered Role or ClusterRole, normalized.
func rulesOf(t *testing.T, o *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.Role
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
		t.Fatal(err)
	}
	for i := range role.Rules {
		role.Rules[i] = normalize(role.Rules[i])
	}
	return role.Rules
}

func TestLint(t *testing.T) {
	h := helm(t)
	for name, files := range valueSets {
		args := []string{"lint", ".", "--strict", "--kube-version", kubeVersion}
		for _, f := range files {
			args = append(args, "-f", f)
		}
		if out, err := run(t, h, args...); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	_, err := run(t, helm(t), "template", "meshcert", ".", "-f", "ci/bad-values.yaml", "--kube-version", kubeVersion)
	if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") ||
		!strings.Contains(err.Error(), "/config/proxies/envoy/transport") || !strings.Contains(err.Error(), "/mode") {
		t.Errorf("bad values were not rejected by the schema: %v", err)
	}
}

// configOf parses the exporter configuration the chart renders, with the exporter's own parser.
func configOf(t *testing.T, objs []*unstructured.Unstructured) *config.Config {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && strings.HasSuffix(o.GetName(), "meshcert-exporter") {
			data, _, _ := unstructured.NestedString(o.Object, "data", "config.yaml")
			cfg, err := config.Parse([]byte(data))
			if err != nil {
				t.Fatalf("the rendered configuration is not valid: %v", err)
			}
			return cfg
		}
	}
	t.Fatal("no configuration rendered")
	return nil
}

// TestRBACFollowsTheConfiguration: the chart's Roles and ClusterRole grant exactly what
// internal/rbac derives from the configuration the chart renders and its mesh scope, plus
// pods/portforward only when that transport is on; by default no namespaced object at all (a mesh
// whose namespace is absent is no error), Secrets only by the meshes' names, and pods only to
// read them (the posture judgement's bypass candidates).
func TestRBACFollowsTheConfiguration(t *testing.T) {
	for name, files := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs := render(t, files)
			cfg := configOf(t, objs)
			want := map[string][]rbacv1.PolicyRule{}
			for ns, rules := range rbac.Rules(cfg, meshScope(t, files)) {
				for _, r := range rules {
					want[ns] = append(want[ns], normalize(r))
				}
			}
			got := map[string][]rbacv1.PolicyRule{}
			for _, o := range objs {
				var ns string
				switch o.GetKind() {
				case "Role":
					ns = o.GetNamespace()
				case "ClusterRole":
					ns = rbac.ClusterWide
				default:
					continue
				}
				got[ns] = append(got[ns], rulesOf(t, o)...)
			}
			for _, m := range []map[string][]rbacv1.PolicyRule{want, got} {
				for ns := range m {
					sort.Slice(m[ns], func(i, j int) bool { return fmt.Sprint(m[ns][i]) < fmt.Sprint(m[ns][j]) })
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("chart RBAC differs from internal/rbac:\n got %v\nwant %v", got, want)
			}
			if name == "defaults" {
				for _, r := range got[rbac.ClusterWide] {
					if slices.Contains(r.Resources, "secrets") && !slices.Equal(r.ResourceNames, []string{"cacerts", "istio-ca-secret", "istiod-tls", "linkerd-identity-issuer"}) ||
						slices.Contains(r.Resources, "pods/portforward") ||
						slices.Contains(r.Resources, "pods") && !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
						t.Errorf("the defaults grant %v cluster-wide", r)
					}
				}
				for _, o := range objs {
					if o.GetNamespace() != "" && o.GetNamespace() != releaseNamespace {
						t.Errorf("the defaults render %s %s in namespace %s, which may not exist", o.GetKind(), o.GetName(), o.GetNamespace())
					}
				}
			}
		})
	}
}

func normalize(r rbacv1.PolicyRule) rbacv1.PolicyRule {
	for _, s := range [][]string{r.Verbs, r.ResourceNames} {
		sort.Strings(s)
	}
	if len(r.ResourceNames) == 0 {
		r.ResourceNames = nil
	}
	return r
}

// TestPodSecurityRestricted: every rendered workload runs non-root with a read-only root file
// system, no capabilities, no privilege escalation and the RuntimeDefault seccomp profile.
func TestPodSecurityRestricted(t *testing.T) {
	for name, files := range valueSets {
		workloads := 0
		for _, o := range render(t, files) {
			switch o.GetKind() {
			case "Deployment", "StatefulSet", "DaemonSet":
			default:
				continue
			}
			workloads++
			var spec struct {
				Spec struct {
					Template corev1.PodTemplateSpec `json:"template"`
				} `json:"spec"`
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &spec); err != nil {
				t.Fatal(err)
			}
			pod := spec.Spec.Template.Spec
			psc := pod.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s %s: pod security context %+v", name, o.GetKind(), psc)
			}
			for _, c := range pod.Containers {
				sc := c.SecurityContext
				if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
					*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("%s %s/%s: container security context %+v", name, o.GetKind(), c.Name, sc)
				}
				if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: container %s has no memory request and limit", name, c.Name)
				}
			}
		}
		if workloads != 1 {
			t.Errorf("%s: %d workloads rendered", name, workloads)
		}
	}
}

// TestShippedCopiesAreCurrent: the chart's alert rules are the rules of alerts/ (`make generate`).
func TestShippedCopiesAreCurrent(t *testing.T) {
	a, err1 := os.ReadFile("../alerts/meshcert.rules.yml")
	b, err2 := os.ReadFile("files/meshcert.rules.yml")
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Error("chart/files/meshcert.rules.yml differs from alerts/meshcert.rules.yml: run `make generate`")
	}
	var rules struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.Unmarshal(a, &rules); err != nil {
		t.Fatal(err)
	}
	if groups := prometheusRuleGroups(t, []string{"ci/prometheusrule-values.yaml"}); !reflect.DeepEqual(groups, rules.Groups) {
		t.Error("the PrometheusRule with the default thresholds does not hold the groups of alerts/meshcert.rules.yml")
	}
}

// prometheusRuleGroups renders the chart with files and returns its PrometheusRule's groups.
func prometheusRuleGroups(t *testing.T, files []string) []any {
	t.Helper()
	for _, o := range render(t, files) {
		if o.GetKind() == "PrometheusRule" {
			groups, _, _ := unstructured.NestedSlice(o.Object, "spec", "groups")
			return groups
		}
	}
	t.Fatal("no PrometheusRule rendered with prometheusRule.enabled")
	return nil
}

// TestPrometheusRuleValues: the thresholds, per-group switches and extra labels of the values
// reach the rules, and the rules the chart renders with them pass promtool.
func TestPrometheusRuleValues(t *testing.T) {
	groups := prometheusRuleGroups(t, valueSets["all-on"])
	text, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"< 120 * 86400", "< 45 * 86400", ") > 0.75", "< 0.15 *", ") > 0.9\n", "> 48 * 3600", "for: 12h", "for: 36h", "team: platform", "dashboard: https://grafana.example.com/d/meshcert-pki"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("the rendered rules lack %q", want)
		}
	}
	for _, gone := range []string{"< 90 * 86400", "< 30 * 86400", ") > 0.8\n", ") > 0.85", "< 0.1 *", "> 24 * 3600", "for: 6h", "for: 24h", "meshcert.exporter"} {
		if strings.Contains(string(text), gone) {
			t.Errorf("the rendered rules still hold %q", gone)
		}
	}
	file := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(file, text, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, testenv.Tool(t, "promtool"), "check", "rules", file); err != nil {
		t.Errorf("promtool rejects the rendered rules: %v\n%s", err, out)
	}
}

// TestReadmeListsEveryValue: each leaf of values.yaml is documented in the chart's README.
func TestReadmeListsEveryValue(t *testing.T) {
	data, err := os.ReadFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, sub := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), sub)
			}
			return
		}
		if !bytes.Contains(readme, []byte("`"+prefix+"`")) {
			t.Errorf("README.md does not list `%s`", prefix)
		}
	}
	walk("", values)
}

// TestServerSideDryRun: the real API server accepts every rendered object (with the monitoring
// CRDs installed and the namespaces created), and persists nothing.
func TestServerSideDryRun(t *testing.T) {
	cp := testenv.StartForTest(t)
	ctx := context.Background()
	cfg := cp.AdminConfig()
	client := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	testenv.InstallCRDs(t, ctx, dyn, operatorCRDs(t))
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))

	for name, files := range valueSets {
		objs := render(t, files)
		for _, o := range objs {
			if ns := o.GetNamespace(); ns != "" {
				if err := testenv.EnsureNamespace(ctx, client, ns); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, o := range objs {
			mapping, err := mapper.RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
			if err != nil {
				t.Errorf("%s: %s: %v", name, o.GetKind(), err)
				continue
			}
			var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				ri = dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
			}
			if _, err := ri.Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}); err != nil {
				t.Errorf("%s: the API server rejects %s %s/%s: %v", name, o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
		}
		if name == "defaults" {
			if _, err := client.AppsV1().Deployments(releaseNamespace).Get(ctx, "meshcert-meshcert-exporter", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("a dry run persisted the Deployment: %v", err)
			}
		}
	}
}

// operatorModule is the Prometheus Operator release whose CRDs the chart's objects are checked
// against: its Go module zip holds them in example/prometheus-operator-crd/.
const operatorModule = "github.com/prometheus-operator/prometheus-operator@v0.93.0"

// operatorCRDs returns the real CRDs of the kinds the chart renders.
func operatorCRDs(t *testing.T) []byte {
	t.Helper()
	dir := testenv.ModuleDir(t, operatorModule)
	var all []byte
	for _, kind := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		data, err := os.ReadFile(filepath.Join(dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, "\n---\n"...), data...)
	}
	return all
}

// TestKubePrometheusStackPicksUp: with kubePrometheusStack.release set, the ServiceMonitor,
// PodMonitor and PrometheusRule match the selectors kube-prometheus-stack gives its Prometheus
// (serviceMonitorSelector, podMonitorSelector, ruleSelector: matchLabels release=<its release>);
// without it they match none, which is why the value exists.
func TestKubePrometheusStackPicksUp(t *testing.T) {
	selector, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: map[string]string{"release": "kube-prometheus-stack"}})
	if err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	for _, tt := range []struct {
		release string
		match   bool
	}{{"kube-prometheus-stack", true}, {"", false}} {
		os.WriteFile(values, []byte(fmt.Sprintf("serviceMonitor: {enabled: true}\npodMonitor: {enabled: true}\nprometheusRule: {enabled: true}\nkubePrometheusStack: {release: %q}\n", tt.release)), 0o600)
		found := 0
		for _, o := range render(t, []string{values}) {
			switch o.GetKind() {
			case "ServiceMonitor", "PodMonitor", "PrometheusRule":
				found++
				if got := selector.Matches(labels.Set(o.GetLabels())); got != tt.match {
					t.Errorf("release %q: the %s matches kube-prometheus-stack's selector: %v, want %v (labels %v)", tt.release, o.GetKind(), got, tt.match, o.GetLabels())
				}
			}
		}
		if found != 3 {
			t.Errorf("release %q: %d monitoring objects rendered, want 3", tt.release, found)
		}
	}
}

// TestTemplateWithoutKubeVersion: `helm template ./chart`, the first command many people run,
// renders without --kube-version (Helm's default is an old Kubernetes).
func TestTemplateWithoutKubeVersion(t *testing.T) {
	if out, err := run(t, helm(t), "template", "meshcert", "."); err != nil || !strings.Contains(out, "kind: Deployment") {
		t.Errorf("helm template without --kube-version: %v\n%.500s", err, out)
	}
}

// TestAlertSwitches: an alert named in prometheusRule.disabledAlerts is left out and the others
// stay; prometheusRule.severities overrides one alert's severity and no other's; the checklist
// group is turned off as a whole by its switch.
func TestAlertSwitches(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	os.WriteFile(values, []byte(`prometheusRule:
  enabled: true
  disabledAlerts: [MeshRootKeyInCluster]
  severities: {MeshNamespaceWithoutDefaultDeny: warning, MeshChainInvalid: warning}
`), 0o600)
	severity := map[string]string{}
	groups := map[string]bool{}
	for _, g := range prometheusRuleGroups(t, []string{values}) {
		group := g.(map[string]any)
		groups[group["name"].(string)] = true
		for _, r := range group["rules"].([]any) {
			rule := r.(map[string]any)
			if name, ok := rule["alert"].(string); ok {
				severity[name] = rule["labels"].(map[string]any)["severity"].(string)
			}
		}
	}
	if _, ok := severity["MeshRootKeyInCluster"]; ok {
		t.Error("a disabled alert is rendered")
	}
	for name, want := range map[string]string{"MeshIssuerUnmanaged": "info", "MeshNamespaceWithoutDefaultDeny": "warning",
		"MeshChainInvalid": "warning", "MeshCertificateExpired": "critical", "MeshPodNetAdmin": "warning"} {
		if severity[name] != want {
			t.Errorf("%s: severity %q, want %q", name, severity[name], want)
		}
	}
	os.WriteFile(values, []byte("prometheusRule:\n  enabled: true\n  groups: {checklist: false}\n"), 0o600)
	for _, g := range prometheusRuleGroups(t, []string{values}) {
		if name := g.(map[string]any)["name"]; name == "meshcert.checklist" {
			t.Error("the checklist group is rendered with groups.checklist false")
		}
	}
	if !groups["meshcert.checklist"] || !groups["meshcert.certificates"] {
		t.Errorf("groups %v", groups)
	}
}
