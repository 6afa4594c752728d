package carrier

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/adit-dev/adit/tunnel/tunneltest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeEdge is the edge side of the subprotocol: it accepts the WebSocket
// and pipes it to a TCP origin, or refuses like the adit edge does.
type fakeEdge struct {
	*httptest.Server
	mu      sync.Mutex
	hosts   []string
	headers []http.Header
}

func (e *fakeEdge) seen() ([]string, []http.Header) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.hosts...), append([]http.Header(nil), e.headers...)
}

// newFakeEdge serves the subprotocol; origin "" refuses with a 502 page.
func newFakeEdge(t *testing.T, origin string) *fakeEdge {
	t.Helper()
	e := &fakeEdge{}
	var wg sync.WaitGroup
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.hosts = append(e.hosts, r.Host)
		e.headers = append(e.headers, r.Header.Clone())
		e.mu.Unlock()
		if origin == "" {
			w.Header().Set("Adit-Request-Id", "r123")
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "502 Origin unreachable: the connector could not reach the origin\nrequest ID: r123\n")
			return
		}
		wg.Add(1)
		defer wg.Done()
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", origin)
		if err != nil {
			ws.CloseNow()
			return
		}
		Pipe(NewConn(ws, nil, nil), up)
	}))
	t.Cleanup(func() {
		e.Close()
		wg.Wait()
	})
	return e
}

func dialEdge(t *testing.T, e *fakeEdge, mods ...func(*Options)) net.Conn {
	t.Helper()
	opts := Options{Hostname: "ssh.example.test", EdgeURL: e.URL}
	for _, m := range mods {
		m(&opts)
	}
	c, err := Dial(t.Context(), opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialEchoHalfClose(t *testing.T) {
	e := newFakeEdge(t, tunneltest.EchoServer(t, ""))
	c := dialEdge(t, e, func(o *Options) { o.Destination = "10.0.0.1:22" })

	msg := []byte("hello through the carrier")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.(*Conn).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("echo = %q, want %q", got, msg)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("Write after CloseWrite succeeded, want an error")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	hosts, headers := e.seen()
	if len(hosts) != 1 || hosts[0] != "ssh.example.test" {
		t.Errorf("edge saw Host %q, want ssh.example.test (the edge URL names an IP)", hosts)
	}
	if got := headers[0].Get(DestinationHeader); got != "10.0.0.1:22" {
		t.Errorf("edge saw %s %q, want 10.0.0.1:22", DestinationHeader, got)
	}
	if got := headers[0].Get("Sec-WebSocket-Protocol"); got != Subprotocol {
		t.Errorf("edge saw Sec-WebSocket-Protocol %q, want %q", got, Subprotocol)
	}
}

// TestDialLarge sends a few MiB both ways at once and compares checksums.
func TestDialLarge(t *testing.T) {
	e := newFakeEdge(t, tunneltest.EchoServer(t, ""))
	c := dialEdge(t, e)
	data := make([]byte, 4<<20)
	rand.Read(data)
	want := sha256.Sum256(data)

	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, bytes.NewReader(data))
		if err == nil {
			err = c.(*Conn).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Errorf("got %d bytes with sha256 %x, want %d bytes with %x", n, h.Sum(nil), len(data), want)
	}
}

func TestDialRefused(t *testing.T) {
	e := newFakeEdge(t, "")
	_, err := Dial(t.Context(), Options{Hostname: "db.example.test", EdgeURL: e.URL})
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("Dial to a refusing edge: got %v, want a *RefusedError", err)
	}
	if re.Status != 502 || re.RequestID != "r123" || !strings.Contains(re.Message, "Origin unreachable") {
		t.Errorf("RefusedError = %+v, want status 502, request ID r123 and the page's first line", re)
	}
	for _, want := range []string{"db.example.test", "502", "Origin unreachable", "r123"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDialNotAnAditEdge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil) // no subprotocol
		if err != nil {
			return
		}
		ws.CloseNow()
	}))
	defer srv.Close()
	_, err := Dial(t.Context(), Options{Hostname: "h.example.test", EdgeURL: srv.URL})
	if err == nil || !strings.Contains(err.Error(), Subprotocol) {
		t.Errorf("Dial to a WebSocket server without the subprotocol: got %v, want an error naming %s", err, Subprotocol)
	}
}

func TestDialOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no hostname", Options{}, "no hostname"},
		{"hostname is a URL", Options{Hostname: "https://h.example"}, "not a URL"},
		{"edge without scheme", Options{Hostname: "h", EdgeURL: "edge.example.test:8080"}, "want http://"},
		{"edge with other scheme", Options{Hostname: "h", EdgeURL: "ftp://h"}, "want http://"},
		{"edge without host", Options{Hostname: "h", EdgeURL: "http://"}, "no host"},
		{"destination without port", Options{Hostname: "h", EdgeURL: "http://e", Destination: "10.0.0.1"}, "host:port"},
	}
	for _, tt := range tests {
		_, err := Dial(t.Context(), tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

func TestDialUnreachableEdge(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(t.Context(), Options{Hostname: "h.example.test", EdgeURL: "http://" + addr})
	if err == nil || !strings.Contains(err.Error(), "h.example.test") {
		t.Errorf("Dial to a closed port: got %v, want an error naming the hostname", err)
	}
}

// TestAbortIsNotEOF checks that an aborted peer is an error, not an end.
func TestAbortIsNotEOF(t *testing.T) {
	aborted := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			return
		}
		c := NewConn(ws, nil, nil)
		c.Write([]byte("partial"))
		c.Abort()
		close(aborted)
	}))
	defer srv.Close()
	c, err := Dial(t.Context(), Options{Hostname: "h.example.test", EdgeURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-aborted
	got, err := io.ReadAll(c)
	if err == nil {
		t.Errorf("reading from an aborted peer: got %q and a clean end, want an error", got)
	}
}

func TestReadDeadline(t *testing.T) {
	e := newFakeEdge(t, tunneltest.EchoServer(t, ""))
	c := dialEdge(t, e)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline: got %v, want a timeout", err)
	}
	// A deadline that passes during a Read ends it (and the connection).
	c2 := dialEdge(t, e)
	c2.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c2.Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read blocked past the deadline: got %v, want a timeout", err)
	}
	// Clearing the deadline before it passes keeps the connection.
	c3 := dialEdge(t, e)
	c3.SetDeadline(time.Now().Add(time.Hour))
	c3.SetDeadline(time.Time{})
	if _, err := c3.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c3, buf); err != nil || string(buf) != "ok" {
		t.Errorf("after clearing the deadline: read %q, %v; want ok", buf, err)
	}
}

// TestDialContextEndsWithDial checks that the context bounds only the dial.
func TestDialContextEndsWithDial(t *testing.T) {
	e := newFakeEdge(t, tunneltest.EchoServer(t, ""))
	ctx, cancel := context.WithCancel(t.Context())
	c, err := Dial(ctx, Options{Hostname: "h.example.test", EdgeURL: e.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	if _, err := c.Write([]byte("still here")); err != nil {
		t.Fatalf("Write after the dial context ended: %v", err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "still here" {
		t.Errorf("read %q, %v; want the echo", buf, err)
	}
}

func TestServeListener(t *testing.T) {
	e := newFakeEdge(t, tunneltest.EchoServer(t, ""))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, Options{Hostname: "h.example.test", EdgeURL: e.URL}) }()

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			msg := strings.Repeat(string(rune('a'+i)), 100_000)
			go func() {
				io.WriteString(c, msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != msg {
				t.Errorf("connection %d: echo of %d bytes, %v; want %d bytes back", i, len(got), err, len(msg))
			}
		}()
	}
	wg.Wait()

	// A connection still open when ServeListener stops is ended.
	open, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	io.WriteString(open, "x")
	if _, err := io.ReadFull(open, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeListener after cancel: %v, want nil", err)
	}
	if _, err := io.ReadAll(open); err == nil {
		t.Log("the open connection ended cleanly")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after ServeListener returned")
	}
}

func TestServeListenerRefused(t *testing.T) {
	e := newFakeEdge(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, Options{Hostname: "h.example.test", EdgeURL: e.URL}) }()
	// The reset may come before connect returns.
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		defer c.Close()
		if _, err := io.ReadAll(c); err == nil {
			t.Error("a refused connection ended cleanly, want a reset")
		}
	}
	cancel()
	<-done
}

// TestPipeHalfClose checks that Pipe passes each direction's end on by
// itself: one side can still send after the other has finished.
func TestPipeHalfClose(t *testing.T) {
	a1, a2 := tcpPair(t)
	b1, b2 := tcpPair(t)
	done := make(chan error, 1)
	go func() { done <- Pipe(a2, b1) }()

	io.WriteString(a1, "request")
	a1.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(b2)
	if err != nil || string(got) != "request" {
		t.Fatalf("b got %q, %v; want request and an end", got, err)
	}
	io.WriteString(b2, "response after the request ended")
	b2.(*net.TCPConn).CloseWrite()
	got, err = io.ReadAll(a1)
	if err != nil || string(got) != "response after the request ended" {
		t.Fatalf("a got %q, %v; want the response and an end", got, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Pipe = %v, want nil", err)
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}
