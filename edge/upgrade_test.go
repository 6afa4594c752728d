package edge

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/tunnel"
)

// The upgrade path (upgrade.go) against a stand-in connector: each stream
// is a loopback TCP connection, and the test plays the connector on the
// far end.

// testStream is a tunnel.Stream over TCP with the transports' Close: a
// stream whose write side was not finished is reset, so the peer sees an
// error rather than a clean end.
type testStream struct {
	*net.TCPConn
	writeClosed atomic.Bool
}

// Context never ends: a TCP connection does not say that its peer
// stopped reading.
func (s *testStream) Context() context.Context { return context.Background() }

func (s *testStream) CloseWrite() error {
	s.writeClosed.Store(true)
	return s.TCPConn.CloseWrite()
}

func (s *testStream) Close() error {
	if !s.writeClosed.Load() {
		s.SetLinger(0)
	}
	return s.TCPConn.Close()
}

// fakeTunnel is a tunnel.Conn whose OpenStream dials a listener; serve
// plays the connector for each stream.
type fakeTunnel struct {
	ln    net.Listener
	serve func(s *testStream)
	wg    sync.WaitGroup
	done  chan struct{}
}

func newFakeTunnel(t *testing.T, serve func(s *testStream)) *fakeTunnel {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTunnel{ln: ln, serve: serve, done: make(chan struct{})}
	ft.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ft.wg.Go(func() {
				s := &testStream{TCPConn: c.(*net.TCPConn)}
				defer s.Close()
				ft.serve(s)
			})
		}
	})
	return ft
}

func (ft *fakeTunnel) OpenStream(ctx context.Context) (tunnel.Stream, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ft.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	return &testStream{TCPConn: c.(*net.TCPConn)}, nil
}

func (ft *fakeTunnel) AcceptStream(ctx context.Context) (tunnel.Stream, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (ft *fakeTunnel) Close(tunnel.ErrorCode, string) error {
	ft.ln.Close()
	ft.wg.Wait()
	return nil
}

func (ft *fakeTunnel) Done() <-chan struct{}   { return ft.done }
func (ft *fakeTunnel) Err() error              { return nil }
func (ft *fakeTunnel) LocalAddr() net.Addr     { return ft.ln.Addr() }
func (ft *fakeTunnel) RemoteAddr() net.Addr    { return ft.ln.Addr() }
func (ft *fakeTunnel) Protocol() string        { return "test" }
func (ft *fakeTunnel) PacketsReceived() uint64 { return 0 }

type routes map[string]string

func (r routes) Route(host string) (string, bool) {
	id, ok := r[hostOnly(host)]
	return id, ok
}

// upgradeRig is an edge proxy (with its metrics wrapper, as Start builds
// it) in front of a fake tunnel.
type upgradeRig struct {
	srv *httptest.Server
	tc  *tunnelConn
	ft  *fakeTunnel
}

func newUpgradeRig(t *testing.T, connector func(t *testing.T, s *testStream, br *bufio.Reader, h *tunnel.RequestHeader)) *upgradeRig {
	t.Helper()
	ft := newFakeTunnel(t, func(s *testStream) {
		br := bufio.NewReader(s)
		var h tunnel.RequestHeader
		if err := tunnel.ReadMessage(br, &h); err != nil {
			t.Errorf("connector: reading the request header: %v", err)
			return
		}
		connector(t, s, br, &h)
	})
	reg := newRegistry()
	tc := &tunnelConn{conn: ft, info: control.Connection{ID: "conn-1", TunnelID: "tunnel-1"}}
	reg.add(tc)
	m := newEdgeMetrics(reg)
	p := newProxy(routes{"ws.test": "tunnel-1"}, reg, m, slog.New(slog.DiscardHandler), nil)
	rig := &upgradeRig{srv: httptest.NewServer(m.instrument(p)), tc: tc, ft: ft}
	t.Cleanup(rig.close)
	return rig
}

func (r *upgradeRig) close() {
	r.srv.Close()
	r.ft.Close(tunnel.CodeNormal, "")
}

// waitIdle waits until no stream is in flight: the pipe has ended and
// given its stream back.
func (r *upgradeRig) waitIdle(t *testing.T) {
	t.Helper()
	poll.Until(t, "no stream in flight", func() bool { return r.tc.inflight.Load() == 0 })
}

const upgradeRequest = "GET /chat?room=1 HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade, X-Hop\r\nUpgrade: websocket\r\n" +
	"X-Hop: dropped\r\nX-Forwarded-For: 203.0.113.9\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

// dialUpgrade sends the upgrade request, then extra in the same write, and
// reads the answer's header.
func (r *upgradeRig) dialUpgrade(t *testing.T, extra string) (*net.TCPConn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", r.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, upgradeRequest+extra); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return c.(*net.TCPConn), br, resp
}

// answer writes the connector's answer header, and extra in the same write.
func answer(t *testing.T, s tunnel.Stream, rh *tunnel.ResponseHeader, extra string) {
	t.Helper()
	b, err := tunnel.AppendMessage(nil, rh)
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := s.Write(append(b, extra...)); err != nil {
		t.Errorf("connector: writing the answer: %v", err)
	}
}

var switched = &tunnel.ResponseHeader{Status: http.StatusSwitchingProtocols, Header: http.Header{
	"Connection":           {"Upgrade"},
	"Upgrade":              {"websocket"},
	"Sec-Websocket-Accept": {"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
}}

func readN(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return string(b), err
}

func TestUpgradeRefusedPassesThrough(t *testing.T) {
	rig := newUpgradeRig(t, func(t *testing.T, s *testStream, br *bufio.Reader, h *tunnel.RequestHeader) {
		answer(t, s, &tunnel.ResponseHeader{Status: http.StatusForbidden, ContentLength: 9, Header: http.Header{
			"Content-Type": {"text/plain"},
			"X-Reason":     {"no chat for you"},
		}}, "")
		bw := tunnel.NewBodyWriter(s)
		io.WriteString(bw, "forbidden")
		bw.CloseWithTrailers(nil)
		s.CloseWrite()
	})
	c, br, resp := rig.dialUpgrade(t, "")
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"status", resp.StatusCode, http.StatusForbidden},
		{"body", string(body), "forbidden"},
		{"header", resp.Header.Get("X-Reason"), "no chat for you"},
		{"request ID", resp.Header.Get(RequestIDHeader) != "", true},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	// The connection stays an HTTP connection: a second request is served.
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("next request on the connection: got %v, %v; want 404", resp, err)
	}
	rig.waitIdle(t)
}

func TestUpgradeWrongProtocol(t *testing.T) {
	rig := newUpgradeRig(t, func(t *testing.T, s *testStream, br *bufio.Reader, h *tunnel.RequestHeader) {
		answer(t, s, &tunnel.ResponseHeader{Status: http.StatusSwitchingProtocols, Header: http.Header{
			"Connection": {"Upgrade"}, "Upgrade": {"h2c"},
		}}, "")
		io.Copy(io.Discard, br)
	})
	_, _, resp := rig.dialUpgrade(t, "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status: got %d, want 502", resp.StatusCode)
	}
	rig.waitIdle(t)
}

// TestUpgradeRequest checks what the connector is asked: the request as
// forward rewrites any other (X-Forwarded-*, hop-by-hop headers), with
// the upgrade headers kept.
func TestUpgradeRequest(t *testing.T) {
	got := make(chan *tunnel.RequestHeader, 1)
	rig := newUpgradeRig(t, func(t *testing.T, s *testStream, br *bufio.Reader, h *tunnel.RequestHeader) {
		got <- h
		answer(t, s, switched, "")
		io.Copy(io.Discard, br)
		s.CloseWrite()
	})
	c, _, resp := rig.dialUpgrade(t, "")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status: got %d, want 101", resp.StatusCode)
	}
	h := <-got
	tests := []struct {
		name      string
		got, want any
	}{
		{"type", h.Type, tunnel.StreamWebSocket},
		{"path", h.Path, "/chat?room=1"},
		{"host", h.Host, "ws.test"},
		{"connection", h.Header.Get("Connection"), "Upgrade"},
		{"upgrade", h.Header.Get("Upgrade"), "websocket"},
		{"hop-by-hop header named in Connection", h.Header.Get("X-Hop"), ""},
		{"key", h.Header.Get("Sec-WebSocket-Key"), "dGhlIHNhbXBsZSBub25jZQ=="},
		{"X-Forwarded-For, the client's dropped", h.Header.Get("X-Forwarded-For"), "127.0.0.1"},
		{"X-Forwarded-Host", h.Header.Get("X-Forwarded-Host"), "ws.test"},
		{"X-Forwarded-Proto", h.Header.Get("X-Forwarded-Proto"), "http"},
		{"request ID", h.RequestID != "" && h.RequestID == resp.Header.Get(RequestIDHeader), true},
		{"101 header", resp.Header.Get("Sec-Websocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	c.Close()
	rig.waitIdle(t)
}

// TestUpgradePipe runs an upgraded connection through its ways of ending.
func TestUpgradePipe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	tests := []struct {
		name       string
		fromOrigin string // sent right after the 101
		fromClient string // sent right after the request
		// Then, concurrently: the client, and the connector's side.
		client func(t *testing.T, c *net.TCPConn, cr *bufio.Reader)
		conn   func(t *testing.T, s *testStream, sr *bufio.Reader)
	}{{
		name:       "bytes after the headers, both ways",
		fromOrigin: "hello client",
		fromClient: "hello origin",
		client: func(t *testing.T, c *net.TCPConn, cr *bufio.Reader) {
			if got, err := readN(cr, len("hello client")); got != "hello client" {
				t.Errorf("client: got %q, %v; want %q", got, err, "hello client")
			}
			io.WriteString(c, "ping")
			if got, err := readN(cr, 4); got != "pong" {
				t.Errorf("client: got %q, %v; want pong", got, err)
			}
			c.Close()
		},
		conn: func(t *testing.T, s *testStream, sr *bufio.Reader) {
			if got, err := readN(sr, len("hello origin")); got != "hello origin" {
				t.Errorf("connector: got %q, %v; want %q", got, err, "hello origin")
			}
			if got, err := readN(sr, 4); got != "ping" {
				t.Errorf("connector: got %q, %v; want ping", got, err)
			}
			io.WriteString(s, "pong")
			if rest, err := io.ReadAll(sr); err != nil || len(rest) > 0 {
				t.Errorf("connector: after the client closed: got %q, %v; want a clean end", rest, err)
			}
			s.CloseWrite()
		},
	}, {
		name: "client half-closes",
		client: func(t *testing.T, c *net.TCPConn, cr *bufio.Reader) {
			io.WriteString(c, "last words")
			c.CloseWrite()
			if got, err := io.ReadAll(cr); err != nil || string(got) != "noted" {
				t.Errorf("client: got %q, %v; want %q and a clean end", got, err, "noted")
			}
		},
		conn: func(t *testing.T, s *testStream, sr *bufio.Reader) {
			if got, err := io.ReadAll(sr); err != nil || string(got) != "last words" {
				t.Errorf("connector: got %q, %v; want %q and a clean end", got, err, "last words")
			}
			io.WriteString(s, "noted")
			s.CloseWrite()
		},
	}, {
		name: "origin half-closes",
		client: func(t *testing.T, c *net.TCPConn, cr *bufio.Reader) {
			if got, err := io.ReadAll(cr); err != nil || string(got) != "goodbye" {
				t.Errorf("client: got %q, %v; want %q and a clean end", got, err, "goodbye")
			}
			io.WriteString(c, "wait, one more thing")
			c.CloseWrite()
		},
		conn: func(t *testing.T, s *testStream, sr *bufio.Reader) {
			io.WriteString(s, "goodbye")
			s.CloseWrite()
			if got, err := io.ReadAll(sr); err != nil || string(got) != "wait, one more thing" {
				t.Errorf("connector: got %q, %v; want the client's last words and a clean end", got, err)
			}
		},
	}, {
		name: "client goes away",
		client: func(t *testing.T, c *net.TCPConn, _ *bufio.Reader) {
			c.SetLinger(0)
			c.Close() // a reset
		},
		conn: func(t *testing.T, s *testStream, sr *bufio.Reader) {
			// The edge aborts the stream: an error, not a clean end.
			if _, err := io.ReadAll(sr); err == nil {
				t.Error("connector: the stream ended cleanly; want it aborted")
			}
		},
	}, {
		name: "origin goes away",
		client: func(t *testing.T, c *net.TCPConn, cr *bufio.Reader) {
			// The edge closes the connection: the read ends.
			io.ReadAll(cr)
		},
		conn: func(t *testing.T, s *testStream, sr *bufio.Reader) {
			s.Close() // without CloseWrite: a reset
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			connDone := make(chan struct{})
			rig := newUpgradeRig(t, func(t *testing.T, s *testStream, sr *bufio.Reader, h *tunnel.RequestHeader) {
				defer close(connDone)
				answer(t, s, switched, tt.fromOrigin)
				tt.conn(t, s, sr)
			})
			c, cr, resp := rig.dialUpgrade(t, tt.fromClient)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status: got %d, want 101", resp.StatusCode)
			}
			tt.client(t, c, cr)
			select {
			case <-connDone:
			case <-time.After(10 * time.Second):
				t.Fatal("the connector's side did not end")
			}
			rig.waitIdle(t)
			c.Close()
			rig.close()
		})
	}
}

// TestUpgradeClientGoneBeforeAnswer: a client that leaves while the origin
// is still answering cancels the request, and the stream is aborted and
// given back.
func TestUpgradeClientGoneBeforeAnswer(t *testing.T) {
	asked := make(chan struct{})
	aborted := make(chan error, 1)
	rig := newUpgradeRig(t, func(t *testing.T, s *testStream, br *bufio.Reader, h *tunnel.RequestHeader) {
		close(asked)
		_, err := io.ReadAll(br)
		aborted <- err
	})
	c, err := net.Dial("tcp", rig.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, upgradeRequest)
	<-asked
	c.Close()
	select {
	case err := <-aborted:
		if err == nil {
			t.Error("connector: the stream ended cleanly; want it aborted")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream was not aborted")
	}
	rig.waitIdle(t)
}

func TestUpgradeType(t *testing.T) {
	for _, tt := range []struct {
		name   string
		header http.Header
		want   string
	}{
		{"websocket", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, "websocket"},
		{"among tokens", http.Header{"Connection": {"keep-alive, upgrade"}, "Upgrade": {"h2c"}}, "h2c"},
		{"no Connection token", http.Header{"Upgrade": {"websocket"}}, ""},
		{"nothing", http.Header{}, ""},
	} {
		if got := upgradeType(tt.header); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	if isPrintableASCII("web\x00socket") || !isPrintableASCII("websocket") {
		t.Error("isPrintableASCII: wrong answer")
	}
}
