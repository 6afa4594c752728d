package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTinyRun runs the whole harness in a tiny configuration (short
// durations, small sizes, 20 idle WebSockets, no restart) so it keeps
// working. It checks that every scenario produced its figures, not how
// fast anything was.
func TestTinyRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results.json")
	profiles := filepath.Join(t.TempDir(), "pprof")
	cfg, err := parseFlags([]string{
		"--pprof-dir", profiles, "--big-timeout", "1s",
		"--scenarios", "rate,idle-ws,small,download,upload",
		"--duration", "200ms", "--warmup", "50ms", "--concurrency", "1,4",
		"--big-size", "1MiB", "--idle-ws", "20", "--rate", "100", "--rate-duration", "500ms",
		"--out", out, "--timeout", "2m",
	}, os.Stderr)
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
	if err := res.writeJSON(cfg.out); err != nil {
		t.Fatal(err)
	}

	paths := map[string]PathInfo{}
	for _, p := range res.Paths {
		paths[p.Name] = p
	}
	for _, name := range []string{"direct", "adit-quic", "adit-websocket"} {
		if _, ok := paths[name]; !ok {
			t.Fatalf("results lack path %s; got %v", name, res.Paths)
		}
	}
	if !paths["adit-quic"].Available {
		t.Fatalf("adit-quic unavailable: %s", paths["adit-quic"].Reason)
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
		{figGet(1, "req/s"), []string{"direct", "adit-quic"}},
		{figGet(4, "p99"), []string{"direct", "adit-quic"}},
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
	for _, w := range want {
		ps := w.paths
		if paths["adit-websocket"].Available {
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
	for _, s := range []string{"direct", "adit-quic", "adit-websocket", "GET 1KiB c=4", "targets", "connectors: `adit-connector tunnel run`"} {
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
	if len(back.Figures) != len(res.Figures) || back.Machine.CPUs == 0 {
		t.Errorf("JSON round trip: got %d figures and %d CPUs, want %d figures and > 0 CPUs", len(back.Figures), back.Machine.CPUs, len(res.Figures))
	}
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

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     time.Duration
		ok       bool
	}{
		{"plain", "1234 (adit) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 1 1", 3 * time.Second, true},
		{"name with spaces and parens", "99 (a (b) c) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1", 100 * time.Millisecond, true},
		{"truncated", "1 (x) S 1 2 3", 0, false},
		{"no name", "1 x S", 0, false},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 3 0", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("got %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
	// And this process's own line parses.
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Errorf("cpuTime(self): %v", err)
	}
	if rss, err := rssBytes(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("rssBytes(self) = %d, %v; want > 0", rss, err)
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add("1234 (adit) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 1 1")
	f.Add("99 (a (b) c) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0")
	f.Add("1 (x) S")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseStatCPU(s)
		if err == nil && d < 0 && !strings.Contains(s, "-") {
			t.Fatalf("parseStatCPU(%q) = %v: negative without a minus sign", s, d)
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, &bytes.Buffer{})
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
			if tc.name == "compare with host" {
				if len(cfg.compares) != 1 || cfg.compares[0].target != (target{"http://127.0.0.1:7000", "app.test"}) {
					t.Errorf("compares: got %+v", cfg.compares)
				}
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     memStat
		ok       bool
	}{
		{"both", "Name:\tadit\nVmRSS:\t   23140 kB\nRssAnon:\t    3324 kB\nRssFile:\t19816 kB\n", memStat{RSS: 23140 << 10, Anon: 3324 << 10}, true},
		{"no RssAnon (old kernel)", "VmRSS:\t100 kB\n", memStat{RSS: 100 << 10}, true},
		{"no VmRSS (kernel thread)", "Name:\tkthreadd\n", memStat{}, false},
		{"odd unit", "VmRSS:\t100 MB\n", memStat{}, false},
		{"negative", "VmRSS:\t-100 kB\n", memStat{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatus([]byte(tc.in))
			if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
				t.Errorf("got %+v, %v; want %+v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("VmRSS:\t   23140 kB\nRssAnon:\t    3324 kB\n"))
	f.Add([]byte("VmRSS: 1 kB"))
	f.Add([]byte("RssAnon:\t5 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseStatus(b)
		if err == nil && (m.RSS < 0 || m.Anon < 0) {
			t.Fatalf("parseStatus(%q) = %+v: negative", b, m)
		}
	})
}
