package chart

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestProbesFollowTheWebConfig: the probes stay right when the web configuration changes what the
// endpoints ask: HTTPS with TLS, the socket where basic auth (or a configuration the chart cannot
// see) would answer 401, and the web configuration's Secret is the one named.
func TestProbesFollowTheWebConfig(t *testing.T) {
	tests := []struct {
		name, values string
		scheme       corev1.URIScheme // "" for a socket probe
		secret       string
	}{
		{"plain HTTP", "mode: deployment\n", corev1.URISchemeHTTP, ""},
		{"TLS", "webConfig:\n  tls_server_config: {cert_file: /etc/tls/tls.crt, key_file: /etc/tls/tls.key}\n", corev1.URISchemeHTTPS, "meshcert-meshcert-exporter-web"},
		{"basic auth", "webConfig:\n  basic_auth_users: {prometheus: x}\n", "", "meshcert-meshcert-exporter-web"},
		{"an existing Secret", "webConfigSecret: my-web-config\n", "", "my-web-config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(tt.values), 0o600); err != nil {
				t.Fatal(err)
			}
			objs := render(t, []string{file})
			c := renderedContainer(t, objs)
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				switch {
				case p == nil:
					t.Fatal("no probe")
				case tt.scheme == "" && p.TCPSocket == nil:
					t.Errorf("probe %+v, want the socket", p.ProbeHandler)
				case tt.scheme != "" && (p.HTTPGet == nil || p.HTTPGet.Scheme != tt.scheme):
					t.Errorf("probe %+v, want HTTP GET over %s", p.ProbeHandler, tt.scheme)
				}
			}
			var rendered []string
			for _, o := range objs {
				if o.GetKind() == "Secret" {
					rendered = append(rendered, o.GetName())
				}
			}
			if tt.name == "an existing Secret" && len(rendered) != 0 {
				t.Errorf("the chart renders a web config Secret %v besides the existing one", rendered)
			}
			var mounted string
			for _, o := range objs {
				if o.GetKind() != "Deployment" {
					continue
				}
				vols, _, _ := unstructuredVolumes(o)
				for _, v := range vols {
					if v.Name == "web" && v.Secret != nil {
						mounted = v.Secret.SecretName
					}
				}
			}
			if mounted != tt.secret {
				t.Errorf("web config Secret mounted %q, want %q", mounted, tt.secret)
			}
		})
	}
}
