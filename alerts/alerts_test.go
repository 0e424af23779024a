// Package alerts holds the Prometheus alert rules on the mesh PKI and their promtool unit tests.
// Its Go test runs the real promtool over them and checks that every alert has a case that fires
// and one that must not, and a runbook section.
package alerts

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meshcert/meshcert-exporter/internal/testenv"
)

const (
	rulesFile = "meshcert.rules.yml"
	testsFile = "meshcert.rules.test.yml"
)

func promtool(t *testing.T) string { return testenv.Tool(t, "promtool") }

func TestPromtoolCheckRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", testsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// ruleGroups is the part of a rules file the checks read.
type ruleGroups struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestEveryAlertIsTestedAndDocumented: each alert has a firing case and a not-firing case, a
// severity (info for the hardening checklist's group, warning or critical for everything else),
// a summary and description, and a runbook_url to a section of docs/runbook.md.
func TestEveryAlertIsTestedAndDocumented(t *testing.T) {
	var rules ruleGroups
	readYAML(t, rulesFile, &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, testsFile, &tests)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				silent[at.Alertname] = true
			}
		}
	}
	runbook, err := os.ReadFile(filepath.Join("..", "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)\s*$`).FindAllStringSubmatch(string(runbook), -1) {
		anchors[strings.ToLower(m[1])] = true
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] || !silent[r.Alert] {
				t.Errorf("%s: firing case %v, not-firing case %v; want both", r.Alert, fires[r.Alert], silent[r.Alert])
			}
			// The hardening checklist is info, and nothing else is: certificate health pages or warns.
			if s := r.Labels["severity"]; g.Name == "meshcert.checklist" && s != "info" || g.Name != "meshcert.checklist" && s != "warning" && s != "critical" {
				t.Errorf("%s (%s): severity %q", r.Alert, g.Name, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description", r.Alert)
			}
			url := r.Annotations["runbook_url"]
			anchor := url[strings.LastIndexByte(url, '#')+1:]
			if !strings.Contains(url, "docs/runbook.md#") || !anchors[anchor] || anchor != strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook_url %q has no section in docs/runbook.md", r.Alert, url)
			}
		}
	}
	if n < 15 {
		t.Errorf("%d alerts; the contract has 15", n)
	}
}

// TestPintLint: the rules pass pint with the project's policy (.pint.hcl: aggregations keep
// cluster and job), and the policy refuses a rule that drops them.
func TestPintLint(t *testing.T) {
	pint := testenv.Tool(t, "pint")
	if out, err := exec.Command(pint, "--no-color", "-c", ".pint.hcl", "lint", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("pint lint: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.rules.yml")
	rule := "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: min by (mesh) (meshcert_source_up) < 1\n"
	if err := os.WriteFile(bad, []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pint, "--no-color", "-c", ".pint.hcl", "lint", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "`cluster` label is required") {
		t.Errorf("pint accepts an aggregation that drops cluster and job (%v):\n%s", err, out)
	}
}

// TestSummariesNameWhatFired: in every firing case of the promtool tests, the summary names the
// mesh, the namespace and the object (name) that the alert's labels carry, so that a page says
// where to look without opening it.
func TestSummariesNameWhatFired(t *testing.T) {
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpLabels      map[string]string `yaml:"exp_labels"`
					ExpAnnotations map[string]string `yaml:"exp_annotations"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, testsFile, &tests)
	checked := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			for _, e := range a.ExpAlerts {
				summary := e.ExpAnnotations["summary"]
				for _, label := range []string{"mesh", "namespace", "name"} {
					if v := e.ExpLabels[label]; v != "" && !strings.Contains(strings.ToLower(summary), strings.ToLower(v)) {
						t.Errorf("%s: the summary %q does not name its %s %q", a.Alertname, summary, label, v)
					}
				}
				checked[a.Alertname] = true
			}
		}
	}
	if len(checked) < 30 {
		t.Errorf("only %d alerts have a firing case with a summary", len(checked))
	}
}
