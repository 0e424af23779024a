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

// TestMaxRequestsFlag: --web.max-requests defaults to node_exporter's 40 and takes 0 for no limit.
func TestMaxRequestsFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{{nil, 40}, {[]string{"--web.max-requests=0"}, 0}, {[]string{"--web.max-requests=5"}, 5}} {
		o, err := parseFlags(tt.args)
		if err != nil || o.maxRequests != tt.want {
			t.Errorf("%v: max requests %v (%v), want %d", tt.args, o, err, tt.want)
		}
	}
}
