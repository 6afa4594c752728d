package e2e

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adit-dev/adit/connector"
)

// TestAutoFallsBackToWebSocket puts the edge behind a path that drops UDP:
// the connector's address has a UDP socket that swallows every packet, and
// a TCP forwarder to the edge's WebSocket listener on the same port number.
// With protocol "auto" the connector must give up on QUIC within seconds,
// connect over WebSocket, say why in its log, and serve.
func TestAutoFallsBackToWebSocket(t *testing.T) {
	origin := helloOrigin(t, "over tcp")
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "udp-blocked", "blocked.test")

	blackhole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blackhole.Close() }) // after the connector has stopped
	relay := &udpRelay{pc: blackhole, target: srv.TunnelAddr().String()}
	go relay.run()
	fwd, err := net.Listen("tcp", blackhole.LocalAddr().String())
	if err != nil {
		t.Skipf("cannot take the TCP port matching the UDP one: %v", err)
	}
	t.Cleanup(func() { fwd.Close() })
	go forwardTCP(fwd, srv.TunnelTCPAddr().String())

	logs := &syncBuffer{}
	start := time.Now()
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withLogBuffer(logs), func(c *connector.Config) {
		c.EdgeAddrs = []string{blackhole.LocalAddr().String()}
		c.Protocol = "auto" // QUICRetryInterval stays 5m: the first probe comes seconds after the fallback
	})
	t.Logf("connected %s after start", time.Since(start).Round(time.Millisecond))
	resp, err := edgeGet(srv, "blocked.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "over tcp" {
		t.Errorf("got %q, want %q", body, "over tcp")
	}
	for _, want := range []string{"using WebSocket over TCP", "protocol=websocket"} {
		if !bytes.Contains([]byte(logs.String()), []byte(want)) {
			t.Errorf("connector log lacks %q:\n%s", want, logs.String())
		}
	}
	conns, err := srv.Service().ListConnections(t.Context(), tun.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if c.Protocol != "websocket" {
			t.Errorf("connection %s has protocol %q, want websocket", c.ID, c.Protocol)
		}
	}

	// The network lets UDP through again: the connector finds out by
	// itself, with its first probe a few seconds after the fallback (not
	// after QUICRetryInterval, 5m), and moves its connections back to
	// QUIC, one at a time, while requests keep being served.
	relay.open.Store(true)
	waitFor(t, "every connection back on QUIC", func() bool {
		resp, err := edgeGet(srv, "blocked.test", "/")
		if err != nil {
			t.Errorf("request during the move: %v", err)
			return false
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "over tcp" {
			t.Errorf("request during the move: %d %q", resp.StatusCode, body)
		}
		conns, err := srv.Service().ListConnections(t.Context(), tun.ID)
		if err != nil || len(conns) < 2 {
			return false
		}
		for _, c := range conns {
			if c.Protocol != "quic" {
				return false
			}
		}
		return true
	})
	if !bytes.Contains([]byte(logs.String()), []byte("QUIC works again")) {
		t.Errorf("connector log does not say QUIC works again:\n%s", logs.String())
	}
}

// udpRelay drops every datagram until open, then relays them to target
// (one upstream socket per client address) and the answers back.
type udpRelay struct {
	pc     net.PacketConn
	target string
	open   atomic.Bool
	mu     sync.Mutex
	up     map[string]net.Conn
}

func (r *udpRelay) run() {
	buf := make([]byte, 65536)
	for {
		n, src, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if !r.open.Load() {
			continue
		}
		r.mu.Lock()
		if r.up == nil {
			r.up = make(map[string]net.Conn)
		}
		up := r.up[src.String()]
		if up == nil {
			up, err = net.Dial("udp", r.target)
			if err != nil {
				r.mu.Unlock()
				continue
			}
			r.up[src.String()] = up
			go func() {
				b := make([]byte, 65536)
				for {
					n, err := up.Read(b)
					if err != nil {
						return
					}
					r.pc.WriteTo(b[:n], src)
				}
			}()
		}
		r.mu.Unlock()
		up.Write(buf[:n])
	}
}

// TestAutoStaysOnQUICAfterEdgeOutage: a QUIC dial that failed while the
// edge was unreachable is no evidence that UDP is blocked. The connector
// starts while UDP and TCP to the edge both get nowhere; the edge "comes
// back" in the worst moment, after a QUIC handshake gave up and as the
// WebSocket dial starts (the TCP forwarder opens UDP on its first
// connection). The connector must check QUIC again now that TCP works, and
// stay on QUIC instead of moving to WebSocket for QUICRetryInterval.
func TestAutoStaysOnQUICAfterEdgeOutage(t *testing.T) {
	origin := helloOrigin(t, "back on quic")
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "outage", "outage.test")

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	relay := &udpRelay{pc: udp, target: srv.TunnelAddr().String()}
	go relay.run()
	fwd, err := net.Listen("tcp", udp.LocalAddr().String())
	if err != nil {
		t.Skipf("cannot take the TCP port matching the UDP one: %v", err)
	}
	t.Cleanup(func() { fwd.Close() })
	go forwardTCPThen(fwd, srv.TunnelTCPAddr().String(), func() { relay.open.Store(true) })

	logs := &syncBuffer{}
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withLogBuffer(logs), func(c *connector.Config) {
		c.EdgeAddrs = []string{udp.LocalAddr().String()}
		c.Protocol = "auto"
		c.HAConnections = 2
	})
	resp, err := edgeGet(srv, "outage.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "back on quic" {
		t.Errorf("got %q, want %q", body, "back on quic")
	}
	conns, err := srv.Service().ListConnections(t.Context(), tun.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if c.Protocol != "quic" {
			t.Errorf("connection %s has protocol %q, want quic (the edge was only down)", c.ID, c.Protocol)
		}
	}
	if bytes.Contains([]byte(logs.String()), []byte("using WebSocket")) {
		t.Errorf("the connector fell back to WebSocket after an outage:\n%s", logs.String())
	}
}

// forwardTCP copies each accepted connection to target until ln closes.
func forwardTCP(ln net.Listener, target string) { forwardTCPThen(ln, target, nil) }

// forwardTCPThen is forwardTCP that calls first (if not nil) when the
// first connection arrives, before it is forwarded.
func forwardTCPThen(ln net.Listener, target string, first func()) {
	var once sync.Once
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if first != nil {
			once.Do(first)
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer u.Close()
			go func() {
				io.Copy(u, c)
				u.(*net.TCPConn).CloseWrite()
			}()
			io.Copy(c, u)
		}()
	}
}
