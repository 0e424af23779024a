// Package collector turns a snapshot of the mesh PKI into Prometheus metrics. It is a pure
// translation of the current snapshot: a certificate that disappears loses its series at once and an
// expired one keeps its series. The families derived from the analysis and the proxies' health are
// written as text and kept compressed by the Handler (RenderAnalysis and RenderProxies write the
// same series in one piece); the sources' health families are const metrics gathered on every
// scrape.
package collector

import (
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

var (
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

// Families are the names of the metric families the exporter exports from its snapshots, for the
// dashboards' and the docs' checks. It also exports meshcert_exporter_build_info and the go_ and
// process_ families.
var Families = func() []string {
	var out []string
	for _, f := range analysisFamilies {
		out = append(out, f.name)
	}
	return append(out, "meshcert_source_up", "meshcert_source_last_success_timestamp_seconds", "meshcert_source_errors_total")
}()

// sourcesCollector is a prometheus.Collector of the sources' health in one snapshot. The Handler
// gathers one per scrape, from the snapshot the scrape serves, so a scrape asks for the state of
// the sources once.
type sourcesCollector struct {
	snap *model.Snapshot
}

var _ prometheus.Collector = sourcesCollector{}

// SourceStatus returns a collector of the sources' health families (up, last success, errors) in
// snap.
func SourceStatus(snap *model.Snapshot) prometheus.Collector {
	return sourcesCollector{snap: snap}
}

// Describe implements prometheus.Collector.
func (c sourcesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sourceUpDesc, sourceLastSuccessDesc, sourceErrorsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c sourcesCollector) Collect(ch chan<- prometheus.Metric) {
	collectStatus(ch, c.snap)
}

func collectStatus(ch chan<- prometheus.Metric, snap *model.Snapshot) {
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
