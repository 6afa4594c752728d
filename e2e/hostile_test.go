package e2e

// Hostile and broken peers: each costs only its own connection or request,
// never the process, and is logged at most once per interval per kind.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
)

// startEdgeLogged starts an in-process edge whose logs (info and up) go to
// logs, with cfg changed by mods.
func startEdgeLogged(t testing.TB, logs *syncBuffer, mods ...func(*edge.Config)) *edge.Server {
	t.Helper()
	cfg := edge.Config{
		DataDir:    t.TempDir(),
		HTTPAddr:   "127.0.0.1:0",
		TunnelAddr: "127.0.0.1:0",
		APIAddr:    "127.0.0.1:0",
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
	}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := edge.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting edge: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// logLines counts the log lines whose message is msg.
func logLines(logs *syncBuffer, msg string) int {
	return strings.Count(logs.String(), `msg="`+msg+`"`)
}

// gathered reads one series (a counter or gauge, with the given label
// name/value pairs) from an in-process registry; -1 if it is not there.
func gathered(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// TestPublicLimits: oversized headers get a 431, oversized bodies a 413
// (declared or streamed), and neither reaches the origin whole.
func TestPublicLimits(t *testing.T) {
	var complete atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err == nil {
			complete.Add(1)
		}
		fmt.Fprintf(w, "got %d", n)
	}))
	defer origin.Close()
	logs := &syncBuffer{}
	srv := startEdgeLogged(t, logs, func(c *edge.Config) { c.MaxRequestBody = 1000 })
	tun := createTunnel(t, srv, "limits", "limits.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL))

	post := func(body io.Reader, length int64) (int, string) {
		req, _ := http.NewRequest("POST", edgeURL(srv, "/"), body)
		req.Host = "limits.test"
		req.ContentLength = length
		resp, err := edgeClient.Do(req)
		if err != nil {
			return -1, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		name   string
		body   io.Reader
		length int64
		status int
	}{
		{"small body", strings.NewReader(strings.Repeat("a", 500)), 500, 200},
		{"declared too large", strings.NewReader(strings.Repeat("a", 2000)), 2000, 413},
		{"streamed too large", io.MultiReader(strings.NewReader(strings.Repeat("a", 900)), slowReader{strings.NewReader(strings.Repeat("b", 4000))}), -1, 413},
		{"streamed at the limit", strings.NewReader(strings.Repeat("a", 1000)), -1, 200},
	}
	for _, c := range cases {
		before := complete.Load()
		code, body := post(c.body, c.length)
		if code != c.status {
			t.Errorf("%s: got %d %q, want %d", c.name, code, body, c.status)
		}
		if c.status == 413 && complete.Load() != before {
			t.Errorf("%s: the origin received a complete body", c.name)
		}
	}

	// Header limit: the default 1 MiB.
	req, _ := http.NewRequest("GET", edgeURL(srv, "/"), nil)
	req.Host = "limits.test"
	req.Header.Set("X-Big", strings.Repeat("h", 2<<20))
	resp, err := edgeClient.Do(req)
	if err != nil {
		t.Fatalf("oversized header: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized header: got %d, want 431", resp.StatusCode)
	}
	if code, body := getVia(srv.HTTPAddr().String(), "limits.test"); code != 200 {
		t.Errorf("after the limits: got %d %q, want 200", code, body)
	}
}

// slowReader hands out its bytes in small pieces, so that a chunked body
// is streamed rather than sent in one go.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	if len(p) > 256 {
		p = p[:256]
	}
	return s.r.Read(p)
}

// TestSlowAndAbandonedClients: thousands of public connections that send
// nothing, half a header, or one request and then idle, are closed by the
// edge's timeouts; meanwhile real requests are served, and afterwards the
// edge is back to its own goroutines.
func TestSlowAndAbandonedClients(t *testing.T) {
	logs := &syncBuffer{}
	srv := startEdgeLogged(t, logs, func(c *edge.Config) {
		c.ReadHeaderTimeout = 300 * time.Millisecond
		c.IdleTimeout = 500 * time.Millisecond
	})
	tun := createTunnel(t, srv, "abandon", "abandon.test")
	origin := helloOrigin(t, "hello")
	startConnector(t, srv, tun, mustIngress(t, origin.URL))
	if code, _ := getVia(srv.HTTPAddr().String(), "abandon.test"); code != 200 {
		t.Fatalf("warm-up request: %d", code)
	}
	base := runtime.NumGoroutine()

	const n = 2000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", srv.HTTPAddr().String())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		switch i % 3 {
		case 1:
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: abandon.te")
		case 2:
			// A complete request (for a name with no tunnel, so that the
			// origin's connection pool stays as it is), then silence.
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
		}
	}
	for i := range 20 {
		if code, body := getVia(srv.HTTPAddr().String(), "abandon.test"); code != 200 {
			t.Fatalf("request %d among abandoned connections: %d %q", i, code, body)
		}
	}
	// Every abandoned connection is closed by the edge: reading it ends
	// (after the answer, for the complete request) well before our own
	// deadline.
	var wg sync.WaitGroup
	var open atomic.Int64
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open.Add(1)
			}
		})
	}
	wg.Wait()
	if n := open.Load(); n > 0 {
		t.Errorf("%d abandoned connections were still open after 20s", n)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitGoroutines(t, base+10, "after the abandoned connections")
}

// TestTunnelPortGarbage: random datagrams and QUIC handshakes with the
// wrong ALPN on the tunnel port cost nothing but themselves.
func TestTunnelPortGarbage(t *testing.T) {
	logs := &syncBuffer{}
	srv := startEdgeLogged(t, logs)
	tun := createTunnel(t, srv, "garbage", "garbage.test")
	origin := helloOrigin(t, "hello")

	c, err := net.Dial("udp", srv.TunnelAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for i := range 3000 {
		size := 1 + i%len(buf)
		rand.Read(buf[:size])
		if i%2 == 0 && size > 8 {
			// A QUIC long header (version 1) with garbage behind it.
			buf[0], buf[1], buf[2], buf[3], buf[4] = 0xc0, 0, 0, 0, 1
		}
		c.Write(buf[:size])
	}

	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := quic.DialAddr(ctx, srv.TunnelAddr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h3"}, MinVersion: tls.VersionTLS13}, nil)
		cancel()
		if err == nil {
			t.Fatal("a QUIC handshake with ALPN h3 succeeded")
		}
	}

	startConnector(t, srv, tun, mustIngress(t, origin.URL))
	if code, body := getVia(srv.HTTPAddr().String(), "garbage.test"); code != 200 || body != "hello" {
		t.Errorf("after the garbage: got %d %q, want 200 hello", code, body)
	}
}

// fakeConnector dials the edge's tunnel port as a connector would, to
// misbehave.
func fakeDial(t testing.TB, srv *edge.Server) tunnel.Conn {
	t.Helper()
	return fakeDialWith(t, func(ctx context.Context, tc *tls.Config) (tunnel.Conn, error) {
		return tunnelquic.Dial(ctx, srv.TunnelAddr().String(), tc, tunnelquic.Config{})
	}, srv)
}

// fakeDialWith dials with dial, trusting srv's CA.
func fakeDialWith(t testing.TB, dial func(context.Context, *tls.Config) (tunnel.Conn, error), srv *edge.Server) tunnel.Conn {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("fake connector: dial: %v", err)
	}
	t.Cleanup(func() { c.Close(tunnel.CodeNormal, "test over") })
	return c
}

// fakeRegister registers c for tun and returns the control stream.
func fakeRegister(t testing.TB, c tunnel.Conn, tun tunnelFixture) tunnel.Stream {
	t.Helper()
	ctrl, err := c.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := tunnel.WriteMessage(ctrl, &tunnel.RegisterRequest{TunnelID: tun.ID, Secret: tun.Secret, ConnectorID: uuid.NewString(), Protocol: tunnel.ProtocolVersion}); err != nil {
		t.Fatal(err)
	}
	var resp tunnel.RegisterResponse
	if err := tunnel.ReadMessage(bufio.NewReader(ctrl), &resp); err != nil || resp.Error != "" {
		t.Fatalf("fake connector: registration: %v %q", err, resp.Error)
	}
	return ctrl
}

// closedWith waits for the edge to end c and returns its close code.
func closedWith(t testing.TB, c tunnel.Conn) tunnel.ErrorCode {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the edge did not close the misbehaving connection within 15s")
	}
	var ce *tunnel.CloseError
	if !errors.As(c.Err(), &ce) {
		t.Fatalf("connection ended with %v, want a close code", c.Err())
	}
	return ce.Code
}

// TestFakeConnectorControlStream: a connector that sends garbage, oversized
// frames, wrong messages or bad credentials on the control stream loses its
// connection with a code saying why; the edge logs each kind once.
func TestFakeConnectorControlStream(t *testing.T) {
	logs := &syncBuffer{}
	srv := startEdgeLogged(t, logs)
	tun := createTunnel(t, srv, "control", "control.test")
	other := createTunnel(t, srv, "bystander", "bystander.test")
	origin := helloOrigin(t, "hello")
	startConnector(t, srv, other, mustIngress(t, origin.URL))

	garbage := garbageFrame()
	register := func(id string, secret []byte) func(tunnel.Stream) {
		return func(s tunnel.Stream) {
			tunnel.WriteMessage(s, &tunnel.RegisterRequest{TunnelID: id, Secret: secret, Protocol: tunnel.ProtocolVersion})
		}
	}
	cases := []struct {
		name       string
		registered bool // misbehave after a good registration
		send       func(tunnel.Stream)
		want       tunnel.ErrorCode
	}{
		{"garbage first frame", false, func(s tunnel.Stream) { s.Write(garbage) }, tunnel.CodeProtocol},
		{"oversized frame", false, func(s tunnel.Stream) { s.Write([]byte{byte(tunnel.FrameRegister), 0xff, 0xff, 0xff, 0x0f}) }, tunnel.CodeProtocol},
		{"undecodable register", false, func(s tunnel.Stream) { tunnel.WriteFrame(s, tunnel.FrameRegister, []byte{0xff, 0xff, 0xff}) }, tunnel.CodeProtocol},
		{"wrong first message", false, func(s tunnel.Stream) { tunnel.WriteMessage(s, &tunnel.RequestHeader{Method: "GET"}) }, tunnel.CodeProtocol},
		{"half a frame, then the end", false, func(s tunnel.Stream) { s.Write([]byte{byte(tunnel.FrameRegister), 40, 1, 2}); s.CloseWrite() }, tunnel.CodeProtocol},
		{"unknown tunnel", false, register(uuid.NewString(), tun.Secret), tunnel.CodeUnauthorized},
		{"tunnel ID not a UUID", false, register("../../etc", tun.Secret), tunnel.CodeUnauthorized},
		{"wrong secret", false, register(tun.ID, []byte("not the secret at all, really not")), tunnel.CodeUnauthorized},
		{"unknown control frame", true, func(s tunnel.Stream) { tunnel.WriteFrame(s, tunnel.FrameType(0x7f), []byte("x")) }, tunnel.CodeProtocol},
		{"undecodable unregister", true, func(s tunnel.Stream) { tunnel.WriteFrame(s, tunnel.FrameUnregister, []byte{0xff, 0xff}) }, tunnel.CodeProtocol},
		{"oversized control frame", true, func(s tunnel.Stream) { s.Write([]byte{0x7e, 0xff, 0xff, 0xff, 0x0f}) }, tunnel.CodeProtocol},
		{"control stream ended", true, func(s tunnel.Stream) { s.CloseWrite() }, tunnel.CodeProtocol},
	}
	const repeat = 3
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range repeat {
				conn := fakeDial(t, srv)
				var ctrl tunnel.Stream
				if c.registered {
					ctrl = fakeRegister(t, conn, tun)
				} else {
					var err error
					if ctrl, err = conn.OpenStream(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				c.send(ctrl)
				if c.want == tunnel.CodeUnauthorized {
					// The edge answers a refusal, then waits for us to
					// hang up.
					var resp tunnel.RegisterResponse
					err := tunnel.ReadMessage(bufio.NewReader(ctrl), &resp)
					if err != nil || resp.Error == "" || !resp.Permanent {
						t.Fatalf("got %+v, %v; want a permanent refusal", resp, err)
					}
					conn.Close(tunnel.CodeNormal, "bye")
					continue
				}
				if got := closedWith(t, conn); got != c.want {
					t.Errorf("closed with code %d (%v), want %d", got, conn.Err(), c.want)
				}
			}
		})
	}
	waitFor(t, "the misbehaving connections to be gone", func() bool { return srv.Connections() == 2 })
	if code, body := getVia(srv.HTTPAddr().String(), "bystander.test"); code != 200 || body != "hello" {
		t.Errorf("a well-behaved tunnel: got %d %q, want 200 hello", code, body)
	}
	for _, msg := range []string{"registration failed", "unexpected control frame", "bad control frame"} {
		if n := logLines(logs, msg); n != 1 {
			t.Errorf("log lines %q: got %d, want 1 (rate-limited)", msg, n)

		}
	}
	if got := gathered(t, srv.Metrics(), "adit_edge_registrations_total", "result", "refused"); got != 3*repeat {
		t.Errorf("refused registrations: got %v, want %d", got, 3*repeat)
	}
}

// TestFakeConnectorRequestStreams: a connector that answers requests with
// garbage, impossible statuses, oversized frames, resets or silence costs
// those requests a 502 (or the client's own timeout), nothing more.
func TestFakeConnectorRequestStreams(t *testing.T) {
	logs := &syncBuffer{}
	srv := startEdgeLogged(t, logs)
	tun := createTunnel(t, srv, "liar", "liar.test")
	other := createTunnel(t, srv, "bystander", "bystander.test")
	startConnector(t, srv, other, mustIngress(t, helloOrigin(t, "hello").URL))
	const baseConns = 2 // the bystander's
	waitFor(t, "the bystander's connections", func() bool { return srv.Connections() == baseConns })

	garbage := garbageFrame()
	header := func(rh tunnel.ResponseHeader) func(tunnel.Stream) {
		return func(s tunnel.Stream) { tunnel.WriteMessage(s, &rh) }
	}
	cases := []struct {
		name   string
		answer func(tunnel.Stream)
		status int // 0: the client sees a broken response
	}{
		{"garbage", func(s tunnel.Stream) { s.Write(garbage) }, 502},
		{"status zero", header(tunnel.ResponseHeader{}), 502},
		{"informational status", header(tunnel.ResponseHeader{Status: 100}), 502},
		{"switching protocols unasked", header(tunnel.ResponseHeader{Status: 101}), 502},
		{"oversized frame", func(s tunnel.Stream) { s.Write([]byte{byte(tunnel.FrameResponse), 0xff, 0xff, 0xff, 0x0f}) }, 502},
		{"reset at once", func(s tunnel.Stream) { s.Close() }, 502},
		{"end without an answer", func(s tunnel.Stream) { s.CloseWrite() }, 502},
		{"garbage body", func(s tunnel.Stream) {
			tunnel.WriteMessage(s, &tunnel.ResponseHeader{Status: 200, ContentLength: -1})
			tunnel.WriteFrame(s, tunnel.FrameData, []byte("partial "))
			s.Write(garbage)
		}, 0},
		{"oversized body frame", func(s tunnel.Stream) {
			tunnel.WriteMessage(s, &tunnel.ResponseHeader{Status: 200, ContentLength: -1})
			s.Write([]byte{byte(tunnel.FrameData), 0xff, 0xff, 0xff, 0x0f})
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := fakeDial(t, srv)
			fakeRegister(t, conn, tun)
			done := make(chan struct{})
			go func() {
				defer close(done)
				s, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				var h tunnel.RequestHeader
				if err := tunnel.ReadMessage(bufio.NewReader(s), &h); err != nil {
					return
				}
				c.answer(s)
			}()
			resp, err := edgeGet(srv, "liar.test", "/")
			status := 0
			if err == nil {
				_, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil {
					status = resp.StatusCode
				}
			}
			if status != c.status {
				t.Errorf("client got status %d (%v), want %d", status, err, c.status)
			}
			conn.Close(tunnel.CodeNormal, "case over")
			<-done
			waitFor(t, "the fake connection to be gone", func() bool { return srv.Connections() == baseConns })
		})
	}

	t.Run("never answers", func(t *testing.T) {
		conn := fakeDial(t, srv)
		fakeRegister(t, conn, tun)
		go func() {
			for {
				if _, err := conn.AcceptStream(context.Background()); err != nil {
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", edgeURL(srv, "/"), nil)
		req.Host = "liar.test"
		if resp, err := edgeClient.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("got %d from a connector that never answers, want the client's timeout", resp.StatusCode)
		}
		waitFor(t, "the abandoned stream to be released", func() bool {
			return gathered(t, srv.Metrics(), "adit_edge_streams_in_flight") == 0
		})
	})

	if code, body := getVia(srv.HTTPAddr().String(), "bystander.test"); code != 200 || body != "hello" {
		t.Errorf("a well-behaved tunnel: got %d %q, want 200 hello", code, body)
	}
	if n := logLines(logs, "tunnel stream failed"); n > 1 {
		t.Errorf("log lines %q: got %d, want at most 1 (rate-limited)", "proxy: tunnel stream failed", n)
	}
}

// TestBrokenEdge: a connector whose edge sends garbage request headers,
// oversized frames and impossible requests answers what it can, keeps its
// connection, logs each kind once, and still serves real requests.
func TestBrokenEdge(t *testing.T) {
	bundle, _, err := pki.LoadOrCreate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := bundle.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tunnelquic.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, tunnelquic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan tunnel.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	logs := &syncBuffer{}
	c, err := connector.New(connector.Config{
		TunnelID:      uuid.NewString(),
		Secret:        bytes.Repeat([]byte("s"), 32),
		EdgeAddrs:     []string{ln.Addr().String()},
		EdgeCA:        bundle.CACertPEM,
		ServerName:    "localhost",
		Ingress:       mustIngress(t, helloOrigin(t, "hello").URL),
		HAConnections: 1,
		GracePeriod:   time.Second, // this edge never says the drain is over
		Logger:        slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-runDone
	}()

	var conn tunnel.Conn
	select {
	case conn = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the connector did not dial")
	}
	ctrl, err := conn.AcceptStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var reg tunnel.RegisterRequest
	if err := tunnel.ReadMessage(bufio.NewReader(ctrl), &reg); err != nil {
		t.Fatal(err)
	}
	tunnel.WriteMessage(ctrl, &tunnel.RegisterResponse{ConnectionID: "c1", EdgeNode: "fake"})
	<-c.Ready()

	garbage := garbageFrame()
	request := func(h tunnel.RequestHeader) func(tunnel.Stream) {
		return func(s tunnel.Stream) {
			tunnel.WriteMessage(s, &h)
			tunnel.NewBodyWriter(s).Close()
			s.CloseWrite()
		}
	}
	abuse := []struct {
		name string
		send func(tunnel.Stream)
	}{
		{"garbage", func(s tunnel.Stream) { s.Write(garbage); s.CloseWrite() }},
		{"oversized frame", func(s tunnel.Stream) { s.Write([]byte{byte(tunnel.FrameRequest), 0xff, 0xff, 0xff, 0x0f}) }},
		{"no method", request(tunnel.RequestHeader{Type: tunnel.StreamHTTP, Host: "x", Path: "/"})},
		{"bad path", request(tunnel.RequestHeader{Type: tunnel.StreamHTTP, Method: "GET", Host: "x", Path: "http://evil/"})},
		{"unknown stream type", request(tunnel.RequestHeader{Type: 99, Method: "GET", Host: "x", Path: "/"})},
		{"body frame oversized", func(s tunnel.Stream) {
			tunnel.WriteMessage(s, &tunnel.RequestHeader{Type: tunnel.StreamHTTP, Method: "POST", Host: "x", Path: "/", ContentLength: -1})
			s.Write([]byte{byte(tunnel.FrameData), 0xff, 0xff, 0xff, 0x0f})
			s.CloseWrite()
		}},
		{"reset mid-header", func(s tunnel.Stream) { s.Write([]byte{byte(tunnel.FrameRequest), 50, 8}); s.Close() }},
	}
	for _, a := range abuse {
		for range 5 {
			s, err := conn.OpenStream(context.Background())
			if err != nil {
				t.Fatalf("%s: %v", a.name, err)
			}
			a.send(s)
			// Whatever the connector answers, it answers or hangs up
			// promptly.
			done := make(chan struct{})
			go func() {
				defer close(done)
				io.Copy(io.Discard, s)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the connector neither answered nor closed the stream", a.name)
			}
			s.Close()
		}
	}

	// A real request on the same connection still works.
	s, err := conn.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	request(tunnel.RequestHeader{Type: tunnel.StreamHTTP, Method: "GET", Host: "x", Path: "/", RequestID: "r1"})(s)
	br := bufio.NewReader(s)
	var rh tunnel.ResponseHeader
	if err := tunnel.ReadMessage(br, &rh); err != nil || rh.Status != 200 {
		t.Fatalf("real request after the abuse: %+v, %v", rh, err)
	}
	body, err := io.ReadAll(tunnel.NewBodyReader(br, nil))
	if err != nil || string(body) != "hello" {
		t.Errorf("real request body: %q, %v", body, err)
	}
	select {
	case <-conn.Done():
		t.Errorf("the connector dropped the connection: %v", conn.Err())
	default:
	}
	if c.Connections() != 1 {
		t.Errorf("connector holds %d connections, want 1", c.Connections())
	}
	for _, msg := range []string{"bad request stream", "bad request header"} {
		if n := logLines(logs, msg); n != 1 {
			t.Errorf("log lines %q: got %d, want 1 (rate-limited)", msg, n)

		}
	}
}

// TestBrokenEdgeRegistration: an edge that answers the registration with
// garbage or an oversized frame is backed off from, not crashed on.
func TestBrokenEdgeRegistration(t *testing.T) {
	bundle, _, err := pki.LoadOrCreate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := bundle.TLSCertificate()
	ln, err := tunnelquic.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, tunnelquic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var attempts atomic.Int64
	answers := [][]byte{
		{0x7e, 1, 2, 3},
		{byte(tunnel.FrameRegistered), 0xff, 0xff, 0xff, 0x0f},
		{byte(tunnel.FrameRegistered), 3, 0xff, 0xff, 0xff},
	}
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				s, err := c.AcceptStream(context.Background())
				if err != nil {
					return
				}
				var reg tunnel.RegisterRequest
				tunnel.ReadMessage(bufio.NewReader(s), &reg)
				n := attempts.Add(1)
				s.Write(answers[int(n)%len(answers)])
			}()
		}
	}()
	c, err := connector.New(connector.Config{
		TunnelID:      uuid.NewString(),
		Secret:        bytes.Repeat([]byte("s"), 32),
		EdgeAddrs:     []string{ln.Addr().String()},
		EdgeCA:        bundle.CACertPEM,
		ServerName:    "localhost",
		Ingress:       mustIngress(t, "http://127.0.0.1:1"),
		HAConnections: 2,
		RetryBase:     50 * time.Millisecond,
		RetryMax:      200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	waitFor(t, "several broken registrations", func() bool { return attempts.Load() >= 6 })
	select {
	case err := <-runDone:
		t.Fatalf("Run returned on broken registrations: %v", err)
	default:
	}
	if got := gathered(t, c.Metrics(), "adit_connector_registrations_total", "result", "refused"); got < 4 {
		t.Errorf("refused registrations: got %v, want several", got)
	}
	cancel()
	if err := <-runDone; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestStreamCap: with a per-connection cap on concurrent streams, requests
// beyond it wait for a free stream instead of failing.
func TestStreamCap(t *testing.T) {
	var cur, peak atomic.Int64
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		cur.Add(-1)
		io.WriteString(w, "done")
	}))
	defer origin.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "capped", "capped.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL), func(c *connector.Config) {
		c.HAConnections = 1
		c.QUIC.MaxIncomingStreams = 4
	})

	const n = 12
	errs := make(chan error, n)
	for range n {
		go func() {
			code, body := getVia(srv.HTTPAddr().String(), "capped.test")
			if code != 200 || body != "done" {
				errs <- fmt.Errorf("got %d %q", code, body)
				return
			}
			errs <- nil
		}()
	}
	waitFor(t, "the origin to hold 4 requests", func() bool { return cur.Load() == 4 })
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if p := peak.Load(); p > 4 {
		t.Errorf("the origin saw %d requests at once through a connection capped at 4 streams", p)
	}
}

// waitGoroutines waits until the process has at most max goroutines, and
// on failure shows where the others are.
func waitGoroutines(t testing.TB, max int, what string) {
	t.Helper()
	if !waitWithin(20*time.Second, func() bool { return runtime.NumGoroutine() <= max }) {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Fatalf("%s: %d goroutines, want at most %d; they are:\n%s", what, runtime.NumGoroutine(), max, b.String())
	}
}

// garbageFrame is a whole frame of an unknown type (0x7e) with random
// contents: a peer that reads it gets an error at once rather than waiting
// for the rest of a random length.
func garbageFrame() []byte {
	b := make([]byte, 62)
	rand.Read(b)
	b[0], b[1] = 0x7e, 60
	return b
}
