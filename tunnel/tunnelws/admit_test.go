package tunnelws

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

func listenGated(t *testing.T, g *tunneltest.Gate, cfg Config) (tunnel.Listener, tunneltest.PKI) {
	t.Helper()
	pki := tunneltest.NewTestPKI(t)
	cfg.Admit = g.AdmitAddr
	ln, err := Listen("127.0.0.1:0", pki.Server, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, pki
}

// TestAdmitAccepted: a connection holds its place from its TCP accept
// until Accept returns it, and a dial past the bound fails before TLS
// with ErrEdgeBusy.
func TestAdmitAccepted(t *testing.T) {
	tunneltest.CheckLeaks(t)
	g := tunneltest.NewGate(1)
	ln, pki := listenGated(t, g, Config{})
	tunneltest.CheckAdmitAccepted(t, ln, g, func(ctx context.Context) (tunnel.Conn, error) {
		return Dial(ctx, ln.Addr().String(), pki.Client, Config{})
	}, ErrEdgeBusy)
}

// TestAdmitEnded: a handshake that fails, one abandoned before TLS (the
// edge's handshake timeout ends it) and one in progress when the
// listener closes each give their place back.
func TestAdmitEnded(t *testing.T) {
	tunneltest.CheckLeaks(t)
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, addr string, pki tunneltest.PKI) // begins the handshake
		close bool                                                // close the listener then
	}{
		{"tls fails", func(t *testing.T, addr string, _ tunneltest.PKI) {
			// A client that does not trust the edge's certificate.
			ctx := tunneltest.Context(t)
			if c, err := Dial(ctx, addr, &tls.Config{}, Config{}); err == nil {
				c.Close(tunnel.CodeNormal, "")
				t.Fatal("dial with an untrusting client worked")
			}
		}, false},
		{"abandoned", silentDial, false},
		{"listener closed", silentDial, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tunneltest.NewGate(1)
			ln, pki := listenGated(t, g, Config{HandshakeTimeout: 300 * time.Millisecond})
			tc.start(t, ln.Addr().String(), pki)
			if tc.close {
				g.WaitHeld(t, 1, 5*time.Second)
				ln.Close()
			}
			// The edge's handshake timeout is 300ms; plenty more for a
			// loaded machine.
			g.WaitReleased(t, 5*time.Second, tc.name)
		})
	}
}

// silentDial opens a TCP connection to addr and sends nothing, until the
// test ends.
func silentDial(t *testing.T, addr string, _ tunneltest.PKI) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
}

// TestRefusedAnswer: what a client that is not adit's sees of a refusal:
// a plain HTTP 503.
func TestRefusedAnswer(t *testing.T) {
	tunneltest.CheckLeaks(t)
	g := tunneltest.NewGate(0)
	ln, _ := listenGated(t, g, Config{})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(busyAnswer)+1)
	n, _ := readFull(c, buf)
	if got := string(buf[:n]); got != busyAnswer {
		t.Errorf("got %q, want %q", got, busyAnswer)
	}
}

// readFull reads until buf is full or the connection ends.
func readFull(c net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestAdmitKeepsSocketReads: the wrappers of the bound (the edge's held
// connection, the connector's first bytes) leave batchConn its reads
// straight from the socket on both sides.
func TestAdmitKeepsSocketReads(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	g := tunneltest.NewGate(1)
	ln, pki := listenGated(t, g, Config{})
	c, err := Dial(ctx, ln.Addr().String(), pki.Client, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(tunnel.CodeNormal, "")
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(tunnel.CodeNormal, "")
	for name, tc := range map[string]tunnel.Conn{"connector": c, "edge": s} {
		if b := tc.(*conn).wire.batch; b == nil || b.rc == nil {
			t.Errorf("%s: batchConn reads through the wrapper, not the socket", name)
		}
	}
}
