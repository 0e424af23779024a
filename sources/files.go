package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// FileSettings configure the file source (the configuration's files section).
type FileSettings struct {
	// Interval between checks of the files for changes.
	Interval time.Duration `yaml:"interval"`
	// Targets are files, directories or globs.
	Targets []FileTarget `yaml:"targets"`
}

// FileTarget is a file, a directory or a glob to read certificates from.
type FileTarget struct {
	Path string `yaml:"path"`
	// Mesh, when set, overrides the mesh detected from the file names.
	Mesh model.Mesh `yaml:"mesh"`
	// Copy marks a copy of the mesh's trust anchors handed to workloads (a mounted
	// istio-ca-root-cert, a proxy's root bundle saved to disk): its trust bundles are compared with
	// the mesh's current anchors, never trusted.
	Copy bool `yaml:"copy"`
}

// DefaultFileSettings are the file source's defaults: no targets, checked every 15 seconds.
func DefaultFileSettings() FileSettings { return FileSettings{Interval: 15 * time.Second} }

// Validate checks the settings; meshes are the mesh names a target may name. An error starts with
// the name of the wrong field.
func (s FileSettings) Validate(meshes []model.Mesh) error {
	if s.Interval < time.Second {
		return fmt.Errorf("interval: %s is shorter than 1s", s.Interval)
	}
	for i, t := range s.Targets {
		if strings.TrimSpace(t.Path) == "" {
			return fmt.Errorf("targets[%d].path: must not be empty", i)
		}
		if err := ValidMesh(t.Mesh, meshes); err != nil {
			return fmt.Errorf("targets[%d].mesh: %w", i, err)
		}
	}
	return nil
}

// ValidMesh checks that m is one of meshes, or empty for none.
func ValidMesh(m model.Mesh, meshes []model.Mesh) error {
	if m == "" || slices.Contains(meshes, m) {
		return nil
	}
	names := make([]string, len(meshes))
	for i, k := range meshes {
		names[i] = string(k)
	}
	return fmt.Errorf("unknown mesh %q (want %s or empty)", m, strings.Join(names, ", "))
}

// Files reads certificate files and directories (a mesh's mounted CA, an issuer's mount, offline
// roots). It polls: a file is re-read only when its size, modification time or inode
// changes, which also catches the symlink swap by which the kubelet updates a mounted Secret.
type Files struct {
	stateHolder
	targets  []FileTarget
	interval time.Duration
	env      Env
	reporter *errorReporter

	refreshMu sync.Mutex // one Refresh at a time owns the cache
	cache     map[string]fileEntry
}

// fileEntry is a file read before, with the signature it had then.
type fileEntry struct {
	sig    fileSignature
	certs  []*model.Certificate
	reason model.ErrorReason
}

type fileSignature struct {
	size  int64
	mtime time.Time
	dev   uint64
	ino   uint64
}

// SourceFile is the value of the `source` label for certificates read from files.
const SourceFile = "file"

// NewFiles returns a file source that reads the targets of s every interval.
func NewFiles(s FileSettings, env Env) *Files {
	return &Files{
		targets:  s.Targets,
		interval: s.Interval,
		env:      env,
		reporter: newErrorReporter(SourceFile, env.Logger),
		cache:    map[string]fileEntry{},
	}
}

// Name implements Source.
func (f *Files) Name() string { return SourceFile }

// Run implements Source.
func (f *Files) Run(ctx context.Context) error {
	f.Refresh()
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.Refresh()
		}
	}
}

// dirSelection is what was selected in one directory.
type dirSelection struct {
	names []string
	mesh  model.Mesh
	// whole is true when the directory itself was selected, so its layout may require keys.
	whole bool
	// copy is true when a target marked it a copy of the trust anchors.
	copy bool
}

// Refresh reads the targets once, re-reading only the files that changed.
func (f *Files) Refresh() {
	f.refreshMu.Lock()
	defer f.refreshMu.Unlock()
	dirs, skips, listErr := f.expand()
	var objects []*model.Object
	used := map[string]bool{}
	changed := false
	for _, dir := range sortedKeys(dirs) {
		sel := dirs[dir]
		layout := f.env.Layouts(sel.mesh, sel.names)
		if !sel.whole || sel.copy {
			layout.Missing = nil
		}
		if sel.copy {
			layout = AsCopies(layout)
		}
		// A directory mounted without its private keys is complete: the exporter never needs
		// a key, and a careful team mounts only a Secret's public items.
		layout.Missing = slices.DeleteFunc(slices.Clone(layout.Missing), IgnoredKey)
		o := BuildObject(SourceFile, "", dir, layout, func(key string) ([]*model.Certificate, model.ErrorReason) {
			path := filepath.Join(dir, key)
			used[path] = true
			e, fresh := f.read(path)
			changed = changed || fresh
			return e.certs, e.reason
		})
		objects = append(objects, o)
	}
	for path := range f.cache {
		if !used[path] {
			delete(f.cache, path)
			changed = true
		}
	}
	f.update(func(s *model.State) bool {
		if listErr != nil {
			f.reporter.fail(s, model.ReasonReadError, listErr)
		} else {
			f.reporter.recovered()
		}
		f.reporter.observe(s, objects)
		f.reporter.observeSkips(s, skips)
		s.Up, s.Synced = listErr == nil, true
		if s.Up {
			s.LastSuccess = time.Now()
		}
		s.Objects = objects
		return changed
	})
}

// expand resolves the targets to directories and the file names selected in each. It follows
// symlinks and skips hidden entries; skips are the other paths it passed over, with why (a glob
// that matches nothing, a dangling link, a subdirectory, an entry it cannot stat). The error joins
// every target that could not be listed.
func (f *Files) expand() (map[string]*dirSelection, map[string]model.ErrorReason, error) {
	dirs := map[string]*dirSelection{}
	skips := map[string]model.ErrorReason{}
	var errs []error
	var copyTarget bool
	selectIn := func(dir string, names []string, mesh model.Mesh, whole bool) {
		d := dirs[dir]
		if d == nil {
			d = &dirSelection{mesh: mesh}
			dirs[dir] = d
		}
		d.copy = d.copy || copyTarget
		if d.mesh == model.MeshNone {
			d.mesh = mesh
		}
		d.whole = d.whole || whole
		for _, n := range names {
			if !slices.Contains(d.names, n) {
				d.names = append(d.names, n)
			}
		}
	}
	for _, t := range f.targets {
		copyTarget = t.Copy
		matches, err := filepath.Glob(t.Path)
		if err != nil {
			errs = append(errs, fmt.Errorf("bad pattern %q: %w", t.Path, err))
			continue
		}
		switch {
		case len(matches) == 0 && !hasMeta(t.Path):
			errs = append(errs, fmt.Errorf("%s: %w", t.Path, os.ErrNotExist))
		case len(matches) == 0:
			skips[t.Path] = model.ReasonNoMatch
		}
		for _, m := range matches {
			m = filepath.Clean(m)
			info, err := os.Stat(m)
			if err != nil {
				if reason := skipReason(m, err); hasMeta(t.Path) {
					skips[m] = reason
				} else {
					errs = append(errs, err)
				}
				continue
			}
			if !info.IsDir() {
				switch {
				case hiddenName(filepath.Base(m)):
				case info.Mode().IsRegular():
					selectIn(filepath.Dir(m), []string{filepath.Base(m)}, t.Mesh, false)
				default:
					skips[m] = model.ReasonNotAFile
				}
				continue
			}
			names, err := regularFiles(m, skips)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			selectIn(m, names, t.Mesh, true)
		}
	}
	return dirs, skips, errors.Join(errs...)
}

// skipReason says why a path that os.Stat refused is passed over: a symbolic link whose target
// is gone, or any other error (permissions) a read error.
func skipReason(path string, statErr error) model.ErrorReason {
	if l, err := os.Lstat(path); err == nil && l.Mode()&os.ModeSymlink != 0 && errors.Is(statErr, os.ErrNotExist) {
		return model.ReasonDanglingLink
	}
	return model.ReasonReadError
}

func hasMeta(path string) bool {
	for _, c := range path {
		if c == '*' || c == '?' || c == '[' || c == '\\' {
			return true
		}
	}
	return false
}

func hiddenName(name string) bool { return name != "" && name[0] == '.' }

// regularFiles lists the regular files of dir, following symlinks, without hidden entries; it
// notes in skips the entries it passes over (subdirectories, which are not searched, dangling
// links, entries it cannot stat).
func regularFiles(dir string, skips map[string]model.ErrorReason) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if hiddenName(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := os.Stat(path)
		switch {
		case err != nil:
			skips[path] = skipReason(path, err)
			continue
		case !info.Mode().IsRegular():
			skips[path] = model.ReasonNotAFile
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// read returns the parsed content of path, from the cache when the file did not change. fresh is
// true when the file was read now.
func (f *Files) read(path string) (e fileEntry, fresh bool) {
	info, err := os.Stat(path)
	if err != nil {
		delete(f.cache, path)
		return fileEntry{reason: model.ReasonReadError}, true
	}
	sig := signatureOf(info)
	if e, ok := f.cache[path]; ok && e.sig == sig {
		return e, false
	}
	e = fileEntry{sig: sig}
	data, err := readLimited(path, pki.MaxBundleBytes)
	switch {
	case errors.Is(err, errTooLarge):
		e.reason = model.ReasonTooLarge
	case err != nil:
		e.reason = model.ReasonReadError
	default:
		e.certs, e.reason = f.env.parse(data)
	}
	// The buffer may have held key blocks next to certificates: parsed certificates do not refer
	// to it, so wipe it rather than leave it to the garbage collector.
	clear(data)
	f.cache[path] = e
	return e, true
}

var errTooLarge = errors.New("file too large")

// readLimited reads at most limit bytes of path; a larger file is errTooLarge.
func readLimited(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		clear(data)
		return nil, errTooLarge
	}
	return data, nil
}

func signatureOf(info os.FileInfo) fileSignature {
	sig := fileSignature{size: info.Size(), mtime: info.ModTime()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		sig.dev, sig.ino = uint64(st.Dev), st.Ino
	}
	return sig
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
