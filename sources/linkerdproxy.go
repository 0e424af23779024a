package sources

import (
	"bytes"
	"errors"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// LinkerdMetricsPath is the path of a Linkerd proxy's metrics on its admin port.
const LinkerdMetricsPath = "/metrics"

// linkerdExpiryMetrics are the names a Linkerd proxy's identity certificate expiry has had,
// newest first: control_identity_... since the rename of April 2024, identity_... before it.
var linkerdExpiryMetrics = []string{
	"control_identity_cert_expiration_timestamp_seconds",
	"identity_cert_expiration_timestamp_seconds",
}

var errNoLinkerdExpiry = errors.New("no identity certificate expiry metric")

// ParseLinkerdProxyMetrics reads the expiry of a Linkerd proxy's identity certificate from its
// metrics, under any of the names it has had. The proxy shows no certificate, so the result is a
// partial fact: an expiry, no chain, no identity.
func ParseLinkerdProxyMetrics(body []byte, origin string) ([]model.Bundle, error) {
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, name := range linkerdExpiryMetrics {
		f := families[name]
		if f == nil || len(f.GetMetric()) == 0 {
			continue
		}
		seconds := metricValue(f.GetMetric()[0])
		if seconds <= 0 {
			continue // identity not yet loaded
		}
		notAfter := time.Unix(0, 0).Add(time.Duration(seconds * float64(time.Second))).UTC()
		c := pki.NewPartialCertificate(pki.PartialFacts{NotAfter: notAfter, Origin: origin})
		return []model.Bundle{{Key: "identity", Certificates: []*model.Certificate{c}, NoIdentity: true}}, nil
	}
	return nil, errNoLinkerdExpiry
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
