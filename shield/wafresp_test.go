package shield

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/layer"
)

// testWAF is a WAF layer with a compiled setting per hostname, in front
// of origin, served over real HTTP.
func testWAF(t *testing.T, origin http.HandlerFunc, cfgs ...control.WAFConfig) (*WAF, *httptest.Server) {
	t.Helper()
	d, err := newDecisions(nil, "waf_test", "x")
	if err != nil {
		t.Fatal(err)
	}
	w := &WAF{log: discard, blocked: d.counter("blocked"), blockedResponse: d.counter("blocked_response"),
		detected: d.counter("detected"), bodyLimit: d.counter("body_limit"), errs: d.counter("error")}
	idx := &wafIndex{hosts: map[string]*engine{}}
	for _, c := range cfgs {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		e, err := w.compile(c, Directives(c))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeEngine(e) })
		idx.hosts[c.Hostname] = e
	}
	w.idx.Store(idx)
	h := w.Wrap(layer.HandlerFunc(func(rw http.ResponseWriter, r *http.Request, req *layer.Request) { origin(rw, r) }))
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set(layer.RequestIDHeader, "req-1")
		h.ServeRouted(rw, r, &layer.Request{ID: "req-1", Host: r.Host, ClientIP: netip.MustParseAddr("192.0.2.1"), ClientAddr: "192.0.2.1:1234"})
	}))
	t.Cleanup(srv.Close)
	return w, srv
}

const (
	sqlError   = "<html><body>Warning: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near ''' at line 1</body></html>"
	dirListing = "<html><head><title>Index of /backup</title></head><body><h1>Index of /backup</h1><ul><li><a href=\"db.sql\">db.sql</a></li></ul></body></html>"
)

// The CRS's response rules in block mode, on the answers the WAF
// inspects; the others stream through as before.
func TestWAFResponsePhases(t *testing.T) {
	big := strings.Repeat("x", 2048) + sqlError
	w, srv := testWAF(t, func(rw http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		body := map[string]string{"sql": sqlError, "dir": dirListing, "clean": "<html><body>hello</body></html>", "big": big}[q.Get("body")]
		rw.Header().Set("Content-Type", q.Get("type"))
		if q.Get("length") == "known" {
			rw.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		rw.Header().Set("Set-Cookie", "origin=1")
		if q.Get("chunks") == "2" {
			io.WriteString(rw, body[:10])
			rw.(http.Flusher).Flush()
			io.WriteString(rw, body[10:])
			return
		}
		io.WriteString(rw, body)
	},
		control.WAFConfig{Hostname: "block.test", Mode: control.WAFBlock, ResponseBodyLimit: 1024},
		control.WAFConfig{Hostname: "lenient.test", Mode: control.WAFBlock, OutboundThreshold: 5},
		control.WAFConfig{Hostname: "detect.test", Mode: control.WAFDetect},
	)
	for _, tc := range []struct {
		name, host, query string
		want              int
	}{
		{"sql error in html", "block.test", "body=sql&type=text/html&length=known", 403},
		{"sql error, unknown length, in chunks", "block.test", "body=sql&type=text/html&chunks=2", 403},
		{"sql error, unknown length, charset", "block.test", "body=sql&type=text/html%3B+charset=utf-8", 403},
		{"sql error in json", "block.test", "body=sql&type=application/json&length=known", 403},
		{"directory listing", "block.test", "body=dir&type=text/html&length=known", 403},
		{"clean page", "block.test", "body=clean&type=text/html&length=known", 200},
		{"sql error in an image (not inspected)", "block.test", "body=sql&type=image/png&length=known", 200},
		{"sql error in server-sent events (not inspected)", "block.test", "body=sql&type=text/event-stream", 200},
		{"sql error past the limit, known length (not inspected)", "block.test", "body=big&type=text/html&length=known", 200},
		{"sql error past the limit, unknown length (judged on the limit)", "block.test", "body=big&type=text/html", 200},
		{"directory listing under the outbound threshold", "lenient.test", "body=dir&type=text/html&length=known", 200},
		{"sql error over the outbound threshold", "lenient.test", "body=sql&type=text/html&length=known", 403},
		{"detect mode forwards", "detect.test", "body=sql&type=text/html&length=known", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/page?"+tc.query, nil)
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d; body %.200q", resp.StatusCode, tc.want, b)
			}
			if tc.want == 403 {
				if strings.Contains(string(b), "SQL syntax") || strings.Contains(string(b), "Index of") || resp.Header.Get("Set-Cookie") != "" {
					t.Errorf("a refused answer leaks the origin's: header %v, body %.200q", resp.Header, b)
				}
				if !strings.Contains(string(b), "req-1") {
					t.Errorf("the refusal does not name the request ID: %.200q", b)
				}
			}
		})
	}
	if n := testutil.ToFloat64(w.detected); n != 1 {
		t.Errorf("detected: got %v, want 1 (the detect-mode answer)", n)
	}
}

// An answer of unknown length that does not end streams after
// streamAfter, judged on what arrived; one that has ended is held whole.
func TestWAFResponseStreams(t *testing.T) {
	release := make(chan struct{})
	_, srv := testWAF(t, func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		for i := 0; ; i++ {
			fmt.Fprintf(rw, "line %d\n", i)
			rw.(http.Flusher).Flush()
			select {
			case <-release:
				return
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}, control.WAFConfig{Hostname: "block.test", Mode: control.WAFBlock})
	defer close(release)
	req, _ := http.NewRequest("GET", srv.URL+"/tail", nil)
	req.Host = "block.test"
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "line 0\n" {
		t.Fatalf("first line: %q, %v", first, err)
	}
	if d := time.Since(start); d < streamAfter/2 {
		t.Errorf("the first line came after %v: not held for inspection", d)
	}
	// From here on each line comes as it is written.
	for range 3 {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
}
