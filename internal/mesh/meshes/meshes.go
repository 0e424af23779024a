// Package meshes lists the meshes the exporter knows. Adding a mesh is adding its package under
// internal/mesh and one line here.
package meshes

import (
	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
)

// All are the meshes, in the order their layouts are tried on an object of no configured mesh.
func All() []mesh.Definition {
	return []mesh.Definition{
		istio.Definition(),
		linkerd.Definition(),
	}
}
