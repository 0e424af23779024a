package dashboards

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// The rules of Grafana's dashboard-linter (grafana/dashboard-linter, lint/rules.go), enforced here
// as its documentation and code state them: the linter itself cannot be a dependency (its module
// pulls in Loki, which is AGPL). Exclusions come from .lint in the linter's own format.

// rateInterval stands for $__rate_interval in queries, as the linter's magic duration does.
const (
	rateInterval     = 8869990787 * time.Millisecond
	rateIntervalText = "8869990787ms"
)

// linterUnits are the units the linter accepts that these dashboards may use (its list is
// Grafana's value formats).
var linterUnits = []string{"none", "string", "short", "percent", "percentunit", "bytes", "decbytes", "s", "ms", "m", "h", "d",
	"dtdurations", "dtdurationms", "dateTimeAsIso", "dateTimeFromNow", "bool", "bool_yes_no", "ops", "reqps", "cps"}

// exclusions are the rules .lint excludes, with their reasons.
func exclusions(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(".lint")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Exclusions map[string]struct {
			Reason string `yaml:"reason"`
		} `yaml:"exclusions"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rule, e := range cfg.Exclusions {
		if e.Reason == "" {
			t.Errorf(".lint excludes %s without a reason", rule)
		}
		out[rule] = e.Reason
	}
	return out
}

// parseQuery parses a dashboard query as the linter does: $__rate_interval becomes its magic
// duration; other variables stay in the matchers they stand in.
func parseQuery(expr string) (parser.Expr, error) {
	expr = strings.NewReplacer("${__rate_interval}", rateIntervalText, "$__rate_interval", rateIntervalText,
		"$__interval", "1m", "$__range", "1h").Replace(expr)
	return parser.NewParser(parser.Options{}).ParseExpr(expr)
}

// lint returns the violations of each rule in d.
func lint(d Dashboard) map[string][]string {
	v := map[string][]string{}
	add := func(rule, format string, args ...any) { v[rule] = append(v[rule], fmt.Sprintf(format, args...)) }

	var datasources []Variable
	for _, t := range d.Templating.List {
		if t.Type == "datasource" {
			datasources = append(datasources, t)
		}
	}
	switch {
	case len(datasources) != 1:
		add("template-datasource-rule", "%d templated data sources, want one", len(datasources))
	case datasources[0].Name != "datasource" || datasources[0].Label != "Data source" || datasources[0].Query != "prometheus":
		add("template-datasource-rule", "data source variable %q labeled %q (want datasource, Data source, prometheus)", datasources[0].Name, datasources[0].Label)
	}
	for _, name := range []string{"job", "instance"} {
		rule := "template-" + name + "-rule"
		i := slices.IndexFunc(d.Templating.List, func(t Variable) bool { return t.Name == name })
		if i < 0 {
			add(rule, "no %s variable", name)
			continue
		}
		t := d.Templating.List[i]
		if t.Datasource.UID != "$datasource" && t.Datasource.UID != "${datasource}" {
			add(rule, "%s variable uses data source %q", name, t.Datasource.UID)
		}
		if t.Type != "query" || !t.Multi || t.AllValue != ".+" || t.Label != strings.ToUpper(name[:1])+name[1:] {
			add(rule, "%s variable: type %q, multi %v, allValue %q, label %q", name, t.Type, t.Multi, t.AllValue, t.Label)
		}
	}
	for _, t := range d.Templating.List {
		if t.Type != "query" {
			continue
		}
		if t.Refresh != 2 {
			add("template-on-time-change-reload", "%s refreshes %d, want on time range change (2)", t.Name, t.Refresh)
		}
		q, _ := t.Query.(map[string]any)
		text, _ := q["query"].(string)
		inner, ok := strings.CutPrefix(text, "label_values(")
		if i := strings.LastIndex(inner, ","); ok && i > 0 {
			if _, err := parseQuery(inner[:i]); err != nil {
				add("template-label-promql-rule", "%s: %q: %v", t.Name, text, err)
			}
		}
	}
	for _, p := range d.Panels {
		switch p.Type {
		case "singlestat", "graph", "table", "timeseries":
			if p.Datasource.UID != "$datasource" && p.Datasource.UID != "${datasource}" {
				add("panel-datasource-rule", "%s uses data source %q", p.Title, p.Datasource.UID)
			}
		}
		switch p.Type {
		case "stat", "singlestat", "graph", "table", "timeseries", "gauge":
			if p.Title == "" || p.Description == "" {
				add("panel-title-description-rule", "panel %q has no title or description", p.Title)
			}
			if !slices.Contains(linterUnits, p.FieldConfig.Defaults.Unit) {
				add("panel-units-rule", "%s has no or an invalid unit %q", p.Title, p.FieldConfig.Defaults.Unit)
			}
		}
		if len(p.Targets) == 0 {
			add("panel-no-targets-rule", "%s has no queries", p.Title)
		}
		for i, tg := range p.Targets {
			expr, err := parseQuery(tg.Expr)
			if err != nil {
				add("target-promql-rule", "%s[%d]: %v", p.Title, i, err)
				continue
			}
			for _, sel := range parser.ExtractSelectors(expr) {
				for _, name := range []string{"job", "instance"} {
					if !slices.ContainsFunc(sel, func(m *labels.Matcher) bool {
						return m.Name == name && m.Type == labels.MatchRegexp && m.Value == "$"+name
					}) {
						add("target-"+name+"-rule", "%s[%d]: a selector has no %s=~\"$%s\"", p.Title, i, name, name)
					}
				}
			}
			_ = parser.Walk(inspector(func(n parser.Node, path []parser.Node) {
				switch n := n.(type) {
				case *parser.MatrixSelector:
					if n.Range == rateInterval || len(path) == 0 {
						return
					}
					if call, ok := path[len(path)-1].(*parser.Call); ok && (call.Func.Name == "rate" || call.Func.Name == "irate") {
						add("target-rate-interval-rule", "%s[%d]: rate over %s, not $__rate_interval", p.Title, i, n.Range)
					}
				case *parser.VectorSelector:
					if !strings.HasSuffix(n.Name, "_total") {
						return
					}
					ok := len(path) >= 2
					if ok {
						_, ranged := path[len(path)-1].(*parser.MatrixSelector)
						call, isCall := path[len(path)-2].(*parser.Call)
						ok = ranged && isCall && (call.Func.Name == "rate" || call.Func.Name == "irate" || call.Func.Name == "increase")
					}
					if !ok {
						add("target-counter-agg-rule", "%s[%d]: counter %s not in rate, irate or increase", p.Title, i, n.Name)
					}
				}
			}), expr, nil)
		}
	}
	return v
}

// inspector adapts a function to parser.Visitor.
type inspector func(parser.Node, []parser.Node)

func (f inspector) Visit(n parser.Node, path []parser.Node) (parser.Visitor, error) {
	if n != nil {
		f(n, path)
	}
	return f, nil
}

// TestDashboardLinterRules: every dashboard passes every rule of Grafana's dashboard-linter that
// .lint does not exclude, strictly (warnings count).
func TestDashboardLinterRules(t *testing.T) {
	excluded := exclusions(t)
	dashboards, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	for file, d := range dashboards {
		for rule, msgs := range lint(d) {
			if _, ok := excluded[rule]; ok {
				continue
			}
			for _, m := range msgs {
				t.Errorf("%s: %s: %s", file, rule, m)
			}
		}
	}
}

// TestLinterRulesCatchTheMistakes: the rules fail the mistakes they exist for.
func TestLinterRulesCatchTheMistakes(t *testing.T) {
	var d Dashboard
	d.Templating.List = []Variable{{Name: "datasource", Label: "Data source", Type: "datasource", Query: "prometheus"},
		{Name: "job", Label: "Job", Type: "query", Multi: true, AllValue: ".*", Refresh: 1}}
	p := Panel{Type: "timeseries", Title: "Errors"}
	p.Datasource.UID = "prometheus-uid"
	p.Targets = append(p.Targets, struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	}{Expr: `rate(meshcert_source_errors_total{job=~"$job"}[5m]) + meshcert_source_errors_total`})
	d.Panels = []Panel{p}
	got := lint(d)
	for _, rule := range []string{"template-job-rule", "template-instance-rule", "template-on-time-change-reload", "panel-datasource-rule",
		"panel-title-description-rule", "panel-units-rule", "target-rate-interval-rule", "target-job-rule", "target-instance-rule", "target-counter-agg-rule"} {
		if len(got[rule]) == 0 {
			t.Errorf("%s did not fire", rule)
		}
	}
}

// TestDashboardsDecodeStrictly: each dashboard decodes with Grafana's own schema types (the
// foundation SDK), refusing any field the schema does not know.
func TestDashboardsDecodeStrictly(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	files, err := filepath.Glob("*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		//lint:ignore SA1019 the dashboards are Grafana's classic JSON model, which dashboard.Dashboard describes (dashboardv2 is the v2 schema)
		var d dashboard.Dashboard
		// The SDK returns its error list as an error even when the list is empty.
		if err := d.UnmarshalJSONStrict(data); err != nil {
			if errs, ok := err.(cog.BuildErrors); !ok || len(errs) > 0 {
				t.Errorf("%s: %v", f, err)
			}
		}
		if len(d.Panels) == 0 || d.Title == nil || *d.Title == "" {
			t.Errorf("%s: decoded without panels or title", f)
		}
		// An unknown field is refused: the decoding is strict.
		//lint:ignore SA1019 as above
		var bogus dashboard.Dashboard
		withTypo := append([]byte(`{"pannels": [],`), bytes.TrimPrefix(bytes.TrimSpace(data), []byte("{"))...)
		if err := bogus.UnmarshalJSONStrict(withTypo); err == nil || err.Error() == "" {
			t.Errorf("%s: a misspelt field decodes", f)
		}
	}
}
