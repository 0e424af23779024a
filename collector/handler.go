package collector

import (
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
// certificate, most of a scrape) only change when the analysis runs again or when a certificate on a
// chain crosses its NotBefore or NotAfter; the Handler renders them then, keeps the encoded text and
// its gzip, and copies them on every other scrape. The health families, which change with every
// read, come from a Gatherer and are encoded per scrape. A scrape therefore costs little more than
// copying bytes, yet a changed Secret shows on the next scrape: its analysis has a new version.
type Handler struct {
	provider SnapshotProvider
	status   prometheus.Gatherer
	now      func() time.Time
	logger   log.Logger
	inFlight chan struct{}

	mu       sync.Mutex
	cached   bool
	version  uint64
	boundary time.Time // the next instant a chain's validity changes; zero when none will
	gz       []byte    // only the gzip is kept: a tenth of the text
	renders  int
}

// NewHandler returns a handler that serves the analysis of p from its cache and the families of
// status fresh; at most maxInFlight scrapes run at once (more get a 503).
func NewHandler(p SnapshotProvider, status prometheus.Gatherer, logger log.Logger, maxInFlight int) *Handler {
	return &Handler{provider: p, status: status, now: time.Now, logger: logger, inFlight: make(chan struct{}, maxInFlight)}
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
	gz := h.analysis(snap)
	var dyn bytes.Buffer
	RenderProxies(&dyn, snap.Proxies)
	dyn.Write(encode(h.status, h.logger))
	dynamic := dyn.Bytes()
	w.Header().Set("Content-Type", contentType)
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		// Rare (Prometheus always asks for gzip): decompress the cached families.
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err == nil {
			_, _ = io.Copy(w, zr)
		}
		w.Write(dynamic)
		return
	}
	// Two gzip members in a row are one valid gzip stream: the cached one, then the fresh one.
	w.Header().Set("Content-Encoding", "gzip")
	w.Write(gz)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(w)
	zw.Write(dynamic)
	zw.Close()
	gzipWriters.Put(zw)
}

// gzipWriters are reused: a compressor holds about a megabyte of tables, too much to throw away on
// every scrape.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

// analysis returns the gzipped analysis families, rendering them again only when needed.
func (h *Handler) analysis(snap *model.Snapshot) []byte {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cached && snap.Version == h.version && (h.boundary.IsZero() || now.Before(h.boundary)) {
		return h.gz
	}
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	renderAnalysis(zw, &snap.Analysis, now)
	zw.Close()
	gzipWriters.Put(zw)
	h.gz = bytes.Clone(buf.Bytes()) // exactly sized: it is kept until the next render
	h.cached, h.version, h.boundary = true, snap.Version, nextBoundary(&snap.Analysis, now)
	h.renders++
	return h.gz
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

// nextBoundary is the first instant after now at which a chain's validity can change: a NotBefore
// reached or a NotAfter passed, of any certificate on any path.
func nextBoundary(a *model.Analysis, now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for i := range a.Certificates {
		c := a.Certificates[i].Chain
		if c == nil {
			continue
		}
		for _, path := range append(c.Paths, c.Partial) {
			for _, cert := range path {
				consider(cert.NotBefore())
				consider(cert.NotAfter().Add(time.Nanosecond)) // expired once strictly after NotAfter
			}
		}
	}
	return next
}
