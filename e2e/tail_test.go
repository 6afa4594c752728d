package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/adit-dev/adit/cli"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
)

// TestTail: `adit tail` and the API stream behind it show a tunnel's
// requests live, filtered by status and host; --log-requests logs one line
// per request; the edge's and connector's connection lines name the
// connection by its index, with the UUIDs once at registration.
func TestTail(t *testing.T) {
	edgeLogs, connLogs := &syncBuffer{}, &syncBuffer{}
	srv, err := edge.Start(context.Background(), edge.Config{
		DataDir:     t.TempDir(),
		HTTPAddr:    "127.0.0.1:0",
		TunnelAddr:  "127.0.0.1:0",
		APIAddr:     "127.0.0.1:0",
		LogRequests: true,
		Logger:      slog.New(slog.NewTextHandler(edgeLogs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(origin.Close)
	tun := createTunnel(t, srv, "tailed", "a.tail.test", "b.tail.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withLogBuffer(connLogs))

	get := func(host, path string) string {
		t.Helper()
		resp, err := edgeGet(srv, host, path)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp.Header.Get(edge.RequestIDHeader)
	}

	token, err := os.ReadFile(srv.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.NewClient(srv.APIURL(), strings.TrimSpace(string(token)), srv.CAPEM())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("api stream with filters", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var (
			mu  sync.Mutex
			got []control.RequestLogEntry
		)
		tailDone := make(chan error, 1)
		go func() {
			tailDone <- c.TailRequests(ctx, "tailed", control.TailOptions{Statuses: []string{"4xx"}, Hosts: []string{"A.tail.test"}}, func(l control.RequestLogLine) error {
				mu.Lock()
				defer mu.Unlock()
				if l.RequestLogEntry != nil {
					got = append(got, *l.RequestLogEntry)
				}
				return nil
			})
		}()
		seen := func(id string) bool {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range got {
				if e.RequestID == id {
					return true
				}
			}
			return false
		}
		// The stream is subscribed once a matching request shows up.
		waitFor(t, "the stream to carry a request", func() bool { return seen(get("a.tail.test", "/missing")) })
		ok := get("a.tail.test", "/fine")
		other := get("b.tail.test", "/missing")
		want := get("a.tail.test", "/missing")
		waitFor(t, "the matching request", func() bool { return seen(want) })
		if seen(ok) || seen(other) {
			t.Errorf("the stream carried requests its filters exclude: %+v", got)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if last.Status != 404 || last.Method != "GET" || last.Path != "/missing" || last.Host != "a.tail.test" || last.TunnelID != tun.ID || last.EdgeNode != srv.Node() || last.ClientIP != "127.0.0.1" {
			t.Errorf("entry = %+v", last)
		}
		cancel()
		if err := <-tailDone; err != nil {
			t.Errorf("TailRequests after cancel: %v", err)
		}
	})

	t.Run("adit tail", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		out, errOut := &syncBuffer{}, &syncBuffer{}
		code := make(chan int, 1)
		go func() {
			code <- cli.Main(ctx, cli.Program{}, []string{"--home", t.TempDir(), "tail", "tailed", "-o", "json", "--status", "200",
				"--api", srv.APIURL(), "--token-file", srv.AdminTokenFile(), "--ca", srv.CAFile()}, out, errOut)
		}()
		var id string
		waitFor(t, "adit tail to print a request", func() bool {
			id = get("b.tail.test", "/")
			return strings.Contains(out.String(), id)
		})
		cancel()
		if c := <-code; c != 0 {
			t.Errorf("adit tail exit %d, stderr %q", c, errOut.String())
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var e control.RequestLogEntry
			if err := json.Unmarshal([]byte(line), &e); err != nil || e.Status != 200 {
				t.Errorf("adit tail -o json line %q: %v, want a 200 entry", line, err)
			}
		}
		t.Run("unknown tunnel", func(t *testing.T) {
			var out, errOut strings.Builder
			code := cli.Main(t.Context(), cli.Program{}, []string{"--home", t.TempDir(), "tail", "nope",
				"--api", srv.APIURL(), "--token-file", srv.AdminTokenFile(), "--ca", srv.CAFile()}, &out, &errOut)
			if code != 1 || !strings.Contains(errOut.String(), `no tunnel "nope"`) {
				t.Errorf("exit %d, stderr %q; want 1 naming the tunnel", code, errOut.String())
			}
		})
	})

	t.Run("log lines", func(t *testing.T) {
		id := get("a.tail.test", "/logged")
		waitFor(t, "the request's log line", func() bool {
			return strings.Contains(edgeLogs.String(), "request_id="+id)
		})
		line := lineWith(edgeLogs.String(), "request_id="+id)
		for _, want := range []string{`msg=request component=edge`, "host=a.tail.test", "path=/logged", "status=200", "method=GET", "tunnel=" + tun.ID} {
			if !strings.Contains(line, want) {
				t.Errorf("request log line %q lacks %q", line, want)
			}
		}
		reg := lineWith(edgeLogs.String(), "connector registered")
		label := regexp.MustCompile(`conn=[0-9a-f]{8}/[0-9a-f]{8}#[01] `)
		if !label.MatchString(reg) || !strings.Contains(reg, "conn_id=") || !strings.Contains(reg, "tunnel="+tun.ID) {
			t.Errorf("edge registration line %q: want the conn label, conn_id and tunnel", reg)
		}
		creg := lineWith(connLogs.String(), "connection registered")
		if !strings.Contains(creg, "conn_index=") || !strings.Contains(creg, "conn_id=") {
			t.Errorf("connector registration line %q: want conn_index and conn_id", creg)
		}
		if n := strings.Count(connLogs.String(), "conn_id="); n != 2 {
			t.Errorf("conn_id appears %d times in the connector's log, want once per connection (2)", n)
		}
	})
}

// lineWith returns the first line of logs containing s.
func lineWith(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
