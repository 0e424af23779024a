package testpki

import (
	"fmt"
	"time"
)

// Mesh is a generated mesh PKI: a root, an intermediate it signs, and workload leaves the
// intermediate signs, each with an Istio SPIFFE ID.
type Mesh struct {
	Root, Intermediate *Cert
	Leaves             []*Cert
}

// NewMesh issues a mesh PKI with n workload leaves in namespaces ns-0 .. ns-49, valid from notBefore
// for a day (leaves), five years (intermediate) and ten years (root).
func NewMesh(n int, notBefore time.Time) *Mesh {
	m := &Mesh{}
	m.Root = Issue(Spec{CommonName: "bench root", CA: true, NotBefore: notBefore, NotAfter: notBefore.AddDate(10, 0, 0)})
	m.Intermediate = Issue(Spec{CommonName: "bench intermediate", CA: true, Issuer: m.Root, NotBefore: notBefore, NotAfter: notBefore.AddDate(5, 0, 0)})
	key := NewKey(ECDSAP256) // one key for every leaf: key generation is not what is measured
	for i := range n {
		m.Leaves = append(m.Leaves, Issue(Spec{
			CommonName: fmt.Sprintf("workload-%d", i),
			URIs:       []string{fmt.Sprintf("spiffe://cluster.local/ns/ns-%d/sa/sa-%d", i%50, i)},
			Issuer:     m.Intermediate, SubjectKey: key,
			NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour),
		}))
	}
	return m
}
