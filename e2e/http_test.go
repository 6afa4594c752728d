package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestHTTPRoundTrip checks method, path, query, multi-valued headers,
// status, trailers and forwarding headers end to end.
func TestHTTPRoundTrip(t *testing.T) { forEachProtocol(t, testHTTPRoundTrip) }

func testHTTPRoundTrip(t *testing.T, proto string) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Checksum")
		w.Header()["X-Multi"] = []string{"a", "b"}
		w.Header().Set("X-Seen-Method", r.Method)
		w.Header().Set("X-Seen-URI", r.RequestURI)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-XFP", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Seen-XFH", r.Header.Get("X-Forwarded-Host"))
		w.Header().Set("X-Seen-Multi", strings.Join(r.Header.Values("X-Multi-In"), "|"))
		w.Header().Set("X-Seen-Conn-Hop", r.Header.Get("X-Hop"))
		w.Header().Set("X-Seen-Req-Trailer", r.Trailer.Get("X-Req-Trailer"))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "got %d bytes", len(body))
		w.Header().Set("X-Checksum", "abc123")
	}))
	defer origin.Close()

	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "roundtrip", "app.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))

	req, _ := http.NewRequest("POST", edgeURL(srv, "/a/b%20c?x=1&y=2&x=3"), strings.NewReader("hello"))
	req.Host = "app.test"
	req.Header.Add("X-Multi-In", "one")
	req.Header.Add("X-Multi-In", "two")
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // must not be trusted
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "hop-by-hop")
	resp, err := edgeClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	checks := []struct{ name, got, want string }{
		{"status", fmt.Sprint(resp.StatusCode), "201"},
		{"body", body, "got 5 bytes"},
		{"method", resp.Header.Get("X-Seen-Method"), "POST"},
		{"uri", resp.Header.Get("X-Seen-URI"), "/a/b%20c?x=1&y=2&x=3"},
		{"host", resp.Header.Get("X-Seen-Host"), "app.test"},
		{"x-forwarded-for", resp.Header.Get("X-Seen-XFF"), "127.0.0.1"},
		{"x-forwarded-proto", resp.Header.Get("X-Seen-XFP"), "http"},
		{"x-forwarded-host", resp.Header.Get("X-Seen-XFH"), "app.test"},
		{"multi-valued request header", resp.Header.Get("X-Seen-Multi"), "one|two"},
		{"hop-by-hop header dropped", resp.Header.Get("X-Seen-Conn-Hop"), ""},
		{"multi-valued response header", strings.Join(resp.Header.Values("X-Multi"), "|"), "a|b"},
		{"trailer", resp.Trailer.Get("X-Checksum"), "abc123"},
		{"request id", fmt.Sprint(len(resp.Header.Get("Adit-Request-Id")) > 0), "true"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

// TestRequestTrailers sends a chunked request with trailers.
func TestRequestTrailers(t *testing.T) { forEachProtocol(t, testRequestTrailers) }

func testRequestTrailers(t *testing.T, proto string) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, r.Trailer.Get("X-Req-Trailer"))
	}))
	defer origin.Close()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "reqtrailer", "trailer.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("PUT", edgeURL(srv, "/"), pr)
	req.Host = "trailer.test"
	req.Trailer = http.Header{"X-Req-Trailer": nil}
	go func() {
		pw.Write([]byte("some body"))
		req.Trailer.Set("X-Req-Trailer", "sent-after-body")
		pw.Close()
	}()
	resp, err := edgeClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "sent-after-body" {
		t.Errorf("origin saw request trailer %q, want %q", got, "sent-after-body")
	}
}

// TestLargeBodies moves 100 MiB each way and compares checksums.
func TestLargeBodies(t *testing.T) { forEachProtocol(t, testLargeBodies) }

func testLargeBodies(t *testing.T, proto string) {
	const size = 100 << 20
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/download":
			w.Header().Set("Content-Length", fmt.Sprint(size))
			io.Copy(w, io.LimitReader(seededReader(7), size))
		}
	}))
	defer origin.Close()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "large", "large.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))

	t.Run("upload", func(t *testing.T) {
		want := sha256.New()
		body := io.TeeReader(io.LimitReader(seededReader(3), size), want)
		req, _ := http.NewRequest("POST", edgeURL(srv, "/upload"), body)
		req.Host = "large.test"
		req.ContentLength = size
		resp, err := edgeClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, resp)
		if w := fmt.Sprintf("%d %x", size, want.Sum(nil)); got != w {
			t.Errorf("origin got %q, want %q", got, w)
		}
	})
	t.Run("download", func(t *testing.T) {
		resp, err := edgeGet(srv, "large.test", "/download")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		want := sha256.New()
		io.Copy(want, io.LimitReader(seededReader(7), size))
		if n != size || fmt.Sprintf("%x", h.Sum(nil)) != fmt.Sprintf("%x", want.Sum(nil)) {
			t.Errorf("downloaded %d bytes with sha256 %x, want %d bytes with %x", n, h.Sum(nil), size, want.Sum(nil))
		}
		if resp.ContentLength != size {
			t.Errorf("Content-Length %d, want %d", resp.ContentLength, size)
		}
	})
}

// TestEarlyAnswer: an origin that refuses an upload without reading it
// (413 at once, as servers with a body limit do) is heard: the visitor
// gets the 413, not a 502 because the rest of its body had nowhere to go.
func TestEarlyAnswer(t *testing.T) { forEachProtocol(t, testEarlyAnswer) }

func testEarlyAnswer(t *testing.T, proto string) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too large for me", http.StatusRequestEntityTooLarge)
	}))
	defer origin.Close()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "early", "early.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))

	for i := range 3 {
		const size = 32 << 20
		req, _ := http.NewRequest("POST", edgeURL(srv, "/upload"), io.LimitReader(seededReader(byte(i)), size))
		req.Host = "early.test"
		req.ContentLength = size
		resp, err := edgeClient.Do(req)
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "too large for me") {
			t.Errorf("upload %d: got %d %.200q, want the origin's 413", i, resp.StatusCode, body)
		}
	}
}

// seededReader is a cheap deterministic byte stream.
func seededReader(seed byte) io.Reader { return &patternReader{b: seed} }

type patternReader struct{ b byte }

func (r *patternReader) Read(p []byte) (int, error) {
	for i := range p {
		r.b = r.b*31 + 17
		p[i] = r.b
	}
	return len(p), nil
}

// TestServerSentEvents checks that an event arrives while the origin is
// still holding the response open.
func TestServerSentEvents(t *testing.T) { forEachProtocol(t, testServerSentEvents) }

func testServerSentEvents(t *testing.T, proto string) {
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: second\n\n")
	}))
	defer origin.Close()
	defer close(release)
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "sse", "sse.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))

	resp, err := edgeGet(srv, "sse.test", "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	// The origin is blocked on release: this event crossed the tunnel
	// while the response was still open.
	if line != "data: first\n" {
		t.Errorf("first line %q, want %q", line, "data: first\n")
	}
}

// TestWebSocketEcho upgrades through the edge and the tunnel.
func TestWebSocketEcho(t *testing.T) { forEachProtocol(t, testWebSocketEcho) }

func testWebSocketEcho(t *testing.T, proto string) {
	origin := httptest.NewServer(http.HandlerFunc(wsEcho))
	defer origin.Close()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "ws", "ws.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))
	checkWSEcho(t, srv.HTTPAddr().String(), "ws.test", 5)
}

// wsEcho accepts a WebSocket and sends every message back after "echo: ".
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
			return
		}
	}
}

// checkWSEcho opens a WebSocket to host's /ws through the edge at addr and
// checks that n messages come back from wsEcho.
func checkWSEcho(t *testing.T, addr, host string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := range n {
		msg := fmt.Sprintf("message %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+msg {
			t.Errorf("got %q, want %q", got, "echo: "+msg)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestConcurrentRequests sends 200 requests at once.
func TestConcurrentRequests(t *testing.T) { forEachProtocol(t, testConcurrentRequests) }

func testConcurrentRequests(t *testing.T, proto string) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.URL.Query().Get("i"))
	}))
	defer origin.Close()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "concurrent", "many.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := edgeGet(srv, "many.test", fmt.Sprintf("/?i=%d", i))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				errs <- err
				return
			}
			if resp.StatusCode != 200 || string(b) != fmt.Sprint(i) {
				errs <- fmt.Errorf("request %d: status %d body %q", i, resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestErrorPages covers the three errors a user can act on.
func TestErrorPages(t *testing.T) {
	srv := startEdge(t, "")
	offline := createTunnel(t, srv, "offline", "offline.test")
	_ = offline
	dead := createTunnel(t, srv, "dead-origin", "dead.test")

	// An origin that is gone: a listener closed right away.
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()
	logs := &syncBuffer{}
	startConnector(t, srv, dead, mustIngress(t, goneURL), withLogBuffer(logs))

	cases := []struct {
		name, host string
		status     int
		contains   string
	}{
		{"unknown hostname", "nobody.test", 404, `"nobody.test"`},
		{"tunnel offline", "offline.test", 502, "Tunnel offline"},
		{"origin unreachable", "dead.test", 502, "Origin unreachable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := edgeGet(srv, c.host, "/")
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			if !strings.Contains(body, c.contains) {
				t.Errorf("page %q does not contain %q", body, c.contains)
			}
			id := resp.Header.Get("Adit-Request-Id")
			if id == "" || !strings.Contains(body, id) {
				t.Errorf("page does not carry the request ID %q: %q", id, body)
			}
			if c.name == "origin unreachable" {
				waitFor(t, "connector log with the request ID", func() bool {
					return strings.Contains(logs.String(), "request_id="+id)
				})
			}
		})
	}
	t.Run("html for browsers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", edgeURL(srv, "/"), nil)
		req.Host = "nobody.test"
		req.Header.Set("Accept", "text/html")
		resp, err := edgeClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<html") {
			t.Errorf("want an HTML page, got %s: %q", resp.Header.Get("Content-Type"), body)
		}
	})
}

// TestHeadAndSmallBodies covers the one-write path for small answers of
// known length: HEAD keeps its Content-Length without a body, an empty body
// stays empty, and a body that is shorter than announced is an error.
func TestHeadAndSmallBodies(t *testing.T) { forEachProtocol(t, testHeadAndSmallBodies) }

func testHeadAndSmallBodies(t *testing.T, proto string) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/short":
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("only ten.."))
			panic(http.ErrAbortHandler)
		default:
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("hello"))
		}
	}))
	defer origin.Close()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "small-"+proto, "small.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))

	req, _ := http.NewRequest("HEAD", edgeURL(srv, "/"), nil)
	req.Host = "small.test"
	resp, err := edgeClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 5 {
		t.Errorf("HEAD: status %d, Content-Length %d; want 200, 5", resp.StatusCode, resp.ContentLength)
	}
	resp, err = edgeGet(srv, "small.test", "/empty")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 204 || body != "" {
		t.Errorf("empty: %d %q", resp.StatusCode, body)
	}
	resp, err = edgeGet(srv, "small.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "hello" {
		t.Errorf("small: %q", body)
	}
	// A broken answer is either a 502 (the stream was reset before its
	// header arrived) or a body that ends in an error; never a clean 200.
	resp, err = edgeGet(srv, "small.test", "/short")
	status := 0
	if err == nil {
		status = resp.StatusCode
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil && status < 500 {
		t.Errorf("a body shorter than its Content-Length arrived as a clean %d", status)
	}
}
