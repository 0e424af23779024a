package chart

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// rbacTable is the Markdown table of the rules the chart renders with files: where each is
// granted, on what, with which verbs and names.
func rbacTable(t *testing.T, files []string) string {
	t.Helper()
	var rows []string
	for _, o := range render(t, files) {
		var where string
		switch o.GetKind() {
		case "ClusterRole":
			where = "every namespace (ClusterRole)"
		case "Role":
			where = "namespace `" + o.GetNamespace() + "` (Role)"
		default:
			continue
		}
		for _, r := range rulesOf(t, o) {
			group := strings.Join(r.APIGroups, ", ")
			if group == "" {
				group = "core"
			}
			names := "any"
			if len(r.ResourceNames) > 0 {
				names = "`" + strings.Join(r.ResourceNames, "`, `") + "`"
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | `%s` | %s | %s |", where, group, strings.Join(r.Resources, "`, `"), strings.Join(r.Verbs, ", "), names))
		}
	}
	slices.Sort(rows)
	return "| granted in | API group | resource | verbs | names |\n|---|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
}

// rbacSection matches the generated section of a document.
var rbacSection = regexp.MustCompile(`(?s)(<!-- rbac-table: (\S+) -->\n).*?(<!-- rbac-table end -->)`)

// TestRBACTablesAreCurrent: the RBAC tables of docs/security.md and chart/README.md are the rules
// the chart renders, by value set (`go test ./chart -run TestRBACTablesAreCurrent -update`, run by
// `make generate`, writes them).
func TestRBACTablesAreCurrent(t *testing.T) {
	for _, doc := range []string{"README.md", "../docs/security.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		sections := rbacSection.FindAllSubmatch(data, -1)
		if len(sections) == 0 {
			t.Fatalf("%s has no generated RBAC table (<!-- rbac-table: <value set> --> ... <!-- rbac-table end -->)", doc)
		}
		want := rbacSection.ReplaceAllFunc(data, func(m []byte) []byte {
			sm := rbacSection.FindSubmatch(m)
			files, ok := valueSets[string(sm[2])]
			if !ok {
				t.Fatalf("%s: no value set %q", doc, sm[2])
			}
			return append(append(append([]byte{}, sm[1]...), rbacTable(t, files)...), sm[3]...)
		})
		if *update {
			if err := os.WriteFile(doc, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if string(want) != string(data) {
			t.Errorf("%s: the RBAC table differs from the rendered chart; run `make generate`", doc)
		}
	}
}
