package pkiapi

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	promodel "github.com/prometheus/common/model"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// The paths the Handler serves.
const (
	PathPKI    = "/api/v1/pki"
	PathWhatIf = "/api/v1/what-if"
	PathPage   = "/pki"
)

// DefaultLimit is how many certificates and trust bundles an answer holds when the request names
// no limit; MaxLimit is the most it may ask for.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// Provider hands out the current snapshot (the inventory).
type Provider interface {
	Snapshot() *model.Snapshot
}

// Handler serves the API and the page.
type Handler struct {
	provider Provider
	meshes   []string
	now      func() time.Time
	logger   log.Logger
	page     *pageRenderer
}

// NewHandler returns the handler of p's snapshots; meshes are the names of the meshes the
// exporter knows, the only values the mesh parameter takes.
func NewHandler(p Provider, meshes []string, logger log.Logger) *Handler {
	return &Handler{provider: p, meshes: meshes, now: time.Now, logger: logger, page: newPageRenderer()}
}

// Register adds the handler's paths to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc(PathPKI, h.servePKI)
	mux.HandleFunc(PathWhatIf, h.serveWhatIf)
	mux.HandleFunc(PathPage, h.servePage)
}

var (
	namePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	roles       = []string{string(model.RoleTrustAnchor), string(model.RoleIntermediate), string(model.RoleIssuer), string(model.RoleLeaf)}
)

// errBadRequest marks an error in the request's parameters.
var errBadRequest = errors.New("bad request")

// params reads a request's query, allowing only the names in allowed.
type params struct {
	q   url.Values
	err error
}

func readParams(r *http.Request, allowed ...string) *params {
	q, err := url.ParseQuery(r.URL.RawQuery)
	p := &params{q: q}
	if err != nil {
		p.err = fmt.Errorf("%w: the query does not parse: %v", errBadRequest, err)
		return p
	}
	for name, values := range q {
		if !slices.Contains(allowed, name) {
			p.err = fmt.Errorf("%w: unknown parameter %q (known: %s)", errBadRequest, name, strings.Join(allowed, ", "))
			return p
		}
		if len(values) > 1 {
			p.err = fmt.Errorf("%w: parameter %q given %d times", errBadRequest, name, len(values))
			return p
		}
	}
	return p
}

// text returns parameter name, checked by pattern (nil: any).
func (p *params) text(name string, pattern *regexp.Regexp) string {
	v := strings.ToLower(p.q.Get(name))
	if p.err == nil && v != "" && pattern != nil && !pattern.MatchString(v) {
		p.err = fmt.Errorf("%w: %s=%q is not valid", errBadRequest, name, truncate(v))
	}
	return v
}

func (p *params) integer(name string, def, lo, hi int) int {
	v := p.q.Get(name)
	if v == "" || p.err != nil {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.err = fmt.Errorf("%w: %s=%q is not a number from %d to %d", errBadRequest, name, truncate(v), lo, hi)
	}
	return n
}

// mesh reads the mesh parameter: one of the meshes the exporter knows, or none.
func (p *params) mesh(known []string) string {
	v := p.text("mesh", nil)
	if v != "" && p.err == nil && !slices.Contains(known, v) {
		p.err = fmt.Errorf("%w: mesh=%q is not one of %s", errBadRequest, truncate(v), strings.Join(known, ", "))
	}
	return v
}

// filter reads the filters of GET /api/v1/pki and of the page; the issuer is resolved later,
// against the snapshot (resolveIssuer).
func (p *params) filter(now time.Time, meshes []string) Filter {
	f := Filter{Mesh: p.mesh(meshes), Namespace: p.text("namespace", namePattern), Role: p.text("role", nil),
		IssuerName: strings.TrimSpace(p.q.Get("issuer")), Offset: p.integer("offset", 0, 0, 1<<30), Limit: p.integer("limit", DefaultLimit, 1, MaxLimit)}
	if f.Role != "" && !slices.Contains(roles, f.Role) && p.err == nil {
		p.err = fmt.Errorf("%w: role=%q is not one of %s", errBadRequest, truncate(f.Role), strings.Join(roles, ", "))
	}
	if v := p.q.Get("expiring_before"); v != "" && p.err == nil {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			f.ExpiringBefore = t
		} else if d, err := promodel.ParseDuration(v); err == nil {
			f.ExpiringBefore = now.Add(time.Duration(d))
		} else {
			p.err = fmt.Errorf("%w: expiring_before=%q is neither an RFC 3339 time nor a duration from now (30d, 2w, 720h)", errBadRequest, truncate(v))
		}
	}
	if v := p.q.Get("problem"); v != "" && p.err == nil {
		b, err := strconv.ParseBool(v)
		if err != nil {
			p.err = fmt.Errorf("%w: problem=%q is not true or false", errBadRequest, truncate(v))
		}
		f.Problem = b
	}
	return f
}

// truncate keeps a value quoted in an error short.
func truncate(v string) string {
	if len(v) > 64 {
		return v[:64] + "..."
	}
	return v
}

// resolveIssuer resolves f's issuer parameter against snap's CAs.
func resolveIssuer(f *Filter, snap *model.Snapshot) *refError {
	if f.IssuerName == "" {
		return nil
	}
	k, err := resolve(snap, model.Mesh(f.Mesh), "issuer", f.IssuerName, false)
	if err != nil {
		return err
	}
	f.Issuer, f.IssuerSet = k.cert.Fingerprint, true
	return nil
}

func (h *Handler) servePKI(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	now := h.now()
	p := readParams(r, "mesh", "namespace", "role", "issuer", "expiring_before", "problem", "offset", "limit")
	f := p.filter(now, h.meshes)
	if p.err != nil {
		h.writeJSON(w, r, http.StatusBadRequest, errorAnswer{Error: p.err.Error()})
		return
	}
	snap := h.provider.Snapshot()
	if err := resolveIssuer(&f, snap); err != nil {
		h.writeJSON(w, r, err.status, errorAnswer{Error: err.msg, Candidates: err.candidates, Status: statusPtr(snap, now)})
		return
	}
	h.writeJSON(w, r, http.StatusOK, Build(snap, now, f))
}

func (h *Handler) serveWhatIf(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	now := h.now()
	p := readParams(r, "mesh", "remove_anchor", "remove_issuer")
	mesh := p.mesh(h.meshes)
	anchor, issuer := strings.TrimSpace(p.q.Get("remove_anchor")), strings.TrimSpace(p.q.Get("remove_issuer"))
	if p.err == nil && (anchor == "") == (issuer == "") {
		p.err = fmt.Errorf("%w: give one of remove_anchor and remove_issuer: a serial (hex or decimal) or a SHA-256 fingerprint", errBadRequest)
	}
	if p.err != nil {
		h.writeJSON(w, r, http.StatusBadRequest, errorAnswer{Error: p.err.Error()})
		return
	}
	snap := h.provider.Snapshot()
	param, value := "remove_anchor", anchor
	if issuer != "" {
		param, value = "remove_issuer", issuer
	}
	k, err := resolve(snap, model.Mesh(mesh), param, value, param == "remove_anchor")
	if err != nil {
		h.writeJSON(w, r, err.status, errorAnswer{Error: err.msg, Candidates: err.candidates, Status: statusPtr(snap, now)})
		return
	}
	h.writeJSON(w, r, http.StatusOK, BuildWhatIf(snap, now, mesh, k))
}

// errorAnswer is the answer to a request the API cannot answer: 400 for a request that is not
// valid or names several certificates (the candidates), 404 for one that names no certificate
// the exporter holds (with the status, which says whether a source that is down could hold it).
type errorAnswer struct {
	Error      string      `json:"error"`
	Candidates []Candidate `json:"candidates,omitempty"`
	Status     *Status     `json:"status,omitempty"`
}

// statusPtr is the status of snap at now, for an error answer.
func statusPtr(snap *model.Snapshot, now time.Time) *Status {
	st := statusOf(snap, now)
	return &st
}

// allowMethod answers 405 to anything but GET and HEAD.
func allowMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "only GET and HEAD", http.StatusMethodNotAllowed)
	return false
}

// writeJSON writes v as JSON, gzipped when the client accepts it.
func (h *Handler) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		level.Error(h.logger).Log("msg", "encoding an API answer", "path", r.URL.Path, "err", err)
		http.Error(w, "encoding the answer failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	writeBody(w, r, status, append(body, '\n'))
}

// writeBody writes body with status, gzipped when the client accepts gzip.
func writeBody(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	w.Header().Add("Vary", "Accept-Encoding")
	if !acceptsGzip(r) {
		w.WriteHeader(status)
		w.Write(body)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.WriteHeader(status)
	zw := gzip.NewWriter(w)
	zw.Write(body)
	zw.Close()
}

// acceptsGzip reports whether the request's Accept-Encoding admits gzip.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}
