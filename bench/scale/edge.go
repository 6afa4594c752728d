package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/adit-dev/adit/control"
)

// edge is a running `adit edge` child and the addresses it printed.
type edge struct {
	*child
	dataDir    string
	http       string // public HTTP host:port
	tunnelAddr string // host:port, UDP (QUIC) and TCP (WebSocket)
	api        string // https://host:port
	metrics    string // host:port of /metrics and /ready
	started    time.Time
}

var (
	reServing = regexp.MustCompile(`public HTTP\s+(\S+)\n\s+tunnels\s+(\S+) \(udp.*\n(?:.*\n)*?\s+API\s+(https://\S+)`)
	reMetrics = regexp.MustCompile(`metrics\s+http://(\S+)/metrics`)
)

// startEdge starts an edge on dataDir; tunnelAddr "" picks a free port
// (a restart passes the first edge's, which connectors dial). It returns
// once the edge printed its addresses; waitReady waits for /ready.
func startEdge(ctx context.Context, dataDir, tunnelAddr, logPath string) (*edge, error) {
	if tunnelAddr == "" {
		tunnelAddr = "127.0.0.1:0"
	}
	started := time.Now()
	c, err := startChild("edge", "edge", logPath, nil, "edge", "--data-dir", dataDir,
		"--http-addr", "127.0.0.1:0", "--tunnel-addr", tunnelAddr, "--api-addr", "127.0.0.1:0",
		"--metrics", "127.0.0.1:0", "--peer-addr", "off", "--loglevel", "warn",
		// One client address sends all the load: no flood caps.
		"--flood-conns-per-addr", "-1", "--flood-new-conns-per-sec", "-1",
		"--flood-inflight-per-addr", "-1", "--flood-inflight", "-1")
	if err != nil {
		return nil, err
	}
	e := &edge{child: c, dataDir: dataDir, started: started}
	m, err := c.waitMatch(ctx, reServing)
	if err != nil {
		c.stop(5 * time.Second)
		return nil, err
	}
	e.http, e.tunnelAddr, e.api = m[1], m[2], m[3]
	if m, err = c.waitMatch(ctx, reMetrics); err != nil {
		c.stop(5 * time.Second)
		return nil, err
	}
	e.metrics = m[1]
	return e, nil
}

// waitReady polls /ready until it answers 200 and returns the time from
// the edge's start.
func (e *edge) waitReady(ctx context.Context) (time.Duration, error) {
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.metrics+"/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(e.started), nil
			}
		}
		if e.exited() {
			return 0, fmt.Errorf("scale: edge exited:\n%s", e.tail(10))
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return 0, fmt.Errorf("scale: edge never ready: %w", err)
		}
	}
}

// client is a control API client for the edge, with its admin token.
func (e *edge) client() (*control.Client, error) {
	token, err := os.ReadFile(filepath.Join(e.dataDir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	ca, err := os.ReadFile(e.caPath())
	if err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	return control.NewClient(e.api, string(trimSpace(token)), ca)
}

func (e *edge) caPath() string { return filepath.Join(e.dataDir, "tls", "ca.pem") }

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// connections is the edge's count of registered connector connections.
func (e *edge) connections(ctx context.Context) (int, error) {
	v, err := metric(ctx, "http://"+e.metrics+"/metrics", "adit_edge_tunnel_connections")
	return int(v), err
}

// waitConnections polls the edge until it holds want connections and
// returns when it first did.
func (e *edge) waitConnections(ctx context.Context, want int, logf func(string, ...any)) (time.Time, error) {
	last, lastLog := -1, time.Now()
	for {
		n, err := e.connections(ctx)
		if err == nil && n >= want {
			return time.Now(), nil
		}
		if n != last && time.Since(lastLog) > 5*time.Second {
			logf("%d of %d connections registered", n, want)
			last, lastLog = n, time.Now()
		}
		if e.exited() {
			return time.Time{}, fmt.Errorf("scale: edge exited:\n%s", e.tail(10))
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return time.Time{}, fmt.Errorf("scale: %d of %d connections registered: %w", n, want, err)
		}
	}
}

// etcdSize is the size of the embedded etcd's database file.
func (e *edge) etcdSize() (int64, error) {
	st, err := os.Stat(filepath.Join(e.dataDir, "etcd", "member", "snap", "db"))
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// cpuProfile writes the edge's Go CPU profile over d to path. The
// profiler's own cost (100 samples a second) falls in the window: a run
// that measures CPU per connection should not take one.
func (e *edge) cpuProfile(ctx context.Context, d time.Duration, path string) error {
	return e.pprof(ctx, fmt.Sprintf("profile?seconds=%d", max(1, int(d.Seconds()))), path)
}

// pprof writes the edge's /debug/pprof/NAME to path.
func (e *edge) pprof(ctx context.Context, name, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+e.metrics+"/debug/pprof/"+name, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("scale: pprof %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	if err != nil {
		return fmt.Errorf("scale: pprof %s: %w", name, err)
	}
	return os.WriteFile(path, b, 0o644)
}

// metric reads one sample from a Prometheus text endpoint: name is the
// series as written there, with its labels if it has any.
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
