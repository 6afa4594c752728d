package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// reMetricsAddr finds the metrics address an edge or connector logs when
// started with --metrics 127.0.0.1:0.
var reMetricsAddr = regexp.MustCompile(`metrics listening\b.*? addr=(\S+)`)

// metricsArgs are the extra flags for an edge or connector: a metrics
// listener, to read its allocation counters from and fetch profiles.
func (cfg *config) metricsArgs() []string {
	return []string{"--metrics", "127.0.0.1:0"}
}

// waitMetrics returns the metrics address p logged.
func (cfg *config) waitMetrics(ctx context.Context, p *proc) (string, error) {
	m, err := p.waitMatch(ctx, reMetricsAddr, time.Minute)
	if err != nil {
		return "", fmt.Errorf("%s: metrics address: %w", p.name, err)
	}
	return m[1], nil
}

// pprofRun fetches Go CPU and allocation profiles of the edge and one
// connector from their /debug/pprof/ while a scenario runs.
type pprofRun struct {
	cfg *config
	wg  sync.WaitGroup
}

// startPprof starts fetching d-long CPU and allocation profiles of the
// edge (metrics at edgeMetrics) and p's connector, or of p's two proxy
// hops, if --pprof-dir is set. The files are
// PATH-SCENARIO-SIDE.{cpu,allocs}.pprof (SIDE: edge, connector, hop1,
// hop2), each with a `go tool pprof -top` summary in .txt; the allocation
// profile holds what was allocated during the d only.
func startPprof(cfg *config, p *path, scenario, edgeMetrics string, d time.Duration) *pprofRun {
	if cfg.pprofDir == "" {
		return nil
	}
	sides := map[string]string{"edge": edgeMetrics, "connector": p.metrics}
	if p.kind == kindProxy2 {
		sides = map[string]string{"hop1": p.hopsPprof[0], "hop2": p.hopsPprof[1]}
	}
	if err := os.MkdirAll(cfg.pprofDir, 0o755); err != nil {
		cfg.logf("pprof-dir: %v", err)
		return nil
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	run := &pprofRun{cfg: cfg}
	for side, addr := range sides {
		for _, kind := range []string{"cpu", "allocs"} {
			endpoint := "profile"
			if kind == "allocs" {
				endpoint = "allocs"
			}
			url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, endpoint, secs)
			file := filepath.Join(cfg.pprofDir, p.name+"-"+scenario+"-"+side+"."+kind+".pprof")
			run.wg.Go(func() {
				if err := fetchProfile(url, file, time.Duration(secs+30)*time.Second); err != nil {
					cfg.logf("pprof %s: %v", file, err)
					return
				}
				if err := summarize(file, kind); err != nil {
					cfg.logf("pprof %s: %v", file, err)
				}
			})
		}
	}
	return run
}

// finish waits for the profiles.
func (r *pprofRun) finish() {
	if r == nil {
		return
	}
	r.wg.Wait()
	r.cfg.logf("Go profiles: %s", r.cfg.pprofDir)
}

func fetchProfile(url, file string, timeout time.Duration) error {
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// summarize writes `go tool pprof -top` of file next to it (allocation
// profiles by bytes allocated).
func summarize(file, kind string) error {
	args := []string{"tool", "pprof", "-top", "-nodecount=40"}
	if kind == "allocs" {
		args = append(args, "-sample_index=alloc_space")
	}
	out, err := exec.Command("go", append(args, file)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return os.WriteFile(strings.TrimSuffix(file, ".pprof")+".txt", out, 0o644)
}

// allocCounters are a process's Go allocation counters, from /metrics.
type allocCounters struct{ bytes, objects float64 }

// readAllocs reads go_memstats_alloc_bytes_total and
// go_memstats_mallocs_total from the metrics server at addr.
func readAllocs(addr string) (allocCounters, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return allocCounters{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return allocCounters{}, err
	}
	var c allocCounters
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "go_memstats_alloc_bytes_total":
			dst = &c.bytes
		case "go_memstats_mallocs_total":
			dst = &c.objects
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return allocCounters{}, fmt.Errorf("%s: %q: %w", name, value, err)
		}
		*dst = v
		found++
	}
	if found != 2 {
		return allocCounters{}, fmt.Errorf("%s/metrics: no go_memstats allocation counters", addr)
	}
	return c, nil
}
