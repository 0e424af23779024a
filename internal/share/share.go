// Package share keeps one copy of equal immutable values that many holders build: the
// certificates ten thousand proxies present, the chain their leaves share, the identity every
// replica of a workload is expected to prove.
package share

import (
	"sync"
	"weak"
)

// minSweep is the number of entries below which a Table does not look for dead ones.
const minSweep = 1024

// Table shares immutable values by key between everything that builds an equal one. It holds
// weak pointers, so a value nothing refers to any more is collected. The entries of collected
// values are removed when the map has grown to twice the entries live at the last sweep: a
// cleanup function per value would remove them sooner at a cost per value, while this way the
// map never holds more than twice what was live (or minSweep entries). A Table is safe for concurrent use; values must not change once shared.
type Table[K comparable, V any] struct {
	mu      sync.Mutex
	m       map[K]weak.Pointer[V]
	sweepAt int // the size at which dead entries are next removed
}

// NewTable returns an empty table.
func NewTable[K comparable, V any]() *Table[K, V] {
	return &Table[K, V]{m: map[K]weak.Pointer[V]{}, sweepAt: minSweep}
}

// Get returns the live value stored under k, or nil.
func (t *Table[K, V]) Get(k K) *V {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[k].Value()
}

// Share returns the live value stored under k, or stores v there and returns it.
func (t *Table[K, V]) Share(k K, v *V) *V {
	t.mu.Lock()
	defer t.mu.Unlock()
	if live := t.m[k].Value(); live != nil {
		return live
	}
	t.m[k] = weak.Make(v)
	if len(t.m) >= t.sweepAt {
		t.sweep()
	}
	return v
}

// Of returns the shared copy of v, for a value that is its own key (an identity, a check's
// result): v itself is copied to the heap only when no live copy exists.
func Of[V comparable](t *Table[V, V], v V) *V {
	if p := t.Get(v); p != nil {
		return p
	}
	stored := v
	return t.Share(v, &stored)
}

// sweep removes the entries of collected values and sets the next sweep at twice the live
// entries, so the work is constant per value stored. It runs under t.mu.
func (t *Table[K, V]) sweep() {
	for k, wp := range t.m {
		if wp.Value() == nil {
			delete(t.m, k)
		}
	}
	t.sweepAt = max(2*len(t.m), minSweep)
}

// Len is the number of entries, live or dead.
func (t *Table[K, V]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
