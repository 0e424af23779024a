// Package dashboards holds the Grafana dashboards of meshcert-exporter. Its test checks each
// dashboard's structure and parses every panel query with Prometheus' own PromQL parser; the
// end-to-end test runs every query against a real Prometheus.
package dashboards

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/meshcert/meshcert-exporter/collector"
)

// Dashboard is the part of a Grafana dashboard the checks read.
type Dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Panel is one panel and its queries.
type Panel struct {
	Title      string `json:"title"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
}

// Load reads every dashboard of dir.
func Load(dir string) (map[string]Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	out := map[string]Dashboard{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d Dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, err
		}
		out[filepath.Base(f)] = d
	}
	return out, nil
}

var variable = regexp.MustCompile(`\$\{?(\w+)\}?`)

// Substitute replaces dashboard variables by values that select everything, as "All" does.
func Substitute(expr string) string {
	return variable.ReplaceAllStringFunc(expr, func(v string) string {
		switch strings.Trim(v, "${}") {
		case "__rate_interval", "__interval":
			return "5m"
		default:
			return ".*"
		}
	})
}

func TestDashboards(t *testing.T) {
	dashboards, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(dashboards) != 3 {
		t.Fatalf("%d dashboards, want the overview, workloads and exporter ones", len(dashboards))
	}
	exported := map[string]bool{"meshcert_exporter_build_info": true}
	for _, f := range collector.Families {
		exported[f] = true
	}
	uids := map[string]bool{}
	for file, d := range dashboards {
		if d.UID == "" || uids[d.UID] {
			t.Errorf("%s: uid %q missing or repeated", file, d.UID)
		}
		uids[d.UID] = true
		vars := map[string]string{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
		}
		if vars["datasource"] != "datasource" || vars["job"] == "" {
			t.Errorf("%s: needs a datasource variable and a job variable: %v", file, vars)
		}
		if len(d.Panels) < 4 {
			t.Errorf("%s: %d panels", file, len(d.Panels))
		}
		for _, p := range d.Panels {
			if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
				t.Errorf("%s/%s: datasource %q (no hard-coded UIDs), %d queries", file, p.Title, p.Datasource.UID, len(p.Targets))
			}
			for _, tg := range p.Targets {
				if tg.Datasource.UID != "${datasource}" {
					t.Errorf("%s/%s: target datasource %q", file, p.Title, tg.Datasource.UID)
				}
				expr, err := parser.NewParser(parser.Options{}).ParseExpr(Substitute(tg.Expr))
				if err != nil {
					t.Errorf("%s/%s: %q: %v", file, p.Title, tg.Expr, err)
					continue
				}
				for _, name := range MetricNames(expr) {
					if !exported[name] && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "go_") {
						t.Errorf("%s/%s: %s is not a metric the exporter exports", file, p.Title, name)
					}
				}
			}
		}
	}
}

// MetricNames returns the metric names an expression selects.
func MetricNames(expr parser.Expr) []string {
	var names []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// TestChartCopiesAreCurrent: the chart ships copies of the dashboards (`make generate`).
func TestChartCopiesAreCurrent(t *testing.T) {
	files, _ := filepath.Glob("*.json")
	for _, f := range files {
		a, _ := os.ReadFile(f)
		b, err := os.ReadFile(filepath.Join("..", "chart", "files", "dashboards", f))
		if err != nil || string(a) != string(b) {
			t.Errorf("chart/files/dashboards/%s differs from dashboards/%s: run `make generate`", f, f)
		}
	}
}
