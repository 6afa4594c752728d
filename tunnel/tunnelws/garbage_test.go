package tunnelws

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// TestListenerSurvivesGarbage throws junk at the tunnel port while a
// tunnel connection is up; every junk connection is refused or timed out,
// and the tunnel, and new tunnels, keep working.
func TestListenerSurvivesGarbage(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	tt := tunneltest.NewTestPKI(t)
	const hs = 300 * time.Millisecond
	ln, err := Listen("127.0.0.1:0", tt.Server, Config{HandshakeTimeout: hs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	p := dialPair(t, ln, tt.Client, Config{}, addr)

	tlsDial := func(t *testing.T, conf *tls.Config) *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	httpTLS := tt.Client.Clone()
	httpTLS.NextProtos = []string{"http/1.1"}
	// request sends raw HTTP over TLS and returns the status line.
	request := func(t *testing.T, req string) string {
		t.Helper()
		c := tlsDial(t, httpTLS)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		resp.Body.Close()
		return resp.Status
	}
	// closedWithin says whether the server hangs up on c within d.
	closedWithin := func(c net.Conn, d time.Duration) error {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("still open")
		}
		return nil
	}
	upgradeReq := func(path, protos string) string {
		r := "GET " + path + " HTTP/1.1\r\nHost: edge.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		if protos != "" {
			r += "Sec-WebSocket-Protocol: " + protos + "\r\n"
		}
		return r + "\r\n"
	}

	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"random bytes", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			junk := make([]byte, 4096)
			rand.Read(junk)
			c.Write(junk)
			if err := closedWithin(c, 10*hs); err != nil {
				t.Errorf("after random bytes: %v, want the edge to hang up", err)
			}
		}},
		{"plain HTTP on the TLS port", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: edge\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("got %v, want an HTTP answer", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("got %s, want 400", resp.Status)
			}
		}},
		{"silent TCP", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := closedWithin(c, 10*hs); err != nil {
				t.Errorf("a client that never says hello: %v, want the edge to hang up after the handshake timeout", err)
			}
		}},
		{"slow TLS handshake", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The first bytes of a ClientHello, then nothing.
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
			if err := closedWithin(c, 10*hs); err != nil {
				t.Errorf("a stalled ClientHello: %v, want the edge to hang up", err)
			}
		}},
		{"TLS then no request", func(t *testing.T) {
			c := tlsDial(t, httpTLS)
			if err := closedWithin(c, 10*hs); err != nil {
				t.Errorf("no request after TLS: %v, want the edge to hang up", err)
			}
		}},
		{"TLS 1.2", func(t *testing.T) {
			conf := httpTLS.Clone()
			conf.MaxVersion = tls.VersionTLS12
			if c, err := tls.Dial("tcp", addr, conf); err == nil {
				c.Close()
				t.Error("TLS 1.2 handshake: got a connection, want a refusal")
			}
		}},
		{"ALPN h2 only", func(t *testing.T) {
			conf := tt.Client.Clone()
			conf.NextProtos = []string{"h2"}
			c, err := tls.Dial("tcp", addr, conf)
			if err == nil {
				c.Close()
				t.Fatal("ALPN h2: got a connection, want a refusal")
			}
			if !strings.Contains(err.Error(), "no application protocol") {
				t.Errorf("ALPN h2: got %v, want a no_application_protocol alert", err)
			}
		}},
		{"other path", func(t *testing.T) {
			if got := request(t, "GET /index.html HTTP/1.1\r\nHost: edge.test\r\n\r\n"); !strings.HasPrefix(got, "404") {
				t.Errorf("GET /index.html: got %s, want 404", got)
			}
		}},
		{"upgrade on another path", func(t *testing.T) {
			if got := request(t, upgradeReq("/adit/tunnel/x", "adit/1")); !strings.HasPrefix(got, "404") {
				t.Errorf("got %s, want 404", got)
			}
		}},
		{"tunnel path without upgrade", func(t *testing.T) {
			if got := request(t, "GET /adit/tunnel HTTP/1.1\r\nHost: edge.test\r\nSec-WebSocket-Protocol: adit/1\r\n\r\n"); !strings.HasPrefix(got, "426") {
				t.Errorf("got %s, want 426", got)
			}
		}},
		{"wrong subprotocol", func(t *testing.T) {
			if got := request(t, upgradeReq(Path, "adit/2, chat")); !strings.HasPrefix(got, "400") {
				t.Errorf("got %s, want 400", got)
			}
		}},
		{"no subprotocol", func(t *testing.T) {
			if got := request(t, upgradeReq(Path, "")); !strings.HasPrefix(got, "400") {
				t.Errorf("got %s, want 400", got)
			}
		}},
		{"WebSocket client with another subprotocol", func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: httpTLS}
			defer tr.CloseIdleConnections()
			_, resp, err := websocket.Dial(ctx, "wss://"+addr+Path, &websocket.DialOptions{
				HTTPClient:   &http.Client{Transport: tr},
				Subprotocols: []string{"mqtt"},
			})
			if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Errorf("got %v (response %v), want a 400 refusal", err, resp)
			}
		}},
		{"huge header", func(t *testing.T) {
			got := request(t, "GET "+Path+" HTTP/1.1\r\nHost: edge.test\r\nX-Junk: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
			if !strings.HasPrefix(got, "431") {
				t.Errorf("got %s, want 431", got)
			}
		}},
	} {
		t.Run(tc.name, tc.run)
	}

	// The tunnel that was up all along still works, and a new one can be
	// made.
	w, r := tunneltest.Open(t, p.Client, p.Server)
	w.CloseWrite()
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Errorf("old tunnel after the junk: got %q, %v; want EOF", b, err)
	}
	w.Close()
	r.Close()
	p2 := dialPair(t, ln, tt.Client, Config{}, addr)
	w, r = tunneltest.Open(t, p2.Server, p2.Client)
	w.Close()
	r.Close()
}

// TestUpgradedGarbage: a client that upgrades properly and then sends
// something other than yamux loses its connection with a protocol error;
// the edge's side reports why.
func TestUpgradedGarbage(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	tt := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", tt.Server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conf := tt.Client.Clone()
	conf.NextProtos = []string{"http/1.1"}
	for _, tc := range []struct {
		name    string
		typ     websocket.MessageType
		msg     []byte
		wantErr string // in the edge's Err
	}{
		{"bad yamux version", websocket.MessageBinary, []byte("GET / HTTP/1.1\r\n\r\n"), "yamux: invalid protocol version"},
		{"text message", websocket.MessageText, []byte("hello"), "text message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, _, err := websocket.Dial(ctx, "wss://"+ln.Addr().String()+Path, &websocket.DialOptions{
				HTTPClient:   &http.Client{Transport: &http.Transport{TLSClientConfig: conf}},
				Subprotocols: []string{tunnel.ALPN},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			server, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := ws.Write(ctx, tc.typ, tc.msg); err != nil {
				t.Fatal(err)
			}
			// The client hears a close frame with code 1 (protocol).
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					if got, want := websocket.CloseStatus(err), websocket.StatusCode(4000+tunnel.CodeProtocol); got != want {
						t.Errorf("client: got %v, want close status %d", err, want)
					}
					break
				}
			}
			<-server.Done()
			if err := server.Err(); err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errProtocol) {
				t.Errorf("edge Err: got %v, want a protocol error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// TestEdgeBusy: a connection the edge does not accept in time is closed
// with code shutdown, and the connector learns why.
func TestEdgeBusy(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	tt := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", tt.Server, Config{HandshakeTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := Dial(ctx, ln.Addr().String(), tt.Client, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(tunnel.CodeNormal, "")
	<-c.Done()
	var ce *tunnel.CloseError
	if err := c.Err(); !errors.As(err, &ce) || ce.Code != tunnel.CodeShutdown || !ce.Remote {
		t.Errorf("Err: got %v, want the edge's remote close with code %d", err, tunnel.CodeShutdown)
	}
}
