package connector

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/adit-dev/adit/internal/ratelog"
	"github.com/adit-dev/adit/tunnel"
)

// The upgrade path (upgrade.go): a stream from a stand-in edge (one end of
// a loopback TCP connection) to a scripted origin.

// fakeStream is a tunnel.Stream over TCP with the transports' Close: a
// stream whose write side was not finished is reset, so the peer sees an
// error rather than a clean end.
type fakeStream struct {
	*net.TCPConn
	writeClosed atomic.Bool
}

// Context never ends: a TCP connection does not say that its peer
// stopped reading.
func (s *fakeStream) Context() context.Context { return context.Background() }

func (s *fakeStream) CloseWrite() error {
	s.writeClosed.Store(true)
	return s.TCPConn.CloseWrite()
}

func (s *fakeStream) Close() error {
	if !s.writeClosed.Load() {
		s.SetLinger(0)
	}
	return s.TCPConn.Close()
}

// scriptedOrigin serves each connection with serve, after reading the
// request.
func scriptedOrigin(t *testing.T, serve func(c *net.TCPConn, br *bufio.Reader, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					t.Errorf("origin: reading the request: %v", err)
					return
				}
				serve(c.(*net.TCPConn), br, req)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func upgradeConnector(t *testing.T, service string) *Connector {
	t.Helper()
	c := testConnector(t, "ingress:\n  - service: "+service+"\n")
	c.metrics = newConnMetrics(func() float64 { return 0 })
	c.rl = ratelog.NewLimiter(time.Minute)
	return c
}

// openUpgrade runs serveStream for an upgrade request (and extra, in the
// same write) on one end of a TCP pair, and returns the answer, the edge's
// end, and a channel closed when serveStream returns.
func openUpgrade(t *testing.T, c *Connector, extra string) (tunnel.ResponseHeader, *fakeStream, *bufio.Reader, <-chan struct{}) {
	t.Helper()
	a, b := tcpTestPair(t)
	edge, conn := &fakeStream{TCPConn: a}, &fakeStream{TCPConn: b}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.serveStream(conn, c.log)
	}()
	t.Cleanup(func() { edge.Close(); <-done })
	msg, err := tunnel.AppendMessage(nil, &tunnel.RequestHeader{
		Type:   tunnel.StreamWebSocket,
		Method: http.MethodGet,
		Host:   "ws.example.test",
		Path:   "/chat",
		Header: http.Header{
			"Connection":        {"Upgrade"},
			"Upgrade":           {"websocket"},
			"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
		},
		RequestID: "req-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	edge.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := edge.Write(append(msg, extra...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(edge)
	var rh tunnel.ResponseHeader
	if err := tunnel.ReadMessage(br, &rh); err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return rh, edge, br, done
}

const switchingProtocols = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"

func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end", what)
	}
}

func TestUpgradeRefusedPassesThrough(t *testing.T) {
	origin := scriptedOrigin(t, func(c *net.TCPConn, br *bufio.Reader, req *http.Request) {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nX-Reason: nope\r\n\r\nforbidden")
	})
	c := upgradeConnector(t, "http://"+origin)
	rh, _, br, done := openUpgrade(t, c, "")
	body, err := io.ReadAll(tunnel.NewBodyReader(br, nil))
	if rh.Status != http.StatusForbidden || rh.Header.Get("X-Reason") != "nope" || string(body) != "forbidden" || err != nil {
		t.Errorf("got %d, X-Reason %q, body %q, %v; want 403, nope, forbidden", rh.Status, rh.Header.Get("X-Reason"), body, err)
	}
	waitDone(t, done, "serveStream")
}

func TestUpgradeOriginUnreachable(t *testing.T) {
	c := upgradeConnector(t, "http://"+closedAddr(t))
	rh, _, _, done := openUpgrade(t, c, "")
	if rh.Status != http.StatusBadGateway || !strings.Contains(rh.Error, "refused") {
		t.Errorf("got %d %q, want 502 saying the connection was refused", rh.Status, rh.Error)
	}
	waitDone(t, done, "serveStream")
}

// TestUpgradePipe runs an upgraded stream through its ways of ending.
func TestUpgradePipe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	tests := []struct {
		name       string
		fromOrigin string // sent with the 101
		fromEdge   string // sent with the request header
		// Then, concurrently: the origin, and the edge's side.
		origin func(t *testing.T, c *net.TCPConn, br *bufio.Reader)
		edge   func(t *testing.T, s *fakeStream, br *bufio.Reader)
	}{{
		name:       "bytes after the headers, both ways",
		fromOrigin: "hello edge",
		fromEdge:   "hello origin",
		origin: func(t *testing.T, c *net.TCPConn, br *bufio.Reader) {
			if got, err := readN(br, len("hello origin")); got != "hello origin" {
				t.Errorf("origin: got %q, %v; want %q", got, err, "hello origin")
			}
			if got, err := readN(br, 4); got != "ping" {
				t.Errorf("origin: got %q, %v; want ping", got, err)
			}
			io.WriteString(c, "pong")
			if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
				t.Errorf("origin: got %q, %v; want a clean end", rest, err)
			}
		},
		edge: func(t *testing.T, s *fakeStream, br *bufio.Reader) {
			if got, err := readN(br, len("hello edge")); got != "hello edge" {
				t.Errorf("edge: got %q, %v; want %q", got, err, "hello edge")
			}
			io.WriteString(s, "ping")
			if got, err := readN(br, 4); got != "pong" {
				t.Errorf("edge: got %q, %v; want pong", got, err)
			}
			s.CloseWrite()
			if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
				t.Errorf("edge: got %q, %v; want a clean end", rest, err)
			}
		},
	}, {
		name: "edge half-closes",
		origin: func(t *testing.T, c *net.TCPConn, br *bufio.Reader) {
			if got, err := io.ReadAll(br); err != nil || string(got) != "last words" {
				t.Errorf("origin: got %q, %v; want %q and a clean end", got, err, "last words")
			}
			io.WriteString(c, "noted")
		},
		edge: func(t *testing.T, s *fakeStream, br *bufio.Reader) {
			io.WriteString(s, "last words")
			s.CloseWrite()
			if got, err := io.ReadAll(br); err != nil || string(got) != "noted" {
				t.Errorf("edge: got %q, %v; want %q and a clean end", got, err, "noted")
			}
		},
	}, {
		name: "origin half-closes",
		origin: func(t *testing.T, c *net.TCPConn, br *bufio.Reader) {
			io.WriteString(c, "goodbye")
			c.CloseWrite()
			if got, err := io.ReadAll(br); err != nil || string(got) != "one more thing" {
				t.Errorf("origin: got %q, %v; want %q and a clean end", got, err, "one more thing")
			}
		},
		edge: func(t *testing.T, s *fakeStream, br *bufio.Reader) {
			if got, err := io.ReadAll(br); err != nil || string(got) != "goodbye" {
				t.Errorf("edge: got %q, %v; want %q and a clean end", got, err, "goodbye")
			}
			io.WriteString(s, "one more thing")
			s.CloseWrite()
		},
	}, {
		name: "origin goes away",
		origin: func(t *testing.T, c *net.TCPConn, br *bufio.Reader) {
			c.SetLinger(0)
			c.Close() // a reset
		},
		edge: func(t *testing.T, s *fakeStream, br *bufio.Reader) {
			// The connector aborts the stream: an error, not a clean end.
			if _, err := io.ReadAll(br); err == nil {
				t.Error("edge: the stream ended cleanly; want it aborted")
			}
		},
	}, {
		name: "edge goes away",
		origin: func(t *testing.T, c *net.TCPConn, br *bufio.Reader) {
			// The connector closes the origin connection: the read ends.
			io.ReadAll(br)
		},
		edge: func(t *testing.T, s *fakeStream, br *bufio.Reader) {
			s.Close() // without CloseWrite: a reset
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			originDone := make(chan struct{})
			origin := scriptedOrigin(t, func(c *net.TCPConn, br *bufio.Reader, req *http.Request) {
				defer close(originDone)
				io.WriteString(c, switchingProtocols+tt.fromOrigin)
				tt.origin(t, c, br)
			})
			c := upgradeConnector(t, "http://"+origin)
			rh, s, br, done := openUpgrade(t, c, tt.fromEdge)
			if rh.Status != http.StatusSwitchingProtocols || rh.Header.Get("Upgrade") != "websocket" {
				t.Fatalf("answer: got %d, Upgrade %q; want 101, websocket", rh.Status, rh.Header.Get("Upgrade"))
			}
			tt.edge(t, s, br)
			waitDone(t, originDone, "the origin")
			s.Close()
			waitDone(t, done, "serveStream")
		})
	}
}

func readN(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return string(b), err
}
