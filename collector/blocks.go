package collector

import (
	"bytes"
	"compress/gzip"
	"io"
	"slices"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// blockSize is how many items share a block: small enough that a change re-renders little, large
// enough that each family's member compresses a few dozen lines together.
const blockSize = 64

// item is one thing whose series are rendered together: an object's findings or a proxy's health.
// Both are immutable records: a change is a new pointer, so an item is its own version.
type item struct {
	object *model.ObjectAnalysis
	proxy  *model.ProxyStatus
}

// block is a run of items whose series are rendered and compressed together.
type block struct {
	items []item
	// members hold each family's samples of these items as one gzip member; nil for none.
	members [][]byte
	// boundary is when a series of this block changes by itself next (a chain's validity); zero
	// when none will.
	boundary time.Time
	// stale marks a block whose items changed since it was rendered.
	stale bool
}

// blockCache keeps the series of a changing set of items compressed in blocks, placed by arrival,
// not by name: a new or changed item (a new pointer) joins the last, open block, and leaves its
// old block, which alone renders again. During a first sweep of thousands of proxies, each render
// covers the newly read proxies, not all of them. The order of series within a family is free in
// the exposition format; each family stays contiguous (see segments).
type blockCache struct {
	render   *renderer
	zip      *compressors
	families int
	blocks   []*block
	of       map[item]*block
	// renders counts the blocks rendered.
	renders int
}

func newBlockCache(r *renderer, zip *compressors) *blockCache {
	return &blockCache{render: r, zip: zip, families: len(r.families), of: map[item]*block{}}
}

// apply removes the departed items and adds the arrived ones: their blocks are marked stale. A
// block that shrank below half is dissolved into the open block, so blocks stay full as the set
// changes.
func (c *blockCache) apply(departed, arrived []item) {
	for _, it := range departed {
		b := c.of[it]
		if b == nil {
			continue
		}
		delete(c.of, it)
		if i := slices.Index(b.items, it); i >= 0 {
			b.items = slices.Delete(b.items, i, i+1)
			b.stale = true
		}
	}
	var kept []*block
	var moved []item
	for i, b := range c.blocks {
		if b.stale && len(b.items) < blockSize/2 && i < len(c.blocks)-1 {
			for _, it := range b.items {
				delete(c.of, it)
			}
			moved = append(moved, b.items...)
			continue
		}
		if len(b.items) > 0 {
			kept = append(kept, b)
		}
	}
	c.blocks = kept
	for _, it := range append(moved, arrived...) {
		if c.of[it] != nil {
			continue // arrived twice
		}
		last := len(c.blocks) - 1
		if last < 0 || len(c.blocks[last].items) >= blockSize {
			c.blocks = append(c.blocks, &block{items: make([]item, 0, blockSize), members: make([][]byte, c.families)})
			last++
		}
		b := c.blocks[last]
		b.items, b.stale = append(b.items, it), true
		c.of[it] = b
	}
}

// replace replaces the records of one list the cache holds (the analysis' objects, or the
// proxies' health records), old, with next, and applies what departed and arrived; wrap makes a
// record an item. Sources keep their records in a stable order and replace a record where it
// stands, so the lists are first walked side by side (see merge); only when the order changed
// are they compared as sets.
func replace[T comparable](c *blockCache, old, next []T, wrap func(T) item) {
	departed, arrived, ok := merge(c, old, next, wrap)
	if !ok {
		departed, arrived = nil, nil
		inNext := make(map[T]struct{}, len(next))
		for _, r := range next {
			inNext[r] = struct{}{}
			if c.of[wrap(r)] == nil {
				arrived = append(arrived, wrap(r))
			}
		}
		for _, r := range old {
			if _, ok := inNext[r]; !ok {
				departed = append(departed, wrap(r))
			}
		}
	}
	c.apply(departed, arrived)
}

// merge walks old and next side by side, looking a record up in the cache's index only where the
// lists differ: a record of next the cache does not hold arrived; where next goes on with a record
// the cache holds, the record of old in its way departed. ok is false when next holds a record of
// old out of old's order: that record would wrongly have departed.
func merge[T comparable](c *blockCache, old, next []T, wrap func(T) item) (departed, arrived []item, ok bool) {
	i := 0
	for j := 0; j < len(next); {
		if i < len(old) && old[i] == next[j] {
			i, j = i+1, j+1
			continue
		}
		switch {
		case c.of[wrap(next[j])] == nil:
			arrived = append(arrived, wrap(next[j]))
			j++
		case i < len(old):
			departed = append(departed, wrap(old[i]))
			i++
		default:
			return nil, nil, false
		}
	}
	for _, r := range old[i:] {
		departed = append(departed, wrap(r))
	}
	return departed, arrived, true
}

// objectItem and proxyItem make a record an item.
func objectItem(o *model.ObjectAnalysis) item { return item{object: o} }
func proxyItem(p *model.ProxyStatus) item     { return item{proxy: p} }

// refresh renders the blocks that are stale or whose boundary passed; it reports whether any
// was.
func (c *blockCache) refresh(now time.Time, bufs [][]byte) bool {
	rendered := false
	for _, b := range c.blocks {
		if b.stale || !b.boundary.IsZero() && !now.Before(b.boundary) {
			c.renderBlock(b, now, bufs)
			rendered = true
		}
	}
	return rendered
}

// renderBlock renders a block's series at now into bufs (reused between blocks) and compresses
// each family's.
func (c *blockCache) renderBlock(b *block, now time.Time, bufs [][]byte) {
	for i := range bufs {
		bufs[i] = bufs[i][:0]
	}
	b.boundary = time.Time{}
	for _, it := range b.items {
		if t := c.render.renderItem(bufs, it, now); !t.IsZero() && (b.boundary.IsZero() || t.Before(b.boundary)) {
			b.boundary = t
		}
	}
	for f := range bufs {
		b.members[f] = c.zip.compress(bufs[f])
	}
	b.stale = false
	c.renders++
}

// segments returns the gzip members of every family in order: each family's header, then each
// block's members; a family without samples is not written.
func (c *blockCache) segments(headers [][]byte) [][]byte {
	var out [][]byte
	for f := range headers {
		start := len(out)
		for _, b := range c.blocks {
			if len(b.members[f]) > 0 {
				out = append(out, b.members[f])
			}
		}
		if len(out) > start {
			out = slices.Insert(out, start, headers[f])
		}
	}
	return out
}

// compressors are gzip compressors kept for reuse: one holds large tables, too much to build for
// every block or scrape. A free list of one per processor, not a sync.Pool, which
// empties itself every other garbage collection.
type compressors struct {
	free chan *gzip.Writer
}

func newCompressors(n int) *compressors {
	return &compressors{free: make(chan *gzip.Writer, max(1, n))}
}

// get returns a free compressor, or a new one.
func (z *compressors) get() *gzip.Writer {
	select {
	case zw := <-z.free:
		return zw
	default:
		zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
		return zw
	}
}

// put returns a compressor to the free list, unless the list is full.
func (z *compressors) put(zw *gzip.Writer) {
	select {
	case z.free <- zw:
	default:
	}
}

// compress returns text as one gzip member, exactly sized, or nil for no text.
func (z *compressors) compress(text []byte) []byte {
	if len(text) == 0 {
		return nil
	}
	var buf bytes.Buffer
	buf.Grow(len(text)/6 + 64)
	zw := z.get()
	zw.Reset(&buf)
	zw.Write(text)
	zw.Close()
	z.put(zw)
	return bytes.Clone(buf.Bytes())
}
