package tunnelquic

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

func listenGated(t *testing.T, g *tunneltest.Gate, crowded bool, cfg Config) (tunnel.Listener, tunneltest.PKI) {
	t.Helper()
	pki := tunneltest.NewTestPKI(t)
	cfg.Admit = g.Admit
	cfg.Crowded = func() bool { return crowded }
	ln, err := Listen("127.0.0.1:0", pki.Server, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, pki
}

// TestAdmitAccepted: a connection holds its place from its first packet
// until Accept returns it, and a dial past the bound fails at once with
// ErrEdgeBusy.
func TestAdmitAccepted(t *testing.T) {
	tunneltest.CheckLeaks(t)
	g := tunneltest.NewGate(1)
	ln, pki := listenGated(t, g, false, Config{})
	tunneltest.CheckAdmitAccepted(t, ln, g, func(ctx context.Context) (tunnel.Conn, error) {
		return Dial(ctx, ln.Addr().String(), pki.Client, Config{})
	}, ErrEdgeBusy)
}

// TestAdmitFailed: a handshake that fails (the client's ALPN is not the
// edge's) gives its place back.
func TestAdmitFailed(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	g := tunneltest.NewGate(1)
	ln, pki := listenGated(t, g, false, Config{})
	conf := pki.Client.Clone()
	conf.NextProtos = []string{"h3"}
	if qc, err := quic.DialAddr(ctx, ln.Addr().String(), conf, &quic.Config{}); err == nil {
		qc.CloseWithError(0, "")
		t.Fatal("wrong ALPN: got a connection, want an error")
	}
	g.WaitReleased(t, 5*time.Second, "failed handshake")
}

// silentConn is a client socket that sends its first packet and nothing
// more, and hears nothing: a client that abandons its handshake.
type silentConn struct {
	net.PacketConn // an interface, so quic-go sees no OOB methods
	mu             sync.Mutex
	sent           bool
}

func (c *silentConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	first := !c.sent
	c.sent = true
	c.mu.Unlock()
	if first {
		return c.PacketConn.WriteTo(p, addr)
	}
	return len(p), nil
}

func (c *silentConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		if _, _, err := c.PacketConn.ReadFrom(p); err != nil {
			return 0, nil, err
		}
	}
}

// TestAdmitAbandoned: a handshake the client abandons after its first
// packet gives its place back at the edge's handshake timeout; one in
// progress when the listener closes gives it back then.
func TestAdmitAbandoned(t *testing.T) {
	tunneltest.CheckLeaks(t)
	for _, tc := range []struct {
		name  string
		close bool // close the listener while the handshake waits
	}{
		{"timeout", false},
		{"listener closed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tunneltest.Context(t)
			g := tunneltest.NewGate(1)
			ln, pki := listenGated(t, g, false, Config{HandshakeTimeout: 300 * time.Millisecond})
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			tr := &quic.Transport{Conn: &silentConn{PacketConn: pc}}
			defer func() {
				tr.Close()
				pc.Close()
			}()
			ua, _ := net.ResolveUDPAddr("udp", ln.Addr().String())
			dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			tc2 := pki.Client.Clone()
			tc2.NextProtos = []string{tunnel.ALPN}
			go tr.Dial(dctx, ua, tc2, &quic.Config{})
			g.WaitHeld(t, 1, 5*time.Second)
			if tc.close {
				ln.Close()
			}
			// The edge's handshake idle timeout is 300ms; give a loaded
			// machine plenty more.
			g.WaitReleased(t, 5*time.Second, tc.name)
		})
	}
}

// TestAdmitCrowded: while Crowded says so, a new client is sent a Retry
// first, and takes its place with a proven address.
func TestAdmitCrowded(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	g := tunneltest.NewGate(4)
	ln, pki := listenGated(t, g, true, Config{})
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
	if _, _, verified := g.State(); verified != 1 {
		t.Errorf("places given to proven addresses: %d, want 1 (no Retry?)", verified)
	}
}
