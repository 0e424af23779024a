// Package collector turns a snapshot of the mesh PKI into Prometheus metrics. It is a pure
// translation: every metric is a const metric built from the snapshot at scrape time, so a
// certificate that disappears loses its series at once and an expired one keeps its series.
package collector

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

const namespace = "meshcert"

// SnapshotProvider gives the current analysed state of the mesh PKI.
type SnapshotProvider interface {
	Snapshot() *model.Snapshot
}

// locationLabels identify one certificate; together they are unique in a snapshot.
var locationLabels = []string{"mesh", "role", "source", "namespace", "name", "key", "index"}

func desc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, append(append([]string{}, locationLabels...), extra...), nil)
}

// Families are the names of the metric families the collector exports, for the dashboards' and
// the docs' checks. The exporter also exports meshcert_exporter_build_info and the go_ and
// process_ families.
var Families = []string{
	"meshcert_certificate_not_after_timestamp_seconds", "meshcert_certificate_not_before_timestamp_seconds",
	"meshcert_certificate_info", "meshcert_chain_depth", "meshcert_chain_valid", "meshcert_chain_not_after_timestamp_seconds",
	"meshcert_chain_info", "meshcert_san_valid", "meshcert_san_info", "meshcert_bundle_error", "meshcert_trust_bundle_current",
	"meshcert_root_key_in_cluster", "meshcert_proxy_up", "meshcert_proxy_last_success_timestamp_seconds",
	"meshcert_source_up", "meshcert_source_last_success_timestamp_seconds", "meshcert_source_errors_total",
}

var (
	notAfterDesc = desc("certificate_not_after_timestamp_seconds",
		"End of the certificate's validity window (NotAfter), as a Unix timestamp.")
	notBeforeDesc = desc("certificate_not_before_timestamp_seconds",
		"Start of the certificate's validity window (NotBefore), as a Unix timestamp.")
	infoDesc = desc("certificate_info",
		"Descriptive facts of a certificate; always 1.",
		"subject", "issuer", "serial", "spiffe_id", "key_algorithm")
	chainDepthDesc = desc("chain_depth",
		"Certificates in the chain from this certificate to its trust anchor, both included; for a chain that does not verify, the longest path that could be built.")
	chainValidDesc = desc("chain_valid",
		"1 when the certificate verifies now up to a current trust anchor of its mesh (signatures, validity windows, CA constraints), else 0.")
	chainNotAfterDesc = desc("chain_not_after_timestamp_seconds",
		"Earliest NotAfter along the certificate's chain, as a Unix timestamp: when the chain stops verifying.")
	chainInfoDesc = desc("chain_info",
		"Why the chain does not verify (reason is empty when it does) and the serial of the trust anchor it ends at; always 1.",
		"reason", "anchor_serial")
	sanValidDesc = desc("san_valid",
		"1 when the certificate carries exactly the mesh identity expected of it (SPIFFE ID or Linkerd identity, trust domain, namespace, service account), else 0.")
	sanInfoDesc = desc("san_info",
		"Why the certificate's mesh identity is not valid (reason is empty when it is); always 1.",
		"reason")
	bundleErrorDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "bundle", "error"),
		"1 for each key of an object that could not be read completely, with the reason; the readable certificates in it are still exported.",
		[]string{"source", "namespace", "name", "key", "reason"}, nil)
	trustBundleCurrentDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "trust_bundle", "current"),
		"1 when a copy of the mesh's trust anchors handed to workloads (a namespace's root ConfigMap, a proxy's root bundle, an issuer's ca.crt) holds exactly the mesh's current trust anchors, else 0. Absent when the current anchors are unknown.",
		[]string{"mesh", "source", "namespace", "name", "key"}, nil)
	rootKeyDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "root_key", "in_cluster"),
		"1 when a watched Secret holds the private key of a self-signed trust anchor (the key itself is never read), else 0.",
		[]string{"mesh", "source", "namespace", "name"}, nil)
	proxyUpDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "proxy", "up"),
		"1 when the last read of a proxy's admin endpoint worked, else 0. Proxies are read in the background on an interval; the certificates of a proxy that cannot be read are those of its last successful read.",
		[]string{"mesh", "source", "namespace", "name", "endpoint"}, nil)
	proxyLastSuccessDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "proxy", "last_success_timestamp_seconds"),
		"When the proxy was last read successfully, as a Unix timestamp: the age of its certificate series.",
		[]string{"mesh", "source", "namespace", "name"}, nil)
	sourceUpDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "source", "up"),
		"1 when the source's last attempt to read its material worked, else 0.",
		[]string{"source"}, nil)
	sourceLastSuccessDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "source", "last_success_timestamp_seconds"),
		"When the source's data was last known current, as a Unix timestamp: its last successful read, or for a Kubernetes watch the last moment it was healthy. It stops moving during an outage, while the last data is still served.",
		[]string{"source"}, nil)
	sourceErrorsDesc = prometheus.NewDesc(prometheus.BuildFQName(namespace, "source", "errors_total"),
		"Read errors of a source by reason. A broken object counts once each time it starts failing; a failing source counts each attempt.",
		[]string{"source", "reason"}, nil)
)

// Collector is a prometheus.Collector over a SnapshotProvider.
type Collector struct {
	provider SnapshotProvider
	now      func() time.Time
	parts    parts
}

// parts selects the families a Collector exports.
type parts int

const (
	partAnalysis parts = 1 << iota // the families derived from the analysis: change with it or with time
	partStatus                     // source and proxy health: change on every read
	partAll      = partAnalysis | partStatus
)

var _ prometheus.Collector = (*Collector)(nil)

// New returns a collector of p's snapshots, evaluated at the current time.
func New(p SnapshotProvider) *Collector {
	return &Collector{provider: p, now: time.Now, parts: partAll}
}

// NewAt returns a collector that evaluates time-dependent checks at the instant now returns; for
// tests and golden files.
func NewAt(p SnapshotProvider, now func() time.Time) *Collector {
	return &Collector{provider: p, now: now, parts: partAll}
}

// NewStatus returns a collector of the health families only (sources and proxies), which the
// Handler renders on every scrape next to its cached analysis families.
func NewStatus(p SnapshotProvider) *Collector {
	return &Collector{provider: p, now: time.Now, parts: partStatus}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	if c.parts&partAnalysis != 0 {
		for _, d := range []*prometheus.Desc{notAfterDesc, notBeforeDesc, infoDesc, chainDepthDesc, chainValidDesc,
			chainNotAfterDesc, chainInfoDesc, sanValidDesc, sanInfoDesc, bundleErrorDesc, trustBundleCurrentDesc, rootKeyDesc} {
			ch <- d
		}
	}
	if c.parts&partStatus != 0 {
		for _, d := range []*prometheus.Desc{proxyUpDesc, proxyLastSuccessDesc, sourceUpDesc, sourceLastSuccessDesc, sourceErrorsDesc} {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.provider.Snapshot()
	if c.parts&partAnalysis != 0 {
		collectAnalysis(ch, &snap.Analysis, c.now())
	}
	if c.parts&partStatus != 0 {
		collectStatus(ch, snap)
	}
}

func collectAnalysis(ch chan<- prometheus.Metric, snap *model.Analysis, now time.Time) {
	for i := range snap.Certificates {
		collectCertificate(ch, &snap.Certificates[i], now)
	}
	for _, e := range snap.BundleErrors {
		ch <- prometheus.MustNewConstMetric(bundleErrorDesc, prometheus.GaugeValue, 1,
			e.Source, labelValue(e.Namespace), labelValue(e.Name), labelValue(e.Key), string(e.Reason))
	}
	for _, b := range snap.TrustBundles {
		ch <- prometheus.MustNewConstMetric(trustBundleCurrentDesc, prometheus.GaugeValue, boolValue(b.Current),
			string(b.Mesh), b.Source, labelValue(b.Namespace), labelValue(b.Name), labelValue(b.Key))
	}
	for _, k := range snap.RootKeys {
		ch <- prometheus.MustNewConstMetric(rootKeyDesc, prometheus.GaugeValue, boolValue(k.Stored),
			string(k.Mesh), k.Source, labelValue(k.Namespace), labelValue(k.Name))
	}
}

func collectStatus(ch chan<- prometheus.Metric, snap *model.Snapshot) {
	for _, p := range snap.Proxies {
		ch <- prometheus.MustNewConstMetric(proxyUpDesc, prometheus.GaugeValue, boolValue(p.Up),
			string(p.Mesh), p.Source, labelValue(p.Namespace), labelValue(p.Name), p.Endpoint)
		if !p.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(proxyLastSuccessDesc, prometheus.GaugeValue, unixSeconds(p.LastSuccess),
				string(p.Mesh), p.Source, labelValue(p.Namespace), labelValue(p.Name))
		}
	}
	for _, s := range snap.Sources {
		ch <- prometheus.MustNewConstMetric(sourceUpDesc, prometheus.GaugeValue, boolValue(s.Up), s.Name)
		if !s.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(sourceLastSuccessDesc, prometheus.GaugeValue, unixSeconds(s.LastSuccess), s.Name)
		}
		for reason, n := range s.Errors {
			ch <- prometheus.MustNewConstMetric(sourceErrorsDesc, prometheus.CounterValue, float64(n), s.Name, string(reason))
		}
	}
}

func collectCertificate(ch chan<- prometheus.Metric, o *model.CertificateObservation, now time.Time) {
	c := o.Certificate
	loc := []string{string(o.Mesh), string(o.Role), o.Source, labelValue(o.Namespace), labelValue(o.Name), labelValue(o.Key), strconv.Itoa(o.Index)}
	ch <- prometheus.MustNewConstMetric(notAfterDesc, prometheus.GaugeValue, unixSeconds(c.NotAfter()), loc...)
	if !c.NotBefore().IsZero() { // a proxy's expiry metric gives no start
		ch <- prometheus.MustNewConstMetric(notBeforeDesc, prometheus.GaugeValue, unixSeconds(c.NotBefore()), loc...)
	}
	ch <- prometheus.MustNewConstMetric(infoDesc, prometheus.GaugeValue, 1, append(loc,
		labelValue(c.X509.Subject.String()), labelValue(c.X509.Issuer.String()), labelValue(c.Serial),
		labelValue(strings.Join(c.SPIFFEIDs, ",")), c.KeyAlgorithm)...)
	if o.Chain != nil {
		st := o.Chain.Evaluate(now)
		anchor := ""
		if st.Anchor != nil {
			anchor = st.Anchor.Serial
		}
		ch <- prometheus.MustNewConstMetric(chainDepthDesc, prometheus.GaugeValue, float64(st.Depth), loc...)
		ch <- prometheus.MustNewConstMetric(chainValidDesc, prometheus.GaugeValue, boolValue(st.Valid), loc...)
		ch <- prometheus.MustNewConstMetric(chainNotAfterDesc, prometheus.GaugeValue, unixSeconds(st.NotAfter), loc...)
		ch <- prometheus.MustNewConstMetric(chainInfoDesc, prometheus.GaugeValue, 1, append(loc, string(st.Reason), labelValue(anchor))...)
	}
	if o.Identity != nil {
		ch <- prometheus.MustNewConstMetric(sanValidDesc, prometheus.GaugeValue, boolValue(o.Identity.Valid), loc...)
		ch <- prometheus.MustNewConstMetric(sanInfoDesc, prometheus.GaugeValue, 1, append(loc, string(o.Identity.Reason))...)
	}
}

// maxLabelValueLength bounds free-text label values (subjects, names): a hostile certificate must
// not blow up the exposition.
const maxLabelValueLength = 256

// labelValue makes s a safe label value: valid UTF-8 (client_golang rejects anything else, and one
// bad value would fail the whole scrape) and at most maxLabelValueLength bytes.
func labelValue(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > maxLabelValueLength {
		cut := maxLabelValueLength
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// unixSeconds converts t without UnixNano, which overflows for the year 9999 NotAfter that some
// CAs use.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
