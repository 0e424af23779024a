package collector

import (
	"bytes"
	"compress/gzip"
	"sync"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// blockSize is how many objects share a block: small enough that a change re-renders little,
// large enough that each family's member compresses a few hundred lines together.
const blockSize = 64

// block is a run of objects whose series are rendered and compressed together.
type block struct {
	objects []*model.ObjectAnalysis
	// members hold each family's samples of these objects as one gzip member; nil for none.
	members [famAnalysisCount][]byte
	// boundary is when a chain's validity in this block changes next; zero when none will.
	boundary time.Time
	// stale marks a block whose objects changed since it was rendered.
	stale bool
}

// blockCache places the objects of successive analyses into blocks by arrival, not by name: a
// new or changed object (a new *model.ObjectAnalysis) joins the last, open block, and leaves its
// old block, which alone is rendered again. During a first sweep of thousands of proxies, each
// scrape therefore renders the newly read proxies, not all of them. The order of series within a
// family is free in the exposition format; the families themselves stay contiguous.
type blockCache struct {
	version uint64
	started bool
	blocks  []*block
	of      map[*model.ObjectAnalysis]*block
}

// update places the objects of a new analysis and reports whether the blocks changed.
func (c *blockCache) update(a *model.Analysis) bool {
	if c.started && a.Version == c.version {
		return false
	}
	c.started, c.version = true, a.Version
	present := make(map[*model.ObjectAnalysis]bool, len(a.Objects))
	var arrived []*model.ObjectAnalysis
	for _, o := range a.Objects {
		if present[o] {
			continue
		}
		present[o] = true
		if c.of[o] == nil {
			arrived = append(arrived, o)
		}
	}
	// Objects that left: their blocks render again. A block that shrank below half is dissolved
	// into the open block, so blocks stay full as the mesh changes.
	var kept []*block
	for i, b := range c.blocks {
		n := 0
		for _, o := range b.objects {
			if present[o] {
				b.objects[n] = o
				n++
			} else {
				delete(c.of, o)
			}
		}
		if n < len(b.objects) {
			clear(b.objects[n:])
			b.objects, b.stale = b.objects[:n], true
		}
		if b.stale && len(b.objects) < blockSize/2 && i < len(c.blocks)-1 {
			arrived = append(b.objects, arrived...)
			for _, o := range b.objects {
				delete(c.of, o)
			}
			continue
		}
		if len(b.objects) > 0 {
			kept = append(kept, b)
		}
	}
	c.blocks = kept
	for _, o := range arrived {
		last := len(c.blocks) - 1
		if last < 0 || len(c.blocks[last].objects) >= blockSize {
			c.blocks = append(c.blocks, &block{objects: make([]*model.ObjectAnalysis, 0, blockSize)})
			last++
		}
		b := c.blocks[last]
		b.objects, b.stale = append(b.objects, o), true
		c.of[o] = b
	}
	return true
}

// segments returns the gzip members of every family in order: its header, then each block's.
func (c *blockCache) segments() [][]byte {
	var out [][]byte
	for f := range famAnalysisCount {
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

// render renders the block's series at now and compresses each family's.
func (b *block) render(now time.Time) {
	fams := renderBuffers.Get().(*familyBuffers)
	defer renderBuffers.Put(fams)
	for i := range fams {
		fams[i] = fams[i][:0]
	}
	var scratch []byte
	b.boundary = time.Time{}
	for _, o := range b.objects {
		scratch = renderObject(fams, o, now, scratch)
		if t := objectBoundary(o, now); !t.IsZero() && (b.boundary.IsZero() || t.Before(b.boundary)) {
			b.boundary = t
		}
	}
	for f := range fams {
		b.members[f] = compress(fams[f])
	}
	b.stale = false
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
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	zw.Write(text)
	zw.Close()
	gzipWriters.Put(zw)
	return bytes.Clone(buf.Bytes())
}

// familyHeaders are the HELP and TYPE lines of each analysis family, compressed once.
var familyHeaders = func() (h [famAnalysisCount][]byte) {
	for f := range h {
		h[f] = compress(familyHeader(f))
	}
	return h
}()
