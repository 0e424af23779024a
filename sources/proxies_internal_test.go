package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// TestShardingSplitsPods: with three shards every pod belongs to exactly one, and the split is even
// enough to be worth it.
func TestShardingSplitsPods(t *testing.T) {
	shards := []Sharding{{Shard: 0, TotalShards: 3}, {Shard: 1, TotalShards: 3}, {Shard: 2, TotalShards: 3}}
	counts := make([]int, 3)
	for i := range 3000 {
		owners := 0
		for s, sh := range shards {
			if sh.owns(fmt.Sprintf("ns-%d", i%40), fmt.Sprintf("pod-%d", i)) {
				owners++
				counts[s]++
			}
		}
		if owners != 1 {
			t.Fatalf("pod %d has %d owners", i, owners)
		}
	}
	for s, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("shard %d owns %d of 3000 pods", s, n)
		}
	}
	if !(Sharding{}).owns("a", "b") {
		t.Error("without sharding a replica owns every pod")
	}
}

// TestReadsSpreadOverTheInterval: however bunched the first reads of a sweep were (here every
// proxy within the first 10 seconds, as a start reads them), the next reads fall evenly over the
// interval, in a shard as in the whole mesh: each 10-second slice of the interval reads about the
// same number of proxies. A proxy is read again at least half an interval after a read, and from
// then on exactly once per interval.
func TestReadsSpreadOverTheInterval(t *testing.T) {
	const interval = 5 * time.Minute
	for _, tc := range []struct {
		name     string
		sharding Sharding
		proxies  int
	}{
		{"one replica", Sharding{}, 10000},
		{"shard 2 of 4", Sharding{Shard: 2, TotalShards: 4}, 40000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const slices = 30
			var perSlice [slices]int
			read := 0
			for i := range tc.proxies {
				namespace, name := fmt.Sprintf("ns-%d", i%50), fmt.Sprintf("app-%d-%x", i, i*7919)
				if !tc.sharding.owns(namespace, name) {
					continue
				}
				read++
				first := time.Duration(i%10000) * time.Millisecond // every proxy within 10 s
				second := nextSlot(namespace, name, first, interval)
				if second < first+interval/2 || second >= first+3*interval/2 {
					t.Fatalf("%s/%s read at %s and again at %s: not between half an interval and one and a half later", namespace, name, first, second)
				}
				if third := nextSlot(namespace, name, second, interval); third != second+interval {
					t.Fatalf("%s/%s read at %s and again at %s, not one interval later", namespace, name, second, third)
				}
				perSlice[second%interval/(interval/slices)]++
			}
			mean := float64(read) / slices
			for i, n := range perSlice {
				if float64(n) < 0.75*mean || float64(n) > 1.25*mean {
					t.Errorf("%d of %d proxies read in the slice at %s of the interval, %.0f on average: %v", n, read, time.Duration(i)*interval/slices, mean, perSlice)
					break
				}
			}
		})
	}
}

// TestStripPodKeepsTheTargetAndKind: the pod cache keeps the target, which proxy kinds a pod runs
// (as each kind recognises its pods) and the trust-root digest its kind's annotation holds.
func TestStripPodKeepsTheTargetAndKind(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := func(labels map[string]string, containers []string, initContainers ...corev1.Container) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-1", ResourceVersion: "9", Labels: labels,
				Annotations: map[string]string{"example.com/trust-root": "abc", "other": "x"}},
			Spec:   corev1.PodSpec{ServiceAccountName: "cart", NodeName: "node-1", InitContainers: initContainers},
			Status: corev1.PodStatus{PodIP: "10.0.0.7", Phase: corev1.PodRunning},
		}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		}
		return p
	}
	sidecar := ProxyKind{Source: "sidecar", Runs: func(p *corev1.Pod) bool { return RunsContainer(p, "proxy") }}
	node := ProxyKind{Source: "node", Runs: func(p *corev1.Pod) bool { return p.Labels["app"] == "node-proxy" },
		TrustRootAnnotation: "example.com/trust-root"}
	w := NewPodWatcher(nil, Sharding{TotalShards: 1}, []ProxyKind{sidecar, node}, nil, log.NewNopLogger())
	tests := []struct {
		name   string
		pod    *corev1.Pod
		want   uint32
		digest string
	}{
		{"sidecar", pod(nil, []string{"app", "proxy"}), 1, ""},
		{"native sidecar", pod(nil, []string{"app"}, corev1.Container{Name: "proxy", RestartPolicy: &always}), 1, ""},
		{"an init container of that name is not a sidecar", pod(nil, []string{"app"}, corev1.Container{Name: "proxy"}), 0, ""},
		{"node proxy, with its trust root annotation", pod(map[string]string{"app": "node-proxy"}, []string{"x"}), 2, "abc"},
		{"both", pod(map[string]string{"app": "node-proxy"}, []string{"proxy"}), 3, "abc"},
		{"not meshed", pod(map[string]string{"app": "cart"}, []string{"app"}), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, _ := w.stripPod(tt.pod)
			p := obj.(*podInfo)
			want := Target{Namespace: "shop", Name: "cart-1", ServiceAccount: "cart", Node: "node-1", IP: "10.0.0.7", TrustRootDigest: tt.digest}
			if p.kinds != tt.want || p.Target != want || p.resourceVersion != "9" {
				t.Errorf("stripPod = %+v, want kinds %b and target %+v", p, tt.want, want)
			}
			if again, _ := w.stripPod(p); again != p {
				t.Error("a second pass changed the object")
			}
			if key, err := cache.MetaNamespaceKeyFunc(p); key != "shop/cart-1" || err != nil {
				t.Errorf("store key %q, %v", key, err)
			}
		})
	}
}

// TestDirectTransportClosesConnections: a proxy is read once per interval, so no connection is
// kept open between reads.
func TestDirectTransportClosesConnections(t *testing.T) {
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	tr := NewDirectTransport(1 << 20)
	for range 3 {
		if _, err := tr.Get(context.Background(), Target{IP: "127.0.0.1"}, port, "/"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Errorf("%d connections still open after the reads", n)
	}
}

// TestProxyHealthRecords: a proxy's health record is replaced when its health changes and kept
// when it does not, since the collector re-renders a proxy's series exactly when its record is
// new: a proxy that keeps failing keeps its record, a failure after a success keeps the time of
// that success, and each successful read is a new record with a new time.
func TestProxyHealthRecords(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	var status atomic.Int32
	status.Store(http.StatusInternalServerError)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		w.Write(root.PEM())
	}))
	defer srv.Close()
	// A kind whose admin answers with PEM: the health records are the mechanism's, whatever the format.
	kind := ProxyKind{Source: "test-proxy", Read: func(ctx context.Context, r ProxyRead) ([]model.Bundle, string, error) {
		body, err := r.Get(ctx, "/")
		if err != nil {
			return nil, "pem", err
		}
		certs, _ := r.Cache.ParseBundle(body)
		return []model.Bundle{{Key: "pem", Certificates: certs}}, "pem", nil
	}}
	fastSettings := ProxySettings{AdminPort: 15000, Interval: time.Hour, Timeout: time.Second, Concurrency: 1}
	env := Env{Cache: pki.NewCache(), Layouts: GenericLayout, Logger: log.NewNopLogger()}
	p := NewProxies(kind, nil, []Target{{Namespace: "shop", Name: "cart", URL: srv.URL}}, NewDirectTransport(1<<20), fastSettings, NewParseLimit(), env)
	read := func() *model.ProxyStatus {
		t.Helper()
		due := p.due(time.Now().Add(2 * fastSettings.Interval))
		if len(due) != 1 {
			t.Fatalf("%d proxies due, want 1", len(due))
		}
		p.readOne(context.Background(), due[0])
		st := p.State()
		if len(st.Proxies) != 1 {
			t.Fatalf("statuses %v", st.Proxies)
		}
		return st.Proxies[0]
	}
	failed := read()
	if failed.Up || !failed.LastSuccess.IsZero() || failed.Namespace != "shop" || failed.Name != "cart" || failed.Source != kind.Source {
		t.Fatalf("first failed read: %+v", failed)
	}
	if again := read(); again != failed {
		t.Errorf("a proxy that failed again got a new record %+v", again)
	}
	status.Store(http.StatusOK)
	up := read()
	if up == failed || !up.Up || up.Endpoint != "pem" || up.LastSuccess.IsZero() {
		t.Fatalf("read after recovery: %+v", up)
	}
	time.Sleep(10 * time.Millisecond) // the clock moves between reads
	if next := read(); next == up || !next.LastSuccess.After(up.LastSuccess) {
		t.Errorf("a second good read: %+v after %+v, want a new record with a later time", next, up)
	}
	status.Store(http.StatusInternalServerError)
	down := read()
	if down.Up || down.LastSuccess.IsZero() {
		t.Errorf("failure after a success: %+v, want down with the time of the last success", down)
	}
}

// TestReadBody: an answer is read whole whether or not its size is announced, a body shorter than
// announced is an error, and the limit holds both ways.
func TestReadBody(t *testing.T) {
	const limit = 10
	for _, tt := range []struct {
		name    string
		status  int
		length  int64
		body    string
		want    string
		wantErr error
	}{
		{"announced", 200, 5, "hello", "hello", nil},
		{"not announced", 200, -1, "hello", "hello", nil},
		{"empty", 200, 0, "", "", nil},
		{"shorter than announced", 200, 8, "hello", "", io.ErrUnexpectedEOF},
		{"announced over the limit", 200, 11, "hello world", "", errBodyTooLarge},
		{"over the limit, not announced", 200, -1, "hello world", "", errBodyTooLarge},
		{"not 200", 503, 5, "hello", "", statusError{503}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, ContentLength: tt.length, Body: io.NopCloser(strings.NewReader(tt.body))}
			got, err := (&bodyReader{limit: limit}).read(resp)
			if !errors.Is(err, tt.wantErr) || string(got) != tt.want {
				t.Errorf("read = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestErrorReasons: what a read fails with maps to one bounded reason, a reader's errors included
// (a parse error of an answer in an unknown shape or from a proxy not ready, wrapped as a bad
// response by ProxyRead.Parse).
func TestErrorReasons(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want model.ErrorReason
	}{
		{badResponse(fmt.Errorf("%w: no certificates", ErrUnknownShape)), model.ReasonUnknownShape},
		{badResponse(fmt.Errorf("%w: identity not loaded", ErrNotReady)), model.ReasonUnavailable},
		{badResponse(errors.New("invalid character")), model.ReasonBadResponse},
		{statusError{http.StatusForbidden}, model.ReasonForbidden},
		{statusError{http.StatusInternalServerError}, model.ReasonBadResponse},
		{errBodyTooLarge, model.ReasonTooLarge},
		{context.DeadlineExceeded, model.ReasonTimeout},
		{errRedirect, model.ReasonBadResponse},
		{errors.New("connection refused"), model.ReasonRefused},
	} {
		if got := errorReason(tt.err); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestStripPodPosture: the bits the posture judgement reads of a pod: which meshes take it in, the
// node's network, a container other than a mesh's own with network rights, a pod's own policy.
func TestStripPodPosture(t *testing.T) {
	yes := true
	caps := func(name string, add ...corev1.Capability) corev1.Container {
		return corev1.Container{Name: name, SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: add}}}
	}
	privileged := func(name string) corev1.Container {
		return corev1.Container{Name: name, SecurityContext: &corev1.SecurityContext{Privileged: &yes}}
	}
	a := PodEnrolment{Mesh: "a", Meshed: func(p *corev1.Pod) bool { return RunsContainer(p, "a-proxy") }, OwnContainers: []string{"a-init", "a-proxy"}}
	b := PodEnrolment{Mesh: "b", Meshed: func(p *corev1.Pod) bool { return p.Annotations["b/enrolled"] == "yes" }, PolicyAnnotation: "b/policy"}
	w := NewPodWatcher(nil, Sharding{TotalShards: 1}, nil, []PodEnrolment{a, b}, log.NewNopLogger())
	for _, tt := range []struct {
		name        string
		annotations map[string]string
		host        bool
		init, main  []corev1.Container
		want        model.PodRecord
	}{
		{name: "plain", main: []corev1.Container{{Name: "app"}},
			want: model.PodRecord{}},
		{name: "meshed by a, its init container's NET_ADMIN is its own", init: []corev1.Container{caps("a-init", "NET_ADMIN", "NET_RAW")}, main: []corev1.Container{{Name: "app"}, {Name: "a-proxy"}},
			want: model.PodRecord{Meshed: []model.Mesh{"a"}}},
		{name: "an application container adds NET_ADMIN", main: []corev1.Container{caps("app", "NET_ADMIN"), {Name: "a-proxy"}},
			want: model.PodRecord{Meshed: []model.Mesh{"a"}, NetAdmin: true}},
		{name: "CAP_NET_RAW, lower case", main: []corev1.Container{caps("app", "cap_net_raw")}, want: model.PodRecord{NetAdmin: true}},
		{name: "ALL", init: []corev1.Container{caps("setup", "ALL")}, want: model.PodRecord{NetAdmin: true}},
		{name: "another capability", main: []corev1.Container{caps("app", "SYS_TIME")}, want: model.PodRecord{}},
		{name: "privileged", main: []corev1.Container{privileged("app")}, want: model.PodRecord{NetAdmin: true}},
		{name: "host network, both meshes, a policy of b", host: true, annotations: map[string]string{"b/enrolled": "yes", "b/policy": "deny"},
			main: []corev1.Container{{Name: "a-proxy"}},
			want: model.PodRecord{HostNetwork: true, Meshed: []model.Mesh{"a", "b"}, Policies: []model.PodPolicy{{Mesh: "b", Value: "deny"}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-1", Annotations: tt.annotations},
				Spec: corev1.PodSpec{HostNetwork: tt.host, InitContainers: tt.init, Containers: tt.main}}
			obj, _ := w.stripPod(p)
			got := obj.(*podInfo).record
			tt.want.Namespace, tt.want.Name = "shop", "cart-1"
			if got == nil || !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("record %+v, want %+v", got, tt.want)
			}
		})
	}
	proxiesOnly := NewPodWatcher(nil, Sharding{TotalShards: 1}, nil, nil, log.NewNopLogger())
	obj, _ := proxiesOnly.stripPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.PodSpec{HostNetwork: true}})
	if r := obj.(*podInfo).record; r != nil {
		t.Errorf("a watcher without enrolments keeps posture: %+v", r)
	}
}

// TestShareNames: the partition label's value names what a replica reads of the pods, the same for
// copies of one replica and different for replicas that split the pods.
func TestShareNames(t *testing.T) {
	for _, tt := range []struct {
		sharding Sharding
		want     string
	}{
		{Sharding{}, "all"},
		{Sharding{TotalShards: 1}, "all"},
		{Sharding{Shard: 2, TotalShards: 4}, "shard-2-of-4"},
		{Sharding{NodeName: "ip-10-0-1-7.ec2.internal"}, "node-ip-10-0-1-7.ec2.internal"},
		{Sharding{Shard: 0, TotalShards: 2, NodeName: "a"}, "node-a-shard-0-of-2"},
	} {
		if got := tt.sharding.Share(); got != tt.want {
			t.Errorf("%+v: share %q, want %q", tt.sharding, got, tt.want)
		}
	}
}
