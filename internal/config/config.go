// Package config is the exporter's YAML configuration file. Decoding is strict: an unknown key is an
// error that names the key and its line. Every setting has a default that matches the meshes'
// upstream defaults, so an empty file is a valid configuration. Each section belongs to what it
// configures: meshes.<mesh> to the mesh's package, files, kubernetes and proxies to the
// mechanisms in package sources, proxies.<kind> to the proxy kinds the meshes define.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/mesh/meshes"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/sources"
)

// Config is the whole configuration file.
type Config struct {
	Meshes     Meshes                     `yaml:"meshes"`
	Files      sources.FileSettings       `yaml:"files"`
	Kubernetes sources.KubernetesSettings `yaml:"kubernetes"`
	Proxies    Proxies                    `yaml:"proxies"`
	Posture    sources.PostureSettings    `yaml:"posture"`
}

// Meshes are the sections of the meshes package meshes lists, in its order.
type Meshes []mesh.Mesh

// Get returns the mesh named name, or nil.
func (ms Meshes) Get(name model.Mesh) mesh.Mesh {
	for _, m := range ms {
		if m.Name() == name {
			return m
		}
	}
	return nil
}

// UnmarshalYAML decodes each mesh's section into that mesh over its defaults, with the
// decoder's strictness and line numbers.
func (ms *Meshes) UnmarshalYAML(unmarshal func(any) error) error {
	names := mesh.Names(*ms)
	if err := checkKeys(unmarshal, "meshes", "unknown mesh", names); err != nil {
		return err
	}
	values := make([]any, len(*ms))
	for i, m := range *ms {
		values[i] = m
	}
	return unmarshal(sectionsOf(names, values))
}

// Proxies configure the proxy sources: the sharding between replicas and one section per proxy
// kind of the meshes.
type Proxies struct {
	sources.Sharding
	// Kinds are the proxy kinds of the meshes, in order.
	Kinds []sources.ProxyKind
	// Settings holds each kind's settings, in the order of Kinds.
	Settings []*sources.ProxyConfig
}

// Of returns the settings of the kind named source, or nil.
func (p Proxies) Of(source string) *sources.ProxyConfig {
	for i, k := range p.Kinds {
		if k.Source == source {
			return p.Settings[i]
		}
	}
	return nil
}

// UnmarshalYAML decodes shard, total_shards, node_name and a section per proxy kind.
func (p *Proxies) UnmarshalYAML(unmarshal func(any) error) error {
	names := []model.Mesh{"shard", "total_shards", "node_name"}
	values := []any{&p.Shard, &p.TotalShards, &p.NodeName}
	for i, k := range p.Kinds {
		names = append(names, model.Mesh(k.Key))
		values = append(values, p.Settings[i])
	}
	if err := checkKeys(unmarshal, "proxies", "unknown setting or proxy kind", names); err != nil {
		return err
	}
	return unmarshal(sectionsOf(names, values))
}

// NeedsPods reports whether any proxy source discovers pods.
func (p Proxies) NeedsPods() bool {
	return slices.ContainsFunc(p.Settings, func(s *sources.ProxyConfig) bool { return s.Enabled })
}

// NeedsPortForward reports whether any enabled proxy source uses port-forward.
func (p Proxies) NeedsPortForward() bool {
	return slices.ContainsFunc(p.Settings, func(s *sources.ProxyConfig) bool {
		return s.Enabled && s.Transport == sources.TransportPortForward
	})
}

// checkKeys returns an error that names the first key of a mapping that is not one of names.
func checkKeys(unmarshal func(any) error, section, what string, names []model.Mesh) error {
	var keys map[string]yaml.Node
	if err := unmarshal(&keys); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if !slices.Contains(names, model.Mesh(k)) {
			return fmt.Errorf("%s.%s: %s (want one of %s)", section, k, what, joinNames(names))
		}
	}
	return nil
}

// sectionsOf returns a pointer to a struct whose fields are values (pointers), named for YAML
// by names: decoding into it decodes each section into its value, and an unknown key is the
// decoder's usual error with its line.
func sectionsOf(names []model.Mesh, values []any) any {
	fields := make([]reflect.StructField, len(names))
	for i, n := range names {
		fields[i] = reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: reflect.TypeOf(values[i]),
			Tag: reflect.StructTag(fmt.Sprintf("yaml:%q", string(n)))}
	}
	v := reflect.New(reflect.StructOf(fields))
	for i := range values {
		v.Elem().Field(i).Set(reflect.ValueOf(values[i]))
	}
	return v.Interface()
}

func joinNames(names []model.Mesh) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = string(n)
	}
	return strings.Join(out, ", ")
}

// Default returns the configuration used when no file is given: every mesh's defaults, no files
// or selected objects, and every proxy kind off.
func Default() *Config {
	c := &Config{Files: sources.DefaultFileSettings(), Posture: sources.DefaultPostureSettings(),
		Proxies: Proxies{Sharding: sources.Sharding{TotalShards: 1}}}
	for _, d := range meshes.All() {
		m := d.New()
		c.Meshes = append(c.Meshes, m)
		for _, k := range m.Proxies() {
			settings := k.Defaults
			c.Proxies.Kinds = append(c.Proxies.Kinds, k)
			c.Proxies.Settings = append(c.Proxies.Settings, &settings)
		}
	}
	return c
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
		return nil, withPaths(data, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every setting and names the first one that is wrong by its path.
func (c *Config) Validate() error {
	for _, m := range c.Meshes {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("meshes.%s.%w", m.Name(), err)
		}
	}
	names := mesh.Names(c.Meshes)
	if err := c.Files.Validate(names); err != nil {
		return fmt.Errorf("files.%w", err)
	}
	if err := c.Kubernetes.Validate(names); err != nil {
		return fmt.Errorf("kubernetes.%w", err)
	}
	if err := c.Posture.Validate(); err != nil {
		return fmt.Errorf("posture.%w", err)
	}
	if err := c.Proxies.Sharding.Validate(); err != nil {
		return fmt.Errorf("proxies.%w", err)
	}
	for i, k := range c.Proxies.Kinds {
		if err := c.Proxies.Settings[i].Validate(k); err != nil {
			return fmt.Errorf("proxies.%s.%w", k.Key, err)
		}
	}
	return nil
}

// MeshSettings returns the configured settings of each mesh for the analysis.
func (c *Config) MeshSettings() map[model.Mesh]model.MeshSettings {
	out := map[model.Mesh]model.MeshSettings{}
	for _, m := range c.Meshes {
		out[m.Name()] = m.Settings()
	}
	return out
}
