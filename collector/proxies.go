package collector

import (
	"bytes"
	"slices"
	"sync"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// proxyRenderer writes the proxies' health on every scrape, keeping what does not change between
// scrapes: meshcert_proxy_up changes only when a proxy comes, goes, fails, recovers or changes
// endpoint, so it is kept compressed until then; the last-success timestamps move with every
// read, so they are written on every scrape, from each proxy's label text, built once per proxy.
type proxyRenderer struct {
	mu       sync.Mutex
	labels   map[proxyKey][]byte
	rendered bool
	shown    []upState // what up shows
	up       []byte    // meshcert_proxy_up as one gzip member, header included; nil for no proxies
}

// proxyKey identifies a proxy.
type proxyKey struct {
	mesh                    model.Mesh
	source, namespace, name string
}

// upState is what meshcert_proxy_up shows of a proxy.
type upState struct {
	proxyKey
	up       bool
	endpoint string
}

func keyOf(p *model.ProxyStatus) proxyKey { return proxyKey{p.Mesh, p.Source, p.Namespace, p.Name} }

// render returns meshcert_proxy_up as a gzip member and the last-success family as text.
func (r *proxyRenderer) render(proxies []model.ProxyStatus) (up, lastSuccess []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.labels == nil || len(r.labels) > 2*len(proxies)+64 {
		r.labels = make(map[proxyKey][]byte, len(proxies)) // forget the proxies that went away
	}
	labels := func(p *model.ProxyStatus) []byte {
		k := keyOf(p)
		l, ok := r.labels[k]
		if !ok {
			l = appendProxyLabels(nil, p)
			r.labels[k] = l
		}
		return l
	}
	if !r.showing(proxies) {
		text := make([]byte, 0, len(proxies)*150)
		r.shown = r.shown[:0]
		for i := range proxies {
			p := &proxies[i]
			text = appendProxyUp(text, labels(p), p)
			r.shown = append(r.shown, upState{keyOf(p), p.Up, p.Endpoint})
		}
		r.up, r.rendered = nil, true
		if len(text) > 0 {
			var buf bytes.Buffer
			writeFamily(&buf, famProxyUp, text)
			r.up = compress(buf.Bytes())
		}
	}
	last := make([]byte, 0, len(proxies)*110)
	for i := range proxies {
		last = appendProxyLastSuccess(last, labels(&proxies[i]), &proxies[i])
	}
	var out bytes.Buffer
	writeFamily(&out, famProxyLastSuccess, last)
	return r.up, out.Bytes()
}

// showing reports whether up shows exactly these proxies' states.
func (r *proxyRenderer) showing(proxies []model.ProxyStatus) bool {
	return r.rendered && slices.EqualFunc(r.shown, proxies, func(s upState, p model.ProxyStatus) bool {
		return s.up == p.Up && s.endpoint == p.Endpoint && s.proxyKey == keyOf(&p)
	})
}
