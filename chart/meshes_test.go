package chart

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/mesh/meshes"
	"github.com/meshcert/meshcert-exporter/internal/rbac"
)

var update = flag.Bool("update", false, "rewrite templates/_meshes.tpl from the mesh packages")

// meshesTemplate is the chart's template of what the mesh packages watch and which proxy kinds
// they run, generated from the packages themselves: each mesh's watches, with each namespace and
// name that comes from a field of its configuration section written as that field of the chart's
// values (config.meshes.<mesh>.<field>).
func meshesTemplate(t *testing.T) string {
	var b strings.Builder
	b.WriteString("{{/* Generated from the mesh packages (internal/mesh/...) by `make generate`; do not edit. */}}\n\n")
	b.WriteString("{{/* The objects each mesh watches, as [namespace, resource, name] (namespace \"\" is every namespace). */}}\n")
	b.WriteString("{{- define \"meshcert.meshWatches\" -}}\n{{- $entries := list -}}\n")
	var kinds []string
	for _, d := range meshes.All() {
		m := d.New()
		fields := placeholders(t, reflect.ValueOf(m).Elem())
		fmt.Fprintf(&b, "{{- with .Values.config.meshes.%s -}}\n", d.Name)
		watchField, hasWatch := fields.bool["watch"]
		if hasWatch {
			*watchField = true
			b.WriteString("{{- if .watch -}}\n")
		}
		for _, w := range m.Watches() {
			fmt.Fprintf(&b, "{{- $entries = append $entries (list %s %q %s) -}}\n", fields.value(w.Namespace), w.Kind.Resource(), fields.value(w.Name))
		}
		if hasWatch {
			b.WriteString("{{- end -}}\n")
		}
		b.WriteString("{{- end -}}\n")
		for _, k := range m.Proxies() {
			kinds = append(kinds, k.Key)
		}
	}
	b.WriteString("{{- toYaml $entries -}}\n{{- end -}}\n\n")
	b.WriteString("{{/* The policy rules of the posture source: the kinds the meshes judge their posture by. */}}\n")
	b.WriteString("{{- define \"meshcert.postureRules\" -}}\n")
	for _, w := range rbac.PostureKinds(config.Default()) {
		fmt.Fprintf(&b, "\n- apiGroups: [%q]\n  resources: [%s]\n  verbs: [get, list, watch]", w.Group, w.Resource)
	}
	b.WriteString("\n{{- end -}}\n\n")
	b.WriteString("{{/* The proxy kinds' sections under config.proxies. */}}\n")
	fmt.Fprintf(&b, "{{- define \"meshcert.proxyKinds\" -}}\n%s\n{{- end -}}\n", strings.Join(kinds, " "))
	return b.String()
}

// sectionFields are a mesh section's fields, set to placeholders that name them.
type sectionFields struct {
	strings map[string]string // placeholder -> YAML key
	bool    map[string]*bool
}

// value is the template expression of a watch's namespace or name: the field it came from, or
// the literal.
func (f sectionFields) value(s string) string {
	if key, ok := f.strings[s]; ok {
		return "." + key
	}
	return fmt.Sprintf("%q", s)
}

// placeholders sets every string field of a mesh section (inline structs included) to a
// placeholder naming its YAML key.
func placeholders(t *testing.T, v reflect.Value) sectionFields {
	f := sectionFields{strings: map[string]string{}, bool: map[string]*bool{}}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for i := range v.NumField() {
			field, tag := v.Field(i), v.Type().Field(i).Tag.Get("yaml")
			key, opts, _ := strings.Cut(tag, ",")
			switch {
			case opts == "inline":
				walk(field)
			case field.Kind() == reflect.String:
				placeholder := "@" + key + "@"
				field.SetString(placeholder)
				f.strings[placeholder] = key
			case field.Kind() == reflect.Bool:
				f.bool[key] = field.Addr().Interface().(*bool)
			}
		}
	}
	walk(v)
	if len(f.strings) == 0 {
		t.Fatalf("%s has no string fields", v.Type())
	}
	return f
}

// TestMeshTemplateIsCurrent: templates/_meshes.tpl is what the mesh packages watch, so the chart's
// RBAC follows a mesh added or changed in Go (`go test ./chart -run TestMeshTemplateIsCurrent
// -update`, run by `make generate`, writes it).
func TestMeshTemplateIsCurrent(t *testing.T) {
	const path = "templates/_meshes.tpl"
	want := meshesTemplate(t)
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s is not what the mesh packages watch (run `make generate`): %v\ngot\n%s\nwant\n%s", path, err, got, want)
	}
}
