package sources_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	. "github.com/meshcert/meshcert-exporter/sources"
)

// TestShardsKeepTheirOwnPods: on the real API server, each of two shards keeps exactly its own
// share of the running pods in its cache (from the first list and from the watch after it, as pods
// come and go), the two shares are the whole, and a replica that also reads ztunnel keeps every
// pod (its reader checks a node's identities against all of the node's pods).
func TestShardsKeepTheirOwnPods(t *testing.T) {
	k := newKubeTest(t)
	const ns = "shards"
	sidecar := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{NodeName: "node-s", Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}}}
	}
	var want []string
	for i := range 12 {
		k.runPod(sidecar(fmt.Sprintf("app-%d", i)), fmt.Sprintf("10.7.0.%d", i+1))
		want = append(want, fmt.Sprintf("%s/app-%d", ns, i))
	}

	ctx, cancel := context.WithCancel(k.ctx)
	defer cancel()
	start := func(sharding Sharding, kinds ...ProxyKind) *PodWatcher {
		w := NewPodWatcher(k.admin, sharding, kinds, nil, log.NewNopLogger())
		go w.Run(ctx)
		return w
	}
	shards := []*PodWatcher{start(Sharding{Shard: 0, TotalShards: 2}, istio.EnvoyKind()), start(Sharding{Shard: 1, TotalShards: 2}, istio.EnvoyKind())}
	withZtunnel := start(Sharding{Shard: 0, TotalShards: 2}, istio.EnvoyKind(), istio.ZtunnelKind())

	cached := func(w *PodWatcher) []string {
		var out []string
		for _, key := range w.CachedPods() {
			if strings.HasPrefix(key, ns+"/") {
				out = append(out, key)
			}
		}
		slices.Sort(out)
		return out
	}
	check := func(want []string) string {
		slices.Sort(want)
		a, b := cached(shards[0]), cached(shards[1])
		union := slices.Sorted(slices.Values(append(slices.Clone(a), b...)))
		switch {
		case len(a) == 0 || len(b) == 0:
			return fmt.Sprintf("shards keep %d and %d pods: both should own some of %d", len(a), len(b), len(want))
		case len(a)+len(b) != len(want) || !slices.Equal(union, want):
			return fmt.Sprintf("shards keep %v and %v, together not the %d running pods %v", a, b, len(want), want)
		case !slices.Equal(cached(withZtunnel), want):
			return fmt.Sprintf("the replica that reads ztunnel keeps %v, not every pod", cached(withZtunnel))
		}
		for i, w := range shards {
			var targets []string
			for _, t := range w.Pods(istio.SourceEnvoy) {
				if t.Namespace == ns {
					targets = append(targets, t.Namespace+"/"+t.Name)
				}
			}
			slices.Sort(targets)
			if !slices.Equal(targets, cached(w)) {
				return fmt.Sprintf("shard %d reads %v, keeps %v", i, targets, cached(w))
			}
		}
		return ""
	}
	waitFor := func(want []string) {
		t.Helper()
		var last string
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if last = check(want); last == "" {
				return
			}
		}
		t.Fatal(last)
	}
	waitFor(want)

	// Pods that start and stop after the first list come through the watch.
	for i := 12; i < 16; i++ {
		k.runPod(sidecar(fmt.Sprintf("app-%d", i)), fmt.Sprintf("10.7.0.%d", i+1))
		want = append(want, fmt.Sprintf("%s/app-%d", ns, i))
	}
	now := int64(0)
	k.must(k.admin.CoreV1().Pods(ns).Delete(k.ctx, "app-0", metav1.DeleteOptions{GracePeriodSeconds: &now}))
	waitFor(slices.DeleteFunc(want, func(s string) bool { return s == ns+"/app-0" }))
}
