package sources_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/testadmin"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	"github.com/meshcert/meshcert-exporter/internal/testproxy"
	"github.com/meshcert/meshcert-exporter/sources"
)

// TestProxyHangCostsOneSlot: a hanging proxy holds one slot until its timeout; the others are read.
func TestProxyHangCostsOneSlot(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	hang := testadmin.Answers{testproxy.PEMPath: {Status: -1}}.Serve(t)
	ok := testadmin.Answers{testproxy.PEMPath: {Status: 200, Body: root.PEM()}}.Serve(t)
	var targets []sources.Target
	targets = append(targets, sources.Target{Namespace: "a", Name: "hang", URL: hang})
	for i := range 5 {
		targets = append(targets, sources.Target{Namespace: "a", Name: fmt.Sprintf("ok-%d", i), URL: ok})
	}
	s := testproxy.Fast()
	s.Concurrency = 2
	st := testproxy.ReadOnce(t, testproxy.Static(testproxy.PEMKind(), targets, s))
	up := 0
	for _, ps := range st.Proxies {
		if ps.Up {
			up++
		}
	}
	if up != 5 || st.Errors[model.ReasonTimeout] != 1 {
		t.Errorf("%d proxies up, errors %v; want 5 up and one timeout", up, st.Errors)
	}
	for _, o := range st.Objects {
		if o.FromPods {
			t.Errorf("static target %s is counted as read from a pod: every replica reads it", o.Name)
		}
	}
}

// TestRedirectAndSizeLimit: a redirect is not followed, and an answer over the limit is not read.
func TestRedirectAndSizeLimit(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("-")) }))
	defer other.Close()
	redirect := httptest.NewServer(http.RedirectHandler(other.URL+testproxy.PEMPath, http.StatusFound))
	defer redirect.Close()
	big := testadmin.Answers{testproxy.PEMPath: {Status: 200, Body: bytes.Repeat([]byte(" "), 2<<20)}}.Serve(t)
	st := testproxy.ReadOnce(t, testproxy.Static(testproxy.PEMKind(), []sources.Target{{Name: "redirect", URL: redirect.URL}, {Name: "big", URL: big}}, testproxy.Fast()))
	if st.Errors[model.ReasonBadResponse] != 1 || st.Errors[model.ReasonTooLarge] != 1 {
		t.Errorf("errors %v, want one bad_response (redirect) and one too_large", st.Errors)
	}
}

// TestProxyThatResets: a proxy that accepts and closes the connection at once is one failed read
// (refused), and does not stop the others.
func TestProxyThatResets(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST instead of FIN
			}
			c.Close()
		}
	}()
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	ok := testadmin.Answers{testproxy.PEMPath: {Status: 200, Body: root.PEM()}}.Serve(t)
	st := testproxy.ReadOnce(t, testproxy.Static(testproxy.PEMKind(), []sources.Target{{Name: "reset", URL: "http://" + l.Addr().String()}, {Name: "ok", URL: ok}}, testproxy.Fast()))
	up := map[string]bool{}
	for _, p := range st.Proxies {
		up[p.Name] = p.Up
	}
	if up["reset"] || !up["ok"] || st.Errors[model.ReasonRefused] != 1 {
		t.Errorf("up %v, errors %v; want reset down (refused) and ok up", up, st.Errors)
	}
}

// TestReplicasShareTheirExpectedIdentity: proxies of one service account in one namespace point
// at one expected identity; another service account gets its own.
func TestReplicasShareTheirExpectedIdentity(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)})
	srv := testadmin.Answers{testproxy.PEMPath: {Status: 200, Body: root.PEM()}}.Serve(t)
	targets := []sources.Target{
		{Namespace: "shop", Name: "cart-1", ServiceAccount: "cart", URL: srv},
		{Namespace: "shop", Name: "cart-2", ServiceAccount: "cart", URL: srv},
		{Namespace: "shop", Name: "web-1", ServiceAccount: "web", URL: srv},
	}
	st := testproxy.ReadOnce(t, testproxy.Static(testproxy.PEMKind(), targets, testproxy.Fast()))
	expect := map[string]*model.Identity{}
	for _, o := range st.Objects {
		expect[o.Name] = o.Expect
	}
	cart1, cart2, web := expect["cart-1"], expect["cart-2"], expect["web-1"]
	if cart1 == nil || cart1 != cart2 || *cart1 != (model.Identity{Namespace: "shop", ServiceAccount: "cart"}) {
		t.Errorf("replicas expect %+v and %+v, want one shared shop/cart", cart1, cart2)
	}
	if web == nil || web == cart1 || web.ServiceAccount != "web" {
		t.Errorf("web expects %+v", web)
	}
}
