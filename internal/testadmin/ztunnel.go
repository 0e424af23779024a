package testadmin

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// ZtunnelSpelling is how a ztunnel release spells the fields of a certificate in its config dump.
type ZtunnelSpelling bool

// The spellings: camelCase since 1.22, snake_case up to 1.21.
const (
	ZtunnelCamel ZtunnelSpelling = false
	ZtunnelSnake ZtunnelSpelling = true
)

// ZtunnelCerts renders certificates of ztunnel's config dump: the base64 PEM, the decimal serial
// and the validity, in spelling s.
func ZtunnelCerts(s ZtunnelSpelling, certs ...*testpki.Cert) []map[string]any {
	var out []map[string]any
	for _, c := range certs {
		serial, from, until := "serialNumber", "validFrom", "expirationTime"
		if s == ZtunnelSnake {
			serial, from, until = "serial_number", "valid_from", "expiration_time"
		}
		out = append(out, map[string]any{"pem": base64.StdEncoding.EncodeToString(c.PEM()), serial: c.X509.SerialNumber.String(),
			from: c.X509.NotBefore.Format(time.RFC3339), until: c.X509.NotAfter.Format(time.RFC3339)})
	}
	return out
}

// ZtunnelIdentity is one available workload identity in the current shape: its chain (leaf first)
// and its roots.
func ZtunnelIdentity(id string, chain []*testpki.Cert, roots ...*testpki.Cert) map[string]any {
	return map[string]any{"identity": id, "state": "Available", "certChain": ZtunnelCerts(ZtunnelCamel, chain...),
		"rootCerts": ZtunnelCerts(ZtunnelCamel, roots...)}
}

// ZtunnelDump renders ztunnel's /config_dump with the given identities, next to the workloads
// section a real dump holds.
func ZtunnelDump(identities ...map[string]any) []byte {
	body, err := json.Marshal(map[string]any{"certificates": identities, "workloads": map[string]any{}})
	if err != nil {
		panic(err)
	}
	return body
}
