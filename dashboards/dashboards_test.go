package dashboards

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/meshcert/meshcert-exporter/collector"
)

func TestDashboards(t *testing.T) {
	dashboards, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(dashboards) != 4 {
		t.Fatalf("%d dashboards, want the overview, workloads, posture and exporter ones", len(dashboards))
	}
	exported := map[string]bool{"meshcert_exporter_build_info": true}
	for _, f := range collector.Families() {
		exported[f.Name] = true
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
