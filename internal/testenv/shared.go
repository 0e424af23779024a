package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RunShared runs a test binary's tests with one control plane for all of them, stored in *cp (nil
// when the binaries are missing outside CI, so tests can skip), and stops it afterwards. Use it
// from TestMain: os.Exit(testenv.RunShared(m, &controlPlane)).
func RunShared(m *testing.M, cp **ControlPlane) int {
	started, err := Start()
	switch {
	case err == nil:
		*cp = started
		defer started.Stop()
	case errors.Is(err, ErrNoBinaries) && os.Getenv("CI") == "":
		fmt.Fprintln(os.Stderr, "Kubernetes tests skipped:", err)
	default:
		fmt.Fprintln(os.Stderr, "test control plane:", err)
		return 1
	}
	return m.Run()
}

// Tool returns the path of a real tool the tests run (promtool, helm, prometheus). Missing, it
// fails the test in CI and skips it elsewhere: `make tools` installs every one. The cache's bin
// directory is searched before PATH.
func Tool(t testing.TB, name string) string {
	t.Helper()
	for _, dir := range []string{os.Getenv("MESHCERT_CACHE"), filepath.Join(os.Getenv("HOME"), ".cache", "meshcert-exporter")} {
		p := filepath.Join(dir, "bin", name)
		if st, err := os.Stat(p); dir != "" && err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; `make tools` installs it", name)
	}
	t.Skipf("%s is not installed; `make tools` installs it", name)
	return ""
}

// StartForTest starts a control plane of the test's own and stops it when the test ends. Without
// the binaries it fails the test in CI and skips it elsewhere.
func StartForTest(t testing.TB) *ControlPlane {
	t.Helper()
	cp, err := Start()
	if errors.Is(err, ErrNoBinaries) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	return cp
}
