package collector

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// proxyRenderer keeps the proxies' health families (meshcert_proxy_up and
// meshcert_proxy_last_success_timestamp_seconds) in blocks of proxy states (see blockCache): a
// proxy that is read, fails, recovers, arrives or leaves has a new state record, which joins the
// open block and leaves its old one, and only those blocks render again. The Handler's background
// pass does that work every tick, so a scrape finds at most a tick's reads to render. Items are
// the sources' own immutable records: a pointer each, however many proxies.
type proxyRenderer struct {
	mu sync.Mutex
	// shown is the states the blocks show, in the order of the statuses; rendered says whether
	// they were rendered at all.
	shown    []*model.ProxyStatus
	rendered bool
	sorted   bool // shown is in the sources' order, so the next render may diff against it
	blocks   blockCache[*model.ProxyStatus]
	segments [][]byte
	renders  int // blocks rendered, for tests
}

// lastSuccessSeconds is when the proxy was last read, in whole Unix seconds; 0 for never.
func lastSuccessSeconds(p *model.ProxyStatus) int64 {
	if p.LastSuccess.IsZero() {
		return 0
	}
	return p.LastSuccess.Unix()
}

func newProxyRenderer() *proxyRenderer {
	r := &proxyRenderer{}
	var labels []byte // a block renders only when it changed: the label text is not worth keeping
	r.blocks = newBlockCache(func(fams *familyBuffers, p *model.ProxyStatus, _ time.Time) time.Time {
		labels = appendProxyLabels(labels[:0], p.Mesh, p.Source, p.Namespace, p.Name)
		fams[famProxyUp] = appendProxyUp(fams[famProxyUp], labels, p.Up, p.Endpoint)
		fams[famProxyLastSuccess] = appendProxyLastSuccess(fams[famProxyLastSuccess], labels, lastSuccessSeconds(p))
		return time.Time{}
	})
	return r
}

// render returns the health families of proxies as gzip members, rendering the blocks whose
// proxies' states changed.
func (r *proxyRenderer) render(proxies []*model.ProxyStatus) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.showing(proxies) {
		return r.segments
	}
	// A snapshot's slices are never modified once handed out: shown may keep this one.
	departed, arrived, sorted := diffItems(r.shown, proxies)
	if sorted && (r.sorted || !r.rendered) {
		r.blocks.apply(departed, arrived)
	} else {
		r.blocks.place(proxies)
	}
	r.sorted = sorted
	r.renders += r.blocks.refresh(time.Time{})
	r.segments = r.blocks.segments(nil, famProxyUp, famProxyLastSuccess)
	r.shown, r.rendered = proxies, true
	return r.segments
}

// showing reports whether the blocks show exactly these proxies' states.
func (r *proxyRenderer) showing(proxies []*model.ProxyStatus) bool {
	return r.rendered && slices.Equal(r.shown, proxies)
}

// diffItems compares two lists of proxy states in the order the sources give them (by source,
// then by namespace/name) in one pass, without hashing ten thousand keys: a state that is in old
// only departed, one in next only arrived. It reports false when next is not in that order; old
// must be (the caller keeps track).
func diffItems(old, next []*model.ProxyStatus) (departed, arrived []*model.ProxyStatus, ok bool) {
	var sources []string // in order of appearance: next's, then those only old has
	rank := func(source string) int {
		for i, s := range sources {
			if s == source {
				return i
			}
		}
		sources = append(sources, source)
		return len(sources) - 1
	}
	for _, it := range next {
		rank(it.Source)
	}
	compare := func(a, b *model.ProxyStatus) int {
		if a.Source != b.Source {
			return rank(a.Source) - rank(b.Source)
		}
		return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name)
	}
	// old was checked when it was next.
	for i := 1; i < len(next); i++ {
		if compare(next[i-1], next[i]) >= 0 {
			return nil, nil, false
		}
	}
	i, j := 0, 0
	for i < len(old) || j < len(next) {
		switch {
		case i == len(old):
			arrived = append(arrived, next[j])
			j++
		case j == len(next):
			departed = append(departed, old[i])
			i++
		default:
			switch c := compare(old[i], next[j]); {
			case c == 0:
				if old[i] != next[j] {
					departed, arrived = append(departed, old[i]), append(arrived, next[j])
				}
				i++
				j++
			case c < 0:
				departed = append(departed, old[i])
				i++
			default:
				arrived = append(arrived, next[j])
				j++
			}
		}
	}
	return departed, arrived, true
}

// compareKeys compares namespace1 + "/" + name1 with namespace2 + "/" + name2, the key a proxy
// source sorts by, without building either.
func compareKeys(namespace1, name1, namespace2, name2 string) int {
	if namespace1 == namespace2 {
		return strings.Compare(name1, name2)
	}
	at := func(ns, n string, i int) byte {
		switch {
		case i < len(ns):
			return ns[i]
		case i == len(ns):
			return '/'
		default:
			return n[i-len(ns)-1]
		}
	}
	l1, l2 := len(namespace1)+1+len(name1), len(namespace2)+1+len(name2)
	for i := 0; i < l1 && i < l2; i++ {
		if a, b := at(namespace1, name1, i), at(namespace2, name2, i); a != b {
			return int(a) - int(b)
		}
	}
	return l1 - l2
}
