// Package mesh is what the rest of the exporter sees of a service mesh. Everything a mesh means
// (its objects and their key layouts, which of them wins, how they are read, its identities and
// CA rules, its configuration section and the proxies it runs) lives in its own package under
// internal/mesh/<mesh>, which implements Mesh; package meshes lists them. The sources, the
// analysis and the collector never name a mesh's object.
package mesh

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// Mesh is one service mesh, configured. Its value is its section under meshes: in the
// configuration file (the YAML is decoded into it over its defaults).
type Mesh interface {
	// Name is the mesh's value of the `mesh` label and the name of its configuration section.
	Name() model.Mesh
	// Validate checks the mesh's settings; an error starts with the name of the wrong field.
	Validate() error
	// Settings are the configured settings the analysis needs; settings the mesh's own objects
	// publish (a trust domain in its config) override them.
	Settings() model.MeshSettings
	// Rules judge the mesh's certificates.
	Rules() pki.MeshRules
	// Recognizes reports whether an object with these keys is laid out as the mesh's CA material
	// (a directory of files, a selected Secret), for objects whose mesh is not configured.
	Recognizes(keys []string) bool
	// Layout says how an object of the mesh with these keys is read.
	Layout(keys []string) sources.Layout
	// Watches are the mesh's own Kubernetes objects to watch; none when its watch is off.
	Watches() []*sources.Watch
	// Adjust, when not nil, sees the objects of one kind of every watch together before they are
	// handed out (a mesh that ignores one object while another exists).
	Adjust(kind sources.Kind) sources.Adjust
	// Proxies are the kinds of proxy the mesh runs.
	Proxies() []sources.ProxyKind
}

// Definition registers a mesh with the exporter.
type Definition struct {
	// Name is the mesh's name (see Mesh.Name).
	Name model.Mesh
	// New returns the mesh with its defaults: what an empty configuration section means.
	New func() Mesh
}

// Layouts returns how an object with some keys is read given meshes: as the named mesh's when
// one is named, else as the first mesh's that recognises the keys, else generically.
func Layouts(meshes []Mesh) sources.LayoutFunc {
	return func(name model.Mesh, keys []string) sources.Layout {
		for _, m := range meshes {
			if name == m.Name() || name == "" && m.Recognizes(keys) {
				return m.Layout(keys)
			}
		}
		return sources.GenericLayout(name, keys)
	}
}

// Names are the names of meshes, in order.
func Names(meshes []Mesh) []model.Mesh {
	out := make([]model.Mesh, len(meshes))
	for i, m := range meshes {
		out[i] = m.Name()
	}
	return out
}

// ProxyKinds are the proxy kinds of every mesh, in order.
func ProxyKinds(meshes []Mesh) []sources.ProxyKind {
	var out []sources.ProxyKind
	for _, m := range meshes {
		out = append(out, m.Proxies()...)
	}
	return out
}

// Common is the settings every mesh has, to embed inline in a mesh's configuration.
type Common struct {
	// Watch turns the mesh's Kubernetes objects on or off.
	Watch bool `yaml:"watch"`
	// Namespace of the control plane.
	Namespace string `yaml:"namespace"`
	// TrustDomain of the mesh's identities; cluster.local by default.
	TrustDomain string `yaml:"trust_domain"`
	// TrustDomainAliases are further accepted trust domains.
	TrustDomainAliases []string `yaml:"trust_domain_aliases"`
}

// Validate checks the common settings; an error starts with the name of the wrong field.
func (c Common) Validate() error {
	if c.Namespace == "" {
		return fmt.Errorf("namespace: must not be empty")
	}
	for i, td := range append([]string{c.TrustDomain}, c.TrustDomainAliases...) {
		field := "trust_domain"
		if i > 0 {
			field = fmt.Sprintf("trust_domain_aliases[%d]", i-1)
		}
		if !pki.ValidTrustDomain(td) {
			return fmt.Errorf("%s: %q is not a valid trust domain", field, td)
		}
	}
	return nil
}

// Settings are the analysis settings the common settings give.
func (c Common) Settings() model.MeshSettings {
	return model.MeshSettings{TrustDomain: c.TrustDomain, TrustDomainAliases: c.TrustDomainAliases, ControlPlaneNamespace: c.Namespace}
}

// ValidTrustDomains reports whether the trust domains a mesh's own config names are usable;
// empty means the default.
func ValidTrustDomains(td string, aliases []string) bool {
	for _, d := range append([]string{td}, aliases...) {
		if d != "" && !pki.ValidTrustDomain(d) {
			return false
		}
	}
	return true
}

// RequireNames checks that each named setting is not empty; fields and values pair up.
func RequireNames(fieldsAndValues ...string) error {
	for i := 0; i+1 < len(fieldsAndValues); i += 2 {
		if fieldsAndValues[i+1] == "" {
			return fmt.Errorf("%s: must not be empty", fieldsAndValues[i])
		}
	}
	return nil
}

// Named watches one object of kind by name (in every namespace when namespace is empty), keeping
// the values of the keys keep accepts (nil: all).
func Named(kind sources.Kind, namespace, name string, keep func(string) bool, read func(sources.Data) sources.Result) *sources.Watch {
	return &sources.Watch{Kind: kind, Namespace: namespace, Name: name, Keep: keep, Read: read}
}

// DemoteWhenPresent returns an Adjust: while the object named winner (in namespace) holds
// certificates (in one of keys, when keys are given), the object named loser is not
// authoritative and, when copies is set, its trust bundles become copies to compare with the
// winner's.
func DemoteWhenPresent(namespace, winner, loser string, copies bool, keys ...string) sources.Adjust {
	return func(objects []*model.Object) []*model.Object {
		present := false
		for _, o := range objects {
			if o.Namespace == namespace && o.Name == winner {
				for _, b := range o.Bundles {
					present = present || len(b.Certificates) > 0 && (len(keys) == 0 || slices.Contains(keys, b.Key))
				}
			}
		}
		if !present {
			return objects
		}
		out := make([]*model.Object, len(objects))
		for i, o := range objects {
			out[i] = o
			if o.Namespace != namespace || o.Name != loser {
				continue
			}
			demoted := *o
			demoted.Authoritative = false
			if copies {
				demoted.Bundles = make([]model.Bundle, len(o.Bundles))
				for j, b := range o.Bundles {
					if b.Purpose == model.PurposeTrustBundle {
						b.Purpose = model.PurposeTrustBundleCopy
					}
					demoted.Bundles[j] = b
				}
			}
			out[i] = &demoted
		}
		return out
	}
}

// Rules are the rules of each of meshes, by name.
func Rules(meshes []Mesh) map[model.Mesh]pki.MeshRules {
	out := make(map[model.Mesh]pki.MeshRules, len(meshes))
	for _, m := range meshes {
		out[m.Name()] = m.Rules()
	}
	return out
}

// PostureMesh is a mesh whose enforcement of its identities the exporter judges: whether mutual
// TLS is required, whether requests are denied by default, and which pods could bypass its
// proxies. The posture source watches the objects PostureWatches names and the pod watcher
// records each pod as PodEnrolment says (only when posture is on); JudgePosture reads both.
type PostureMesh interface {
	Mesh
	// PostureWatches are the kinds of object the mesh's posture is judged by.
	PostureWatches() []*sources.ResourceWatch
	// PodEnrolment is how the mesh shows in a pod.
	PodEnrolment() sources.PodEnrolment
	// JudgePosture finds the mesh's posture in the records of its watches and the running pods.
	JudgePosture(records []*model.PostureRecord, pods []*model.PodRecord, settings model.MeshSettings) model.Posture
}

// MeshedNamespaces are the namespaces in which mesh takes in a pod, but for skip (the mesh's own).
func MeshedNamespaces(mesh model.Mesh, pods []*model.PodRecord, skip string) map[string]bool {
	out := map[string]bool{}
	for _, p := range pods {
		if p.Namespace != skip && p.MeshedBy(mesh) {
			out[p.Namespace] = true
		}
	}
	return out
}

// JudgePods finds the pods of the judged namespaces that could bypass mesh, and counts each
// judged namespace's pods by state. A pod in the node's network is host_network (and counted so);
// a meshed pod one of whose own containers may rewrite its network rules is net_admin; any other
// pod without the mesh, in a namespace where requires says the mesh is required, is no_proxy.
// The namespace skip (the mesh's own, whose agents need those rights) is not judged.
func JudgePods(mesh model.Mesh, pods []*model.PodRecord, namespaces []model.NamespaceFinding, skip string,
	requires func(model.NamespaceFinding) bool) ([]model.BypassFinding, []model.NamespacePods) {
	index := make(map[string]int, len(namespaces))
	counts := make([]model.NamespacePods, 0, len(namespaces))
	required := make([]bool, 0, len(namespaces))
	for _, n := range namespaces {
		if n.Namespace == skip {
			continue
		}
		index[n.Namespace] = len(counts)
		counts = append(counts, model.NamespacePods{Mesh: mesh, Namespace: n.Namespace})
		required = append(required, requires(n))
	}
	var bypass []model.BypassFinding
	add := func(p *model.PodRecord, reason string) {
		bypass = append(bypass, model.BypassFinding{Mesh: mesh, Namespace: p.Namespace, Name: p.Name, Reason: reason})
	}
	for _, p := range pods {
		i, ok := index[p.Namespace]
		if !ok {
			continue
		}
		c := &counts[i]
		meshed := p.MeshedBy(mesh)
		switch {
		case p.HostNetwork:
			c.HostNetwork++
			add(p, model.BypassHostNetwork)
		case meshed:
			c.Meshed++
		default:
			c.Unmeshed++
			if required[i] {
				add(p, model.BypassNoProxy)
			}
		}
		if meshed && p.NetAdmin {
			add(p, model.BypassNetAdmin)
		}
	}
	slices.SortFunc(bypass, func(a, b model.BypassFinding) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Reason, b.Reason))
	})
	return bypass, counts
}
