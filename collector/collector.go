// Package collector turns a snapshot of the mesh PKI into Prometheus metrics. It is a pure
// translation of the current snapshot: a certificate that disappears loses its series at once and an
// expired one keeps its series. The families are values (Families): those derived from the
// analysis and the proxies' health are written as text by their own functions and kept compressed
// by the Handler; the sources' health families are const metrics gathered on every scrape.
package collector

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// SnapshotProvider gives the current analysed state of the mesh PKI.
type SnapshotProvider interface {
	Snapshot() *model.Snapshot
}

// sourcesCollector is a prometheus.Collector of the sources' health in one snapshot. The Handler
// gathers one per scrape, from the snapshot the scrape serves, so a scrape asks for the state of
// the sources once.
type sourcesCollector struct {
	sourceDescs
	snap *model.Snapshot
}

// sourceDescs describe the sources' health families; a Handler builds them once.
type sourceDescs struct {
	up, lastSuccess, errors, interval *prometheus.Desc
}

func newSourceDescs() sourceDescs {
	f := sourceFamilies()
	desc := func(f Family) *prometheus.Desc { return prometheus.NewDesc(f.Name, f.Help, f.Labels, nil) }
	return sourceDescs{up: desc(f[0]), lastSuccess: desc(f[1]), errors: desc(f[2]), interval: desc(f[3])}
}

// Describe implements prometheus.Collector.
func (c sourcesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.lastSuccess
	ch <- c.errors
	ch <- c.interval
}

// Collect implements prometheus.Collector.
func (c sourcesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.snap.Sources {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, boolValue(s.Up), s.Name)
		if !s.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, unixSeconds(s.LastSuccess), s.Name)
		}
		for reason, n := range s.Errors {
			ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(n), s.Name, string(reason))
		}
		if s.ReadInterval > 0 {
			ch <- prometheus.MustNewConstMetric(c.interval, prometheus.GaugeValue, s.ReadInterval.Seconds(), s.Name)
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

// postureCollector is a prometheus.Collector of the meshes' posture in one snapshot.
type postureCollector struct {
	postureDescs
	snap *model.Snapshot
}

// postureDescs describe the posture families; a Handler builds them once.
type postureDescs struct {
	mode, overrides, namespaceMode, defaultDeny, namespacePods, bypass *prometheus.Desc
}

func newPostureDescs() postureDescs {
	f := postureFamilies()
	desc := func(f Family) *prometheus.Desc { return prometheus.NewDesc(f.Name, f.Help, f.Labels, nil) }
	return postureDescs{mode: desc(f[0]), overrides: desc(f[1]), namespaceMode: desc(f[2]), defaultDeny: desc(f[3]),
		namespacePods: desc(f[4]), bypass: desc(f[5])}
}

// Describe implements prometheus.Collector.
func (c postureCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.mode
	ch <- c.overrides
	ch <- c.namespaceMode
	ch <- c.defaultDeny
	ch <- c.namespacePods
	ch <- c.bypass
}

// Collect implements prometheus.Collector.
func (c postureCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.snap.Posture.Policies {
		mesh, ns, name := string(p.Mesh), labelValue(p.Namespace), labelValue(p.Name)
		ch <- prometheus.MustNewConstMetric(c.mode, prometheus.GaugeValue, 1, mesh, ns, name, p.Scope, labelValue(p.Mode))
		ch <- prometheus.MustNewConstMetric(c.overrides, prometheus.GaugeValue, float64(p.PortOverrides), mesh, ns, name)
	}
	for _, n := range c.snap.Posture.Namespaces {
		mesh, ns := string(n.Mesh), labelValue(n.Namespace)
		ch <- prometheus.MustNewConstMetric(c.namespaceMode, prometheus.GaugeValue, 1, mesh, ns, labelValue(n.Mode))
		ch <- prometheus.MustNewConstMetric(c.defaultDeny, prometheus.GaugeValue, boolValue(n.DefaultDeny), mesh, ns)
	}
	share := labelValue(c.snap.Share)
	for _, n := range c.snap.Posture.Pods {
		mesh, ns := string(n.Mesh), labelValue(n.Namespace)
		ch <- prometheus.MustNewConstMetric(c.namespacePods, prometheus.GaugeValue, float64(n.Meshed), mesh, ns, model.PodStateMeshed, share)
		ch <- prometheus.MustNewConstMetric(c.namespacePods, prometheus.GaugeValue, float64(n.Unmeshed), mesh, ns, model.PodStateUnmeshed, share)
		ch <- prometheus.MustNewConstMetric(c.namespacePods, prometheus.GaugeValue, float64(n.HostNetwork), mesh, ns, model.PodStateHostNetwork, share)
	}
	for _, b := range c.snap.Posture.Bypass {
		ch <- prometheus.MustNewConstMetric(c.bypass, prometheus.GaugeValue, 1, string(b.Mesh), labelValue(b.Namespace), labelValue(b.Name), b.Reason)
	}
}

// rotationCollector is a prometheus.Collector of the blast radius of the meshes' CAs in one
// snapshot. CAs of one mesh that share a serial (two CAs that numbered their certificates alike)
// add up in one series.
type rotationCollector struct {
	rotationDescs
	snap *model.Snapshot
}

// rotationDescs describe the rotation families; a Handler builds them once.
type rotationDescs struct {
	anchorDependents, anchorBundles, bundles, signing, retired, canSign, issuerDependents *prometheus.Desc
}

func newRotationDescs() rotationDescs {
	f := rotationFamilies()
	desc := func(f Family) *prometheus.Desc { return prometheus.NewDesc(f.Name, f.Help, f.Labels, nil) }
	return rotationDescs{anchorDependents: desc(f[0]), anchorBundles: desc(f[1]), bundles: desc(f[2]), signing: desc(f[3]), retired: desc(f[4]),
		canSign: desc(f[5]), issuerDependents: desc(f[6])}
}

// Describe implements prometheus.Collector.
func (c rotationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.anchorDependents
	ch <- c.anchorBundles
	ch <- c.bundles
	ch <- c.signing
	ch <- c.retired
	ch <- c.canSign
	ch <- c.issuerDependents
}

// Collect implements prometheus.Collector. Each count is two series: partition="shared", what
// every replica reads alike, and partition=<the snapshot's share>, what this replica read from its
// share of the pods; the sum over partitions of their maximum over replicas is the mesh's count.
func (c rotationCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct {
		mesh   model.Mesh
		serial string
	}
	r := c.snap.Rotation
	share := labelValue(c.snap.Share)
	// Each count in two parts: [0] shared, [1] from this replica's pods.
	dependents, bundles := map[key]*[2]int{}, map[key]*[2]int{}
	signing, retired := map[key]bool{}, map[key]bool{}
	var anchors []key
	add := func(m map[key]*[2]int, k key, total, pods int) {
		if m[k] == nil {
			m[k] = new([2]int)
		}
		m[k][0] += total - pods
		m[k][1] += pods
	}
	emit := func(d *prometheus.Desc, parts *[2]int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(parts[0]), append(labels, PartitionShared)...)
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(parts[1]), append(labels, share)...)
	}
	for _, a := range r.Anchors {
		k := key{a.Mesh, a.Anchor.Serial}
		if dependents[k] == nil {
			anchors = append(anchors, k)
		}
		add(dependents, k, a.Dependents, a.PodDependents)
		add(bundles, k, a.Bundles, a.PodBundles)
		signing[k] = signing[k] || a.Signing
		retired[k] = retired[k] || a.Retired
	}
	for _, k := range anchors {
		mesh, serial := string(k.mesh), labelValue(k.serial)
		emit(c.anchorDependents, dependents[k], mesh, serial)
		emit(c.anchorBundles, bundles[k], mesh, serial)
		ch <- prometheus.MustNewConstMetric(c.signing, prometheus.GaugeValue, boolValue(signing[k]), mesh, serial)
		ch <- prometheus.MustNewConstMetric(c.retired, prometheus.GaugeValue, boolValue(retired[k] && !signing[k]), mesh, serial)
	}
	for _, b := range r.Bundles {
		emit(c.bundles, &[2]int{b.Copies - b.PodCopies, b.PodCopies}, string(b.Mesh))
	}
	for _, s := range r.Signing {
		ch <- prometheus.MustNewConstMetric(c.canSign, prometheus.GaugeValue, boolValue(s.CanSign), string(s.Mesh), string(s.Reason))
	}
	signed := map[key]*[2]int{}
	var issuers []key
	for _, i := range r.Issuers {
		k := key{i.Mesh, i.Issuer.Serial}
		if signed[k] == nil {
			issuers = append(issuers, k)
		}
		add(signed, k, i.Dependents, i.PodDependents)
	}
	for _, k := range issuers {
		emit(c.issuerDependents, signed[k], string(k.mesh), labelValue(k.serial))
	}
}
