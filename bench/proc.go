package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a running child process whose output the harness can wait on.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *outputBuffer // stdout and stderr, interleaved
	done chan struct{}
	err  error // from Wait, once done is closed
}

// outputBuffer collects a child's output, keeping at most maxOutput bytes
// (the newest), and wakes waiters on every write.
type outputBuffer struct {
	mu      sync.Mutex
	buf     []byte
	changed chan struct{}
}

const maxOutput = 1 << 20

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > maxOutput {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-maxOutput/2:]...)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *outputBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf), b.changed
}

func (b *outputBuffer) String() string {
	s, _ := b.snapshot()
	return s
}

// tail is the last n lines of the output, for error messages.
func (b *outputBuffer) tail(n int) string {
	s := strings.TrimRight(b.String(), "\n")
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// childEnv is the environment of every child: the harness's own, without
// proxies (all traffic stays on 127.0.0.1), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "NO_PROXY=*")
	return append(env, extra...)
}

// startProc starts bin with args. The child gets SIGKILL if the harness
// dies without stopping it.
func startProc(name, bin string, env []string, args ...string) (*proc, error) {
	p := newProc(name, bin, env, args...)
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// newProc prepares bin with args, for the caller to adjust p.cmd before
// p.start.
func newProc(name, bin string, env []string, args ...string) *proc {
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &outputBuffer{changed: make(chan struct{})}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return p
}

func (p *proc) start() error {
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("bench: starting %s: %w", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace, then kills; it reports
// whether it had to kill.
func (p *proc) stop(grace time.Duration) (killed bool) {
	if p.exited() {
		return false
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return true
	}
}

// waitMatch waits until the output matches re and returns the submatches.
func (p *proc) waitMatch(ctx context.Context, re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.After(timeout)
	for {
		s, changed := p.out.snapshot()
		if m := re.FindStringSubmatch(s); m != nil {
			return m, nil
		}
		select {
		case <-changed:
		case <-p.done:
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("bench: %s exited (%v) before printing %s:\n%s", p.name, p.err, re, p.out.tail(20))
		case <-deadline:
			return nil, fmt.Errorf("bench: %s did not print %s within %s:\n%s", p.name, re, timeout, p.out.tail(20))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// runCmd runs bin to completion (at most limit) and returns its output; a
// non-zero exit is an error carrying the output.
func runCmd(ctx context.Context, limit time.Duration, bin string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("bench: %s %s: %w\n%s", bin, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}
