package main

import "testing"

// TestGCPercent: GOGC in the environment wins (any value, "off" included); without it (or empty,
// which the runtime ignores too) the exporter runs at its own default.
func TestGCPercent(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		percent int
		set     bool
	}{
		{"no GOGC", map[string]string{"HOME": "/"}, defaultGCPercent, true},
		{"GOGC set", map[string]string{"GOGC": "200"}, 0, false},
		{"GOGC off", map[string]string{"GOGC": "off"}, 0, false},
		{"GOGC empty", map[string]string{"GOGC": ""}, defaultGCPercent, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, set := gcPercent(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if p != tt.percent || set != tt.set {
				t.Errorf("gcPercent = %d, %v; want %d, %v", p, set, tt.percent, tt.set)
			}
		})
	}
}
