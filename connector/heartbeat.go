package connector

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/tunnel"
)

// Heartbeats (tunnel/heartbeat.go). An edge that takes them sends no
// keepalives: the connector keeps its connections alive, and it does so
// cheaply. One connection per edge, the sentinel (the lowest HA slot
// registered there), carries a heartbeat every period the edge asked for
// (2s); the others keep alive only every idleKeepAlive, with an idle
// timeout of idleTimeout, so that a thousand idle connections cost the
// edge a packet per connector and period, not one per connection and
// second. The sentinel speaks for all of them:
//
//   - A heartbeat is large enough to draw a stateless reset from an edge
//     that crashed and came back: the sentinel ends with one at most a
//     period after the edge is back, and conn.go has the others checked at
//     once (edgeLink.edgeRestarted, reconnect.go).
//   - The edge acknowledges every heartbeat within a round trip. When two
//     in a row go unanswered (3–5s after the edge went silent) the
//     sentinel is closed and the others are checked at once
//     (edgeLink.probe): those whose own heartbeat is not answered within
//     quietProofHeartbeat are closed, and the slots reconnect.
//   - The edge, for its part, judges all of this connector's connections
//     by what it hears on any of them (edge/health.go).
//
// To an edge that does not take heartbeats (RegisterResponse.HeartbeatMS
// zero, an edge older than protocol version 5) nothing is sent: that edge
// keeps every connection alive every second itself, and the negotiated
// idle timeout is its 5s.
const (
	idleKeepAlive = 10 * time.Second
	idleTimeout   = 20 * time.Second
)

// heartbeatPeriod bounds the period an edge asks for.
func heartbeatPeriod(ms uint32) time.Duration {
	if ms == 0 {
		return 0
	}
	return min(max(time.Duration(ms)*time.Millisecond, 250*time.Millisecond), idleKeepAlive)
}

// sentinel returns the connection of the lowest HA slot that heartbeats,
// or false if none does; then beat must end, and beating is cleared.
func (l *edgeLink) sentinel() (tunnel.Conn, linkConn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var (
		best tunnel.Conn
		bm   linkConn
	)
	for c, m := range l.members {
		if m.heartbeat > 0 && (best == nil || m.index < bm.index) {
			best, bm = c, m
		}
	}
	if best == nil {
		l.beating = false
	}
	return best, bm, best != nil
}

// beat sends the link's heartbeats while it has connections that take
// them. It looks every half period: heartbeats go out every other look,
// and the sentinel is given up when two went out unanswered and another
// half period passed. Counting heartbeats, not time, keeps a connector
// that was stopped and resumed (SIGSTOP) from taking its own pause for
// the edge's silence.
func (l *edgeLink) beat(period time.Duration, log *slog.Logger) {
	t := time.NewTicker(period / 2)
	defer t.Stop()
	var (
		sentinel   tunnel.Conn
		packets    uint64 // the sentinel's count at the last look
		unanswered int    // heartbeats sent on it since it was last heard
		send       bool
		writing    atomic.Bool // a heartbeat write is under way
	)
	for range t.C {
		c, m, ok := l.sentinel()
		if !ok {
			return
		}
		if c != sentinel {
			sentinel, packets, unanswered, send = c, c.PacketsReceived(), 0, false // a new sentinel beats at once
		}
		if n := c.PacketsReceived(); n != packets {
			packets, unanswered = n, 0
		}
		if unanswered >= 2 {
			log.Warn("the edge answered none of the last two heartbeats; checking every connection to it",
				"conn_index", m.index, "period", period)
			c.Close(tunnel.CodeNormal, "edge silent: heartbeats unanswered")
			l.probe(c, "the edge went silent and this connection too; reconnecting", log)
			sentinel = nil
			continue
		}
		if send = !send; !send {
			continue
		}
		unanswered++
		if writing.CompareAndSwap(false, true) {
			// A write does not block while the stream has flow-control
			// credit, which the edge returns as it reads; one to an edge
			// that stopped reading must not hold up the count.
			go func() {
				defer writing.Store(false)
				m.ctrl.write(tunnel.NewHeartbeat())
			}()
		}
	}
}
