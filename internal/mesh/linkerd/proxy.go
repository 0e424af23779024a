package linkerd

import (
	"bytes"
	"fmt"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// MetricsPath is the path of a Linkerd proxy's metrics on its admin port.
const MetricsPath = "/metrics"

// expiryMetrics are the names a Linkerd proxy's identity certificate expiry has had,
// newest first: control_identity_... since the rename of April 2024, identity_... before it.
var expiryMetrics = []string{
	"control_identity_cert_expiration_timestamp_seconds",
	"identity_cert_expiration_timestamp_seconds",
}

// ParseProxyMetrics reads the expiry of a Linkerd proxy's identity certificate from its
// metrics, under any of the names it has had. The proxy shows no certificate, so the result is a
// partial fact: an expiry, no chain, no identity.
func ParseProxyMetrics(body []byte, origin string) ([]model.Bundle, error) {
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	known := false
	for _, name := range expiryMetrics {
		f := families[name]
		if f == nil || len(f.GetMetric()) == 0 {
			continue
		}
		known = true
		seconds := metricValue(f.GetMetric()[0])
		if seconds <= 0 {
			continue // identity not yet loaded
		}
		notAfter := time.Unix(0, 0).Add(time.Duration(seconds * float64(time.Second))).UTC()
		c := pki.NewPartialCertificate(pki.PartialFacts{NotAfter: notAfter, Origin: origin})
		return []model.Bundle{{Key: "identity", Certificates: []*model.Certificate{c}, NoIdentity: true}}, nil
	}
	if !known {
		// Metrics without any name the expiry has had: a proxy release this reader does not know.
		return nil, fmt.Errorf("%w: no identity certificate expiry metric", sources.ErrUnknownShape)
	}
	return nil, fmt.Errorf("%w: its identity certificate is not loaded yet", sources.ErrNotReady)
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	default:
		return 0
	}
}
