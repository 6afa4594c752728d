package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"testing"

	"github.com/google/uuid"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// TestHeartbeatNegotiated: the edge asks for heartbeats only on QUIC
// connections whose connector announced the feature; there a heartbeat is
// an ordinary control frame, anywhere else a protocol error.
func TestHeartbeatNegotiated(t *testing.T) {
	srv := startEdgeLogged(t, &syncBuffer{})
	tun := createTunnel(t, srv, "heartbeat", "heartbeat.test")
	quicDial := func(ctx context.Context, tc *tls.Config) (tunnel.Conn, error) {
		return tunnelquic.Dial(ctx, srv.TunnelAddr().String(), tc, tunnelquic.Config{})
	}
	wsDial := func(ctx context.Context, tc *tls.Config) (tunnel.Conn, error) {
		return tunnelws.Dial(ctx, srv.TunnelTCPAddr().String(), tc, tunnelws.Config{})
	}
	for _, tc := range []struct {
		name     string
		dial     func(context.Context, *tls.Config) (tunnel.Conn, error)
		features []string
		want     uint32 // heartbeat_ms
	}{
		{"quic with the feature", quicDial, []string{tunnel.FeatureFleet, tunnel.FeatureHeartbeat}, 2000},
		{"quic without it", quicDial, []string{tunnel.FeatureFleet}, 0},
		{"websocket with the feature", wsDial, []string{tunnel.FeatureHeartbeat}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := fakeDialWith(t, tc.dial, srv)
			ctrl, err := conn.OpenStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := tunnel.WriteMessage(ctrl, &tunnel.RegisterRequest{TunnelID: tun.ID, Secret: tun.Secret,
				ConnectorID: uuid.NewString(), Protocol: tunnel.ProtocolVersion, Features: tc.features}); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(ctrl)
			var resp tunnel.RegisterResponse
			if err := tunnel.ReadMessage(br, &resp); err != nil || resp.Error != "" {
				t.Fatalf("registration: %v %q", err, resp.Error)
			}
			if resp.HeartbeatMS != tc.want {
				t.Fatalf("heartbeat_ms: got %d, want %d", resp.HeartbeatMS, tc.want)
			}
			for range 3 {
				if err := tunnel.WriteMessage(ctrl, tunnel.NewHeartbeat()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.want == 0 {
				if got := closedWith(t, conn); got != tunnel.CodeProtocol {
					t.Errorf("a heartbeat the edge did not ask for: closed with %d (%v), want %d", got, conn.Err(), tunnel.CodeProtocol)
				}
				return
			}
			// The heartbeats were taken: the unregister behind them is
			// read, and the edge closes the drained connection normally.
			if err := tunnel.WriteMessage(ctrl, &tunnel.Unregister{Reason: "test over"}); err != nil {
				t.Fatal(err)
			}
			if got := closedWith(t, conn); got != tunnel.CodeNormal {
				t.Errorf("after heartbeats and an unregister: closed with %d (%v), want %d (drained)", got, conn.Err(), tunnel.CodeNormal)
			}
		})
	}
}
