package e2e

import (
	"bytes"
	"io"
	"net"
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
	defer blackhole.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := blackhole.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	fwd, err := net.Listen("tcp", blackhole.LocalAddr().String())
	if err != nil {
		t.Skipf("cannot take the TCP port matching the UDP one: %v", err)
	}
	defer fwd.Close()
	go forwardTCP(fwd, srv.TunnelTCPAddr().String())

	logs := &syncBuffer{}
	start := time.Now()
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withLogBuffer(logs), func(c *connector.Config) {
		c.EdgeAddrs = []string{blackhole.LocalAddr().String()}
		c.Protocol = "auto"
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
}

// forwardTCP copies each accepted connection to target until ln closes.
func forwardTCP(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
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
