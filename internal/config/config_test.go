package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, err string
	}{
		{"unknown top-level key", "meshes: {}\nsourcez: []\n", "sourcez (line 2): unknown key"},
		{"unknown nested key", "files:\n  interval: 30s\n  target: []\n", "files.target (line 3): unknown key"},
		{"unknown mesh", "files:\n  targets:\n    - path: /etc/cacerts\n      mesh: consul\n", `files.targets[0].mesh: unknown mesh "consul" (want istio, linkerd or empty)`},
		{"empty path", "files:\n  targets:\n    - path: /a\n    - mesh: istio\n", "files.targets[1].path: must not be empty"},
		{"short interval", "files:\n  interval: 10ms\n", "files.interval: 10ms is shorter than 1s"},
		{"bad duration", "files:\n  interval: soon\n", `files.interval (line 2): want a duration (30s, 5m, 1h), got "soon"`},
		{"bad trust domain", "meshes:\n  istio:\n    trust_domain: Cluster.Local\n", `meshes.istio.trust_domain: "Cluster.Local" is not a valid trust domain`},
		{"bad alias", "meshes:\n  linkerd:\n    trust_domain_aliases: [ok.example, \"a/b\"]\n", `meshes.linkerd.trust_domain_aliases[1]: "a/b" is not a valid trust domain`},
		{"empty namespace", "meshes:\n  linkerd:\n    namespace: \"\"\n", "meshes.linkerd.namespace: must not be empty"},
		{"bad label selector", "kubernetes:\n  secrets:\n    - label_selector: \"a b\"\n", "kubernetes.secrets[0].label_selector: unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"},
		{"type on a config map", "kubernetes:\n  config_maps:\n    - type: kubernetes.io/tls\n", "kubernetes.config_maps[0].type: only Secrets have a type"},
		{"bad key pattern", "kubernetes:\n  secrets:\n    - keys: [\"[\"]\n", `kubernetes.secrets[0].keys[0]: "[" is not a valid pattern`},
		{"trust anchors without mesh", "kubernetes:\n  secrets:\n    - name: istio-root-ca\n      trust_anchors: true\n", "kubernetes.secrets[0].trust_anchors: needs a mesh"},
		{"empty resource name", "meshes:\n  linkerd:\n    issuer_secret: \"\"\n", "meshes.linkerd.issuer_secret: must not be empty"},
		{"unknown mesh key", "meshes:\n  istio:\n    ca_secrets: x\n", "meshes.istio.ca_secrets (line 3): unknown key"},
		{"unknown mesh section", "meshes:\n  consul:\n    watch: true\n", "meshes.consul: unknown mesh (want one of istio, linkerd)"},
		{"unknown proxy kind", "proxies:\n  kuma:\n    enabled: true\n", "proxies.kuma: unknown setting or proxy kind (want one of shard, total_shards, node_name, envoy, ztunnel, linkerd)"},
		{"bad transport", "proxies:\n  envoy:\n    transport: ssh\n", `proxies.envoy.transport: "ssh" is not port-forward or direct`},
		{"timeout over interval", "proxies:\n  linkerd:\n    interval: 10s\n    timeout: 1m\n", "proxies.linkerd.timeout: 1m0s is not between 0 and the interval"},
		{"bad static url", "proxies:\n  envoy:\n    static:\n      - name: edge\n        url: 10.0.0.1:9901\n", `proxies.envoy.static[0].url: "10.0.0.1:9901" is not an http(s) URL`},
		{"static ztunnel", "proxies:\n  ztunnel:\n    static:\n      - name: x\n        url: http://a\n", "proxies.ztunnel.static: ztunnel has no static targets (only a kind read outside Kubernetes has)"},
		{"shard out of range", "proxies:\n  shard: 3\n  total_shards: 3\n", "proxies.shard: 3 is not in [0, total_shards=3)"},
		{"short posture retry", "posture:\n  retry_interval: 10ms\n", "posture.retry_interval: 10ms is shorter than 100ms"},
		{"zero concurrency", "proxies:\n  envoy:\n    concurrency: 0\n", "proxies.envoy.concurrency: 0 is less than 1"},
		{"a list for a string", "meshes:\n  istio:\n    trust_domain: [1]\n", "meshes.istio.trust_domain (line 3): want a string, got a list"},
		{"a typo in a list item", "files:\n  targets:\n    - path: /a\n    - pat: /b\n", "files.targets[1].pat (line 4): unknown key"},
		{"a word for a number", "proxies:\n  envoy:\n    concurrency: many\n", `proxies.envoy.concurrency (line 3): want a whole number, got "many"`},
		{"two mistakes", "files:\n  interval: soon\nposture:\n  enabled: maybe\n", `files.interval (line 2): want a duration (30s, 5m, 1h), got "soon"; posture.enabled (line 4): want true or false, got "maybe"`},
		{"not a mapping", "- a\n", "the document (line 1): want a mapping, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || err.Error() != tt.err {
				t.Errorf("Parse() error = %v\nwant %s", err, tt.err)
			}
		})
	}
}

func TestParseDefaultsAndOverrides(t *testing.T) {
	c, err := Parse([]byte("meshes:\n  istio:\n    trust_domain: prod.example\n    trust_domain_aliases: [old.example]\nfiles:\n  targets:\n    - path: /etc/cacerts\n      mesh: istio\n"))
	if err != nil {
		t.Fatal(err)
	}
	is, ld := c.Meshes.Get(istio.Name).(*istio.Mesh), c.Meshes.Get(linkerd.Name).(*linkerd.Mesh)
	if is.Namespace != "istio-system" || is.TrustDomain != "prod.example" ||
		ld.TrustDomain != "cluster.local" || c.Files.Interval != 15*time.Second {
		t.Errorf("defaults not kept under overrides: %+v", c)
	}
	s := c.MeshSettings()["istio"]
	if len(s.TrustDomains()) != 2 || s.ControlPlaneNamespace != "istio-system" {
		t.Errorf("mesh settings = %+v", s)
	}
	empty, err := Parse(nil)
	if err != nil || empty.Meshes.Get(linkerd.Name).(*linkerd.Mesh).Namespace != "linkerd" {
		t.Errorf("empty config: %+v, %v", empty, err)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(path, []byte("bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := "config " + path + ": bogus (line 1): unknown key"
	if err == nil || err.Error() != want {
		t.Errorf("Load() = %v, want %s", err, want)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := Load("../../examples/meshcert.yaml"); err != nil {
		t.Error(err)
	}
}
