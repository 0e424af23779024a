package collector

import (
	"bytes"
	"slices"
	"sync"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// blockSize is how many items share a block: small enough that a change re-renders little, large
// enough that each family's member compresses a few dozen lines together.
const blockSize = 64

// block is a run of items whose series are rendered and compressed together.
type block[K comparable] struct {
	items []K
	// members hold each family's samples of these items as one gzip member; nil for none.
	members [famCount][]byte
	// boundary is when a series of this block changes by itself next (a chain's validity); zero
	// when none will.
	boundary time.Time
	// stale marks a block whose items changed since it was rendered.
	stale bool
}

// renderItem appends the series of one item to fams and returns when they change by themselves
// next (zero for never).
type renderItem[K comparable] func(fams *familyBuffers, item K, now time.Time) time.Time

// blockCache keeps the series of a changing set of immutable items (an object's findings, a
// proxy's state) compressed in blocks, placed by arrival, not by name: a new or changed item (a
// new key) joins the last, open block, and leaves its old block, which alone renders again.
// During a first sweep of thousands of proxies, each render covers the newly read proxies, not all
// of them. The order of series within a family is free in the exposition format; each family
// stays contiguous (see segments).
type blockCache[K comparable] struct {
	render renderItem[K]
	blocks []*block[K]
	of     map[K]*block[K]
}

func newBlockCache[K comparable](render renderItem[K]) blockCache[K] {
	return blockCache[K]{render: render, of: map[K]*block[K]{}}
}

// place makes items the cache's set; blocks whose items changed are marked stale.
func (c *blockCache[K]) place(items []K) {
	present := make(map[K]bool, len(items))
	var arrived []K
	for _, it := range items {
		if present[it] {
			continue
		}
		present[it] = true
		if c.of[it] == nil {
			arrived = append(arrived, it)
		}
	}
	var departed []K
	for it := range c.of {
		if !present[it] {
			departed = append(departed, it)
		}
	}
	c.apply(departed, arrived)
}

// apply removes the departed items and adds the arrived ones: their blocks are marked stale. A
// block that shrank below half is dissolved into the open block, so blocks stay full as the set
// changes.
func (c *blockCache[K]) apply(departed, arrived []K) {
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
	var kept []*block[K]
	var moved []K
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
			c.blocks = append(c.blocks, &block[K]{items: make([]K, 0, blockSize)})
			last++
		}
		b := c.blocks[last]
		b.items, b.stale = append(b.items, it), true
		c.of[it] = b
	}
}

// refresh renders the blocks that are stale or whose boundary passed; it returns how many.
func (c *blockCache[K]) refresh(now time.Time) int {
	n := 0
	for _, b := range c.blocks {
		if b.stale || !b.boundary.IsZero() && !now.Before(b.boundary) {
			c.renderBlock(b, now)
			n++
		}
	}
	return n
}

// renderBlock renders a block's series at now and compresses each family's.
func (c *blockCache[K]) renderBlock(b *block[K], now time.Time) {
	fams := renderBuffers.Get().(*familyBuffers)
	defer renderBuffers.Put(fams)
	for i := range fams {
		fams[i] = fams[i][:0]
	}
	b.boundary = time.Time{}
	for _, it := range b.items {
		if t := c.render(fams, it, now); !t.IsZero() && (b.boundary.IsZero() || t.Before(b.boundary)) {
			b.boundary = t
		}
	}
	for f := range fams {
		b.members[f] = compress(fams[f])
	}
	b.stale = false
}

// segments appends the gzip members of the given families in order: each family's header, then
// each block's members.
func (c *blockCache[K]) segments(out [][]byte, families ...int) [][]byte {
	for _, f := range families {
		start := len(out)
		for _, b := range c.blocks {
			if len(b.members[f]) > 0 {
				out = append(out, b.members[f])
			}
		}
		if len(out) > start { // a family without samples is not written
			out = append(out, nil)
			copy(out[start+1:], out[start:])
			out[start] = familyHeaders[f]
		}
	}
	return out
}

// analysisItem renders one object's findings.
func analysisItem(fams *familyBuffers, o *model.ObjectAnalysis, now time.Time) time.Time {
	renderObject(fams, o, now, nil)
	return objectBoundary(o, now)
}

// renderBuffers are reused between block renders.
var renderBuffers = sync.Pool{New: func() any { return new(familyBuffers) }}

// compress returns text as one gzip member, exactly sized, or nil for no text.
func compress(text []byte) []byte {
	if len(text) == 0 {
		return nil
	}
	var buf bytes.Buffer
	buf.Grow(len(text)/6 + 64)
	zw := getGzipWriter()
	zw.Reset(&buf)
	zw.Write(text)
	zw.Close()
	putGzipWriter(zw)
	return bytes.Clone(buf.Bytes())
}

// familyHeaders are the HELP and TYPE lines of each family, compressed once.
var familyHeaders = func() (h [famCount][]byte) {
	for f := range h {
		h[f] = compress(familyHeader(f))
	}
	return h
}()
