package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrk runs the small-GET scenario with wrk (https://github.com/wg/wrk)
// when --loadgen picks it: a C load generator with an event loop per
// thread, cheaper per request than the harness's Go client.
type wrk struct {
	bin     string
	version string // the first words of `wrk -v`
	script  string // the Lua file with the done hook
}

// wrkScript makes wrk print one line the harness parses (reWrk) when it
// finishes: the requests answered (any status), the run's length in µs,
// the errors (connect, read, write, timeout, and non-2xx/3xx answers),
// the latter alone, and latency quantiles in µs.
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("adit-bench-wrk requests=%.0f duration_us=%.0f errors=%.0f status_errors=%.0f p50_us=%.0f p99_us=%.0f p999_us=%.0f\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`

var reWrk = regexp.MustCompile(`adit-bench-wrk requests=(\d+) duration_us=(\d+) errors=(\d+) status_errors=(\d+) p50_us=(\d+) p99_us=(\d+) p999_us=(\d+)\n`)

// newWrk writes the script into dir.
func newWrk(bin, dir string) (*wrk, error) {
	w := &wrk{bin: bin, script: filepath.Join(dir, "bench.lua")}
	if err := os.WriteFile(w.script, []byte(wrkScript), 0o644); err != nil {
		return nil, fmt.Errorf("bench: wrk: %w", err)
	}
	// `wrk -v` prints its version and usage, and exits 1.
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	w.version, _, _ = strings.Cut(firstLine(string(out)), " Copyright")
	return w, nil
}

// run sends GETs to t's path on concurrency connections for d, with
// min(concurrency, 2) threads (wrk wants at least one connection per
// thread). wrk's --duration takes whole seconds, so it gets a longer one
// and a SIGINT (after which it stops and reports as usual) at d; the rate
// is over the run's length as wrk measured it. A request counts as failed
// after 30s, as with the Go client. The stats' cpu is the CPU time the
// wrk process used.
func (w *wrk) run(ctx context.Context, t target, path string, concurrency int, d time.Duration) (latencyStats, error) {
	args := []string{"--threads", strconv.Itoa(min(concurrency, 2)), "--connections", strconv.Itoa(concurrency),
		"--duration", fmt.Sprintf("%ds", int(d/time.Second)+5), "--timeout", "30s", "--script", w.script}
	if t.host != "" {
		args = append(args, "--header", "Host: "+t.host)
	}
	for k, vs := range t.header {
		for _, v := range vs {
			args = append(args, "--header", k+": "+v)
		}
	}
	args = append(args, t.base+path)
	ctx, cancel := context.WithTimeout(ctx, d+35*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Env = childEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return latencyStats{}, fmt.Errorf("wrk: %w", err)
	}
	interrupt := time.AfterFunc(d, func() {
		// A SIGINT before wrk catches it would kill it without a report.
		for deadline := time.Now().Add(5 * time.Second); !catchesSIGINT(cmd.Process.Pid) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(os.Interrupt)
	})
	defer interrupt.Stop()
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return latencyStats{}, ctx.Err()
		}
		return latencyStats{}, fmt.Errorf("wrk: %w\n%s", err, out.String())
	}
	s, err := parseWrk(out.String())
	if err != nil {
		return s, err
	}
	// The whole life of this wrk process: the measured run alone (a
	// warm-up is a run of its own).
	s.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if s.N == 0 {
		return s, fmt.Errorf("no successful request (%d errors)\n%s", s.Errors, out.String())
	}
	if s.Errors > 0 {
		// wrk counts errors by kind, on lines of their own.
		var kinds []string
		for line := range strings.SplitSeq(out.String(), "\n") {
			if strings.Contains(line, "errors:") || strings.Contains(line, "Non-2xx") {
				kinds = append(kinds, strings.TrimSpace(line))
			}
		}
		s.firstErr = fmt.Errorf("wrk: %s", strings.Join(kinds, "; "))
	}
	return s, nil
}

// catchesSIGINT reports whether process pid has a SIGINT handler: bit 1
// of SigCgt in /proc/PID/status.
func catchesSIGINT(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), "\nSigCgt:")
	if !ok {
		return false
	}
	mask, err := strconv.ParseUint(strings.TrimSpace(firstLine(rest)), 16, 64)
	return err == nil && mask&(1<<(syscall.SIGINT-1)) != 0
}

// parseWrk reads the line wrkScript prints from wrk's output. N is the
// successful requests (answered with a 2xx or 3xx).
func parseWrk(out string) (latencyStats, error) {
	m := reWrk.FindStringSubmatch(out)
	if m == nil {
		return latencyStats{}, fmt.Errorf("wrk: no result line in its output:\n%s", out)
	}
	var v [7]int64
	for i := range v {
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > 1<<40 { // 12 days in µs: a time.Duration holds it
			return latencyStats{}, fmt.Errorf("wrk: %q: number out of range", strings.TrimSpace(m[0]))
		}
		v[i] = n
	}
	requests, durUS, errs, statusErrs, p50, p99, p999 := v[0], v[1], v[2], v[3], v[4], v[5], v[6]
	if statusErrs > requests || statusErrs > errs || p50 > p99 || p99 > p999 || durUS == 0 {
		return latencyStats{}, fmt.Errorf("wrk: inconsistent result %q", strings.TrimSpace(m[0]))
	}
	s := latencyStats{
		N:       int(requests - statusErrs),
		Errors:  errs,
		Elapsed: time.Duration(durUS) * time.Microsecond,
		P50:     time.Duration(p50) * time.Microsecond,
		P99:     time.Duration(p99) * time.Microsecond,
		P999:    time.Duration(p999) * time.Microsecond,
	}
	s.RequestsPerSecond = float64(s.N) / s.Elapsed.Seconds()
	return s, nil
}
