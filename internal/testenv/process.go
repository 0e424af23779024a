package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Process is a program a test runs, in a process group of its own, with its output in a log file
// whose tail the test's log shows when the test fails.
type Process struct {
	cmd     *exec.Cmd
	log     *os.File
	stopped bool
}

// StartProcess starts name with args, its log in dir; the test's end stops it.
func StartProcess(t testing.TB, dir, name string, args ...string) *Process {
	t.Helper()
	logFile, err := os.CreateTemp(dir, filepath.Base(name)+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{cmd: cmd, log: logFile}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			if len(out) > 4000 {
				out = out[len(out)-4000:]
			}
			t.Logf("%s log (tail):\n%s", filepath.Base(name), out)
		}
	})
	return p
}

// Stop ends the process group with SIGTERM and waits for the process; stopping twice is a no-op.
func (p *Process) Stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	_ = p.cmd.Wait()
	p.log.Close()
}

// FreeAddr returns a loopback address with a port free now, for a program the test starts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
