package collector

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// TestCompareKeysIsTheSourcesOrder: proxies are listed by the string namespace/name, which is not
// the order of the pair when a namespace holds a byte below '/'.
func TestCompareKeysIsTheSourcesOrder(t *testing.T) {
	keys := [][2]string{{"a", "x"}, {"a-b", "x"}, {"a", "x-1"}, {"a.b", "y"}, {"ab", "a"}, {"a", ""}, {"", "a"}, {"a/b", "c"}}
	for _, x := range keys {
		for _, y := range keys {
			got := compareKeys(x[0], x[1], y[0], y[1])
			want := strings.Compare(x[0]+"/"+x[1], y[0]+"/"+y[1])
			if (got < 0) != (want < 0) || (got == 0) != (want == 0) {
				t.Errorf("compareKeys(%q, %q) = %d, want the sign of %d", x, y, got, want)
			}
		}
	}
}

// TestDiffItems: one ordered pass finds what arrived and departed, a changed state (a new record
// for the same proxy) is both, and a list out of the sources' order is refused (the caller falls
// back to the map).
func TestDiffItems(t *testing.T) {
	st := func(source, ns, name string, up bool) *model.ProxyStatus {
		return &model.ProxyStatus{Source: source, Namespace: ns, Name: name, Up: up, Endpoint: "config_dump"}
	}
	old := []*model.ProxyStatus{st("envoy", "a", "p1", true), st("envoy", "a", "p2", true), st("envoy", "b", "p1", true), st("linkerd-proxy", "a", "p1", true)}
	next := []*model.ProxyStatus{st("envoy", "a", "p0", true), st("envoy", "a", "p2", false), old[2], old[3], st("linkerd-proxy", "z", "p9", true)}
	departed, arrived, ok := diffItems(old, next)
	if !ok {
		t.Fatal("ordered lists refused")
	}
	wantDeparted := []*model.ProxyStatus{old[0], old[1]}
	wantArrived := []*model.ProxyStatus{next[0], next[1], next[4]}
	if !slices.Equal(departed, wantDeparted) || !slices.Equal(arrived, wantArrived) {
		t.Errorf("departed %v arrived %v, want %v and %v", departed, arrived, wantDeparted, wantArrived)
	}
	if _, _, ok := diffItems(old, []*model.ProxyStatus{next[2], next[0]}); ok {
		t.Error("a list out of order was diffed")
	}
	if d, a, ok := diffItems(nil, next); !ok || len(d) != 0 || len(a) != len(next) {
		t.Errorf("from nothing: departed %v arrived %v ok %v", d, a, ok)
	}
}
