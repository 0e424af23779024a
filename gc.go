package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the garbage collector's target when GOGC is not set. Go's default, 100, lets
// the heap grow to twice what is live before a collection. Most of this exporter's heap is
// long-lived (each proxy's and Secret's certificate and findings, kept until it changes), while what
// it allocates in between is short-lived (admin answers, JSON, rendered text): at 100, that garbage
// costs as much memory again as the whole mesh model. A lower target trades a little CPU for that
// memory, as Prometheus does (GOGC 75 by default since 2.53); docs/performance.md has the
// measurements that chose this value.
const defaultGCPercent = 40

// gcPercent returns the garbage collector target to use: none (keep the runtime's, which read
// GOGC) when the environment sets GOGC, else defaultGCPercent. An empty GOGC is unset, as for the
// runtime.
func gcPercent(env func(string) (string, bool)) (percent int, set bool) {
	if v, ok := env("GOGC"); ok && v != "" {
		return 0, false
	}
	return defaultGCPercent, true
}

// setGCPercent applies gcPercent to the running process.
func setGCPercent() {
	if p, ok := gcPercent(os.LookupEnv); ok {
		debug.SetGCPercent(p)
	}
}
