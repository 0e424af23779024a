// Package testmodel reads an analysis the way tests assert on it: every certificate, bundle
// error, trust bundle comparison and root key finding with its location, in one list each. It is
// for tests only; the collector reads the analysis object by object.
package testmodel

import "github.com/meshcert/meshcert-exporter/internal/model"

// Location identifies one certificate in one bundle of one object. Together its fields are unique
// in an analysis.
type Location struct {
	Source    string
	Namespace string
	Name      string
	Key       string
	Index     int
}

// Observation is one certificate at one location with everything known about it: a
// CertificateFinding with its object's location.
type Observation struct {
	Location
	Mesh        model.Mesh
	Role        model.Role
	Certificate *model.Certificate
	// Chain is nil for trust anchors.
	Chain *model.Chain
	// Identity is nil when the certificate neither carries nor should carry a mesh identity.
	Identity *model.IdentityStatus
	// Requirement is nil when the mesh places no rule on the certificate.
	Requirement *model.RequirementStatus
}

// TrustBundle says whether a copy of a mesh's trust anchors equals the current root set.
type TrustBundle struct {
	Mesh                         model.Mesh
	Source, Namespace, Name, Key string
	Current                      bool
}

// Certificates returns the certificate findings of every object of a, with their locations.
func Certificates(a model.Analysis) []Observation {
	var out []Observation
	for _, oa := range a.Objects {
		o := oa.Object
		for _, f := range oa.Certificates {
			out = append(out, Observation{
				Location: Location{Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: f.Key, Index: f.Index},
				Mesh:     o.Mesh, Role: f.Role, Certificate: f.Certificate, Chain: f.Chain, Identity: f.Identity, Requirement: f.Requirement,
			})
		}
	}
	return out
}

// TrustBundles returns the trust bundle comparisons of every object of a (federated bundles are
// not comparisons).
func TrustBundles(a model.Analysis) []TrustBundle {
	var out []TrustBundle
	for _, oa := range a.Objects {
		o := oa.Object
		for _, f := range oa.TrustBundles {
			if !f.Federated {
				out = append(out, TrustBundle{Mesh: o.Mesh, Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: f.Key, Current: f.Current})
			}
		}
	}
	return out
}

// BundleErrors returns the bundle errors of every object of a.
func BundleErrors(a model.Analysis) []model.BundleError {
	var out []model.BundleError
	for _, oa := range a.Objects {
		out = append(out, oa.BundleErrors...)
	}
	return out
}

// RootKeys returns the root key findings of every object of a.
func RootKeys(a model.Analysis) []model.RootKeyStatus {
	var out []model.RootKeyStatus
	for _, oa := range a.Objects {
		out = append(out, oa.RootKeys...)
	}
	return out
}
