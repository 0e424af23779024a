package collector

import (
	"strconv"
	"strings"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// Subject is what a family has one series for.
type Subject string

// The subjects of the families.
const (
	SubjectCertificate Subject = "certificate"  // a certificate at a location
	SubjectChain       Subject = "chain"        // a certificate's chain to its anchors
	SubjectIdentity    Subject = "identity"     // the mesh identity a leaf carries
	SubjectRequirement Subject = "requirement"  // a CA measured by its mesh's own rules
	SubjectBundle      Subject = "bundle"       // a key of an object
	SubjectTrustBundle Subject = "trust_bundle" // a copy of a mesh's trust anchors
	SubjectRootKey     Subject = "root_key"     // an object that holds a private key
	SubjectIssuer      Subject = "issuer"       // an object that holds a mesh's issuer
	SubjectProxy       Subject = "proxy"        // a proxy's admin endpoint
	SubjectSource      Subject = "source"       // a source of certificate material
	SubjectPolicy      Subject = "policy"       // a mesh's peer authentication policy
	SubjectNamespace   Subject = "namespace"    // a namespace a mesh covers
	SubjectPod         Subject = "pod"          // a pod that could bypass its mesh
	SubjectCA          Subject = "ca"           // a mesh's current trust anchor or signing CA
)

// Family is one metric family the exporter exports from its snapshots: the docs, the rules' and
// dashboards' drift tests and the golden exposition all read this list.
type Family struct {
	Name, Help string
	// Type is gauge for every rendered family; the sources' error counts are a counter.
	Type string
	// Labels are the family's label names, in the order written.
	Labels  []string
	Subject Subject
}

// certSample is one certificate finding as its families see it: the location labels written
// once, and its chain evaluated once at the render's instant.
type certSample struct {
	loc     []byte
	finding *model.CertificateFinding
	chain   *model.ChainStatus
}

// family is a Family with the function that writes its samples of one item of its subject;
// exactly one of the writers is set.
type family struct {
	Family
	certificate func(b []byte, name string, s *certSample) []byte
	bundleError func(b []byte, name string, e *model.BundleError) []byte
	trustBundle func(b []byte, name string, o *model.Object, t *model.TrustBundleFinding) []byte
	rootKey     func(b []byte, name string, k *model.RootKeyStatus) []byte
	object      func(b []byte, name string, o *model.Object) []byte
	proxy       func(b []byte, name string, p *model.ProxyStatus) []byte
}

// locationLabels are the labels that place a certificate.
var locationLabels = []string{"index", "key", "mesh", "name", "namespace", "role", "source"}

// with returns labels followed by more.
func with(labels []string, more ...string) []string {
	return append(append([]string(nil), labels...), more...)
}

// proxyLabels are the labels that identify a proxy.
var proxyLabels = []string{"mesh", "name", "namespace", "source"}

// renderedFamilies are the families the Handler renders, in the order they are written.
func renderedFamilies() []family {
	gauge := func(name, help string, subject Subject, labels []string) Family {
		return Family{Name: name, Help: help, Type: "gauge", Labels: labels, Subject: subject}
	}
	return []family{
		{Family: gauge("meshcert_certificate_not_after_timestamp_seconds", "End of the certificate's validity window (NotAfter), as a Unix timestamp.",
			SubjectCertificate, locationLabels),
			certificate: func(b []byte, name string, s *certSample) []byte {
				return appendSample(b, name, s.loc, unixSeconds(s.finding.Certificate.NotAfter()))
			}},
		{Family: gauge("meshcert_certificate_not_before_timestamp_seconds", "Start of the certificate's validity window (NotBefore), as a Unix timestamp.",
			SubjectCertificate, locationLabels),
			certificate: func(b []byte, name string, s *certSample) []byte {
				if s.finding.Certificate.NotBefore().IsZero() { // a proxy's expiry metric gives no start
					return b
				}
				return appendSample(b, name, s.loc, unixSeconds(s.finding.Certificate.NotBefore()))
			}},
		{Family: gauge("meshcert_certificate_info", "Descriptive facts of a certificate; always 1.",
			SubjectCertificate, with(locationLabels, "issuer", "key_algorithm", "serial", "spiffe_id", "subject")),
			certificate: func(b []byte, name string, s *certSample) []byte {
				c := s.finding.Certificate
				return appendSampleWith(b, name, s.loc, 1, func(b []byte) []byte {
					b = appendLabel(b, "issuer", labelValue(c.Issuer), false)
					b = appendLabel(b, "key_algorithm", c.KeyAlgorithm, false)
					b = appendLabel(b, "serial", labelValue(c.Serial), false)
					b = appendLabel(b, "spiffe_id", labelValue(strings.Join(c.SPIFFEIDs, ",")), false)
					return appendLabel(b, "subject", labelValue(c.Subject), false)
				})
			}},
		{Family: gauge("meshcert_chain_depth", "Certificates in the chain from this certificate to its trust anchor, both included; for a chain that does not verify, the longest path that could be built.",
			SubjectChain, locationLabels),
			certificate: chainSample(func(st *model.ChainStatus) float64 { return float64(st.Depth) })},
		{Family: gauge("meshcert_chain_valid", "1 when the certificate verifies now up to a current trust anchor of its mesh (signatures, validity windows, CA constraints), else 0.",
			SubjectChain, locationLabels),
			certificate: chainSample(func(st *model.ChainStatus) float64 { return boolValue(st.Valid) })},
		{Family: gauge("meshcert_chain_not_after_timestamp_seconds", "Earliest NotAfter along the certificate's chain, as a Unix timestamp: when the chain stops verifying.",
			SubjectChain, locationLabels),
			certificate: chainSample(func(st *model.ChainStatus) float64 { return unixSeconds(st.NotAfter) })},
		{Family: gauge("meshcert_chain_info", "Why the chain does not verify (reason is empty when it does) and the serial of the trust anchor it ends at; always 1.",
			SubjectChain, with(locationLabels, "anchor_serial", "reason")),
			certificate: func(b []byte, name string, s *certSample) []byte {
				if s.chain == nil {
					return b
				}
				anchor := ""
				if s.chain.Anchor != nil {
					anchor = s.chain.Anchor.Serial
				}
				return appendSampleWith(b, name, s.loc, 1, func(b []byte) []byte {
					b = appendLabel(b, "anchor_serial", labelValue(anchor), false)
					return appendLabel(b, "reason", string(s.chain.Reason), false)
				})
			}},
		{Family: gauge("meshcert_san_valid", "1 when the certificate carries exactly the mesh identity expected of it (SPIFFE ID or Linkerd identity, trust domain, namespace, service account), else 0.",
			SubjectIdentity, locationLabels),
			certificate: func(b []byte, name string, s *certSample) []byte {
				if id := s.finding.Identity; id != nil {
					return appendSample(b, name, s.loc, boolValue(id.Valid))
				}
				return b
			}},
		{Family: gauge("meshcert_san_info", "Why the certificate's mesh identity is not valid (reason is empty when it is); always 1.",
			SubjectIdentity, with(locationLabels, "reason")),
			certificate: func(b []byte, name string, s *certSample) []byte {
				if id := s.finding.Identity; id != nil {
					return appendSampleWith(b, name, s.loc, 1, func(b []byte) []byte { return appendLabel(b, "reason", string(id.Reason), false) })
				}
				return b
			}},
		{Family: gauge("meshcert_mesh_requirements_met",
			"1 when a CA certificate of a mesh meets the rules the mesh itself enforces for its role (Linkerd: ECDSA P-256 anchor and issuer, the issuer named identity.<control plane namespace>.<trust domain>; Istio: RSA of at least 2048 bits or ECDSA P-256/P-384), else 0.",
			SubjectRequirement, locationLabels),
			certificate: func(b []byte, name string, s *certSample) []byte {
				if r := s.finding.Requirement; r != nil {
					return appendSample(b, name, s.loc, boolValue(r.Met))
				}
				return b
			}},
		{Family: gauge("meshcert_mesh_requirements_info", "Which rule of its mesh a CA certificate breaks (reason is empty when it meets them all); always 1.",
			SubjectRequirement, with(locationLabels, "reason")),
			certificate: func(b []byte, name string, s *certSample) []byte {
				if r := s.finding.Requirement; r != nil {
					return appendSampleWith(b, name, s.loc, 1, func(b []byte) []byte { return appendLabel(b, "reason", string(r.Reason), false) })
				}
				return b
			}},
		{Family: gauge("meshcert_bundle_error", "1 for each key of an object that could not be read completely, with the reason; the readable certificates in it are still exported.",
			SubjectBundle, []string{"key", "name", "namespace", "reason", "source"}),
			bundleError: func(b []byte, name string, e *model.BundleError) []byte {
				return appendSampleWith(b, name, nil, 1, func(b []byte) []byte {
					b = appendLabel(b, "key", labelValue(e.Key), true)
					b = appendLabel(b, "name", labelValue(e.Name), false)
					b = appendLabel(b, "namespace", labelValue(e.Namespace), false)
					b = appendLabel(b, "reason", string(e.Reason), false)
					return appendLabel(b, "source", e.Source, false)
				})
			}},
		{Family: gauge("meshcert_trust_bundle_current",
			"1 when a copy of the mesh's trust anchors handed to workloads (a namespace's root ConfigMap, a proxy's root bundle, an issuer's ca.crt) holds exactly the mesh's current trust anchors, else 0. Absent when the current anchors are unknown.",
			SubjectTrustBundle, []string{"key", "mesh", "name", "namespace", "source"}),
			trustBundle: func(b []byte, name string, o *model.Object, t *model.TrustBundleFinding) []byte {
				if t.Federated {
					return b
				}
				return appendSampleWith(b, name, nil, boolValue(t.Current), func(b []byte) []byte { return appendBundleLabels(b, o, t.Key) })
			}},
		{Family: gauge("meshcert_federated_trust_bundle_info",
			"1 for each trust bundle an object holds for another trust domain than its mesh's (SPIFFE federation): that domain's anchors, exported under the bundle's key and never compared with the mesh's own.",
			SubjectTrustBundle, []string{"key", "mesh", "name", "namespace", "source", "trust_domain"}),
			trustBundle: func(b []byte, name string, o *model.Object, t *model.TrustBundleFinding) []byte {
				if !t.Federated {
					return b
				}
				return appendSampleWith(b, name, nil, 1, func(b []byte) []byte {
					return appendLabel(appendBundleLabels(b, o, t.Key), "trust_domain", labelValue(t.TrustDomain()), false)
				})
			}},
		{Family: gauge("meshcert_root_key_in_cluster", "1 when a watched Secret holds the private key of a self-signed trust anchor (the key itself is never read), else 0.",
			SubjectRootKey, []string{"mesh", "name", "namespace", "source"}),
			rootKey: func(b []byte, name string, k *model.RootKeyStatus) []byte {
				return appendSampleWith(b, name, nil, boolValue(k.Stored), func(b []byte) []byte {
					b = appendLabel(b, "mesh", string(k.Mesh), true)
					b = appendLabel(b, "name", labelValue(k.Name), false)
					b = appendLabel(b, "namespace", labelValue(k.Namespace), false)
					return appendLabel(b, "source", k.Source, false)
				})
			}},
		{Family: gauge("meshcert_issuer_managed",
			"1 for each Secret that holds a mesh's issuer (Linkerd's identity issuer, Istio's plug-in CA), with what rotates it: cert-manager when cert-manager issued it, none when nothing does and a person must.",
			SubjectIssuer, []string{"manager", "mesh", "name", "namespace", "source"}),
			object: func(b []byte, name string, o *model.Object) []byte {
				if o.Manager == "" {
					return b
				}
				return appendSampleWith(b, name, nil, 1, func(b []byte) []byte {
					b = appendLabel(b, "manager", o.Manager, true)
					b = appendLabel(b, "mesh", string(o.Mesh), false)
					b = appendLabel(b, "name", labelValue(o.Name), false)
					b = appendLabel(b, "namespace", labelValue(o.Namespace), false)
					return appendLabel(b, "source", o.Source, false)
				})
			}},
		{Family: gauge("meshcert_proxy_identity_state",
			"1 for each workload identity a node proxy (Istio's ztunnel) holds, with the state it reports for the identity's certificate: available, initializing (asking for its first certificate), unavailable (it could not get one; the reason is in the proxy's log). key is the identity.",
			SubjectBundle, []string{"key", "mesh", "name", "namespace", "source", "state"}),
			object: func(b []byte, name string, o *model.Object) []byte {
				for i := range o.Bundles {
					bundle := &o.Bundles[i]
					if bundle.State == model.IdentityStateNone {
						continue
					}
					b = appendSampleWith(b, name, nil, 1, func(b []byte) []byte {
						b = appendLabel(b, "key", labelValue(bundle.Key), true)
						b = appendLabel(b, "mesh", string(o.Mesh), false)
						b = appendLabel(b, "name", labelValue(o.Name), false)
						b = appendLabel(b, "namespace", labelValue(o.Namespace), false)
						b = appendLabel(b, "source", o.Source, false)
						return appendLabel(b, "state", bundle.State.Label(), false)
					})
				}
				return b
			}},
		{Family: gauge("meshcert_proxy_up",
			"1 when the last read of a proxy's admin endpoint worked, else 0. Proxies are read in the background on an interval; the certificates of a proxy that cannot be read are those of its last successful read.",
			SubjectProxy, with(proxyLabels, "endpoint")),
			proxy: func(b []byte, name string, p *model.ProxyStatus) []byte {
				return appendSampleWith(b, name, nil, boolValue(p.Up), func(b []byte) []byte {
					return appendLabel(appendProxyLabels(b, p), "endpoint", p.Endpoint, false)
				})
			}},
		{Family: gauge("meshcert_proxy_last_success_timestamp_seconds", "When the proxy was last read successfully, as a Unix timestamp: the age of its certificate series.",
			SubjectProxy, proxyLabels),
			proxy: func(b []byte, name string, p *model.ProxyStatus) []byte {
				if p.LastSuccess.IsZero() { // never read
					return b
				}
				// In whole seconds: a read's time to the second is all an age needs.
				return appendSampleWith(b, name, nil, float64(p.LastSuccess.Unix()), func(b []byte) []byte { return appendProxyLabels(b, p) })
			}},
	}
}

// sourceFamilies are the sources' health families, gathered on every scrape (sourcesCollector).
func sourceFamilies() []Family {
	return []Family{
		{Name: "meshcert_source_up", Help: "1 when the source's last attempt to read its material worked, else 0.",
			Type: "gauge", Labels: []string{"source"}, Subject: SubjectSource},
		{Name: "meshcert_source_last_success_timestamp_seconds",
			Help: "When the source's data was last known current, as a Unix timestamp: its last successful read, or for a Kubernetes watch the last moment it was healthy. It stops moving during an outage, while the last data is still served.",
			Type: "gauge", Labels: []string{"source"}, Subject: SubjectSource},
		{Name: "meshcert_source_errors_total",
			Help: "Read errors of a source by reason. A broken object counts once each time it starts failing; a failing source counts each attempt.",
			Type: "counter", Labels: []string{"source", "reason"}, Subject: SubjectSource},
		{Name: "meshcert_proxy_read_interval_seconds",
			Help: "Time between two reads of one proxy, for each source that reads proxies (its --<proxy>.interval): the alerts on a proxy's read age compare with it.",
			Type: "gauge", Labels: []string{"source"}, Subject: SubjectSource},
	}
}

// postureFamilies are the meshes' posture families, gathered on every scrape (postureCollector)
// when the posture source runs: a few series per policy and per namespace, one per offending pod.
func postureFamilies() []Family {
	return []Family{
		{Name: "meshcert_peer_authentication_mode",
			Help: "1 for each peer authentication policy (Istio's PeerAuthentication; Linkerd's default inbound policy annotation on a meshed pod), with its scope (mesh: in the root namespace without a selector; namespace: without a selector; workload) and its mode (Istio's STRICT, PERMISSIVE, DISABLE, or UNSET: inherited; Linkerd's policy).",
			Type: "gauge", Labels: []string{"mesh", "namespace", "name", "scope", "mode"}, Subject: SubjectPolicy},
		{Name: "meshcert_peer_authentication_port_overrides",
			Help: "Ports for which a peer authentication policy sets another mutual TLS mode than its own.",
			Type: "gauge", Labels: []string{"mesh", "namespace", "name"}, Subject: SubjectPolicy},
		{Name: "meshcert_namespace_mtls_mode",
			Help: "1 for each namespace the mesh covers, with the mutual TLS mode in force for the whole namespace (its own policy, else the mesh-wide one, else PERMISSIVE).",
			Type: "gauge", Labels: []string{"mesh", "namespace", "mode"}, Subject: SubjectNamespace},
		{Name: "meshcert_namespace_default_deny",
			Help: "1 when a policy denies every request to the namespace that no other policy allows (an ALLOW authorization policy without rules or selector, in the namespace or the root namespace), else 0.",
			Type: "gauge", Labels: []string{"mesh", "namespace"}, Subject: SubjectNamespace},
		{Name: "meshcert_namespace_pods",
			Help: "Running pods of a namespace the mesh covers, by state: meshed (its proxy runs there or a node proxy serves it), unmeshed, host_network (in the node's network, outside the mesh). partition is this replica's share of the pods: sum over partitions the maximum over replicas.",
			Type: "gauge", Labels: []string{"mesh", "namespace", "state", "partition"}, Subject: SubjectNamespace},
		{Name: "meshcert_pod_bypass",
			Help: "1 for each pod that could bypass the mesh's proxy, by reason: net_admin (a container not the mesh's own adds NET_ADMIN or NET_RAW, or is privileged), host_network, no_proxy (no proxy where the namespace is STRICT or injected). Only offending pods have series.",
			Type: "gauge", Labels: []string{"mesh", "namespace", "name", "reason"}, Subject: SubjectPod},
	}
}

// PartitionShared is the partition label's value on the part of a count that every replica of
// the exporter reads alike (Kubernetes objects, files, static proxy targets); the part read from
// pods carries the replica's share of the pods ("all", "shard-1-of-4", "node-a", ...).
const PartitionShared = "shared"

// rotationFamilies are the blast radius of the meshes' CAs, gathered on every scrape
// (rotationCollector): a few series per CA, never one per workload.
func rotationFamilies() []Family {
	return []Family{
		{Name: "meshcert_trust_anchor_dependents",
			Help: "Distinct certificates (by fingerprint) that verify now through this current trust anchor and through no other current anchor of the mesh: they stop verifying when it leaves the mesh's anchor set. 0 means the anchor can go. Split by partition: shared (what every replica reads alike) and this replica's share of the pods; sum over partitions the maximum over replicas.",
			Type: "gauge", Labels: []string{"mesh", "anchor_serial", "partition"}, Subject: SubjectCA},
		{Name: "meshcert_trust_anchor_bundles",
			Help: "Trust-bundle copies of the mesh (namespace root ConfigMaps, proxies' root bundles, Linkerd pods' trust-root digests, configured copies) that hold this current trust anchor. Split by partition: shared (what every replica reads alike) and this replica's share of the pods; sum over partitions the maximum over replicas.",
			Type: "gauge", Labels: []string{"mesh", "anchor_serial", "partition"}, Subject: SubjectCA},
		{Name: "meshcert_trust_bundles",
			Help: "Trust-bundle copies of the mesh: meshcert_trust_anchor_bundles equals it when an anchor has reached every copy. Split by partition: shared (what every replica reads alike) and this replica's share of the pods; sum over partitions the maximum over replicas.",
			Type: "gauge", Labels: []string{"mesh", "partition"}, Subject: SubjectCA},
		{Name: "meshcert_trust_anchor_signing",
			Help: "1 while one of the mesh's valid signing CAs (the intermediates and issuers of its authoritative objects, or the root of a mesh whose root signs itself) verifies up to this current trust anchor, else 0. An anchor at 0 is retired only while meshcert_mesh_can_sign is 1: the mesh has moved on, and the anchor waits for its dependents to leave.",
			Type: "gauge", Labels: []string{"mesh", "anchor_serial"}, Subject: SubjectCA},
		{Name: "meshcert_trust_anchor_retired",
			Help: "1 for a current trust anchor the mesh no longer signs under while it signs under another anchor that is not older: it waits for its dependents to leave. 0 for an anchor the mesh signs under, for a newer anchor published ahead of a rotation's next step, and for every anchor of a mesh that cannot sign.",
			Type: "gauge", Labels: []string{"mesh", "anchor_serial"}, Subject: SubjectCA},
		{Name: "meshcert_mesh_can_sign",
			Help: "1 when one of the mesh's signing CAs is valid and verifies up to one of its current trust anchors, else 0 with the reason: no_signing_ca (none read, and the mesh's anchors do not sign themselves), signing_ca_expired, signing_ca_unanchored (it verifies up to no current, valid anchor). While it is 0 no anchor of the mesh is retired.",
			Type: "gauge", Labels: []string{"mesh", "reason"}, Subject: SubjectCA},
		{Name: "meshcert_issuer_dependents",
			Help: "Distinct workload certificates served now (presented by a proxy or the control plane) that this CA signed: the progress of an issuer rotation. Split by partition: shared (what every replica reads alike) and this replica's share of the pods; sum over partitions the maximum over replicas.",
			Type: "gauge", Labels: []string{"mesh", "issuer_serial", "partition"}, Subject: SubjectCA},
	}
}

// Families are the metric families the exporter exports from its snapshots, in the order they are
// written. It also exports meshcert_exporter_build_info, the reload status and the go_ and
// process_ families.
func Families() []Family {
	var out []Family
	for _, f := range renderedFamilies() {
		out = append(out, f.Family)
	}
	out = append(out, sourceFamilies()...)
	out = append(out, postureFamilies()...)
	return append(out, rotationFamilies()...)
}

// chainSample writes one value of a certificate's evaluated chain, for a certificate that has one.
func chainSample(value func(*model.ChainStatus) float64) func(b []byte, name string, s *certSample) []byte {
	return func(b []byte, name string, s *certSample) []byte {
		if s.chain == nil {
			return b
		}
		return appendSample(b, name, s.loc, value(s.chain))
	}
}

// appendBundleLabels writes the labels that place a trust bundle of o.
func appendBundleLabels(b []byte, o *model.Object, key string) []byte {
	b = appendLabel(b, "key", labelValue(key), true)
	b = appendLabel(b, "mesh", string(o.Mesh), false)
	b = appendLabel(b, "name", labelValue(o.Name), false)
	b = appendLabel(b, "namespace", labelValue(o.Namespace), false)
	return appendLabel(b, "source", o.Source, false)
}

// appendProxyLabels writes the labels that identify a proxy.
func appendProxyLabels(b []byte, p *model.ProxyStatus) []byte {
	b = appendLabel(b, "mesh", string(p.Mesh), true)
	b = appendLabel(b, "name", labelValue(p.Name), false)
	b = appendLabel(b, "namespace", labelValue(p.Namespace), false)
	return appendLabel(b, "source", p.Source, false)
}

// appendLocation writes a certificate's location labels.
func appendLocation(b []byte, o *model.Object, f *model.CertificateFinding) []byte {
	b = appendLabel(b, "index", strconv.Itoa(f.Index), true)
	b = appendLabel(b, "key", labelValue(f.Key), false)
	b = appendLabel(b, "mesh", string(o.Mesh), false)
	b = appendLabel(b, "name", labelValue(o.Name), false)
	b = appendLabel(b, "namespace", labelValue(o.Namespace), false)
	b = appendLabel(b, "role", string(f.Role), false)
	return appendLabel(b, "source", o.Source, false)
}

// renderer writes items' samples into one buffer per family, with the writers of families.
type renderer struct {
	families []family
	// scratch holds a certificate's location labels while its families are written.
	scratch []byte
}

// renderItem appends the samples of one item and returns when they change by themselves next
// (a chain's validity; zero for never).
func (r *renderer) renderItem(bufs [][]byte, it item, now time.Time) time.Time {
	if p := it.proxy; p != nil {
		for i := range r.families {
			if w := r.families[i].proxy; w != nil {
				bufs[i] = w(bufs[i], r.families[i].Name, p)
			}
		}
		return time.Time{}
	}
	oa := it.object
	o := oa.Object
	for ci := range oa.Certificates {
		f := &oa.Certificates[ci]
		s := certSample{finding: f}
		r.scratch = appendLocation(r.scratch[:0], o, f)
		s.loc = r.scratch
		if f.Chain != nil {
			st := f.Chain.Evaluate(f.Certificate, now)
			s.chain = &st
		}
		for i := range r.families {
			if w := r.families[i].certificate; w != nil {
				bufs[i] = w(bufs[i], r.families[i].Name, &s)
			}
		}
	}
	for i := range r.families {
		fam := &r.families[i]
		switch {
		case fam.bundleError != nil:
			for j := range oa.BundleErrors {
				bufs[i] = fam.bundleError(bufs[i], fam.Name, &oa.BundleErrors[j])
			}
		case fam.trustBundle != nil:
			for j := range oa.TrustBundles {
				bufs[i] = fam.trustBundle(bufs[i], fam.Name, o, &oa.TrustBundles[j])
			}
		case fam.rootKey != nil:
			for j := range oa.RootKeys {
				bufs[i] = fam.rootKey(bufs[i], fam.Name, &oa.RootKeys[j])
			}
		case fam.object != nil:
			bufs[i] = fam.object(bufs[i], fam.Name, o)
		}
	}
	return objectBoundary(oa, now)
}
