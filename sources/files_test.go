package sources_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/meshcert/meshcert-exporter/internal/config"
	"github.com/meshcert/meshcert-exporter/internal/mesh"
	"github.com/meshcert/meshcert-exporter/internal/mesh/istio"
	"github.com/meshcert/meshcert-exporter/internal/mesh/linkerd"
	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
	"github.com/meshcert/meshcert-exporter/sources"
)

// newFiles is the file source of targets as the exporter builds it: the meshes' layouts.
func newFiles(targets []sources.FileTarget, logger ...log.Logger) *sources.Files {
	meshes := []mesh.Mesh(config.Default().Meshes)
	env := sources.Env{Cache: pki.NewCache(), Layouts: mesh.Layouts(meshes), Logger: log.NewNopLogger()}
	if len(logger) > 0 {
		env.Logger = logger[0]
	}
	return sources.NewFiles(sources.FileSettings{Interval: time.Hour, Targets: targets}, env)
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// bundleKeys maps "dir-base/key" to the bundle for easy assertions.
func bundleKeys(objects []*model.Object) map[string]model.Bundle {
	out := map[string]model.Bundle{}
	for _, o := range objects {
		for _, b := range o.Bundles {
			out[filepath.Base(o.Name)+"/"+b.Key] = b
		}
	}
	return out
}

func TestFilesLayouts(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	inter := testpki.Issue(testpki.Spec{CommonName: "inter", CA: true, Issuer: root, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	// A trap: a "key" file that holds a certificate. If the source ever read a key file, this
	// certificate would show up.
	keyTrap := append(inter.KeyPEM(), root.PEM()...)
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{
		"istio/root-cert.pem":   root.PEM(),
		"istio/ca-cert.pem":     inter.PEM(),
		"istio/cert-chain.pem":  testpki.Bundle(inter, root),
		"istio/ca-key.pem":      keyTrap,
		"cm/tls.crt":            inter.PEM(),
		"cm/tls.key":            keyTrap,
		"cm/ca.crt":             root.PEM(),
		"cm/ca-cert.pem":        inter.PEM(), // ignored: tls.crt wins, as in istiod
		"cm/root-cert.pem":      root.PEM(),
		"linkerd/crt.pem":       inter.PEM(),
		"linkerd/key.pem":       keyTrap,
		"linkerd/ca-bundle.crt": root.PEM(),
		"partial/ca-cert.pem":   inter.PEM(),
		"partial/root-cert.pem": root.PEM(),
		// Mounted without their keys, as a careful team mounts a Secret's public items only.
		"keyless-istio/ca-cert.pem":     inter.PEM(),
		"keyless-istio/cert-chain.pem":  testpki.Bundle(inter, root),
		"keyless-istio/root-cert.pem":   root.PEM(),
		"keyless-cm/tls.crt":            inter.PEM(),
		"keyless-cm/ca.crt":             root.PEM(),
		"keyless-linkerd/crt.pem":       inter.PEM(),
		"keyless-linkerd/ca-bundle.crt": root.PEM(),
		"generic/server.pem":            testpki.Bundle(inter, root),
		"generic/server.key":            keyTrap,
		"generic/.hidden.pem":           root.PEM(),
	})
	f := newFiles([]sources.FileTarget{{Path: filepath.Join(dir, "*")}})
	f.Refresh()
	st := f.State()
	if !st.Up || !st.Synced {
		t.Fatalf("up %v synced %v", st.Up, st.Synced)
	}
	meshes := map[string]model.Mesh{}
	for _, o := range st.Objects {
		meshes[filepath.Base(o.Name)] = o.Mesh
	}
	wantMesh := map[string]model.Mesh{"istio": istio.Name, "cm": istio.Name, "linkerd": linkerd.Name, "partial": istio.Name, "generic": "",
		"keyless-istio": istio.Name, "keyless-cm": "", "keyless-linkerd": linkerd.Name} // tls.crt and ca.crt alone are any TLS pair
	for name, m := range wantMesh {
		if meshes[name] != m {
			t.Errorf("%s: mesh %q, want %q", name, meshes[name], m)
		}
	}
	got := bundleKeys(st.Objects)
	want := map[string]struct {
		certs   int
		purpose model.Purpose
		hint    model.Role
		reason  model.ErrorReason
	}{
		"istio/root-cert.pem":    {1, model.PurposeTrustBundle, "", ""},
		"istio/ca-cert.pem":      {1, model.PurposeCertificates, "", ""},
		"istio/cert-chain.pem":   {2, model.PurposeCertificates, "", ""},
		"cm/tls.crt":             {1, model.PurposeCertificates, "", ""},
		"cm/ca.crt":              {1, model.PurposeTrustBundle, "", ""},
		"linkerd/crt.pem":        {1, model.PurposeCertificates, model.RoleIssuer, ""},
		"linkerd/ca-bundle.crt":  {1, model.PurposeTrustBundle, "", ""},
		"partial/ca-cert.pem":    {1, model.PurposeCertificates, "", ""},
		"partial/root-cert.pem":  {1, model.PurposeTrustBundle, "", ""},
		"partial/cert-chain.pem": {0, 0, "", model.ReasonIncomplete},
		// No key is ever required: complete without them.
		"keyless-istio/ca-cert.pem":     {1, model.PurposeCertificates, "", ""},
		"keyless-istio/cert-chain.pem":  {2, model.PurposeCertificates, "", ""},
		"keyless-istio/root-cert.pem":   {1, model.PurposeTrustBundle, "", ""},
		"keyless-cm/tls.crt":            {1, model.PurposeCertificates, "", ""},
		"keyless-cm/ca.crt":             {1, model.PurposeTrustBundle, "", ""},
		"keyless-linkerd/crt.pem":       {1, model.PurposeCertificates, model.RoleIssuer, ""},
		"keyless-linkerd/ca-bundle.crt": {1, model.PurposeTrustBundle, "", ""},
		"generic/server.pem":            {2, model.PurposeCertificates, "", ""},
	}
	for k, w := range want {
		b, ok := got[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if len(b.Certificates) != w.certs || b.Purpose != w.purpose || b.RoleHint() != w.hint || b.Error != w.reason {
			t.Errorf("%s: %d certificates, purpose %v, hint %q, reason %q; want %+v", k, len(b.Certificates), b.Purpose, b.RoleHint(), b.Error, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected bundle %s (a key, an ignored or a hidden file was read)", k)
		}
	}
	if st.Errors[model.ReasonIncomplete] != 1 {
		t.Errorf("errors = %v, want 1 incomplete_bundle (partial's missing cert-chain.pem)", st.Errors)
	}
}

func TestFilesJunkNextToGoodAndErrorsCountedOnce(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{
		"good.pem":      root.PEM(),
		"junk.pem":      []byte("this is not a certificate\n"),
		"truncated.pem": root.PEM()[:100],
	})
	var logs bytes.Buffer
	f := newFiles([]sources.FileTarget{{Path: dir}}, log.NewLogfmtLogger(&logs))
	for range 3 {
		f.Refresh()
	}
	st := f.State()
	b := bundleKeys(st.Objects)
	base := filepath.Base(dir)
	if len(b[base+"/good.pem"].Certificates) != 1 {
		t.Errorf("good certificate lost: %+v", b[base+"/good.pem"])
	}
	if b[base+"/junk.pem"].Error != model.ReasonNoCertificate || b[base+"/truncated.pem"].Error != model.ReasonBadPEM {
		t.Errorf("junk %q, truncated %q", b[base+"/junk.pem"].Error, b[base+"/truncated.pem"].Error)
	}
	if st.Errors[model.ReasonNoCertificate] != 1 || st.Errors[model.ReasonBadPEM] != 1 {
		t.Errorf("errors after three reads = %v, want each counted once", st.Errors)
	}
	if n := bytes.Count(logs.Bytes(), []byte("reason=no_certificate")); n != 1 {
		t.Errorf("junk logged %d times, want once:\n%s", n, logs.String())
	}
	if !st.Up {
		t.Error("bad content made the source down")
	}
}

func TestFilesRotationBySymlinkSwapAndDeletion(t *testing.T) {
	oldRoot := testpki.Issue(testpki.Spec{CommonName: "old", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	newRoot := testpki.Issue(testpki.Spec{CommonName: "new", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	dir := t.TempDir()
	// The kubelet's layout of a mounted Secret: ca.crt -> ..data/ca.crt, ..data -> ..<timestamp>.
	writeFiles(t, dir, map[string][]byte{"..2026_01_01/ca.crt": oldRoot.PEM(), "..2026_02_01/ca.crt": newRoot.PEM()})
	must(t, os.Symlink("..2026_01_01", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/ca.crt", filepath.Join(dir, "ca.crt")))

	f := newFiles([]sources.FileTarget{{Path: dir}})
	f.Refresh()
	first := f.State()
	if cn := first.Objects[0].Bundles[0].Certificates[0].Subject; cn != "CN=old" {
		t.Fatalf("read %q, want old", cn)
	}
	f.Refresh()
	if g := f.State().Generation; g != first.Generation {
		t.Errorf("generation moved from %d to %d without a change", first.Generation, g)
	}

	tmp := filepath.Join(dir, "..data_tmp")
	must(t, os.Symlink("..2026_02_01", tmp))
	must(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	f.Refresh()
	second := f.State()
	if cn := second.Objects[0].Bundles[0].Certificates[0].Subject; cn != "CN=new" {
		t.Errorf("after the swap read %q, want new", cn)
	}
	if second.Generation == first.Generation {
		t.Error("generation did not move after a rotation")
	}

	must(t, os.Remove(filepath.Join(dir, "ca.crt")))
	f.Refresh()
	if got := bundleKeys(f.State().Objects); len(got) != 0 {
		t.Errorf("deleted file still exported: %v", got)
	}
}

func TestFilesMissingTargetIsDown(t *testing.T) {
	f := newFiles([]sources.FileTarget{{Path: filepath.Join(t.TempDir(), "nope")}, {Path: filepath.Join(t.TempDir(), "*.pem")}})
	f.Refresh()
	st := f.State()
	if st.Up || !st.Synced || st.Errors[model.ReasonReadError] != 1 {
		t.Errorf("up %v synced %v errors %v; want down, synced, one read_error (a glob matching nothing is fine)", st.Up, st.Synced, st.Errors)
	}
}

func TestFilesTooLarge(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"big.pem": bytes.Repeat([]byte("A"), 10<<20)})
	f := newFiles([]sources.FileTarget{{Path: dir}})
	f.Refresh()
	if b := bundleKeys(f.State().Objects)[filepath.Base(dir)+"/big.pem"]; b.Error != model.ReasonTooLarge {
		t.Errorf("10 MB file: reason %q, want too_large", b.Error)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFilesSkippedPaths: each path the source passes over (a glob that matches nothing, a
// dangling link, a subdirectory, which is not searched) is logged once and counted once with its
// reason, however often it is read again; the source stays up and reads the rest.
func TestFilesSkippedPaths(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"certs/ca.crt": root.PEM(), "certs/nested/ca.crt": root.PEM()})
	if err := os.Symlink(filepath.Join(dir, "gone.crt"), filepath.Join(dir, "certs", "dangling.crt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "gone.pem"), filepath.Join(dir, "linked.pem")); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	f := newFiles([]sources.FileTarget{{Path: filepath.Join(dir, "certs")}, {Path: filepath.Join(dir, "none-*.pem")}, {Path: filepath.Join(dir, "*.pem")}},
		log.NewLogfmtLogger(&logs))
	f.Refresh()
	f.Refresh()
	st := f.State()
	if !st.Up || len(st.Objects) != 1 {
		t.Fatalf("up %v, %d objects: the skips must not cost the rest", st.Up, len(st.Objects))
	}
	want := map[model.ErrorReason]uint64{model.ReasonNoMatch: 1, model.ReasonDanglingLink: 2, model.ReasonNotAFile: 1}
	for r, n := range want {
		if st.Errors[r] != n {
			t.Errorf("%s counted %d, want %d (errors %v)", r, st.Errors[r], n, st.Errors)
		}
	}
	for _, want := range []string{
		`msg="path skipped" source=file path=` + filepath.Join(dir, "none-*.pem") + " reason=no_match",
		`path=` + filepath.Join(dir, "certs", "dangling.crt") + " reason=dangling_link",
		`path=` + filepath.Join(dir, "linked.pem") + " reason=dangling_link",
		`path=` + filepath.Join(dir, "certs", "nested") + " reason=not_a_file",
	} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, logs.String())
		}
	}
	// A skip that ends and starts again is counted again.
	os.Remove(filepath.Join(dir, "certs", "dangling.crt"))
	f.Refresh()
	os.Symlink(filepath.Join(dir, "gone.crt"), filepath.Join(dir, "certs", "dangling.crt"))
	f.Refresh()
	if n := f.State().Errors[model.ReasonDanglingLink]; n != 3 {
		t.Errorf("dangling_link counted %d after the link came back, want 3", n)
	}
}
