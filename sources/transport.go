package sources

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Transport names.
const (
	TransportPortForward = "port-forward"
	TransportDirect      = "direct"
)

// Target is one proxy to read: a pod, or a static admin URL.
type Target struct {
	Namespace, Name string
	// ServiceAccount, Node, IP and TrustRootDigest come from the pod.
	ServiceAccount, Node, IP, TrustRootDigest string
	// URL is a static target's admin base URL (scheme and host).
	URL string
}

// key identifies the target.
func (t Target) key() string { return t.Namespace + "/" + t.Name }

// Transport fetches a path of a proxy's admin endpoint. It returns the body of a 200 answer; any
// other outcome is an error that errorReason maps to a bounded reason.
type Transport interface {
	Get(ctx context.Context, t Target, port int, path string) ([]byte, error)
}

// statusError is an answer other than 200.
type statusError struct{ code int }

func (e statusError) Error() string {
	return "admin answered " + strconv.Itoa(e.code) + " " + http.StatusText(e.code)
}

var errBodyTooLarge = errors.New("admin response larger than the limit")

// errorReason maps a fetch error to a bounded reason.
func errorReason(err error) model.ErrorReason {
	var se statusError
	var ne net.Error
	var br badResponseError
	switch {
	case errors.Is(err, ErrUnknownShape):
		return model.ReasonUnknownShape
	case errors.Is(err, ErrNotReady):
		return model.ReasonUnavailable
	case errors.As(err, &br):
		return model.ReasonBadResponse
	case errors.Is(err, errBodyTooLarge):
		return model.ReasonTooLarge
	case errors.As(err, &se) && (se.code == http.StatusForbidden || se.code == http.StatusUnauthorized):
		return model.ReasonForbidden
	case errors.As(err, &se):
		return model.ReasonBadResponse
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return model.ReasonTimeout
	case errors.Is(err, errRedirect):
		return model.ReasonBadResponse
	default:
		return model.ReasonRefused
	}
}

var errRedirect = errors.New("admin endpoint redirected")

// ErrUnknownShape is wrapped by a parser that understood an answer as JSON (or text) but found it
// in none of the shapes the releases it knows write.
var ErrUnknownShape = errors.New("answer in an unknown shape")

// ErrNotReady is wrapped by a reader whose proxy answered but has no certificate to show yet.
var ErrNotReady = errors.New("proxy not ready")

// badResponseError is an answer that could be fetched but not understood.
type badResponseError struct{ err error }

func (e badResponseError) Error() string { return "cannot parse the admin response: " + e.err.Error() }
func (e badResponseError) Unwrap() error { return e.err }

// badResponse wraps a parse error; nil stays nil.
func badResponse(err error) error {
	if err == nil {
		return nil
	}
	return badResponseError{err}
}

// bodyReader reads admin answers of at most limit bytes, reusing its buffers between reads of
// answers of unknown size.
type bodyReader struct {
	limit   int64
	buffers sync.Pool // of *[]byte
}

// read reads the body of an HTTP response; more than the limit is errBodyTooLarge.
func (r *bodyReader) read(resp *http.Response) ([]byte, error) {
	limit := r.limit
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, statusError{resp.StatusCode}
	}
	if n := resp.ContentLength; n >= 0 && n <= limit {
		// The size is announced: one buffer of that size, instead of the doubling buffers of
		// io.ReadAll (twice the body in garbage, for every read of every proxy).
		body := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	// Not announced (Envoy's admin streams its answers): read into a reused buffer, and return an
	// exact copy.
	bp, _ := r.buffers.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 16<<10)
		bp = &b
	}
	defer r.put(bp)
	body, err := readAll((*bp)[:0], io.LimitReader(resp.Body, limit+1))
	*bp = body
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, errBodyTooLarge
	}
	return bytes.Clone(body), nil
}

// readAll appends everything r has to b, growing it as io.ReadAll does.
func readAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// maxPooledBody is the largest buffer kept for reuse: a rare big answer's is left to the collector.
const maxPooledBody = 256 << 10

// put keeps a buffer for reuse, unless it grew too big.
func (r *bodyReader) put(bp *[]byte) {
	if cap(*bp) <= maxPooledBody {
		r.buffers.Put(bp)
	}
}

// DirectTransport reads an admin endpoint over plain HTTP at the pod's IP (Linkerd's 4191, Envoy
// deployments whose admin listens on the pod IP) or at a static URL. Redirects are not followed:
// an admin endpoint has no reason to send the exporter elsewhere.
type DirectTransport struct {
	client *http.Client
	body   *bodyReader
}

// NewDirectTransport returns a direct transport whose responses may be at most maxBody bytes.
func NewDirectTransport(maxBody int64) *DirectTransport {
	return &DirectTransport{body: &bodyReader{limit: maxBody}, client: &http.Client{
		Transport: &http.Transport{
			Proxy:       nil, // never through an environment proxy
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			// A proxy is read once per interval: a connection kept open in between would hold
			// two goroutines and their buffers per proxy for nothing.
			DisableKeepAlives:  true,
			DisableCompression: false,
			// A request is one line and a few headers, and each read opens a connection: small
			// buffers, not the default ones, which would be garbage at once.
			WriteBufferSize: 1 << 10,
			// 1 KB holds an admin answer's head; its body streams through in a few more reads.
			ReadBufferSize: 1 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}}
}

// Get implements Transport.
func (d *DirectTransport) Get(ctx context.Context, t Target, port int, path string) ([]byte, error) {
	base := t.URL
	if base == "" {
		base = "http://" + net.JoinHostPort(t.IP, strconv.Itoa(port))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return d.body.read(resp)
}

// PortForwardTransport reads an admin endpoint that listens on the pod's localhost (Envoy's 15000
// in Istio) through the API server's pods/portforward, as istioctl does: WebSocket first, SPDY
// when the server does not upgrade. Each read opens one tunnel, sends one HTTP request into its
// data stream and closes it; no local port is opened.
type PortForwardTransport struct {
	config    *rest.Config
	client    kubernetes.Interface
	body      *bodyReader
	requestID atomic.Uint64
}

// NewPortForwardTransport returns a port-forward transport for the cluster of config; setting up a
// tunnel may take at most timeout.
func NewPortForwardTransport(config *rest.Config, client kubernetes.Interface, maxBody int64, timeout time.Duration) *PortForwardTransport {
	cfg := rest.CopyConfig(config)
	cfg.Timeout = timeout
	return &PortForwardTransport{config: cfg, client: client, body: &bodyReader{limit: maxBody}}
}

// Get implements Transport.
func (p *PortForwardTransport) Get(ctx context.Context, t Target, port int, path string) ([]byte, error) {
	u := p.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(t.Namespace).Name(t.Name).SubResource("portforward").URL()
	dialer, err := p.dialer(u)
	if err != nil {
		return nil, err
	}
	type result struct {
		body []byte
		err  error
	}
	var (
		done   = make(chan result, 1)
		mu     sync.Mutex
		conn   httpstream.Connection
		closed bool
	)
	closeConn := func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		if conn != nil {
			conn.Close()
		}
	}
	go func() {
		c, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		if err != nil {
			done <- result{err: fmt.Errorf("port-forward to %s/%s: %w", t.Namespace, t.Name, err)}
			return
		}
		mu.Lock()
		conn = c
		if closed { // the caller gave up while the tunnel was being set up
			c.Close()
		}
		mu.Unlock()
		body, err := p.exchange(c, port, path)
		done <- result{body, err}
	}()
	select {
	case r := <-done:
		closeConn()
		return r.body, r.err
	case <-ctx.Done():
		// A hanging proxy costs this slot until the deadline; then the tunnel is torn down.
		closeConn()
		return nil, ctx.Err()
	}
}

// dialer connects to the portforward subresource: WebSocket (SPDY tunnelled) with a fallback to
// SPDY, as current client-go and kubectl do.
func (p *PortForwardTransport) dialer(u *url.URL) (httpstream.Dialer, error) {
	rt, upgrader, err := spdy.RoundTripperFor(p.config)
	if err != nil {
		return nil, err
	}
	spdyDialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	ws, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, p.config)
	if err != nil {
		return nil, err
	}
	return portforward.NewFallbackDialerForStreaming(ws, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	}), nil
}

// exchange opens the error and data streams of one forwarded connection and performs one HTTP GET.
func (p *PortForwardTransport) exchange(conn httpstream.Connection, port int, path string) ([]byte, error) {
	id := strconv.FormatUint(p.requestID.Add(1), 10)
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(port))
	headers.Set(corev1.PortForwardRequestIDHeader, id)
	errorStream, err := conn.CreateStream(headers)
	if err != nil {
		return nil, err
	}
	errorStream.Close() // the client never writes to it
	remoteErr := make(chan error, 1)
	go func() {
		msg, _ := io.ReadAll(io.LimitReader(errorStream, 4096))
		if len(msg) > 0 {
			remoteErr <- fmt.Errorf("port-forward: %s", msg)
		}
		close(remoteErr)
	}()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		return nil, err
	}
	defer data.Reset()
	req, _ := http.NewRequest(http.MethodGet, "http://localhost"+path, nil)
	req.Close = true
	if err := req.Write(data); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(data), req)
	if err != nil {
		if rerr, ok := <-remoteErr; ok && rerr != nil {
			return nil, rerr // the kubelet could not connect to the port
		}
		return nil, err
	}
	defer resp.Body.Close()
	return p.body.read(resp)
}
