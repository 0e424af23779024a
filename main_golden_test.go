package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-kit/log"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/examples.prom from the exporter's scrape")

// volatileFamilies change from one run to the next (times, the build): the golden file leaves them out.
var volatileFamilies = []string{"meshcert_source_last_success_timestamp_seconds", "meshcert_exporter_build_info",
	"meshcert_config_last_reload_success_timestamp_seconds", "meshcert_config_last_reload_successful"}

// meshcertFamilies keeps the meshcert_ families of an exposition but the volatile ones, in order.
func meshcertFamilies(body string) string {
	var out strings.Builder
	keep := false
	for _, line := range strings.SplitAfter(body, "\n") {
		if name, ok := strings.CutPrefix(line, "# HELP "); ok {
			name = name[:strings.IndexByte(name, ' ')]
			keep = strings.HasPrefix(name, "meshcert_")
			for _, v := range volatileFamilies {
				keep = keep && name != v
			}
		}
		if keep {
			out.WriteString(line)
		}
	}
	return out.String()
}

// TestExamplesGolden: the exposition of the sample PKI in examples/ (what `make run` serves), every
// series at a glance in testdata/examples.prom (`go test -run TestExamplesGolden -update` writes
// it anew), and promtool check metrics clean.
func TestExamplesGolden(t *testing.T) {
	cfg, err := config.Load("examples/meshcert.yaml")
	if err != nil {
		t.Fatal(err)
	}
	status, body := scrape(t, cfg, log.NewNopLogger())
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	got := meshcertFamilies(body)
	const golden = "testdata/examples.prom"
	if *update {
		write(t, golden, []byte(got))
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("the scrape of examples/ differs from %s (run the test with -update if the change is meant):\n%s", golden, lineDiff(string(want), got))
	}
	cmd := exec.Command(testenv.Tool(t, "promtool"), "check", "metrics")
	cmd.Stdin = bytes.NewReader(want)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics %s: %v\n%s", golden, err, out)
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var out []string
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
