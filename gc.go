package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the garbage collector's target when GOGC is not set. Go's default, 100, lets
// the heap grow to twice what is live before a collection. Most of this exporter's heap is
// long-lived (each proxy's and Secret's certificate and findings, kept until it changes), while what
// it allocates in between is short-lived (admin answers, JSON, rendered text): at 100, that garbage
// costs as much memory again as the whole mesh model. In bench-scale's sweep of 10,000 proxies
// (docs/performance.md), 50 cut the resident memory per proxy by a quarter for about a tenth of a
// core. Once the sweep's garbage had been cut by a third, 40 measured 3.1-3.5 KiB per proxy where
// 50 measured 3.7-3.8, with the CPU during the sweep in the same range (0.51-0.70 cores against
// 0.54-0.65); the idle cost was not measured separately. Prometheus makes the same kind of trade
// (GOGC 75 by default since 2.53).
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
