package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a running adit process whose output tests can wait on.
type proc struct {
	cmd  *exec.Cmd
	out  *watchBuffer // stdout and stderr, interleaved
	done chan struct{}
	err  error
}

// watchBuffer is an output sink that wakes waiters on every write.
type watchBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newWatchBuffer() *watchBuffer { return &watchBuffer{changed: make(chan struct{})} }

func (b *watchBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *watchBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}

func (b *watchBuffer) String() string {
	s, _ := b.snapshot()
	return s
}

// connectorBinOnce builds adit-connector for connectorBin.
var connectorBinOnce = sync.OnceValues(func() (string, error) {
	// Next to aditBin, so TestMain removes it with its directory.
	bin := filepath.Join(filepath.Dir(aditBin), "adit-connector")
	build := exec.Command("go", "build", "-o", bin, "github.com/adit-dev/adit/cmd/adit-connector")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building adit-connector: %v\n%s", err, out)
	}
	return bin, nil
})

// connectorBin returns the adit-connector binary, built on first use.
func connectorBin(t testing.TB) string {
	t.Helper()
	bin, err := connectorBinOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startAdit starts the adit binary with args; env entries are added to the
// environment. The process is stopped at the end of the test.
func startAdit(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	return startBin(t, aditBin, env, args...)
}

// startBin is startAdit for the binary bin (adit or adit-connector).
func startBin(t testing.TB, bin string, env []string, args ...string) *proc {
	t.Helper()
	name := filepath.Base(bin)
	p := &proc{cmd: exec.Command(bin, args...), out: newWatchBuffer(), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s %v: %v", name, args, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("output of %s %s:\n%s", name, strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits; after 20s it kills.
func (p *proc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("adit did not stop within 20s of SIGTERM; killing")
		p.cmd.Process.Kill()
		<-p.done
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("adit still running after %s; output:\n%s", timeout, p.out.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitMatch waits until the output matches re and returns the submatches.
func (p *proc) waitMatch(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		s, changed := p.out.snapshot()
		if m := re.FindStringSubmatch(s); m != nil {
			return m
		}
		select {
		case <-changed:
		case <-p.done:
			s := p.out.String()
			if m := re.FindStringSubmatch(s); m != nil {
				return m
			}
			t.Fatalf("adit exited (%v) before printing %s; output:\n%s", p.err, re, s)
		case <-deadline:
			t.Fatalf("adit did not print %s within 60s; output:\n%s", re, s)
		}
	}
}

// runAdit runs the adit binary to completion.
func runAdit(t testing.TB, env []string, args ...string) (out string, code int) {
	t.Helper()
	return runBin(t, aditBin, env, args...)
}

// runBin is runAdit for the binary bin (adit or adit-connector).
func runBin(t testing.TB, bin string, env []string, args ...string) (out string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v did not finish within 60s:\n%s", filepath.Base(bin), args, buf.String())
	}
	return buf.String(), cmd.ProcessState.ExitCode()
}

// mustAdit runs adit and fails the test on a non-zero exit.
func mustAdit(t testing.TB, env []string, args ...string) string {
	t.Helper()
	return mustBin(t, aditBin, env, args...)
}

// mustBin is mustAdit for the binary bin (adit or adit-connector).
func mustBin(t testing.TB, bin string, env []string, args ...string) string {
	t.Helper()
	out, code := runBin(t, bin, env, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d:\n%s", filepath.Base(bin), strings.Join(args, " "), code, out)
	}
	return out
}

// edgeProc is an `adit edge` process and what it printed.
type edgeProc struct {
	*proc
	httpAddr   string
	tunnelAddr string // the bound UDP address, for a restart on the same one
	apiURL     string
	login      []string // the printed login command's arguments, after "adit"
}

var (
	reHTTPAddr = regexp.MustCompile(`public HTTP\s+(\S+)`)
	reAPIURL   = regexp.MustCompile(`API\s+(https://\S+)`)
	reLogin    = regexp.MustCompile(`(?m)^\s+adit (login .*)$`)
)

func startEdgeProc(t testing.TB, dataDir, tunnelAddr string) *edgeProc {
	t.Helper()
	p := startAdit(t, nil, "edge", "--data-dir", dataDir,
		"--http-addr", "127.0.0.1:0", "--tunnel-addr", tunnelAddr, "--api-addr", "127.0.0.1:0")
	e := &edgeProc{proc: p}
	e.httpAddr = p.waitMatch(t, reHTTPAddr)[1]
	e.tunnelAddr = p.waitMatch(t, reTunnelAddr)[1]
	e.apiURL = p.waitMatch(t, reAPIURL)[1]
	for _, f := range strings.Fields(p.waitMatch(t, reLogin)[1]) {
		e.login = append(e.login, strings.Trim(f, `"`))
	}
	return e
}
