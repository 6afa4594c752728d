package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/bench/procstat"
)

// TestMain lets the test binary be the origin process: the harness starts
// its own executable for it.
func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "origin":
		os.Exit(runOrigin())
	case "proxy":
		os.Exit(runProxy())
	case "flooder":
		os.Exit(runFlooder())
	}
	os.Exit(m.Run())
}

// tinyRun runs the harness with args and checks that its direct and
// adit-quic paths were available. It returns the results and the paths
// by name.
func tinyRun(t *testing.T, args ...string) (*Results, map[string]PathInfo) {
	t.Helper()
	cfg, err := parseFlags(args, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.progress = nil
	if testing.Verbose() {
		cfg.progress = os.Stderr
	}
	res, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]PathInfo{}
	for _, p := range res.Paths {
		paths[p.Name] = p
	}
	for _, name := range []string{"direct", "proxy2", "adit-quic", "adit-websocket"} {
		if _, ok := paths[name]; !ok {
			t.Fatalf("results lack path %s; got %v", name, res.Paths)
		}
	}
	if !paths["adit-quic"].Available {
		t.Fatalf("adit-quic unavailable: %s", paths["adit-quic"].Reason)
	}
	return res, paths
}

// TestTinyRun runs the whole harness in a tiny configuration (short
// durations, small sizes, 20 idle WebSockets, no restart) so it keeps
// working. It checks that every scenario produced its figures, not how
// fast anything was.
func TestTinyRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results.json")
	profiles := filepath.Join(t.TempDir(), "pprof")
	res, paths := tinyRun(t,
		"--pprof-dir", profiles, "--big-timeout", "1s", "--loadgen", "go",
		"--scenarios", "rate,idle-ws,small,access,download,upload,https,peer",
		"--duration", "200ms", "--warmup", "50ms", "--concurrency", "1,4",
		"--big-size", "1MiB", "--idle-ws", "20", "--rate", "100", "--rate-duration", "500ms",
		"--timeout", "10m", // a deadline, not a speed check: a busy 2-core CI machine is slow
	)
	if err := res.writeJSON(out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"adit-quic-get-c4-edge.cpu.txt", "adit-quic-get-c4-connector.allocs.txt", "adit-quic-download-connector.cpu.pprof"} {
		if _, err := os.Stat(filepath.Join(profiles, f)); err != nil {
			t.Errorf("--pprof-dir: %v", err)
		}
	}
	if ws := paths["adit-websocket"]; !ws.Available && ws.Reason == "" {
		t.Errorf("adit-websocket is unavailable without a reason")
	}

	want := []struct {
		fig   figName
		paths []string
	}{
		{figGet(1, "req/s"), []string{"direct", "proxy2", "adit-quic"}},
		{figGet(4, "p99"), []string{"direct", "proxy2", "adit-quic"}},
		{figGet(4, "req/s"), []string{"adit-quic-access"}}, // a valid session on every request
		{figGet(4, cpuMetric("edge")), []string{"adit-quic-access"}},
		{figAccess(cpuMetric("edge+connector")), []string{"adit-quic-access"}},
		{figAccess(cpuMetric("edge+connector") + " with/without Access"), []string{"adit-quic-access"}},
		{figGet(4, "edge alloc/req"), []string{"adit-quic"}},
		{figGet(4, "connector allocs/req"), []string{"adit-quic"}},
		{res.figDownload(), []string{"direct", "adit-quic"}},
		{res.figUpload(), []string{"direct", "adit-quic"}},
		{res.figRate("p50"), []string{"adit-quic"}},
		{res.figRate("connector RSS"), []string{"adit-quic"}},
		{res.figRate("edge CPU"), []string{"adit-quic"}},
		{res.figIdle("open"), []string{"adit-quic"}},
		{res.figIdle("edge per conn"), []string{"adit-quic"}},
		{figStartup, []string{"adit-quic"}},
	}
	// The CPU budget: every process on the path, per request and per GB.
	for _, c := range []int{1, 4} {
		for _, side := range []string{"client", "origin", "total"} {
			want = append(want, struct {
				fig   figName
				paths []string
			}{figGet(c, cpuMetric(side)), []string{"direct", "adit-quic"}})
		}
		for _, fig := range []figName{figGet(c, cpuMetric("edge")), figGet(c, cpuMetric("connector")), figGet(c, metricCeiling)} {
			want = append(want, struct {
				fig   figName
				paths []string
			}{fig, []string{"adit-quic"}})
		}
	}
	for _, scenario := range []string{res.figDownload().scenario, res.figUpload().scenario} {
		for _, side := range cpuRows {
			var ps []string
			for _, p := range []string{"direct", "proxy2", "adit-quic"} {
				if slices.Contains(cpuSidesOf(p), side) {
					ps = append(ps, p)
				}
			}
			want = append(want, struct {
				fig   figName
				paths []string
			}{figName{scenario, cpuMetric(side)}, ps})
		}
	}
	for _, w := range want {
		ps := w.paths
		if paths["adit-websocket"].Available && slices.Contains(ps, "adit-quic") {
			ps = append(ps, "adit-websocket")
		}
		for _, p := range ps {
			v, ok := res.get(w.fig, p)
			if !ok {
				t.Errorf("%s %s, %s: no value", w.fig.scenario, w.fig.metric, p)
			} else if v <= 0 && !strings.Contains(w.fig.metric, "per conn") {
				t.Errorf("%s %s, %s: got %v, want > 0", w.fig.scenario, w.fig.metric, p, v)
			}
		}
	}
	// The access scenario compares with the adit-quic path alone.
	if v, ok := res.get(figAccess(cpuMetric("edge+connector")), "adit-quic"); !ok || v <= 0 {
		t.Errorf("access scenario, adit-quic: edge+connector CPU %v, %v; want > 0", v, ok)
	}
	if v, _ := res.get(res.figIdle("open"), "adit-quic"); v != 20 {
		t.Errorf("idle WebSockets open: got %v, want 20", v)
	}
	if r, ok := res.figure(figGet(1, "req/s"), "").Ratios["adit-quic"]; !ok || r <= 0 {
		t.Errorf("GET c=1 req/s: ratio to direct for adit-quic: got %v, %v; want > 0", r, ok)
	}
	if len(res.Targets) == 0 {
		t.Errorf("no targets checked")
	}

	var table bytes.Buffer
	res.writeTable(&table)
	if res.Settings.Connector != "adit-connector" || res.Settings.ConnectorBinaryBytes <= 0 || res.Settings.EdgeBinaryBytes <= res.Settings.ConnectorBinaryBytes {
		t.Errorf("settings: got connector %q of %d bytes, edge %d bytes; want adit-connector, smaller than adit",
			res.Settings.Connector, res.Settings.ConnectorBinaryBytes, res.Settings.EdgeBinaryBytes)
	}
	for _, m := range []string{"new handshakes/s", "GET 1KiB c=50 req/s"} {
		for _, p := range []string{"direct", "adit-quic"} {
			if v, ok := res.get(figHTTPS(m), p); !ok || v <= 0 {
				t.Errorf("HTTPS %s %s: got %v, %v; want > 0", m, p, v, ok)
			}
		}
	}
	for _, m := range []string{"GET 1KiB c=50 req/s forwarded/local", "download MB/s forwarded/local", "forwarded GET 1KiB c=1 p50"} {
		if v, ok := res.get(figPeer(m), "adit-quic"); !ok || v <= 0 {
			t.Errorf("peer link %s: got %v, %v; want > 0", m, v, ok)
		}
	}
	for _, s := range []string{"direct", "adit-quic", "adit-websocket", "GET 1KiB c=4", "targets", "connectors: `adit-connector tunnel run`", "load generator: the harness's Go client",
		"connector CPU", "µs/req", "s/GB", metricCeiling} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results JSON: %v", err)
	}
	if len(back.Figures) != len(res.Figures) || back.Machine.CPUs == 0 || back.Settings.LoadGen != "go" {
		t.Errorf("JSON round trip: got %d figures, %d CPUs, loadgen %q; want %d figures, > 0 CPUs, loadgen go",
			len(back.Figures), back.Machine.CPUs, back.Settings.LoadGen, len(res.Figures))
	}
}

// TestTinyRunWrk runs the small GETs with wrk, when it is installed.
func TestTinyRunWrk(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("no wrk on PATH")
	}
	const c = 4
	// wrk's window opens before its connections do: 300ms once held no
	// answered request through the tunnel on a CI machine at load 30 (wrk
	// "0 requests in 207ms"), so the run is a second long.
	res, _ := tinyRun(t, "--loadgen", "wrk", "--scenarios", "small",
		"--duration", "1s", "--warmup", "300ms", "--concurrency", strconv.Itoa(c), "--out", "", "--timeout", "10m") // a deadline, not a speed check
	for _, p := range []string{"direct", "adit-quic"} {
		for _, m := range []string{"req/s", "p50", "p99", "p99.9"} {
			if v, ok := res.get(figGet(c, m), p); !ok || v <= 0 {
				t.Errorf("%s %s: got %v, %v; want > 0", p, m, v, ok)
			}
		}
		if n := res.figure(figGet(c, "req/s"), "").Notes[p]; n != "" {
			t.Errorf("%s req/s: note %q, want none", p, n)
		}
	}
	if v, ok := res.get(figGet(c, "edge allocs/req"), "adit-quic"); !ok || v <= 0 {
		t.Errorf("adit-quic edge allocs/req: got %v, %v; want > 0", v, ok)
	}
	// The CPU budget, with wrk's own CPU time as the client's.
	for _, p := range []string{"direct", "proxy2", "adit-quic"} {
		sides := cpuSidesOf(p)
		for _, side := range sides {
			if v, ok := res.get(figGet(c, cpuMetric(side)), p); !ok || v <= 0 {
				t.Errorf("%s %s: got %v, %v; want > 0", p, cpuMetric(side), v, ok)
			}
		}
		if _, ok := res.get(figGet(c, cpuMetric("edge")), "direct"); ok {
			t.Errorf("direct has an edge CPU row; want none")
		}
	}
	if v, ok := res.get(figGet(c, metricCeiling), "adit-quic"); !ok || v <= 0 {
		t.Errorf("adit-quic %s: got %v, %v; want > 0", metricCeiling, v, ok)
	}
	// wrk holds c connections, after one that checks the address (its
	// wrk.resolve); the counters leave out the warm-up's and the
	// harness's reads of them.
	if v, _ := res.get(figGet(c, "origin conns opened"), "direct"); v != c+1 {
		t.Errorf("direct origin conns opened: got %v, want %d", v, c+1)
	}
	var table bytes.Buffer
	res.writeTable(&table)
	if res.Settings.LoadGen != "wrk" || res.Settings.LoadGenVersion == "" || !strings.Contains(table.String(), "load generator: wrk") {
		t.Errorf("got loadgen %q, version %q, table:\n%s\nwant wrk, its version, and a line that says so", res.Settings.LoadGen, res.Settings.LoadGenVersion, table.String())
	}
}

// TestOrigin starts the origin process and checks its endpoints, that its
// counters leave out their own reads, and that it exits when its stdin
// closes.
func TestOrigin(t *testing.T) {
	ctx := context.Background()
	o, err := startOrigin(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer o.stop(time.Second)
	tg := target{base: o.URL()}
	buf := make([]byte, 4<<10)
	get := func(c *http.Client, path string) {
		t.Helper()
		req, err := tg.request(ctx, "GET", path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := getOnce(c, req, buf); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	kept := newClient(1, 5*time.Second)
	for range 3 {
		get(kept, "/1k")
	}
	get(newClient(1, 5*time.Second), "/1k")
	get(kept, "/download?size=100")
	x, err := upload(ctx, tg, 1000, 5*time.Second)
	if err != nil || x.Bytes != 1000 {
		t.Errorf("upload: got %d bytes, %v; want 1000", x.Bytes, err)
	}
	ws, err := openWebSockets(ctx, tg, 1, 1)
	if err != nil {
		t.Errorf("WebSocket echo: %v", err)
	}
	closeAll(ws)
	// Connections: kept, the second client, upload's, the WebSocket's.
	want := originStats{Accepted: 4, Served1k: 4}
	for range 2 {
		got, err := o.stats()
		if err != nil || got != want {
			t.Errorf("stats: got %+v, %v; want %+v", got, err, want)
		}
	}

	o.stdin.Close()
	select {
	case <-o.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("origin still running 10s after its stdin closed:\n%s", o.out.tail(5))
	}
	if o.err != nil {
		t.Errorf("origin exited with %v after its stdin closed; want 0:\n%s", o.err, o.out.tail(5))
	}
}

func TestParseWrk(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want latencyStats // Elapsed, N, Errors, P50, P99, P999
		ok   bool
	}{
		{"clean", "Running 5s test @ http://127.0.0.1:1/1k\n  2 threads\nadit-bench-wrk requests=1000 duration_us=500000 errors=0 status_errors=0 p50_us=40 p99_us=120 p999_us=900\n",
			latencyStats{N: 1000, Elapsed: 500 * time.Millisecond, P50: 40 * time.Microsecond, P99: 120 * time.Microsecond, P999: 900 * time.Microsecond}, true},
		{"status errors are not successes", "adit-bench-wrk requests=100 duration_us=1000000 errors=12 status_errors=10 p50_us=1 p99_us=2 p999_us=3\n",
			latencyStats{N: 90, Errors: 12, Elapsed: time.Second, P50: 1 * time.Microsecond, P99: 2 * time.Microsecond, P999: 3 * time.Microsecond}, true},
		{"no line", "Running 5s test\nRequests/sec: 1000\n", latencyStats{}, false},
		{"quantiles out of order", "adit-bench-wrk requests=1 duration_us=1 errors=0 status_errors=0 p50_us=5 p99_us=4 p999_us=6\n", latencyStats{}, false},
		{"more status errors than requests", "adit-bench-wrk requests=1 duration_us=1 errors=2 status_errors=2 p50_us=1 p99_us=1 p999_us=1\n", latencyStats{}, false},
		{"zero duration", "adit-bench-wrk requests=1 duration_us=0 errors=0 status_errors=0 p50_us=1 p99_us=1 p999_us=1\n", latencyStats{}, false},
		{"huge", "adit-bench-wrk requests=1 duration_us=99999999999999999 errors=0 status_errors=0 p50_us=1 p99_us=1 p999_us=1\n", latencyStats{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWrk(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			got.RequestsPerSecond = 0
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseWrk(f *testing.F) {
	f.Add("adit-bench-wrk requests=1000 duration_us=500000 errors=0 status_errors=0 p50_us=40 p99_us=120 p999_us=900\n")
	f.Add("adit-bench-wrk requests=100 duration_us=1000000 errors=12 status_errors=10 p50_us=1 p99_us=2 p999_us=3\n")
	f.Add("adit-bench-wrk requests=1 duration_us=1 errors=0 status_errors=0 p50_us=5 p99_us=4 p999_us=6\n")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWrk(s)
		if err != nil {
			return
		}
		if got.N < 0 || got.Errors < 0 || got.Elapsed <= 0 || got.P50 > got.P99 || got.P99 > got.P999 || got.RequestsPerSecond < 0 {
			t.Fatalf("parseWrk(%q) = %+v: negative or out of order", s, got)
		}
		// Round trip through the line wrkScript prints.
		line := fmt.Sprintf("adit-bench-wrk requests=%d duration_us=%d errors=%d status_errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
			int64(got.N)+wrkStatusErrors(s), got.Elapsed.Microseconds(), got.Errors, wrkStatusErrors(s), got.P50.Microseconds(), got.P99.Microseconds(), got.P999.Microseconds())
		back, err := parseWrk(line)
		if err != nil || back != got {
			t.Fatalf("parseWrk(%q) = %+v, %v; want %+v", line, back, err, got)
		}
	})
}

// wrkStatusErrors is the status_errors of the line in s.
func wrkStatusErrors(s string) int64 {
	n, _ := strconv.ParseInt(reWrk.FindStringSubmatch(s)[4], 10, 64)
	return n
}

func TestParseFlagsConnector(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    string // cfg.connector; "" for an error
		wantBin string // cfg.connectorBin
	}{
		{"default", nil, "adit-connector", ""},
		{"full adit", []string{"--connector", "adit"}, "adit", ""},
		{"prebuilt slim", []string{"--adit-connector", "/x/adit-connector"}, "adit-connector", "/x/adit-connector"},
		{"unknown", []string{"--connector", "cloudflared"}, "", ""},
		{"prebuilt slim unused", []string{"--connector", "adit", "--adit-connector", "/x/adit-connector"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, io.Discard)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("parseFlags(%q): got connector %q, want an error", tc.args, cfg.connector)
			case tc.want != "" && err != nil:
				t.Errorf("parseFlags(%q): got error %v, want connector %q", tc.args, err, tc.want)
			case tc.want != "" && (cfg.connector != tc.want || cfg.connectorBin != tc.wantBin):
				t.Errorf("parseFlags(%q): got %q, %q; want %q, %q", tc.args, cfg.connector, cfg.connectorBin, tc.want, tc.wantBin)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512", 512, true},
		{"64KiB", 64 << 10, true},
		{"16MiB", 16 << 20, true},
		{"1GiB", 1 << 30, true},
		{"2G", 2 << 30, true},
		{"3MB", 3 << 20, true},
		{"0", 0, false},
		{"-1", 0, false},
		{"1TiB", 0, false},
		{"GiB", 0, false},
		{"", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "64KiB", "16MiB", "1GiB", "3MB", "0", "x", "1KiBKiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			return
		}
		if n <= 0 {
			t.Fatalf("parseSize(%q) = %d, want > 0", s, n)
		}
		// Round trip through the table's spelling.
		back, err := parseSize(sizeString(n))
		if err != nil || back != n {
			t.Fatalf("parseSize(sizeString(%d) = %q) = %d, %v", n, sizeString(n), back, err)
		}
	})
}

func TestParseMachineBusy(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     time.Duration
		ok       bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{"busy is all but idle and iowait", "cpu  100 20 30 5000 70 1 2 3 0 0\ncpu0 50 10 15 2500 35 1 1 2 0 0\n", 1560 * time.Millisecond, true},
		{"eight fields", "cpu 1 0 0 9 9 0 0 0", 10 * time.Millisecond, true},
		{"a cpuN line first", "cpu0 1 2 3 4 5 6 7 8\n", 0, false},
		{"too few fields", "cpu 1 2 3\n", 0, false},
		{"not a number", "cpu 1 2 x 4 5 6 7 8\n", 0, false},
		{"negative", "cpu 1 2 -3 4 5 6 7 8\n", 0, false},
		{"empty", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMachineBusy(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("got %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
	if _, err := machineBusy(); err != nil {
		t.Errorf("machineBusy: %v", err)
	}
}

func FuzzParseMachineBusy(f *testing.F) {
	f.Add("cpu  100 20 30 5000 70 1 2 3 0 0\ncpu0 50 10 15 2500 35 1 1 2 0 0\n")
	f.Add("cpu 1 2 3")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseMachineBusy(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("parseMachineBusy(%q) = %v, want no negative time", s, d)
		}
		if !strings.HasPrefix(s, "cpu") {
			t.Fatalf("parseMachineBusy(%q) = %v, want an error: no cpu line", s, d)
		}
	})
}

func TestQuantile(t *testing.T) {
	sample := make([]time.Duration, 1000)
	for i := range sample {
		sample[i] = time.Duration(i+1) * time.Microsecond
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 500 * time.Microsecond},
		{0.99, 990 * time.Microsecond},
		{0.999, 999 * time.Microsecond},
		{1, 1000 * time.Microsecond},
		{0, 1 * time.Microsecond},
	} {
		if got := quantile(sample, tc.q); got != tc.want {
			t.Errorf("quantile(1..1000µs, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile([]time.Duration{7}, 0.999); got != 7 {
		t.Errorf("quantile of one sample = %v, want 7", got)
	}
}

func TestCheckCompare(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://127.0.0.1:8080/", true},
		{"http://[::1]:8080", true},
		{"http://127.0.0.2:80", true},
		{"http://10.0.0.1:80", false},
		{"http://example.com:80", false},
		{"https://127.0.0.1:443", false},
		{"http://127.0.0.1:8080/app", false},
		{"http://127.0.0.1", false},
	} {
		if err := checkCompare(tc.in); (err == nil) != tc.ok {
			t.Errorf("checkCompare(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"compare with host", []string{"--compare", "frp=http://127.0.0.1:7000", "--compare-host", "frp=app.test"}, true},
		{"host without compare", []string{"--compare-host", "frp=app.test"}, false},
		{"compare named direct", []string{"--compare", "direct=http://127.0.0.1:7000"}, false},
		{"unknown scenario", []string{"--scenarios", "small,nap"}, false},
		{"bad concurrency", []string{"--concurrency", "1,0"}, false},
		{"go load generator", []string{"--loadgen", "go"}, true},
		{"unknown load generator", []string{"--loadgen", "hey"}, false},
		{"flood at the edge's defaults only", []string{"--flood-inflight", "0"}, true},
		{"flood inflight not a number", []string{"--flood-inflight", "0,many"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, &bytes.Buffer{})
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if tc.name == "compare with host" {
				if len(cfg.compares) != 1 || cfg.compares[0].target.base != "http://127.0.0.1:7000" || cfg.compares[0].target.host != "app.test" {
					t.Errorf("compares: got %+v", cfg.compares)
				}
			}
		})
	}
}

func TestCatchesSIGINT(t *testing.T) {
	// The Go runtime catches SIGINT; sleep(1) does not.
	if !catchesSIGINT(os.Getpid()) {
		t.Errorf("catchesSIGINT(this test) = false, want true")
	}
	sleep := exec.Command("sleep", "10")
	if err := sleep.Start(); err != nil {
		t.Skip(err)
	}
	defer sleep.Wait()
	defer sleep.Process.Kill()
	if catchesSIGINT(sleep.Process.Pid) {
		t.Errorf("catchesSIGINT(sleep) = true, want false")
	}
}

func TestCPUPer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		used  map[string]time.Duration
		n     float64
		unit  time.Duration
		total bool
		want  map[string]float64
	}{
		{"µs per request, with total",
			map[string]time.Duration{"client": 300 * time.Millisecond, "origin": 100 * time.Millisecond, "edge": 250 * time.Millisecond, "connector": 350 * time.Millisecond},
			10000, time.Microsecond, true,
			map[string]float64{"client": 30, "origin": 10, "edge": 25, "connector": 35, "hops": 60, "total": 100}},
		{"proxy2: its two hops",
			map[string]time.Duration{"client": 300 * time.Millisecond, "origin": 100 * time.Millisecond, "proxy hop 1": 400 * time.Millisecond, "proxy hop 2": 400 * time.Millisecond},
			10000, time.Microsecond, true,
			map[string]float64{"client": 30, "origin": 10, "proxy hop 1": 40, "proxy hop 2": 40, "hops": 80, "total": 120}},
		{"s per GB: 512 MB moved", map[string]time.Duration{"client": time.Second, "origin": 500 * time.Millisecond}, 0.512, time.Second, true,
			map[string]float64{"client": 1 / 0.512, "origin": 0.5 / 0.512, "total": 1.5 / 0.512}},
		{"compare path: no total", map[string]time.Duration{"client": 2 * time.Second, "origin": time.Second}, 1000, time.Microsecond, false,
			map[string]float64{"client": 2000, "origin": 1000}},
		{"nothing moved", map[string]time.Duration{"client": time.Second}, 0, time.Second, true, nil},
		{"negative count", map[string]time.Duration{"client": time.Second}, -5, time.Second, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := cpuPer(tc.used, tc.n, tc.unit, tc.total)
			if len(got) != len(tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for side, w := range tc.want {
				if g, ok := got[side]; !ok || math.Abs(g-w) > 1e-9*math.Abs(w) {
					t.Errorf("%s: got %v, want %v", side, g, w)
				}
			}
		})
	}
}

func TestSetCeiling(t *testing.T) {
	const scenario = "GET 1KiB c=50"
	total := figName{scenario, cpuMetric("total")}
	for _, tc := range []struct {
		name   string
		totals map[string]float64 // path → total CPU µs/req
		want   map[string]float64 // path → ceiling; absent: none
	}{
		{"adit paths", map[string]float64{"direct": 40, "adit-quic": 100, "adit-websocket": 160},
			map[string]float64{"adit-quic": 0.4, "adit-websocket": 0.25}},
		{"a compare path has no total, so no ceiling", map[string]float64{"direct": 40, "adit-quic": 80},
			map[string]float64{"adit-quic": 0.5}},
		{"no direct", map[string]float64{"adit-quic": 80}, map[string]float64{}},
		{"direct zero", map[string]float64{"direct": 0, "adit-quic": 80}, map[string]float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &Results{}
			for p, v := range tc.totals {
				res.set(total, unitCPUReq, p, v)
			}
			res.set(figName{scenario, cpuMetric("client")}, unitCPUReq, "frp", 30)
			res.setCeiling(scenario)
			for _, p := range []string{"direct", "adit-quic", "adit-websocket", "frp"} {
				got, ok := res.get(figName{scenario, metricCeiling}, p)
				want, wantOK := tc.want[p]
				if ok != wantOK || math.Abs(got-want) > 1e-12 {
					t.Errorf("%s: got %v, %v; want %v, %v", p, got, ok, want, wantOK)
				}
			}
		})
	}
}

func TestSortFiguresCPURows(t *testing.T) {
	res := &Results{}
	// In the order runSmall creates them: direct's rows, then an adit
	// path's new ones, then the next concurrency.
	for _, f := range []figName{
		figGet(1, "req/s"), figGet(1, cpuMetric("client")), figGet(1, cpuMetric("origin")), figGet(1, cpuMetric("total")),
		figGet(1, "edge allocs/req"), figGet(1, cpuMetric("edge")), figGet(1, cpuMetric("connector")), figGet(1, metricCeiling),
		{"fixed 100 req/s", "edge CPU"}, {"fixed 100 req/s", "edge RSS"},
		figGet(50, "req/s"), figGet(50, cpuMetric("total")), figGet(50, cpuMetric("client")),
	} {
		unit := unitCPUReq
		if f.metric == metricCeiling {
			unit = unitCeiling
		} else if f.scenario == "fixed 100 req/s" || !strings.HasSuffix(f.metric, " CPU") {
			unit = "x"
		}
		res.set(f, unit, "direct", 1)
	}
	res.sortFigures()
	var got []string
	for _, f := range res.Figures {
		got = append(got, f.Scenario+": "+f.Metric)
	}
	want := []string{
		"GET 1KiB c=1: req/s", "GET 1KiB c=1: edge allocs/req",
		"GET 1KiB c=1: client CPU", "GET 1KiB c=1: origin CPU", "GET 1KiB c=1: edge CPU", "GET 1KiB c=1: connector CPU", "GET 1KiB c=1: total CPU",
		"GET 1KiB c=1: " + metricCeiling,
		"GET 1KiB c=50: req/s", "GET 1KiB c=50: client CPU", "GET 1KiB c=50: total CPU",
		"fixed 100 req/s: edge CPU", "fixed 100 req/s: edge RSS",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestClockCPU(t *testing.T) {
	// This process: the clock agrees with /proc/PID/stat, read first,
	// within its 10 ms ticks and the time between the two reads.
	for x := 0; x < 50_000_000; x++ { // some CPU time to read
		_ = x * x
	}
	stat, err := procstat.CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	clock, err := clockCPU(os.Getpid())
	if err != nil {
		t.Fatalf("clockCPU(self): %v", err)
	}
	if clock < stat-10*time.Millisecond || clock > stat+time.Second {
		t.Errorf("clockCPU(self) = %v, /proc/self/stat %v; want them within a tick", clock, stat)
	}
	// Another process: a child.
	sleep := exec.Command("sleep", "10")
	if err := sleep.Start(); err != nil {
		t.Skip(err)
	}
	defer sleep.Wait()
	defer sleep.Process.Kill()
	if d, err := clockCPU(sleep.Process.Pid); err != nil || d < 0 {
		t.Errorf("clockCPU(child) = %v, %v; want >= 0, nil", d, err)
	}
	// No such process (one that exited and was reaped), or a pid the
	// clock id cannot hold: an error, from procCPU's fallback too.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skip(err)
	}
	for _, pid := range []int{gone.Process.Pid, 1 << 30, -1} {
		if d, err := procCPU(pid); err == nil {
			t.Errorf("procCPU(%d) = %v, nil; want an error", pid, d)
		}
	}
}

// cpuSidesOf are the CPU rows path p has in a tiny run.
func cpuSidesOf(p string) []string {
	switch p {
	case "direct":
		return []string{"client", "origin", "total"}
	case "proxy2":
		return []string{"client", "origin", "proxy hop 1", "proxy hop 2", "hops", "total"}
	default:
		return []string{"client", "origin", "edge", "connector", "hops", "total"}
	}
}
