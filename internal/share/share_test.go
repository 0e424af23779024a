package share

import (
	"runtime"
	"testing"
)

type value struct{ n int }

// TestTableDropsCollectedValues: the entries of values nothing refers to any more are removed
// once the map has grown, so ten thousand rotated leaves do not stay in it, and live values stay
// shared.
func TestTableDropsCollectedValues(t *testing.T) {
	table := NewTable[int, value]()
	for i := range minSweep {
		table.Share(i, &value{i})
	}
	runtime.GC() // nothing refers to the first values any more
	var live []*value
	for i := minSweep; i < 3*minSweep; i++ {
		live = append(live, table.Share(i, &value{i}))
	}
	if n := table.Len(); n >= len(live)+minSweep {
		t.Errorf("%d entries for %d live values: the collected ones stayed", n, len(live))
	}
	if got := table.Share(minSweep, &value{-1}); got != live[0] {
		t.Error("a live value was not shared")
	}
	if table.Get(0) != nil {
		t.Error("a collected value is still returned")
	}
	runtime.KeepAlive(live)
}

// TestOf: equal values get one shared copy; different values get their own.
func TestOf(t *testing.T) {
	table := NewTable[value, value]()
	a, b, c := Of(table, value{1}), Of(table, value{1}), Of(table, value{2})
	if a != b || *a != (value{1}) {
		t.Errorf("equal values: %p and %p", a, b)
	}
	if c == a || *c != (value{2}) {
		t.Errorf("a different value shares %v", *c)
	}
}
