package edge

import (
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounding the tunnel port's handshakes. Registrations are bounded
// (admission.go), but the QUIC and TLS handshakes before them cost more
// CPU, and when a crowd of connectors dials at once (an edge restart) and
// they outrun the CPU, they starve the heartbeats of the connections
// already up: those time out and redial into the crowd, and the edge
// collapses (docs/performance.md, "Scale"). So the edge works on at most
// Config.MaxHandshakes handshakes at once, QUIC and WebSocket together,
// from a connection's first packet until the tunnel listener accepts it
// (the accept loop hands it to its own goroutine at once). Past the
// bound a connection is refused before any TLS work:
//
//   - QUIC: its first Initial is answered with CONNECTION_REFUSED under
//     the Initial keys, keeping no state (tunnelquic.Config.Admit);
//   - WebSocket: the TCP connection gets a plain-text HTTP 503 and is
//     closed (tunnelws.Config.Admit).
//
// The connector reads either as "busy" and dials again after a jittered
// backoff (connector: reconnect.go); it is not a failure of the edge, not
// a drain, and not a reason to fall back from QUIC to WebSocket.
//
// A place taken by a QUIC Initial from a spoofed address would stay taken
// until the handshake timeout (5s) and could shut everyone out for a few
// packets a second. So once half the places are taken, a QUIC client
// without a token is first sent a Retry (the Transport's
// VerifySourceAddress), and only clients whose address a Retry proved may
// take the other half. A TCP connection has proved its address already.

// DefaultMaxHandshakes is Config.MaxHandshakes's default. A handshake
// holds its place for about a round trip on the edge's side, so the
// bound caps the handshakes a second at MaxHandshakes/RTT: 1,280 at
// 100ms, more than two cores finish.
const DefaultMaxHandshakes = 128

// handshakeGate is the edge's bound on tunnel-port handshakes in progress.
type handshakeGate struct {
	limit   int64 // 0: no bound
	inUse   atomic.Int64
	refused *prometheus.CounterVec // by transport; nil counts nothing
	log     *slog.Logger           // rate-limited
}

// newHandshakeGate makes the bound: max places (0: the default, negative:
// no bound), refusals counted in m and logged on log.
func newHandshakeGate(max int, m *edgeMetrics, log *slog.Logger) *handshakeGate {
	switch {
	case max == 0:
		max = DefaultMaxHandshakes
	case max < 0:
		max = 0
	}
	g := &handshakeGate{limit: int64(max), log: log}
	if m != nil {
		g.refused = m.handshakesRefused
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "adit_edge_handshakes_in_progress",
			Help: "Tunnel-port handshakes (QUIC and WebSocket) the edge works on: from a connection's first packet until it is accepted.",
		}, func() float64 { return float64(g.inUse.Load()) }))
	}
	return g
}

// admit takes a place for a handshake from remote over transport
// ("quic" or "websocket"); verified says the client's address is proven
// (a QUIC Retry token, or TCP). An unproven address may only take the
// first half of the places.
func (g *handshakeGate) admit(transport string, remote net.Addr, verified bool) (release func(), ok bool) {
	if g.limit == 0 {
		g.inUse.Add(1)
		return g.releaser(), true
	}
	limit := g.limit
	if !verified {
		limit = (g.limit + 1) / 2
	}
	for {
		n := g.inUse.Load()
		if n >= limit {
			g.refuse(transport, remote, n)
			return nil, false
		}
		if g.inUse.CompareAndSwap(n, n+1) {
			return g.releaser(), true
		}
	}
}

func (g *handshakeGate) releaser() func() {
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			g.inUse.Add(-1)
		}
	}
}

func (g *handshakeGate) refuse(transport string, remote net.Addr, inUse int64) {
	if g.refused != nil {
		g.refused.WithLabelValues(transport).Inc()
	}
	g.log.Warn("too many tunnel handshakes at once; refusing new ones for now (the connectors retry)",
		"transport", transport, "remote", remote.String(), "in_progress", inUse, "max", g.limit)
}

// crowded says whether a QUIC client without a token should prove its
// address with a Retry first: half the places or more are taken.
func (g *handshakeGate) crowded() bool {
	return g.limit > 0 && g.inUse.Load() >= (g.limit+1)/2
}

// quicAdmit and wsAdmit are the transports' Admit hooks.
func (g *handshakeGate) quicAdmit(remote net.Addr, verified bool) (func(), bool) {
	return g.admit("quic", remote, verified)
}

func (g *handshakeGate) wsAdmit(remote net.Addr) (func(), bool) {
	return g.admit("websocket", remote, true)
}
