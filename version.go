package main

import (
	"runtime/debug"

	"github.com/prometheus/common/version"
)

// setVersion gives prometheus/common/version the main module's version the Go toolchain embedded
// when the release build's -ldflags did not set one (`go install ...@v1.2.0` embeds v1.2.0, a
// build in a checkout what the toolchain stamps from VCS, else "(devel)"), so
// meshcert_exporter_build_info never has an empty version. The revision comes from the embedded
// VCS information already.
func setVersion() {
	if version.Version != "" {
		return
	}
	info, _ := debug.ReadBuildInfo()
	version.Version = versionOf(info)
}

// versionOf is the main module's version in info, or "unknown".
func versionOf(info *debug.BuildInfo) string {
	if info == nil || info.Main.Version == "" {
		return "unknown"
	}
	return info.Main.Version
}
