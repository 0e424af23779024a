package collector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Handler serves /metrics. The rendered families (one to nine series per certificate, most of a
// scrape, and the proxies' health) only change when an object's findings or a proxy's health
// change, or when a certificate on a chain crosses its NotBefore or NotAfter. The Handler keeps
// them compressed, in blocks of items (objects' findings and proxies' states alike): each block
// holds one gzip member per family, rendered when one of its items changes or its next validity
// boundary passes. A scrape writes the members of each family in turn (consecutive gzip members
// are one gzip stream), so it costs little more than copying bytes, and a change re-renders one or
// two blocks, not the mesh. Run does this rendering in the background, so a scrape renders at most
// one tick of change. The sources' health and the Go runtime's families are gathered on every
// scrape.
type Handler struct {
	provider SnapshotProvider
	status   prometheus.Gatherer
	now      func() time.Time
	logger   log.Logger
	inFlight chan struct{}
	zip      *compressors
	sources  sourceDescs
	posture  postureDescs
	rotation rotationDescs

	mu      sync.Mutex
	blocks  *blockCache
	headers [][]byte // each family's HELP and TYPE lines, compressed
	bufs    [][]byte // each family's samples while a block renders
	placed  bool     // the blocks hold a snapshot
	version uint64   // of its analysis
	// objects and proxies are the lists of the snapshot the blocks hold. A snapshot's lists are
	// never modified once handed out: the handler keeps them, not copies.
	objects []*model.ObjectAnalysis
	proxies []*model.ProxyStatus
	// segments are the rendered families as gzip members, in order; replaced, never changed.
	segments [][]byte
}

// NewHandler returns a handler that serves the analysis of p from its cache, the sources' health
// of the same snapshot and the families of status (the Go runtime, build info) fresh; at most
// maxInFlight scrapes run at once (more get a 503), any number when it is 0.
func NewHandler(p SnapshotProvider, status prometheus.Gatherer, logger log.Logger, maxInFlight int) *Handler {
	zip := newCompressors(runtime.GOMAXPROCS(0))
	r := &renderer{families: renderedFamilies()}
	h := &Handler{provider: p, status: status, now: time.Now, logger: logger, zip: zip, sources: newSourceDescs(), posture: newPostureDescs(), rotation: newRotationDescs(),
		blocks: newBlockCache(r, zip), bufs: make([][]byte, len(r.families))}
	for _, f := range r.families {
		h.headers = append(h.headers, zip.compress(familyHeader(f.Family)))
	}
	if maxInFlight > 0 {
		h.inFlight = make(chan struct{}, maxInFlight)
	}
	return h
}

// negotiate returns the exposition format of a scrape: OpenMetrics when the scraper asks for it,
// else the text format. Both share the pre-rendered families (gauges only, whose lines are the
// same in both); the families gathered per scrape are encoded in the format negotiated, and
// OpenMetrics ends with its # EOF line.
func negotiate(h http.Header) expfmt.Format {
	return expfmt.NegotiateAccept(h, expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1, expfmt.FmtText)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.inFlight != nil {
		select {
		case h.inFlight <- struct{}{}:
			defer func() { <-h.inFlight }()
		default:
			http.Error(w, "too many scrapes at once", http.StatusServiceUnavailable)
			return
		}
	}
	snap := h.provider.Snapshot()
	segments := h.prepare(snap)
	sources := prometheus.NewRegistry()
	sources.MustRegister(sourcesCollector{sourceDescs: h.sources, snap: snap}, postureCollector{postureDescs: h.posture, snap: snap},
		rotationCollector{rotationDescs: h.rotation, snap: snap})
	format := negotiate(r.Header)
	dynamic := encode(prometheus.Gatherers{sources, h.status}, format, h.logger)
	w.Header().Set("Content-Type", string(format))
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
	zw := h.zip.get()
	zw.Reset(bw)
	zw.Write(dynamic)
	zw.Close()
	h.zip.put(zw)
	bw.Flush()
}

// Run keeps the cache current in the background until ctx is done: every interval it takes a
// snapshot (which runs the analysis of what changed) and renders the blocks and the proxies'
// states that changed. A scrape then renders only what changed since the last tick, however
// long ago the scraper last came: during a sweep of thousands of proxies that is the difference
// between a few new proxies and all of them. An idle mesh costs a snapshot of unchanged sources
// and a comparison of the proxies' states with those shown.
func (h *Handler) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			h.prepare(h.provider.Snapshot())
		}
	}
}

// prepare returns the rendered families of snap as gzip members, rendering the blocks that
// changed.
func (h *Handler) prepare(snap *model.Snapshot) [][]byte {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := false
	if !h.placed || snap.Version != h.version {
		replace(h.blocks, h.objects, snap.Objects, objectItem)
		h.objects, h.version, changed = snap.Objects, snap.Version, true
	}
	if !h.placed || !slices.Equal(h.proxies, snap.Proxies) {
		replace(h.blocks, h.proxies, snap.Proxies, proxyItem)
		h.proxies, changed = snap.Proxies, true
	}
	h.placed = true
	if h.blocks.refresh(now, h.bufs) {
		changed = true
	}
	if changed || h.segments == nil {
		h.segments = h.blocks.segments(h.headers)
	}
	return h.segments
}

// encode gathers g and encodes what it could gather in format; a family that fails costs only
// itself. The encoding is closed: OpenMetrics gets its # EOF.
func encode(g prometheus.Gatherer, format expfmt.Format, logger log.Logger) []byte {
	families, err := g.Gather()
	if err != nil {
		level.Error(logger).Log("msg", "gathering metrics", "err", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			level.Error(logger).Log("msg", "encoding metrics", "family", f.GetName(), "err", err)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			level.Error(logger).Log("msg", "closing the exposition", "err", err)
		}
	}
	return buf.Bytes()
}
