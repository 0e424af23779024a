package pkiapi

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/log/level"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/sources"
)

//go:embed templates/pki.html
var templates embed.FS

// The page's lists are bounded, so that it stays a summary at any size of mesh: what a list leaves
// out is one click away in the JSON answer or the filtered listing.
const (
	pageExpiring = 20
	pageProblems = 100
	pageListing  = 200
)

// pageRenderer renders the /pki page.
type pageRenderer struct {
	tmpl *template.Template
}

func newPageRenderer() *pageRenderer {
	funcs := template.FuncMap{
		"join": strings.Join,
		// days says how far t is from now, roughly.
		"days": func(now, t time.Time) string {
			d := t.Sub(now)
			switch {
			case d < 0:
				return "expired"
			case d < 48*time.Hour:
				return fmt.Sprintf("in %dh", int(d.Hours()))
			}
			return fmt.Sprintf("in %d days", int(d.Hours()/24))
		},
	}
	return &pageRenderer{tmpl: template.Must(template.New("pki.html").Funcs(funcs).ParseFS(templates, "templates/pki.html"))}
}

// pageView is what the page shows.
type pageView struct {
	GeneratedAt time.Time
	Status      Status
	// Blind are the sources that are down or not ready.
	Blind []SourceStatus
	// ProxiesRead is true when a proxy source runs: the copies then include the proxies'.
	ProxiesRead   bool
	Meshes        []Mesh
	Broken        []Mesh // meshes that cannot sign
	Unanchored    int    // unanchored issuers, in every mesh
	Rotation      []rotationRow
	Expiring      []expiringRow
	Problems      []Certificate
	ProblemsTotal int
	Stale         []TrustBundle
	PostureOn     bool
	Bypass        []model.BypassFinding
	Filtered      bool
	ListingTitle  string
	Listing       []Certificate
	ListingTotal  int
	ListingMore   bool
	ListingNext   string
}

// StaleReads is the number of read intervals after which a proxy's read is stale.
func (pageView) StaleReads() int { return StaleReads }

// NoProblems is true when the page may say that it found no problem: nothing found, and every
// source that feeds it up.
func (v pageView) NoProblems() bool {
	return v.Status.Complete && len(v.Problems) == 0 && len(v.Stale) == 0 && len(v.Broken) == 0 && v.Unanchored == 0
}

// rotationRow is one CA in the rotation panel.
type rotationRow struct {
	Mesh, Kind, Subject, Serial string
	Expired, Anchor             bool
	Dependents, Bundles, Copies int
	Percent                     int
}

// expiringRow is one certificate of the expiring list, with every place it was found.
type expiringRow struct {
	Certificate
	Where []Location
}

func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	now := h.now()
	p := readParams(r, "mesh", "namespace", "role", "issuer", "expiring_before", "problem", "offset")
	f := p.filter(now, h.meshes)
	if p.err != nil {
		http.Error(w, p.err.Error(), http.StatusBadRequest)
		return
	}
	f.Limit = pageListing
	snap := h.provider.Snapshot()
	if err := resolveIssuer(&f, snap); err != nil {
		http.Error(w, err.msg, err.status)
		return
	}
	v := buildPage(snap, now, f, len(r.URL.Query()) > 0)
	if v.ListingMore {
		q := r.URL.Query()
		q.Set("offset", strconv.Itoa(f.Offset+len(v.Listing)))
		v.ListingNext = (&url.URL{Path: PathPage, RawQuery: q.Encode(), Fragment: "certificates"}).String()
	}
	var buf bytes.Buffer
	if err := h.page.tmpl.Execute(&buf, v); err != nil {
		level.Error(h.logger).Log("msg", "rendering the PKI page", "err", err)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	writeBody(w, r, http.StatusOK, buf.Bytes())
}

// buildPage assembles the page of snap at now; with filtered, the certificates f selects are
// listed too.
func buildPage(snap *model.Snapshot, now time.Time, f Filter, filtered bool) pageView {
	// Every certificate and bundle, for the lists: the first to expire, and those with a problem.
	all := Build(snap, now, Filter{})
	v := pageView{GeneratedAt: now.UTC(), Status: all.Status, Blind: all.Status.Down(), Meshes: all.Meshes, Filtered: filtered}
	for _, s := range snap.Sources {
		v.ProxiesRead = v.ProxiesRead || s.ReadInterval > 0
	}
	for _, m := range all.Meshes {
		if !m.Signing.CanSign {
			v.Broken = append(v.Broken, m)
		}
		v.Unanchored += len(m.UnanchoredIssuers)
		for _, a := range m.Anchors {
			kind := "anchor"
			switch {
			case a.Retired:
				kind = "retired anchor"
			case !m.Signing.CanSign:
				kind = "anchor (the mesh cannot sign)"
			case !a.Signing:
				kind = "new anchor, not signing yet"
			}
			v.Rotation = append(v.Rotation, rotationRow{Mesh: m.Mesh, Kind: kind, Subject: a.Subject, Serial: a.Serial, Expired: a.Expired, Anchor: true,
				Dependents: a.Dependents, Bundles: a.Bundles, Copies: m.TrustBundleCopies, Percent: percent(a.Bundles, m.TrustBundleCopies)})
		}
		var seen []string
		for _, a := range m.Anchors {
			for _, is := range a.Issuers {
				if slices.Contains(seen, is.Fingerprint) {
					continue
				}
				seen = append(seen, is.Fingerprint)
				v.Rotation = append(v.Rotation, rotationRow{Mesh: m.Mesh, Kind: "issuer", Subject: is.Subject, Serial: is.Serial, Expired: is.Expired, Dependents: is.Dependents})
			}
		}
		for _, is := range m.UnanchoredIssuers {
			v.Rotation = append(v.Rotation, rotationRow{Mesh: m.Mesh, Kind: "issuer under no current anchor", Subject: is.Subject, Serial: is.Serial, Expired: is.Expired, Dependents: is.Dependents})
		}
	}
	certs := all.Certificates
	v.Expiring = expiring(certs, pageExpiring)
	for _, c := range certs {
		if len(c.Problems) > 0 {
			v.ProblemsTotal++
			if len(v.Problems) < pageProblems {
				v.Problems = append(v.Problems, c)
			}
		}
	}
	for _, b := range all.TrustBundles {
		if !b.Current && len(v.Stale) < pageProblems {
			v.Stale = append(v.Stale, b)
		}
	}
	for _, s := range snap.Sources {
		v.PostureOn = v.PostureOn || s.Name == sources.SourcePosture
	}
	v.Bypass = snap.Posture.Bypass[:min(len(snap.Posture.Bypass), pageProblems)]
	if filtered {
		listing := Build(snap, now, f)
		v.Listing, v.ListingTotal = listing.Certificates, listing.Total.Certificates
		v.ListingMore = f.Offset+len(v.Listing) < v.ListingTotal
		v.ListingTitle = title(f)
	}
	return v
}

// expiring are the first n distinct certificates (by fingerprint) to expire, each with every
// place it was found.
func expiring(certs []Certificate, n int) []expiringRow {
	byExpiry := slices.Clone(certs)
	slices.SortStableFunc(byExpiry, func(a, b Certificate) int { return a.NotAfter.Compare(b.NotAfter) })
	var out []expiringRow
	index := map[string]int{}
	for _, c := range byExpiry {
		if i, ok := index[c.Fingerprint]; ok {
			out[i].Where = append(out[i].Where, c.Location)
			continue
		}
		if len(out) == n {
			continue // a later copy of one listed may still follow
		}
		index[c.Fingerprint] = len(out)
		out = append(out, expiringRow{Certificate: c, Where: []Location{c.Location}})
	}
	return out
}

// title says what a listing's filter selects.
func title(f Filter) string {
	var parts []string
	for _, p := range [][2]string{{"mesh", f.Mesh}, {"namespace", f.Namespace}, {"role", f.Role}, {"signed by", f.IssuerName}} {
		if p[1] != "" {
			parts = append(parts, p[0]+" "+p[1])
		}
	}
	if !f.ExpiringBefore.IsZero() {
		parts = append(parts, "expiring before "+f.ExpiringBefore.UTC().Format(time.RFC3339))
	}
	if f.Problem {
		parts = append(parts, "with a problem")
	}
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func percent(part, whole int) int {
	if whole == 0 {
		return 0
	}
	return part * 100 / whole
}
