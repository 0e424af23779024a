//go:build meshcertpprof

package main

// Profiling for measurements only: a binary built with -tags meshcertpprof serves net/http/pprof on
// MESHCERT_PPROF_ADDR (hack/bench-scale uses it with BENCH_SCALE_TAGS=meshcertpprof). Release
// builds never include it. MESHCERT_MEMPROFILERATE sets runtime.MemProfileRate (1 records every
// allocation: exact heap profiles, at a cost in speed); GODEBUG would pass it on to the test API
// server as well, which it slows to a crawl.

import (
	"net/http"
	_ "net/http/pprof" // registers the profiles on http.DefaultServeMux
	"os"
	"runtime"
	"strconv"
	"time"
)

func init() {
	if addr := os.Getenv("MESHCERT_PPROF_ADDR"); addr != "" {
		runtime.SetMutexProfileFraction(10)
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		if rate, err := strconv.Atoi(os.Getenv("MESHCERT_MEMPROFILERATE")); err == nil && rate > 0 {
			runtime.MemProfileRate = rate
		}
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
