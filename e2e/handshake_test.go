package e2e

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/edge"
)

// TestHandshakeCrowd: connectors that all dial an edge at once whose bound
// on handshakes in progress is tiny (edge --max-handshakes 2) are refused
// for now many times, back off with jitter, and all end up registered:
// over QUIC in "auto" mode, without one falling back to WebSocket or
// taking the edge for a draining one; over WebSocket likewise when that
// is the protocol.
func TestHandshakeCrowd(t *testing.T) {
	const connectors, ha = 20, 2
	for _, proto := range []string{"auto", "websocket"} {
		t.Run(proto, func(t *testing.T) {
			edgeLogs, connLogs := &syncBuffer{}, &syncBuffer{}
			srv := startEdgeLogged(t, edgeLogs, func(c *edge.Config) {
				c.MaxHandshakes = 2
				c.MaxRegisteringPerAddr = -1 // one address dials them all: only the handshake bound
			})
			ing := mustIngress(t, helloOrigin(t, "hello").URL)
			tunnels := make([]tunnelFixture, connectors)
			for i := range tunnels {
				tunnels[i] = createTunnel(t, srv, fmt.Sprintf("crowd-%d", i))
			}
			for _, tun := range tunnels {
				goConnector(t, connector.Config{
					TunnelID: tun.ID, Secret: tun.Secret, EdgeAddrs: []string{srv.TunnelAddr().String()},
					EdgeCA: srv.CAPEM(), ServerName: "localhost", Ingress: ing, HAConnections: ha,
					Protocol: proto,
					Logger:   slog.New(slog.NewTextHandler(connLogs, &slog.HandlerOptions{Level: slog.LevelInfo})),
				})
			}
			limit := 2 * time.Minute // generous: a loaded 2-core machine
			if !waitWithin(limit, func() bool { return srv.Connections() == connectors*ha }) {
				t.Fatalf("the edge holds %d connections after %v, want %d; the connectors' log lines:\n%s",
					srv.Connections(), limit, connectors*ha, msgCounts(connLogs.String()))
			}
			want, other := "quic", "websocket"
			if proto == "websocket" {
				want, other = other, want
			}
			refused := gathered(t, srv.Metrics(), "adit_edge_handshakes_refused_total", "transport", want)
			t.Logf("%d connections registered; %v %s handshakes refused for now", connectors*ha, refused, want)
			if refused < 1 {
				t.Errorf("no %s handshake was refused: the bound of 2 did not bind", want)
			}
			if n := gathered(t, srv.Metrics(), "adit_edge_handshakes_refused_total", "transport", other); n != 0 {
				t.Errorf("%v %s handshakes refused, want 0", n, other)
			}
			if !strings.Contains(connLogs.String(), "edge busy with other handshakes; dialing again later") {
				t.Errorf("no connector logged a refused handshake:\n%s", msgCounts(connLogs.String()))
			}
			for _, tun := range tunnels {
				conns, err := srv.Service().ListConnections(t.Context(), tun.ID)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range conns {
					if c.Protocol != want {
						t.Errorf("connection %s has protocol %q, want %s", c.ID, c.Protocol, want)
					}
				}
			}
			logs := connLogs.String()
			for _, bad := range []string{"using WebSocket over TCP", "(code 4)"} {
				if n := strings.Count(logs, bad); n > 0 {
					t.Errorf("%d connector log lines say %q:\n%s", n, bad, msgCounts(logs))
				}
			}
		})
	}
}
