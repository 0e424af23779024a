package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
)

// Kubelet stands in for a kubelet's port-forward endpoint: an HTTPS server on loopback that serves
// /portForward/{namespace}/{pod} with Kubernetes' own streaming server and connects each forwarded
// pod port to an address the test chose. With a Node pointing at it, the API server's
// pods/portforward reaches it exactly as it reaches a real kubelet.
type Kubelet struct {
	server *httptest.Server

	mu       sync.Mutex
	backends map[string]string // "namespace/pod:port" -> address
	forwards int
	// slowest is the longest a port-forward request took, from its upgrade to its end.
	slowest time.Duration
}

// StartKubelet starts the stand-in. It speaks HTTP/1.1 only: the upgrade to a stream cannot run
// over HTTP/2.
func StartKubelet() *Kubelet {
	k := &Kubelet{backends: map[string]string{}}
	k.server = httptest.NewUnstartedServer(http.HandlerFunc(k.serve))
	k.server.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
	k.server.StartTLS()
	return k
}

// Forward connects port of the pod namespace/name to addr.
func (k *Kubelet) Forward(namespace, pod string, port int, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.backends[fmt.Sprintf("%s/%s:%d", namespace, pod, port)] = addr
}

// Forwards counts the forwarded connections so far.
func (k *Kubelet) Forwards() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.forwards
}

// SlowestForward is the longest a port-forward request has taken so far, from the API server's
// upgrade request arriving to the end of its streams.
func (k *Kubelet) SlowestForward() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.slowest
}

// Port is the stand-in's port.
func (k *Kubelet) Port() int { return k.server.Listener.Addr().(*net.TCPAddr).Port }

// Close stops the stand-in.
func (k *Kubelet) Close() { k.server.Close() }

func (k *Kubelet) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 3 || parts[0] != "portForward" {
		http.NotFound(w, r)
		return
	}
	namespace, pod := parts[1], parts[2]
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start := time.Now()
	portforward.ServePortForward(w, r, forwarder{k, namespace}, pod, "", opts, time.Minute, 30*time.Second, portforward.SupportedProtocols)
	took := time.Since(start)
	k.mu.Lock()
	k.slowest = max(k.slowest, took)
	k.mu.Unlock()
}

// forwarder connects a stream to the backend of a pod port.
type forwarder struct {
	k         *Kubelet
	namespace string
}

// PortForward implements portforward.PortForwarder.
func (f forwarder) PortForward(ctx context.Context, pod, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	f.k.mu.Lock()
	addr, ok := f.k.backends[fmt.Sprintf("%s/%s:%d", f.namespace, pod, port)]
	f.k.forwards++
	f.k.mu.Unlock()
	if !ok {
		return fmt.Errorf("pod %s/%s has nothing listening on port %d", f.namespace, pod, port)
	}
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// RegisterNode creates (or updates) a Node whose kubelet is k: InternalIP 127.0.0.1 and the
// stand-in's port as its kubelet endpoint.
func (cp *ControlPlane) RegisterNode(ctx context.Context, name string, k *Kubelet) error {
	client, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return err
	}
	node, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(k.Port())
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	_, err = client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// RunningPod creates a pod on node with the given containers and labels and marks it Running
// with ip: without a kubelet nothing else would.
func (cp *ControlPlane) RunningPod(ctx context.Context, namespace, name, node, serviceAccount, ip string, containers []string,
	labels, annotations map[string]string) error {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: serviceAccount}}
	for i, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c,
			Ports: []corev1.ContainerPort{{Name: "p" + strconv.Itoa(i), ContainerPort: int32(8000 + i)}}})
	}
	return cp.RunPod(ctx, pod, ip)
}

// RunPod creates pod (its namespace too, and an image for each container that names none) and
// marks it Running with ip, as a kubelet would.
func (cp *ControlPlane) RunPod(ctx context.Context, pod *corev1.Pod, ip string) error {
	client, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return err
	}
	if err := EnsureNamespace(ctx, client, pod.Namespace); err != nil {
		return err
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Image == "" {
				cs[i].Image = "registry.invalid/" + cs[i].Name
			}
		}
	}
	pod, err = client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	_, err = client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return err
}
