package config

import (
	"os"
	"testing"
)

// FuzzParse: any file is a valid configuration or an error; a valid one validates.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../../examples/meshcert.yaml"); err == nil {
		f.Add(example)
	}
	f.Add([]byte("meshes:\n  istio:\n    trust_domain: prod.example\nfiles:\n  targets:\n    - path: /etc/cacerts\n      mesh: istio\n"))
	f.Add([]byte("proxies:\n  envoy:\n    enabled: true\n    static:\n      - {name: a, url: http://x}\n"))
	f.Add([]byte("kubernetes:\n  secrets:\n    - label_selector: a=b\n      keys: ['*.pem']\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a parsed configuration does not validate: %v", err)
		}
	})
}
