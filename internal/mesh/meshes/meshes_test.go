package meshes

import (
	"slices"
	"testing"
)

// TestDefinitions: each mesh is registered once under its own name, its defaults validate, and
// no two proxy kinds share a source label, configuration key or flag prefix (a second kind would
// silently take the first one's section and flags).
func TestDefinitions(t *testing.T) {
	var names, sources, keys, flags []string
	for _, d := range All() {
		m := d.New()
		if d.Name == "" || m.Name() != d.Name || slices.Contains(names, string(d.Name)) {
			t.Errorf("mesh %q: registered twice or under another name than its own (%q)", d.Name, m.Name())
		}
		names = append(names, string(d.Name))
		if err := m.Validate(); err != nil {
			t.Errorf("mesh %q: its defaults do not validate: %v", d.Name, err)
		}
		for _, k := range m.Proxies() {
			if slices.Contains(sources, k.Source) || slices.Contains(keys, k.Key) || slices.Contains(flags, k.Flag) {
				t.Errorf("mesh %q: proxy kind %q repeats a source, key or flag prefix", d.Name, k.Source)
			}
			if err := k.Defaults.Validate(k); err != nil || k.Runs == nil || k.Read == nil || k.Mesh != d.Name {
				t.Errorf("mesh %q: proxy kind %q is incomplete: %v", d.Name, k.Source, err)
			}
			sources, keys, flags = append(sources, k.Source), append(keys, k.Key), append(flags, k.Flag)
		}
	}
}
