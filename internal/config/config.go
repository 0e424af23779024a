// Package config is the exporter's YAML configuration file. Decoding is strict: an unknown key is an
// error that names the key and its line. Every setting has a default that matches the meshes'
// upstream defaults, so an empty file is a valid configuration.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// Config is the whole configuration file.
type Config struct {
	Meshes Meshes `yaml:"meshes"`
	Files  Files  `yaml:"files"`
}

// Meshes holds the settings of each mesh.
type Meshes struct {
	Istio   Mesh `yaml:"istio"`
	Linkerd Mesh `yaml:"linkerd"`
}

// Mesh is the settings of one mesh's control plane.
type Mesh struct {
	// Namespace of the control plane (istio-system, linkerd).
	Namespace string `yaml:"namespace"`
	// TrustDomain of the mesh's identities; cluster.local by default.
	TrustDomain string `yaml:"trust_domain"`
	// TrustDomainAliases are further accepted trust domains (Istio's trustDomainAliases).
	TrustDomainAliases []string `yaml:"trust_domain_aliases"`
}

// Files configures the file source.
type Files struct {
	// Interval between checks of the files for changes.
	Interval time.Duration `yaml:"interval"`
	// Targets are files, directories or globs.
	Targets []FileTarget `yaml:"targets"`
}

// FileTarget is one file, directory or glob.
type FileTarget struct {
	Path string `yaml:"path"`
	// Mesh overrides the mesh detected from the file names: istio, linkerd, or empty.
	Mesh string `yaml:"mesh"`
}

// Default returns the configuration used when no file is given.
func Default() *Config {
	return &Config{
		Meshes: Meshes{
			Istio:   Mesh{Namespace: "istio-system", TrustDomain: "cluster.local"},
			Linkerd: Mesh{Namespace: "linkerd", TrustDomain: "cluster.local"},
		},
		Files: Files{Interval: 15 * time.Second},
	}
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse parses a configuration over the defaults and validates it.
func Parse(data []byte) (*Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every setting and names the first one that is wrong.
func (c *Config) Validate() error {
	for _, m := range []struct {
		name string
		mesh Mesh
	}{{"istio", c.Meshes.Istio}, {"linkerd", c.Meshes.Linkerd}} {
		if m.mesh.Namespace == "" {
			return fmt.Errorf("meshes.%s.namespace: must not be empty", m.name)
		}
		for i, td := range m.mesh.TrustDomains() {
			field := "trust_domain"
			if i > 0 {
				field = fmt.Sprintf("trust_domain_aliases[%d]", i-1)
			}
			if !pki.ValidTrustDomain(td) {
				return fmt.Errorf("meshes.%s.%s: %q is not a valid trust domain", m.name, field, td)
			}
		}
	}
	if c.Files.Interval < time.Second {
		return fmt.Errorf("files.interval: %s is shorter than 1s", c.Files.Interval)
	}
	for i, t := range c.Files.Targets {
		if strings.TrimSpace(t.Path) == "" {
			return fmt.Errorf("files.targets[%d].path: must not be empty", i)
		}
		if _, err := ParseMesh(t.Mesh); err != nil {
			return fmt.Errorf("files.targets[%d].mesh: %w", i, err)
		}
	}
	return nil
}

// TrustDomains returns the trust domain followed by its aliases.
func (m Mesh) TrustDomains() []string {
	return append([]string{m.TrustDomain}, m.TrustDomainAliases...)
}

// ParseMesh returns the mesh named s: istio, linkerd, or empty for none.
func ParseMesh(s string) (model.Mesh, error) {
	switch m := model.Mesh(s); m {
	case model.MeshNone, model.MeshIstio, model.MeshLinkerd:
		return m, nil
	default:
		return "", fmt.Errorf("unknown mesh %q (want istio, linkerd or empty)", s)
	}
}

// MeshSettings returns the settings of each mesh for the analysis.
func (c *Config) MeshSettings() map[model.Mesh]model.MeshSettings {
	settings := func(m Mesh) model.MeshSettings {
		return model.MeshSettings{TrustDomain: m.TrustDomain, TrustDomainAliases: m.TrustDomainAliases, ControlPlaneNamespace: m.Namespace}
	}
	return map[model.Mesh]model.MeshSettings{
		model.MeshIstio:   settings(c.Meshes.Istio),
		model.MeshLinkerd: settings(c.Meshes.Linkerd),
	}
}
