package sources

import (
	"bytes"
	"errors"
	"fmt"
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

// errIdentityNotLoaded is a proxy whose expiry metric is there but zero: its identity is not
// loaded yet.
var errIdentityNotLoaded = errors.New("the proxy's identity certificate is not loaded yet")

// ParseLinkerdProxyMetrics reads the expiry of a Linkerd proxy's identity certificate from its
// metrics, under any of the names it has had. The proxy shows no certificate, so the result is a
// partial fact: an expiry, no chain, no identity.
func ParseLinkerdProxyMetrics(body []byte, origin string) ([]model.Bundle, error) {
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	known := false
	for _, name := range linkerdExpiryMetrics {
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
		return nil, fmt.Errorf("%w: no identity certificate expiry metric", ErrUnknownShape)
	}
	return nil, errIdentityNotLoaded
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
