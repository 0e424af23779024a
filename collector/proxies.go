package collector

import (
	"sync"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// proxyRenderer writes the proxies' health, keeping what does not change between scrapes.
// meshcert_proxy_up changes only when a proxy comes, goes, fails, recovers or changes endpoint:
// it lives in blocks (see blockCache) keyed by each proxy's state, so a change renders one or two
// blocks. The last-success timestamps move with every read, so they are written on every scrape,
// from each proxy's label text, built once per proxy and kept in the order of the statuses.
type proxyRenderer struct {
	mu     sync.Mutex
	labels map[proxyKey][]byte
	// shown is the states the up blocks show, in the order of the statuses; rendered says whether
	// they were rendered at all.
	shown    []upState
	rendered bool
	blocks   blockCache[upState]
	segments [][]byte
	renders  int // blocks rendered, for tests
	// alignedLabels are the labels of the proxies in shownKeys order, for the last-success family.
	shownKeys     []proxyKey
	alignedLabels [][]byte
}

// proxyKey identifies a proxy.
type proxyKey struct {
	mesh                    model.Mesh
	source, namespace, name string
}

// upState is what meshcert_proxy_up shows of a proxy: a block item.
type upState struct {
	proxyKey
	up       bool
	endpoint string
}

func keyOf(p *model.ProxyStatus) proxyKey { return proxyKey{p.Mesh, p.Source, p.Namespace, p.Name} }

func newProxyRenderer() *proxyRenderer {
	r := &proxyRenderer{labels: map[proxyKey][]byte{}}
	r.blocks = newBlockCache(func(fams *familyBuffers, s upState, _ time.Time) time.Time {
		fams[famProxyUp] = appendProxyUp(fams[famProxyUp], r.labelsOf(s.proxyKey), s.up, s.endpoint)
		return time.Time{}
	})
	return r
}

// labelsOf returns the label text of a proxy, built once; r.mu is held.
func (r *proxyRenderer) labelsOf(k proxyKey) []byte {
	l, ok := r.labels[k]
	if !ok {
		l = appendProxyLabels(nil, k.mesh, k.source, k.namespace, k.name)
		r.labels[k] = l
	}
	return l
}

// upSegments returns meshcert_proxy_up as gzip members, rendering the blocks whose proxies'
// states changed.
func (r *proxyRenderer) upSegments(proxies []model.ProxyStatus) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.showing(proxies) {
		return r.segments
	}
	states := make([]upState, len(proxies))
	for i := range proxies {
		p := &proxies[i]
		states[i] = upState{keyOf(p), p.Up, p.Endpoint}
	}
	if departed, arrived, ok := diffStates(r.shown, states); ok {
		r.blocks.apply(departed, arrived)
	} else {
		r.blocks.place(states)
	}
	r.renders += r.blocks.refresh(time.Time{})
	r.segments = r.blocks.segments(nil, famProxyUp)
	r.shown, r.rendered = states, true
	if len(r.labels) > 2*len(proxies)+64 { // forget the proxies that went away
		keep := make(map[proxyKey][]byte, len(states))
		for _, s := range states {
			keep[s.proxyKey] = r.labels[s.proxyKey]
		}
		r.labels = keep
	}
	return r.segments
}

// lastSuccess returns the last-success family as text, appended to b.
func (r *proxyRenderer) lastSuccess(b []byte, proxies []model.ProxyStatus) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.aligned(proxies) {
		r.shownKeys, r.alignedLabels = r.shownKeys[:0], r.alignedLabels[:0]
		for i := range proxies {
			k := keyOf(&proxies[i])
			r.shownKeys = append(r.shownKeys, k)
			r.alignedLabels = append(r.alignedLabels, r.labelsOf(k))
		}
	}
	samples := make([]byte, 0, len(proxies)*110)
	for i := range proxies {
		samples = appendProxyLastSuccess(samples, r.alignedLabels[i], &proxies[i])
	}
	if len(samples) == 0 {
		return b
	}
	return append(append(b, familyHeader(famProxyLastSuccess)...), samples...)
}

// aligned reports whether the aligned labels are those of proxies, in order: the usual case, the
// same proxies in the same order, costs a comparison of strings that share their bytes.
func (r *proxyRenderer) aligned(proxies []model.ProxyStatus) bool {
	if len(r.shownKeys) != len(proxies) {
		return false
	}
	for i := range proxies {
		if keyOf(&proxies[i]) != r.shownKeys[i] {
			return false
		}
	}
	return true
}

// showing reports whether the up blocks show exactly these proxies' states.
func (r *proxyRenderer) showing(proxies []model.ProxyStatus) bool {
	if !r.rendered || len(r.shown) != len(proxies) {
		return false
	}
	for i := range proxies {
		p := &proxies[i]
		if s := r.shown[i]; s.up != p.Up || s.endpoint != p.Endpoint || s.proxyKey != keyOf(p) {
			return false
		}
	}
	return true
}

// diffStates compares two lists of proxy states in the order the sources give them (by source,
// then by namespace/name) in one pass, without hashing ten thousand keys: a state that is in old
// only departed, one in next only arrived. It reports false when either list is not in that order.
func diffStates(old, next []upState) (departed, arrived []upState, ok bool) {
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
	for _, s := range next {
		rank(s.source)
	}
	compare := func(a, b *upState) int {
		if a.source != b.source {
			return rank(a.source) - rank(b.source)
		}
		return compareKeys(a.namespace, a.name, b.namespace, b.name)
	}
	for _, list := range [][]upState{next, old} {
		for i := 1; i < len(list); i++ {
			if compare(&list[i-1], &list[i]) >= 0 {
				return nil, nil, false
			}
		}
	}
	i, j := 0, 0
	for i < len(old) || j < len(next) {
		switch c := 0; {
		case i == len(old):
			arrived = append(arrived, next[j])
			j++
		case j == len(next):
			departed = append(departed, old[i])
			i++
		default:
			c = compare(&old[i], &next[j])
			switch {
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
