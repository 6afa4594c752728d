package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
)

// TestShieldWAFResponses: the CRS's response rules through a real edge,
// connector and origin. In block mode an answer that leaks an SQL error
// or lists a directory is refused (403, nothing of it reaches the
// client), under --outbound-threshold; server-sent events and a download
// longer than the response body limit still stream. Detect mode forwards.
func TestShieldWAFResponses(t *testing.T) {
	second := make(chan struct{})
	const bigSize = 4 << 20
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/leak":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<html><body><b>Warning</b>: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near '1'' at line 1</body></html>")
		case "/dir":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html><head><title>Index of /backup</title></head><body><h1>Index of /backup</h1><a href=\"db.sql\">db.sql</a></body></html>")
		case "/sse":
			heldEvents(w, r, "You have an error in your SQL syntax", second)
		case "/big":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(bigSize))
			io.Copy(w, io.LimitReader(zeroReader{}, bigSize))
		default:
			io.WriteString(w, "<html><body>fine</body></html>")
		}
	}))
	defer origin.Close()
	logs := &syncBuffer{}
	srv, api := startWAFPair(t, logs, origin.URL, "detect.example.com", "block.example.com")
	ctx := t.Context()
	get := func(host, path string) (int, string) {
		t.Helper()
		resp, err := edgeGet(srv, host, path)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	waitFor(t, "the block-mode setting", func() bool { c, _ := get("block.example.com", "/leak"); return c == 403 })
	code, body := get("block.example.com", "/leak")
	if code != 403 || strings.Contains(body, "SQL syntax") || !strings.Contains(body, "blocked the answer") {
		t.Errorf("SQL error page in block mode: got %d %.200q, want the refusal page only", code, body)
	}
	if code, body := get("block.example.com", "/dir"); code != 403 || strings.Contains(body, "Index of") {
		t.Errorf("directory listing in block mode: got %d %.200q, want 403", code, body)
	}
	if code, body := get("block.example.com", "/"); code != 200 || !strings.Contains(body, "fine") {
		t.Errorf("a clean page: got %d %q, want 200", code, body)
	}
	if !strings.Contains(logs.String(), "waf blocked an answer") {
		t.Error("no log line for the blocked answer")
	}
	waitFor(t, "the detect-mode setting", func() bool { c, _ := get("detect.example.com", "/"); return c == 200 })
	if code, _ := get("detect.example.com", "/leak"); code != 200 {
		t.Errorf("SQL error page in detect mode: got %d, want 200", code)
	}

	// Streams stay streams in block mode: events arrive as sent, a long
	// download arrives whole.
	readHeldEvents(t, srv, "block.example.com", "You have an error in your SQL syntax", second)
	if code, body := get("block.example.com", "/big"); code != 200 || len(body) != bigSize {
		t.Errorf("download past the limit: got %d and %d bytes, want 200 and %d", code, len(body), bigSize)
	}

	// A higher outbound threshold lets the directory listing (an error,
	// 4 points) through; the SQL error (critical, 5) still is refused.
	if _, err := api.SetWAF(ctx, "block.example.com", control.WAFSettings{OutboundThreshold: ptr(5)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the outbound threshold", func() bool { c, _ := get("block.example.com", "/dir"); return c == 200 })
	if code, _ := get("block.example.com", "/leak"); code != 403 {
		t.Errorf("SQL error page under threshold 5: got %d, want 403", code)
	}
}

// heldEvents answers server-sent events: first at once, then "two" once
// second is closed.
func heldEvents(w http.ResponseWriter, r *http.Request, first string, second <-chan struct{}) {
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "data: %s\n\n", first)
	w.(http.Flusher).Flush()
	select {
	case <-second:
	case <-r.Context().Done():
		return
	}
	fmt.Fprint(w, "data: two\n\n")
}

// startWAFPair starts an edge logging into logs and a connector to
// originURL for two hostnames, the first with its WAF in detect mode, the
// second in block mode (applied once the edge has compiled them).
func startWAFPair(t *testing.T, logs *syncBuffer, originURL, detectHost, blockHost string) (*edge.Server, *control.Client) {
	t.Helper()
	srv := startEdgeLogged(t, logs)
	tun := createTunnel(t, srv, "waf", detectHost, blockHost)
	startConnector(t, srv, tun, mustIngress(t, originURL))
	api := shieldAPI(t, srv)
	detect, block := control.WAFDetect, control.WAFBlock
	if _, err := api.SetWAF(t.Context(), detectHost, control.WAFSettings{Mode: &detect}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.SetWAF(t.Context(), blockHost, control.WAFSettings{Mode: &block}); err != nil {
		t.Fatal(err)
	}
	return srv, api
}

// readHeldEvents checks that heldEvents' first event arrives through the
// edge while the second is held, then releases the second.
func readHeldEvents(t *testing.T, srv *edge.Server, host, first string, second chan struct{}) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", edgeURL(srv, "/sse"), nil)
	req.Host = host
	resp, err := edgeClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: "+first+"\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
	close(second)
	br.ReadString('\n')
	if line, err := br.ReadString('\n'); err != nil || line != "data: two\n" {
		t.Fatalf("second event: %q, %v", line, err)
	}
}
