package collector

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// The analysis families, in the order they are written.
const (
	famNotAfter = iota
	famNotBefore
	famInfo
	famChainDepth
	famChainValid
	famChainNotAfter
	famChainInfo
	famSANValid
	famSANInfo
	famBundleError
	famTrustBundleCurrent
	famRootKey
	famProxyUp
	famProxyLastSuccess
	famCount
)

// famAnalysisCount counts the families that come from the analysis; the others come from the proxies.
const famAnalysisCount = famProxyUp

var analysisFamilies = [famCount]struct{ name, help string }{
	famNotAfter:      {"meshcert_certificate_not_after_timestamp_seconds", "End of the certificate's validity window (NotAfter), as a Unix timestamp."},
	famNotBefore:     {"meshcert_certificate_not_before_timestamp_seconds", "Start of the certificate's validity window (NotBefore), as a Unix timestamp."},
	famInfo:          {"meshcert_certificate_info", "Descriptive facts of a certificate; always 1."},
	famChainDepth:    {"meshcert_chain_depth", "Certificates in the chain from this certificate to its trust anchor, both included; for a chain that does not verify, the longest path that could be built."},
	famChainValid:    {"meshcert_chain_valid", "1 when the certificate verifies now up to a current trust anchor of its mesh (signatures, validity windows, CA constraints), else 0."},
	famChainNotAfter: {"meshcert_chain_not_after_timestamp_seconds", "Earliest NotAfter along the certificate's chain, as a Unix timestamp: when the chain stops verifying."},
	famChainInfo:     {"meshcert_chain_info", "Why the chain does not verify (reason is empty when it does) and the serial of the trust anchor it ends at; always 1."},
	famSANValid:      {"meshcert_san_valid", "1 when the certificate carries exactly the mesh identity expected of it (SPIFFE ID or Linkerd identity, trust domain, namespace, service account), else 0."},
	famSANInfo:       {"meshcert_san_info", "Why the certificate's mesh identity is not valid (reason is empty when it is); always 1."},
	famBundleError:   {"meshcert_bundle_error", "1 for each key of an object that could not be read completely, with the reason; the readable certificates in it are still exported."},
	famTrustBundleCurrent: {"meshcert_trust_bundle_current",
		"1 when a copy of the mesh's trust anchors handed to workloads (a namespace's root ConfigMap, a proxy's root bundle, an issuer's ca.crt) holds exactly the mesh's current trust anchors, else 0. Absent when the current anchors are unknown."},
	famRootKey: {"meshcert_root_key_in_cluster", "1 when a watched Secret holds the private key of a self-signed trust anchor (the key itself is never read), else 0."},
	famProxyUp: {"meshcert_proxy_up",
		"1 when the last read of a proxy's admin endpoint worked, else 0. Proxies are read in the background on an interval; the certificates of a proxy that cannot be read are those of its last successful read."},
	famProxyLastSuccess: {"meshcert_proxy_last_success_timestamp_seconds", "When the proxy was last read successfully, as a Unix timestamp: the age of its certificate series."},
}

// RenderAnalysis writes the families derived from an analysis as exposition text (format 0.0.4),
// evaluating the validity windows of the chains at now. It is the only implementation of these
// families: the Handler caches its output. Each certificate's location labels are written once and
// shared by its series, so a render costs a few allocations per certificate, not per series.
func RenderAnalysis(a *model.Analysis, now time.Time) []byte {
	var buf bytes.Buffer
	renderAnalysis(&buf, a, now)
	return buf.Bytes()
}

// renderAnalysis writes the analysis families to w, family by family.
func renderAnalysis(w io.Writer, a *model.Analysis, now time.Time) {
	var fams [famAnalysisCount][]byte
	// Sized for the usual line lengths, so the buffers rarely grow.
	n := len(a.Certificates)
	for i := range fams {
		fams[i] = make([]byte, 0, n*180)
	}
	fams[famInfo] = make([]byte, 0, n*420)
	var loc []byte
	for i := range a.Certificates {
		o := &a.Certificates[i]
		c := o.Certificate
		loc = appendLabel(loc[:0], "index", strconv.Itoa(o.Index), true)
		loc = appendLabel(loc, "key", labelValue(o.Key), false)
		loc = appendLabel(loc, "mesh", string(o.Mesh), false)
		loc = appendLabel(loc, "name", labelValue(o.Name), false)
		loc = appendLabel(loc, "namespace", labelValue(o.Namespace), false)
		loc = appendLabel(loc, "role", string(o.Role), false)
		loc = appendLabel(loc, "source", o.Source, false)

		fams[famNotAfter] = appendSample(fams[famNotAfter], famNotAfter, loc, nil, unixSeconds(c.NotAfter()))
		if !c.NotBefore().IsZero() { // a proxy's expiry metric gives no start
			fams[famNotBefore] = appendSample(fams[famNotBefore], famNotBefore, loc, nil, unixSeconds(c.NotBefore()))
		}
		info := appendLabel(nil, "issuer", labelValue(c.Issuer), true)
		info = appendLabel(info, "key_algorithm", c.KeyAlgorithm, false)
		info = appendLabel(info, "serial", labelValue(c.Serial), false)
		info = appendLabel(info, "spiffe_id", labelValue(strings.Join(c.SPIFFEIDs, ",")), false)
		info = appendLabel(info, "subject", labelValue(c.Subject), false)
		fams[famInfo] = appendSample(fams[famInfo], famInfo, loc, info, 1)
		if o.Chain != nil {
			st := o.Chain.Evaluate(now)
			anchor := ""
			if st.Anchor != nil {
				anchor = st.Anchor.Serial
			}
			fams[famChainDepth] = appendSample(fams[famChainDepth], famChainDepth, loc, nil, float64(st.Depth))
			fams[famChainValid] = appendSample(fams[famChainValid], famChainValid, loc, nil, boolValue(st.Valid))
			fams[famChainNotAfter] = appendSample(fams[famChainNotAfter], famChainNotAfter, loc, nil, unixSeconds(st.NotAfter))
			extra := appendLabel(nil, "anchor_serial", labelValue(anchor), true)
			extra = appendLabel(extra, "reason", string(st.Reason), false)
			fams[famChainInfo] = appendSample(fams[famChainInfo], famChainInfo, loc, extra, 1)
		}
		if o.Identity != nil {
			fams[famSANValid] = appendSample(fams[famSANValid], famSANValid, loc, nil, boolValue(o.Identity.Valid))
			fams[famSANInfo] = appendSample(fams[famSANInfo], famSANInfo, loc, appendLabel(nil, "reason", string(o.Identity.Reason), true), 1)
		}
	}
	for _, e := range a.BundleErrors {
		l := appendLabel(nil, "key", labelValue(e.Key), true)
		l = appendLabel(l, "name", labelValue(e.Name), false)
		l = appendLabel(l, "namespace", labelValue(e.Namespace), false)
		l = appendLabel(l, "reason", string(e.Reason), false)
		l = appendLabel(l, "source", e.Source, false)
		fams[famBundleError] = appendSample(fams[famBundleError], famBundleError, l, nil, 1)
	}
	for _, b := range a.TrustBundles {
		l := appendLabel(nil, "key", labelValue(b.Key), true)
		l = appendLabel(l, "mesh", string(b.Mesh), false)
		l = appendLabel(l, "name", labelValue(b.Name), false)
		l = appendLabel(l, "namespace", labelValue(b.Namespace), false)
		l = appendLabel(l, "source", b.Source, false)
		fams[famTrustBundleCurrent] = appendSample(fams[famTrustBundleCurrent], famTrustBundleCurrent, l, nil, boolValue(b.Current))
	}
	for _, k := range a.RootKeys {
		l := appendLabel(nil, "mesh", string(k.Mesh), true)
		l = appendLabel(l, "name", labelValue(k.Name), false)
		l = appendLabel(l, "namespace", labelValue(k.Namespace), false)
		l = appendLabel(l, "source", k.Source, false)
		fams[famRootKey] = appendSample(fams[famRootKey], famRootKey, l, nil, boolValue(k.Stored))
	}
	for i, f := range fams {
		writeFamily(w, i, f)
	}
}

// RenderProxies writes the health of each proxy as exposition text. Proxies change on every read,
// so this runs on every scrape; written directly, ten thousand proxies cost a few milliseconds.
func RenderProxies(w io.Writer, proxies []model.ProxyStatus) {
	up := make([]byte, 0, len(proxies)*150)
	last := make([]byte, 0, len(proxies)*150)
	var l []byte
	for _, p := range proxies {
		l = appendLabel(l[:0], "mesh", string(p.Mesh), true)
		l = appendLabel(l, "name", labelValue(p.Name), false)
		l = appendLabel(l, "namespace", labelValue(p.Namespace), false)
		l = appendLabel(l, "source", p.Source, false)
		up = appendSample(up, famProxyUp, l, appendLabel(nil, "endpoint", p.Endpoint, true), boolValue(p.Up))
		if !p.LastSuccess.IsZero() {
			last = appendSample(last, famProxyLastSuccess, l, nil, unixSeconds(p.LastSuccess))
		}
	}
	writeFamily(w, famProxyUp, up)
	writeFamily(w, famProxyLastSuccess, last)
}

// writeFamily writes a family's HELP and TYPE lines and its samples; a family without samples is
// not written, as client_golang does.
func writeFamily(w io.Writer, fam int, samples []byte) {
	if len(samples) == 0 {
		return
	}
	f := analysisFamilies[fam]
	header := make([]byte, 0, len(f.help)+2*len(f.name)+32)
	header = append(header, "# HELP "...)
	header = append(header, f.name...)
	header = append(header, ' ')
	header = append(header, escapeHelp(f.help)...)
	header = append(header, "\n# TYPE "...)
	header = append(header, f.name...)
	header = append(header, " gauge\n"...)
	_, _ = w.Write(header)
	_, _ = w.Write(samples)
}

// appendSample writes one sample: name{labels,extra} value.
func appendSample(b []byte, fam int, labels, extra []byte, v float64) []byte {
	b = append(b, analysisFamilies[fam].name...)
	b = append(b, '{')
	b = append(b, labels...)
	if len(extra) > 0 {
		b = append(b, ',')
		b = append(b, extra...)
	}
	b = append(b, "} "...)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}

// appendLabel writes name="value" with the text format's escapes, after a comma unless first.
func appendLabel(b []byte, name, value string, first bool) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, name...)
	b = append(b, '=', '"')
	for i := 0; i < len(value); i++ {
		switch ch := value[i]; ch {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, ch)
		}
	}
	return append(b, '"')
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }
