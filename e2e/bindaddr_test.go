package e2e

import (
	"net"
	"testing"

	"github.com/adit-dev/adit/connector"
)

// TestConnectorBindAddr: a connector given a local address
// (connector.Config.BindAddr, cloudflared's --edge-bind-address) dials the
// edge from it over either transport: the edge records it as the
// connection's origin IP.
func TestConnectorBindAddr(t *testing.T) {
	local := net.IPv4(127, 0, 0, 2)
	if l, err := net.ListenUDP("udp", &net.UDPAddr{IP: local}); err != nil {
		t.Skipf("no loopback address %v here: %v", local, err)
	} else {
		l.Close()
	}
	srv := startEdge(t, "")
	ing := mustIngress(t, helloOrigin(t, "hello").URL)
	forEachProtocol(t, func(t *testing.T, proto string) {
		tun := createTunnel(t, srv, "bound-"+proto)
		startConnector(t, srv, tun, ing, withProtocol(proto), func(c *connector.Config) {
			c.BindAddr = local
			c.HAConnections = 1
		})
		conns, err := srv.Service().ListConnections(t.Context(), tun.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(conns) != 1 {
			t.Fatalf("%d connection records, want 1", len(conns))
		}
		if conns[0].OriginIP != local.String() || conns[0].Protocol != proto {
			t.Errorf("connection from %s over %s, want from %s over %s", conns[0].OriginIP, conns[0].Protocol, local, proto)
		}
	})
}
