package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary be the edge and the connector processes:
// the run starts its own executable for them.
func TestMain(m *testing.M) {
	runRole()
	os.Exit(m.Run())
}

// TestTinyRun runs the whole scenario at a tiny scale (3 tunnels × 2
// connections from 2 processes, 30 routes, short windows) so it keeps
// working. It checks that every figure was produced, not its value.
func TestTinyRun(t *testing.T) {
	for _, proto := range []string{"quic", "websocket"} {
		t.Run(proto, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "scale.json")
			cfg, err := parseFlags([]string{"--tunnels", "3", "--conns", "2", "--routes", "30", "--procs", "2",
				"--protocol", proto, "--quiet", "300ms", "--rate", "20", "--requests", "500ms", "--rest", "0s",
				"--timeout", "4m", "--out", out}, os.Stderr) // a bound, not a speed check
			if err != nil {
				t.Fatal(err)
			}
			if !testing.Verbose() {
				cfg.progress = nil
			}
			res, err := run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.writeJSON(out); err != nil {
				t.Fatal(err)
			}
			var sb strings.Builder
			res.print(&sb)
			t.Log("\n" + sb.String())
			got := map[string]bool{}
			for _, f := range res.Figures {
				got[f.Name] = true
			}
			for _, want := range []string{
				"edge start, empty (exec → /ready 200)", "tunnel creates, empty edge", "route creates at 30 routes",
				"tunnel creates at 30 routes", "etcd database", "edge RSS per route", "connect all, cold",
				"edge RSS per connection", "edge goroutines per connection", "edge CPU per idle connection",
				"unknown hostname → 404, p50", "routed hostname → connector 204, p50",
				"edge start at 30 routes (exec → /ready 200)", "restart → all connected",
			} {
				if !got[want] {
					t.Errorf("no figure %q; got:\n%s", want, sb.String())
				}
			}
			for _, f := range res.Figures {
				if f.Name == "requests failed" {
					t.Errorf("%v requests failed", f.Value)
				}
			}
		})
	}
}

// TestParseFlags checks the flags' bounds.
func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"issue scale", []string{"--tunnels", "10000", "--routes", "100000", "--procs", "4"}, true},
		{"no tunnels", []string{"--tunnels", "0"}, false},
		{"bad protocol", []string{"--protocol", "http2"}, false},
		{"negative routes", []string{"--routes", "-1"}, false},
		{"one address", []string{"--addrs", "0"}, true},
		{"negative addrs", []string{"--addrs", "-1"}, false},
		{"too many addrs", []string{"--addrs", "70000"}, false},
		{"stray argument", []string{"x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, &strings.Builder{})
			if (err == nil) != tc.ok {
				t.Errorf("parseFlags(%q) = %v, want ok=%v", tc.args, err, tc.ok)
			}
		})
	}
}

func TestBindAddr(t *testing.T) {
	for _, tc := range []struct {
		i, n int
		want string
	}{
		{0, 0, "<nil>"},
		{5, 0, "<nil>"},
		{0, 8, "127.0.0.2"},
		{9, 8, "127.0.0.3"},
		{254, 300, "127.0.1.0"},
		{65535, 65536, "127.1.0.1"},
	} {
		if got := bindAddr(tc.i, tc.n).String(); got != tc.want {
			t.Errorf("bindAddr(%d, %d) = %s, want %s", tc.i, tc.n, got, tc.want)
		}
	}
}
