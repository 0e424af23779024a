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
	famRequirementsMet
	famRequirementsInfo
	famBundleError
	famTrustBundleCurrent
	famFederatedBundle
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
	famRequirementsMet: {"meshcert_mesh_requirements_met",
		"1 when a CA certificate of a mesh meets the rules the mesh itself enforces for its role (Linkerd: ECDSA P-256 anchor and issuer, the issuer named identity.<control plane namespace>.<trust domain>; Istio: RSA of at least 2048 bits or ECDSA P-256/P-384), else 0."},
	famRequirementsInfo: {"meshcert_mesh_requirements_info", "Which rule of its mesh a CA certificate breaks (reason is empty when it meets them all); always 1."},
	famBundleError:      {"meshcert_bundle_error", "1 for each key of an object that could not be read completely, with the reason; the readable certificates in it are still exported."},
	famTrustBundleCurrent: {"meshcert_trust_bundle_current",
		"1 when a copy of the mesh's trust anchors handed to workloads (a namespace's root ConfigMap, a proxy's root bundle, an issuer's ca.crt) holds exactly the mesh's current trust anchors, else 0. Absent when the current anchors are unknown."},
	famFederatedBundle: {"meshcert_federated_trust_bundle_info",
		"1 for each trust bundle an object holds for another trust domain than its mesh's (SPIFFE federation): that domain's anchors, exported under the bundle's key and never compared with the mesh's own."},
	famRootKey: {"meshcert_root_key_in_cluster", "1 when a watched Secret holds the private key of a self-signed trust anchor (the key itself is never read), else 0."},
	famProxyUp: {"meshcert_proxy_up",
		"1 when the last read of a proxy's admin endpoint worked, else 0. Proxies are read in the background on an interval; the certificates of a proxy that cannot be read are those of its last successful read."},
	famProxyLastSuccess: {"meshcert_proxy_last_success_timestamp_seconds", "When the proxy was last read successfully, as a Unix timestamp: the age of its certificate series."},
}

// RenderAnalysis writes the families derived from an analysis as exposition text (format 0.0.4),
// evaluating the validity windows of the chains at now. The Handler renders the same series block
// by block (renderObject) and keeps them compressed; this renders them in one piece, in the order
// of the analysis.
func RenderAnalysis(a *model.Analysis, now time.Time) []byte {
	var (
		fams    familyBuffers
		scratch []byte
		buf     bytes.Buffer
	)
	for _, o := range a.Objects {
		scratch = renderObject(&fams, o, now, scratch)
	}
	for i, f := range fams {
		writeFamily(&buf, i, f)
	}
	return buf.Bytes()
}

// familyBuffers hold the samples of each analysis family.
type familyBuffers [famCount][]byte

// renderObject appends the series of one object's findings to fams, evaluating its chains at now.
// Each certificate's location labels are written once, into scratch (returned for reuse), and
// shared by its series: a few allocations per certificate, not per series.
func renderObject(fams *familyBuffers, oa *model.ObjectAnalysis, now time.Time, scratch []byte) []byte {
	loc := scratch
	obj := oa.Object
	for i := range oa.Certificates {
		o := &oa.Certificates[i]
		c := o.Certificate
		loc = appendLabel(loc[:0], "index", strconv.Itoa(o.Index), true)
		loc = appendLabel(loc, "key", labelValue(o.Key), false)
		loc = appendLabel(loc, "mesh", string(obj.Mesh), false)
		loc = appendLabel(loc, "name", labelValue(obj.Name), false)
		loc = appendLabel(loc, "namespace", labelValue(obj.Namespace), false)
		loc = appendLabel(loc, "role", string(o.Role), false)
		loc = appendLabel(loc, "source", obj.Source, false)

		fams[famNotAfter] = appendSample(fams[famNotAfter], famNotAfter, loc, nil, unixSeconds(c.NotAfter()))
		if !c.NotBefore().IsZero() { // a proxy's expiry metric gives no start
			fams[famNotBefore] = appendSample(fams[famNotBefore], famNotBefore, loc, nil, unixSeconds(c.NotBefore()))
		}
		fams[famInfo] = appendSampleWith(fams[famInfo], famInfo, loc, 1, func(b []byte) []byte {
			b = appendLabel(b, "issuer", labelValue(c.Issuer), false)
			b = appendLabel(b, "key_algorithm", c.KeyAlgorithm, false)
			b = appendLabel(b, "serial", labelValue(c.Serial), false)
			b = appendLabel(b, "spiffe_id", labelValue(strings.Join(c.SPIFFEIDs, ",")), false)
			return appendLabel(b, "subject", labelValue(c.Subject), false)
		})
		if o.Chain != nil {
			st := o.Chain.Evaluate(c, now)
			anchor := ""
			if st.Anchor != nil {
				anchor = st.Anchor.Serial
			}
			fams[famChainDepth] = appendSample(fams[famChainDepth], famChainDepth, loc, nil, float64(st.Depth))
			fams[famChainValid] = appendSample(fams[famChainValid], famChainValid, loc, nil, boolValue(st.Valid))
			fams[famChainNotAfter] = appendSample(fams[famChainNotAfter], famChainNotAfter, loc, nil, unixSeconds(st.NotAfter))
			fams[famChainInfo] = appendSampleWith(fams[famChainInfo], famChainInfo, loc, 1, func(b []byte) []byte {
				b = appendLabel(b, "anchor_serial", labelValue(anchor), false)
				return appendLabel(b, "reason", string(st.Reason), false)
			})
		}
		if o.Identity != nil {
			fams[famSANValid] = appendSample(fams[famSANValid], famSANValid, loc, nil, boolValue(o.Identity.Valid))
			fams[famSANInfo] = appendSampleWith(fams[famSANInfo], famSANInfo, loc, 1, func(b []byte) []byte {
				return appendLabel(b, "reason", string(o.Identity.Reason), false)
			})
		}
		if r := o.Requirement; r != nil {
			fams[famRequirementsMet] = appendSample(fams[famRequirementsMet], famRequirementsMet, loc, nil, boolValue(r.Met))
			fams[famRequirementsInfo] = appendSampleWith(fams[famRequirementsInfo], famRequirementsInfo, loc, 1, func(b []byte) []byte {
				return appendLabel(b, "reason", string(r.Reason), false)
			})
		}
	}
	for _, e := range oa.BundleErrors {
		l := appendLabel(loc[:0], "key", labelValue(e.Key), true)
		l = appendLabel(l, "name", labelValue(e.Name), false)
		l = appendLabel(l, "namespace", labelValue(e.Namespace), false)
		l = appendLabel(l, "reason", string(e.Reason), false)
		loc = appendLabel(l, "source", e.Source, false)
		fams[famBundleError] = appendSample(fams[famBundleError], famBundleError, loc, nil, 1)
	}
	for _, b := range oa.TrustBundles {
		l := appendLabel(loc[:0], "key", labelValue(b.Key), true)
		l = appendLabel(l, "mesh", string(obj.Mesh), false)
		l = appendLabel(l, "name", labelValue(obj.Name), false)
		l = appendLabel(l, "namespace", labelValue(obj.Namespace), false)
		l = appendLabel(l, "source", obj.Source, false)
		if b.Federated {
			loc = appendLabel(l, "trust_domain", labelValue(b.TrustDomain()), false)
			fams[famFederatedBundle] = appendSample(fams[famFederatedBundle], famFederatedBundle, loc, nil, 1)
			continue
		}
		loc = l
		fams[famTrustBundleCurrent] = appendSample(fams[famTrustBundleCurrent], famTrustBundleCurrent, loc, nil, boolValue(b.Current))
	}
	for _, k := range oa.RootKeys {
		l := appendLabel(loc[:0], "mesh", string(k.Mesh), true)
		l = appendLabel(l, "name", labelValue(k.Name), false)
		l = appendLabel(l, "namespace", labelValue(k.Namespace), false)
		loc = appendLabel(l, "source", k.Source, false)
		fams[famRootKey] = appendSample(fams[famRootKey], famRootKey, loc, nil, boolValue(k.Stored))
	}
	return loc
}

// objectBoundary is the first instant after now at which the validity of one of the object's
// chains can change (a NotBefore reached, a NotAfter passed, of any certificate on any path), or
// zero when none will.
func objectBoundary(oa *model.ObjectAnalysis, now time.Time) time.Time {
	var next time.Time
	for i := range oa.Certificates {
		o := &oa.Certificates[i]
		if o.Chain == nil {
			continue
		}
		// The chain is shared with other certificates: read it, never append to it.
		next = certBoundary(next, o.Certificate, now)
		for _, path := range o.Chain.Paths {
			for _, cert := range path {
				next = certBoundary(next, cert, now)
			}
		}
		for _, cert := range o.Chain.Partial {
			next = certBoundary(next, cert, now)
		}
	}
	return next
}

// certBoundary returns the earlier of next and the first instant after now at which c's validity
// changes: its NotBefore reached, or its NotAfter passed (expired once strictly after NotAfter).
func certBoundary(next time.Time, c *model.Certificate, now time.Time) time.Time {
	next = earlierAfter(next, c.NotBefore(), now)
	return earlierAfter(next, c.NotAfter().Add(time.Nanosecond), now)
}

// earlierAfter returns t when it is after now and before next (or next is zero), else next.
func earlierAfter(next, t, now time.Time) time.Time {
	if t.After(now) && (next.IsZero() || t.Before(next)) {
		return t
	}
	return next
}

// RenderProxies writes the health of each proxy as exposition text. The Handler writes the same
// series through a proxyRenderer, which keeps them in blocks.
func RenderProxies(w io.Writer, proxies []*model.ProxyStatus) {
	up := make([]byte, 0, len(proxies)*150)
	last := make([]byte, 0, len(proxies)*120)
	var l []byte
	for _, p := range proxies {
		l = appendProxyLabels(l[:0], p.Mesh, p.Source, p.Namespace, p.Name)
		up = appendProxyUp(up, l, p.Up, p.Endpoint)
		last = appendProxyLastSuccess(last, l, lastSuccessSeconds(p))
	}
	writeFamily(w, famProxyUp, up)
	writeFamily(w, famProxyLastSuccess, last)
}

// appendProxyLabels writes the labels that identify a proxy.
func appendProxyLabels(b []byte, mesh model.Mesh, source, namespace, name string) []byte {
	b = appendLabel(b, "mesh", string(mesh), true)
	b = appendLabel(b, "name", labelValue(name), false)
	b = appendLabel(b, "namespace", labelValue(namespace), false)
	return appendLabel(b, "source", source, false)
}

// appendProxyUp writes a proxy's meshcert_proxy_up sample.
func appendProxyUp(b, labels []byte, up bool, endpoint string) []byte {
	return appendSampleWith(b, famProxyUp, labels, boolValue(up), func(b []byte) []byte {
		return appendLabel(b, "endpoint", endpoint, false)
	})
}

// appendProxyLastSuccess writes a proxy's last success, in whole Unix seconds (a read's time to
// the second is all an age needs); nothing for a proxy never read (0).
func appendProxyLastSuccess(b, labels []byte, unixSeconds int64) []byte {
	if unixSeconds == 0 {
		return b
	}
	return appendSample(b, famProxyLastSuccess, labels, nil, float64(unixSeconds))
}

// writeFamily writes a family's HELP and TYPE lines and its samples; a family without samples is
// not written, as client_golang does.
func writeFamily(w io.Writer, fam int, samples []byte) {
	if len(samples) == 0 {
		return
	}
	_, _ = w.Write(familyHeader(fam))
	_, _ = w.Write(samples)
}

// familyHeader returns a family's HELP and TYPE lines.
func familyHeader(fam int) []byte {
	f := analysisFamilies[fam]
	header := make([]byte, 0, len(f.help)+2*len(f.name)+32)
	header = append(header, "# HELP "...)
	header = append(header, f.name...)
	header = append(header, ' ')
	header = append(header, escapeHelp(f.help)...)
	header = append(header, "\n# TYPE "...)
	header = append(header, f.name...)
	return append(header, " gauge\n"...)
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

// appendSampleWith writes one sample whose labels continue with what extra appends (each label
// after a comma), without building them separately.
func appendSampleWith(b []byte, fam int, labels []byte, v float64, extra func([]byte) []byte) []byte {
	b = append(b, analysisFamilies[fam].name...)
	b = append(b, '{')
	b = append(b, labels...)
	b = extra(b)
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
