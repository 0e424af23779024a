//go:build meshcertpprof

package main

// Profiling for measurements only: a binary built with -tags meshcertpprof serves net/http/pprof on
// MESHCERT_PPROF_ADDR (hack/bench-scale uses it with BENCH_SCALE_TAGS=meshcertpprof). Release
// builds never include it.

import (
	"net/http"
	_ "net/http/pprof" // registers the profiles on http.DefaultServeMux
	"os"
	"runtime"
	"time"
)

func init() {
	if addr := os.Getenv("MESHCERT_PPROF_ADDR"); addr != "" {
		runtime.SetMutexProfileFraction(10)
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
