package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	for _, tt := range []struct {
		info *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{Main: debug.Module{Path: "github.com/meshcert/meshcert-exporter", Version: "v0.4.0"}}, "v0.4.0"},
		{&debug.BuildInfo{Main: debug.Module{Path: "github.com/meshcert/meshcert-exporter", Version: "(devel)"}}, "(devel)"},
		{&debug.BuildInfo{}, "unknown"},
		{nil, "unknown"},
	} {
		if got := versionOf(tt.info); got != tt.want {
			t.Errorf("versionOf(%+v) = %q, want %q", tt.info, got, tt.want)
		}
	}
}
