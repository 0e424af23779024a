package collector

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the family reference in docs/metrics.md from Families")

// familyTable is the reference table of every family, as docs/metrics.md holds it between its
// families markers.
func familyTable() string {
	var b strings.Builder
	b.WriteString("| family | type | subject | labels | help |\n|---|---|---|---|---|\n")
	for _, f := range Families() {
		labels := make([]string, len(f.Labels))
		for i, l := range f.Labels {
			labels[i] = "`" + l + "`"
		}
		b.WriteString("| `" + f.Name + "` | " + f.Type + " | " + string(f.Subject) + " | " + strings.Join(labels, ", ") + " | " +
			strings.ReplaceAll(f.Help, "|", "\\|") + " |\n")
	}
	return b.String()
}

// TestFamilyReferenceIsCurrent: docs/metrics.md's reference table is the list of families, so a
// family, label or help text changed in the code is changed in the docs (`go test ./collector -run
// TestFamilyReferenceIsCurrent -update` writes it).
func TestFamilyReferenceIsCurrent(t *testing.T) {
	const path, begin, end = "../docs/metrics.md", "<!-- families:begin -->\n", "<!-- families:end -->"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q section", path, begin, end)
	}
	want := familyTable()
	if *update {
		if err := os.WriteFile(path, []byte(text[:i+len(begin)]+want+text[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := text[i+len(begin) : j]; got != want {
		t.Errorf("%s's family reference is not the list of families (run the test with -update):\ngot\n%s\nwant\n%s", path, got, want)
	}
}
