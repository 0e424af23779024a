// Package testenv runs a real Kubernetes control plane (etcd and kube-apiserver) on 127.0.0.1 for
// integration tests. The binaries come from hack/build-testenv.sh, which builds them once into a
// cache directory; `make test` passes that directory in MESHCERT_TESTENV.
//
// Everything listens on loopback on free ports, and Stop ends every process it started. The API
// server can be stopped and started again on the same address, to test recovery.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// EnvVar names the directory that holds the kube-apiserver and etcd binaries.
const EnvVar = "MESHCERT_TESTENV"

// ErrNoBinaries means EnvVar is unset or its directory lacks the binaries.
var ErrNoBinaries = errors.New(EnvVar + " does not name a directory with kube-apiserver and etcd; run `make testenv` (or `make test`)")

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	dir, bin   string
	adminToken string
	caPEM      []byte
	apiPort    int
	apiArgs    []string

	mu        sync.Mutex
	etcd      *process
	apiserver *process
}

// process is a started command and a channel closed when it has exited.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts etcd and kube-apiserver and waits until the API server is ready.
func Start() (*ControlPlane, error) {
	bin := os.Getenv(EnvVar)
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, name)); bin == "" || err != nil {
			return nil, ErrNoBinaries
		}
	}
	dir, err := os.MkdirTemp("", "meshcert-testenv-")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{dir: dir, bin: bin, adminToken: "admin-" + randomHex()}
	if err := cp.start(); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) start() error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer := ports[0], ports[1]
	cp.apiPort = ports[2]

	// A CA, the API server's serving certificate, the service account key, and a token file with
	// one cluster-admin token.
	from := time.Now().Add(-time.Hour)
	ca := testpki.Issue(testpki.Spec{CommonName: "testenv CA", CA: true, NotBefore: from, NotAfter: from.AddDate(1, 0, 0)})
	serving := testpki.Issue(testpki.Spec{CommonName: "kube-apiserver", Issuer: ca, NotBefore: from, NotAfter: from.AddDate(1, 0, 0),
		DNSNames: []string{"localhost", "kubernetes.default.svc"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	sa := testpki.Issue(testpki.Spec{CommonName: "service-accounts", NotBefore: from, NotAfter: from.AddDate(1, 0, 0)})
	cp.caPEM = ca.PEM()
	files := map[string][]byte{
		"ca.crt":      cp.caPEM,
		"serving.crt": serving.PEM(),
		"serving.key": serving.KeyPEM(),
		"sa.key":      sa.KeyPEM(),
		"sa.pub":      sa.PublicKeyPEM(),
		"tokens.csv":  []byte(cp.adminToken + ",admin,admin,system:masters\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(cp.dir, name), data, 0o600); err != nil {
			return err
		}
	}

	cp.etcd, err = cp.startProcess("etcd.log", filepath.Join(cp.bin, "etcd"),
		"--name=testenv", "--data-dir="+filepath.Join(cp.dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdClient),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdClient),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-cluster=testenv=http://127.0.0.1:%d", etcdPeer),
		"--unsafe-no-fsync", "--log-level=error",
	)
	if err != nil {
		return err
	}
	if err := waitFor(fmt.Sprintf("http://127.0.0.1:%d/health", etcdClient), nil, "", 30*time.Second); err != nil {
		return fmt.Errorf("etcd: %w (see %s)", err, filepath.Join(cp.dir, "etcd.log"))
	}

	cp.apiArgs = []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdClient),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		fmt.Sprintf("--secure-port=%d", cp.apiPort),
		"--cert-dir=" + filepath.Join(cp.dir, "certs"),
		"--tls-cert-file=" + filepath.Join(cp.dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(cp.dir, "serving.key"),
		"--token-auth-file=" + filepath.Join(cp.dir, "tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(cp.dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(cp.dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--allow-privileged=true", // as every real cluster: a mesh's CNI agent is privileged
		"--disable-admission-plugins=ServiceAccount",
		"--watch-cache=true",
		"-v=0",
	}
	return cp.StartAPIServer()
}

// StartAPIServer starts the API server (again, after StopAPIServer) on the same address and waits
// until it is ready.
func (cp *ControlPlane) StartAPIServer() error {
	cp.mu.Lock()
	var err error
	cp.apiserver, err = cp.startProcess("kube-apiserver.log", filepath.Join(cp.bin, "kube-apiserver"), cp.apiArgs...)
	cp.mu.Unlock()
	if err != nil {
		return err
	}
	if err := waitFor(cp.URL()+"/readyz", cp.caPEM, cp.adminToken, 60*time.Second); err != nil {
		return fmt.Errorf("kube-apiserver: %w (see %s)", err, filepath.Join(cp.dir, "kube-apiserver.log"))
	}
	return nil
}

// StopAPIServer stops the API server and waits until it has exited.
func (cp *ControlPlane) StopAPIServer() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.apiserver.stop()
	cp.apiserver = nil
}

func (cp *ControlPlane) startProcess(logName, path string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(filepath.Join(cp.dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a stop reaches everything it started; killed with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// pid is p's process ID, 0 for none.
func (p *process) pid() int {
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// stop ends p: SIGTERM, then SIGKILL after 10 seconds.
func (p *process) stop() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Stop stops the API server and etcd and removes their data.
func (cp *ControlPlane) Stop() {
	cp.StopAPIServer()
	cp.mu.Lock()
	cp.etcd.stop()
	cp.etcd = nil
	cp.mu.Unlock()
	if os.Getenv("MESHCERT_TESTENV_KEEP") == "" {
		os.RemoveAll(cp.dir)
	}
}

// APIServerPID is the running API server's process ID, 0 while it is stopped.
func (cp *ControlPlane) APIServerPID() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.apiserver.pid()
}

// EtcdPID is etcd's process ID, 0 once stopped.
func (cp *ControlPlane) EtcdPID() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.etcd.pid()
}

// URL is the API server's address.
func (cp *ControlPlane) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort) }

// Port is the API server's port on 127.0.0.1.
func (cp *ControlPlane) Port() int { return cp.apiPort }

// CAPEM is the CA certificate that signed the API server's serving certificate: what a pod finds
// in its service account's ca.crt.
func (cp *ControlPlane) CAPEM() []byte { return cp.caPEM }

// AdminConfig returns a client configuration with cluster-admin rights and no client-side
// throttling worth the name.
func (cp *ControlPlane) AdminConfig() *rest.Config {
	return cp.TokenConfig(cp.adminToken)
}

// TokenConfig returns a client configuration that authenticates with token.
func (cp *ControlPlane) TokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            cp.URL(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.caPEM},
		QPS:             1000,
		Burst:           2000,
	}
}

// Kubeconfig writes a kubeconfig file for cfg and returns its path.
func (cp *ControlPlane) Kubeconfig(name string, cfg *rest.Config) (string, error) {
	path := filepath.Join(cp.dir, name+".kubeconfig")
	ca := filepath.Join(cp.dir, "ca.crt")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster: {server: %q, certificate-authority: %q}
users:
- name: %s
  user: {token: %q}
contexts:
- name: testenv
  context: {cluster: testenv, user: %s}
current-context: testenv
`, cfg.Host, ca, name, cfg.BearerToken, name)
	return path, os.WriteFile(path, []byte(data), 0o600)
}

// ServiceAccountConfig creates the namespace and the service account if needed and returns a
// configuration that authenticates as that service account (a token from the TokenRequest API).
func (cp *ControlPlane) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	client, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		return nil, err
	}
	if err := EnsureNamespace(ctx, client, namespace); err != nil {
		return nil, err
	}
	_, err = client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return nil, err
	}
	expiry := int64(24 * 3600)
	tr, err := client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return cp.TokenConfig(tr.Status.Token), nil
}

// EnsureNamespace creates a namespace unless it exists.
func EnsureNamespace(ctx context.Context, client kubernetes.Interface, name string) error {
	_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return err
	}
	return nil
}

func waitFor(url string, caPEM []byte, token string, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %w", timeout, last)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
