package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
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

// procCPU is a process's CPU time (all threads), user and system, from
// /proc/PID/stat, whose unit is USER_HZ (100 on Linux).
func procCPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The name (field 2) may hold spaces: count fields after its ')'.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, 0, fmt.Errorf("scale: /proc/%d/stat: odd contents", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("scale: /proc/%d/stat: odd cpu times %q %q", pid, f[11], f[12])
	}
	return time.Duration(u) * 10 * time.Millisecond, time.Duration(s) * 10 * time.Millisecond, nil
}

// procMem is a process's VmRSS and RssAnon (heap, stacks: what it costs
// alone, without the binary's file pages) in bytes.
func procMem(pid int) (rss, anon int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "RssAnon":
			dst = &anon
		default:
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		*dst = kb << 10
	}
	return rss, anon, sc.Err()
}

// settle waits until pid's RSS stops moving (two readings 500ms apart
// within 1 MiB), for at most max: the Go runtime gives freed memory back
// gradually.
func settle(ctx context.Context, pid int, max time.Duration) {
	deadline := time.Now().Add(max)
	prev, _, _ := procMem(pid)
	for time.Now().Before(deadline) {
		if sleepCtx(ctx, 500*time.Millisecond) != nil {
			return
		}
		r, _, _ := procMem(pid)
		if d := r - prev; d < 1<<20 && d > -1<<20 {
			return
		}
		prev = r
	}
}

// metric reads one unlabelled sample from a Prometheus text endpoint.
func metric(ctx context.Context, url, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("scale: %s: no %s", url, name)
}
