package collector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Handler serves /metrics. The families derived from the analysis (one to nine series per
// certificate, most of a scrape) only change when an object's findings change or when a
// certificate on a chain crosses its NotBefore or NotAfter. The Handler keeps them compressed, in
// blocks of objects: each block holds one gzip member per family, rendered when one of its objects
// changes or its next validity boundary passes. A scrape writes the members of each family in
// turn (consecutive gzip members are one gzip stream), so it costs little more than copying bytes,
// and a change re-renders one or two blocks, not the mesh. The proxies' health is kept the same
// way while no proxy's state changes (see proxyRenderer); their last-success timestamps and the
// sources' health, which change with every read, are written on every scrape.
type Handler struct {
	provider SnapshotProvider
	status   prometheus.Gatherer
	now      func() time.Time
	logger   log.Logger
	inFlight chan struct{}

	proxies proxyRenderer

	mu       sync.Mutex
	blocks   blockCache
	segments [][]byte // the analysis families as gzip members, in order; replaced, never changed
	renders  int      // blocks rendered, for tests
}

// NewHandler returns a handler that serves the analysis of p from its cache, the sources' health
// of the same snapshot and the families of status (the Go runtime, build info) fresh; at most maxInFlight scrapes run at once (more get a 503).
func NewHandler(p SnapshotProvider, status prometheus.Gatherer, logger log.Logger, maxInFlight int) *Handler {
	return &Handler{provider: p, status: status, now: time.Now, logger: logger, inFlight: make(chan struct{}, maxInFlight),
		blocks: blockCache{of: map[*model.ObjectAnalysis]*block{}}}
}

const contentType = "text/plain; version=0.0.4; charset=utf-8"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		http.Error(w, "too many scrapes at once", http.StatusServiceUnavailable)
		return
	}
	snap := h.provider.Snapshot()
	segments := h.analysis(snap)
	up, lastSuccess := h.proxies.render(snap.Proxies)
	if up != nil {
		segments = append(segments[:len(segments):len(segments)], up)
	}
	sources := prometheus.NewRegistry()
	sources.MustRegister(SourceStatus(snap))
	dynamic := append(lastSuccess, encode(prometheus.Gatherers{sources, h.status}, h.logger)...)
	w.Header().Set("Content-Type", contentType)
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		// Rare (Prometheus always asks for gzip): decompress the cached families.
		readers := make([]io.Reader, len(segments))
		for i, s := range segments {
			readers[i] = bytes.NewReader(s)
		}
		if zr, err := gzip.NewReader(io.MultiReader(readers...)); err == nil {
			_, _ = io.Copy(w, zr)
		}
		w.Write(dynamic)
		return
	}
	// Gzip members in a row are one valid gzip stream: the cached ones, then the fresh one.
	w.Header().Set("Content-Encoding", "gzip")
	bw := bufio.NewWriterSize(w, 32<<10)
	for _, s := range segments {
		bw.Write(s)
	}
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(bw)
	zw.Write(dynamic)
	zw.Close()
	gzipWriters.Put(zw)
	bw.Flush()
}

// gzipWriters are reused: a compressor holds about a megabyte of tables, too much to throw away on
// every scrape.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

// analysis returns the gzip members of the analysis families, rendering the blocks that changed.
func (h *Handler) analysis(snap *model.Snapshot) [][]byte {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := h.blocks.update(&snap.Analysis)
	for _, b := range h.blocks.blocks {
		if b.stale || !b.boundary.IsZero() && !now.Before(b.boundary) {
			b.render(now)
			h.renders++
			changed = true
		}
	}
	if changed || h.segments == nil {
		h.segments = h.blocks.segments()
	}
	return h.segments
}

// encode gathers g and encodes what it could gather as text; a family that fails costs only itself.
func encode(g prometheus.Gatherer, logger log.Logger) []byte {
	families, err := g.Gather()
	if err != nil {
		level.Error(logger).Log("msg", "gathering metrics", "err", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			level.Error(logger).Log("msg", "encoding metrics", "family", f.GetName(), "err", err)
		}
	}
	return buf.Bytes()
}
