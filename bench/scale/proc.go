package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// child is a process started from this executable in a role.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string // its stdout and stderr
	done chan struct{}
}

// startChild runs this executable again in role with args; its output goes
// to logPath. The child is killed if this process dies (Pdeathsig).
func startChild(name, role, logPath string, stdin io.Reader, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = f, f, stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("scale: start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace before SIGKILL. It returns how
// long the child took to exit, and whether it had to be killed.
func (c *child) stop(grace time.Duration) (time.Duration, bool) {
	start := time.Now()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return time.Since(start), false
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
		return time.Since(start), true
	}
}

// tail is the last n lines of the child's output, for error messages.
func (c *child) tail(n int) string {
	b, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitMatch polls the child's output until re matches, the child exits,
// or ctx ends.
func (c *child) waitMatch(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	for {
		b, _ := os.ReadFile(c.log)
		if m := re.FindSubmatch(b); m != nil {
			s := make([]string, len(m))
			for i := range m {
				s[i] = string(m[i])
			}
			return s, nil
		}
		if c.exited() {
			return nil, fmt.Errorf("scale: %s exited before printing %q:\n%s", c.name, re, c.tail(10))
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return nil, fmt.Errorf("scale: %s: waiting for %q: %w", c.name, re, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
