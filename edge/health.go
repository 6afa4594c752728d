package edge

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/tunnel"
)

// Connection health. A connector killed with SIGKILL, stopped with SIGSTOP
// or cut off by the network says nothing: its connections only end when
// their QUIC idle timeout fires. Meanwhile the edge would keep sending it
// requests. So the edge watches each connection's received-packet count,
// which the connector's keepalives move (the edge sends none, limits.go):
//
//   - An older connector keeps every connection alive every second: a
//     connection whose count stood still for legacySuspectAfter (two
//     keepalive periods and a margin, 2.5s) is suspect.
//   - A connector that heartbeats (tunnel/heartbeat.go) is judged as a
//     whole: its heartbeats on one connection move that count every
//     edgeHeartbeat, its other connections are heard only every 10s or
//     so. Once none of its connections to this edge was heard for
//     heartbeatSuspectAfter (two periods and a margin, 4.5s), all of them
//     are suspect at once; after heartbeatCloseAfter (6s) they are closed,
//     as an older connector's at its 5s idle timeout, so that requests
//     that cannot be sent again fail then rather than at the long idle
//     timeout of a heartbeating connection.
//
// A suspect connection:
//
//   - gets no new requests while the tunnel has connections that are not
//     suspect (a suspect connection still beats none);
//   - has its requests that are safe to send again (GET, HEAD, OPTIONS,
//     TRACE without a body; see failover.go) and still wait for their
//     response header abandoned and sent again on another connection.
//
// Requests that are not safe to replay stay and fail with a 502 when the
// connection ends. A connection heard from again (a SIGCONT, a network
// blip) is healthy again at once.

// healthTick is how often the watchdog looks at every connection (reading
// every connection's statistics every 250ms was 5% of an idle edge's CPU
// at 1,000 connections).
const healthTick = 500 * time.Millisecond

const (
	legacySuspectAfter    = 2*legacyKeepAlive + 500*time.Millisecond
	heartbeatSuspectAfter = 2*edgeHeartbeat + 500*time.Millisecond
	heartbeatCloseAfter   = 3 * edgeHeartbeat
)

// connHealth is one connection's liveness.
type connHealth struct {
	suspect atomic.Bool
	// heartbeat is set at registration: the connector heartbeats, and
	// is judged by all its connections to this edge together.
	heartbeat bool

	// Only the watchdog goroutine uses these three.
	lastPackets uint64
	lastHeard   time.Time
	closing     bool

	mu      sync.Mutex
	waiters map[*watchedStream]struct{} // replayable requests waiting for their response header
}

// connectorKey names a connector on this edge: its connections to this
// edge share a heartbeat.
type connectorKey struct{ tunnel, connector string }

func keyOf(tc *tunnelConn) connectorKey {
	return connectorKey{tc.info.TunnelID, tc.info.ConnectorID}
}

// watch registers a replayable request waiting for its answer on this
// connection; unwatch removes it.
func (h *connHealth) watch(ws *watchedStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiters == nil {
		h.waiters = make(map[*watchedStream]struct{})
	}
	h.waiters[ws] = struct{}{}
}

func (h *connHealth) unwatch(ws *watchedStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.waiters, ws)
}

// abandonWaiters abandons every waiting request that has not received a
// byte yet, so that it is sent again elsewhere. It returns how many.
func (h *connHealth) abandonWaiters() int {
	h.mu.Lock()
	waiters := make([]*watchedStream, 0, len(h.waiters))
	for ws := range h.waiters {
		waiters = append(waiters, ws)
	}
	h.mu.Unlock()
	n := 0
	for _, ws := range waiters {
		if ws.abandon() {
			n++
		}
	}
	return n
}

// An edge that was stopped (SIGSTOP) and resumed still holds the
// connections it had, though their connectors gave up on them long ago:
// until they end (an older connector's at its idle timeout, at once now
// that timers run again; a heartbeating one's suspect at once and closed
// by the watchdog) it would route to them and answer 502. The watchdog
// notices the pause as a gap between its ticks; /ready then answers 503
// for resumeWait after the resume, so load balancers wait for the
// connections that are alive. A tick that has not come for pauseGap (this
// goroutine is not running) is answered 503 too.
const (
	pauseGap   = 2 * time.Second
	resumeWait = max(legacyIdleTimeout, heartbeatSuspectAfter)
)

// healthClock is what /ready reads of the watchdog.
type healthClock struct {
	lastTick  atomic.Int64 // unix nanoseconds
	resumedAt atomic.Int64 // after a pause; zero if none
}

// paused says why /ready should answer 503 now, or "".
func (s *Server) paused(now time.Time) string {
	last := s.healthClock.lastTick.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) > pauseGap {
		return "edge paused or stalled: its watchdog has not run for " + now.Sub(time.Unix(0, last)).Round(time.Millisecond).String()
	}
	if r := s.healthClock.resumedAt.Load(); r != 0 && now.Sub(time.Unix(0, r)) < resumeWait {
		return "edge resuming after a pause: waiting for its stale tunnel connections to time out"
	}
	return ""
}

// watchHealth runs the watchdog until the server closes.
func (s *Server) watchHealth() {
	t := time.NewTicker(healthTick)
	defer t.Stop()
	heard := make(map[connectorKey]heardAt) // heartbeating connectors: when last heard
	s.healthClock.lastTick.Store(time.Now().UnixNano())
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			now := time.Now() // a tick read late carries its old time
			if gap := now.Sub(time.Unix(0, s.healthClock.lastTick.Swap(now.UnixNano()))); gap > pauseGap {
				s.healthClock.resumedAt.Store(now.UnixNano())
				s.log.Warn("the edge was paused; /ready answers 503 until its stale connections have timed out", "paused_for", gap.Round(time.Millisecond))
			}
			s.judge(s.reg.all(), now, heard)
			s.checkEtcd(now) // partition.go
		}
	}
}

// heardAt is when a heartbeating connector was last heard on any of its
// connections, and the watchdog's last look that found one of them.
type heardAt struct{ last, seen time.Time }

// judge looks at every connection at now: heard is the watchdog's map of
// when each heartbeating connector was last heard on any of its
// connections, kept across looks: when the connection that carried its
// heartbeats leaves (unregistered in a drain, lost, closed), the
// connector's next sentinel beats within a period (connector:
// heartbeat.go), and until then its other connections, heard only every
// 10s, are judged by the last heartbeat, not by their own keepalives (which
// closed them at once as silent: issue 16's restart runs). A connector
// with no connection left is forgotten.
func (s *Server) judge(conns []*tunnelConn, now time.Time, heard map[connectorKey]heardAt) {
	for _, tc := range conns {
		h := &tc.health
		if n := tc.conn.PacketsReceived(); h.lastHeard.IsZero() || n != h.lastPackets {
			h.lastPackets, h.lastHeard = n, now
		}
		if !h.heartbeat {
			continue
		}
		k := keyOf(tc)
		e := heard[k]
		e.seen = now
		if h.lastHeard.After(e.last) {
			e.last = h.lastHeard
		}
		heard[k] = e
	}
	for k, e := range heard {
		if !e.seen.Equal(now) {
			delete(heard, k)
		}
	}
	for _, tc := range conns {
		s.checkHealth(tc, now, heard)
	}
}

// checkHealth judges one connection; heard is when each heartbeating
// connector was last heard on any of its connections.
func (s *Server) checkHealth(tc *tunnelConn, now time.Time, heard map[connectorKey]heardAt) {
	h := &tc.health
	last, after := h.lastHeard, legacySuspectAfter
	if h.heartbeat {
		last, after = heard[keyOf(tc)].last, heartbeatSuspectAfter
	}
	quiet := now.Sub(last)
	if quiet < after {
		if h.suspect.CompareAndSwap(true, false) {
			s.log.Info("connection heard from again", "conn", tc.label())
		}
		return
	}
	if h.heartbeat && quiet >= heartbeatCloseAfter && !h.closing {
		h.closing = true
		s.log.Warn("connector silent; closing its connection", "conn", tc.label(), "quiet_for", quiet.Round(time.Millisecond))
		s.spawn(func() { s.disconnect(tc, tunnel.CodeNormal, "connector silent for "+quiet.Round(time.Second).String()) })
	}
	if h.suspect.Load() {
		return
	}
	h.suspect.Store(true)
	s.metrics.suspect()
	moved := h.abandonWaiters()
	s.log.Warn("connection quiet; routing around it until it is heard from or times out",
		"conn", tc.label(),
		"quiet_for", quiet.Round(time.Millisecond), "requests_moved", moved)
}

// closeWhenDrained ends a connection whose connector unregistered, once no
// request stream is left on it: the connector then knows every request the
// edge sent it has been answered, and exits. (The connector cannot tell by
// itself: a stream the edge opened just before it saw the unregister may
// still be on its way.) Registry.pick never hands out a draining
// connection, so inflight only goes down from here.
func (s *Server) closeWhenDrained(tc *tunnelConn) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for tc.inflight.Load() > 0 {
		select {
		case <-tc.conn.Done():
			return
		case <-t.C:
		}
	}
	s.metrics.drain()
	tc.conn.Close(tunnel.CodeNormal, "drained: no request left on this connection")
}

// refusedError is a registration the edge answered with a refusal (unknown
// tunnel, wrong secret, state unavailable), as opposed to one that broke
// off (protocol error, timeout). busy marks a refusal for now by
// admission control (admission.go).
type refusedError struct {
	reason string
	busy   bool
}

func (e *refusedError) Error() string { return e.reason }

// registrationResult is the result label of a failed registration.
func registrationResult(err error) string {
	var re *refusedError
	if errors.As(err, &re) {
		if re.busy {
			return "busy"
		}
		return "refused"
	}
	return "failed"
}

// controlBroken reports whether a read error on the control stream is the
// connector's fault (an oversized or cut-off frame, or a control stream it
// ended, which must stay open for the life of the connection) rather than
// the connection going away.
func controlBroken(err error) bool {
	return errors.Is(err, tunnel.ErrFrameTooLarge) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// replaceStale closes the connections that tc replaces. A connector holds
// one connection per HA slot, so when it registers a slot again, whatever
// this edge still holds for that slot is a connection the connector has
// given up on: one that died silently (an outage longer than its idle
// timeout, a NAT rebinding) while this edge, not yet timed out, would keep
// sending it requests. Requests waiting on it move elsewhere if they can
// (failover.go).
func (s *Server) replaceStale(tc *tunnelConn, log *slog.Logger) {
	for _, old := range s.reg.byTunnel(tc.info.TunnelID) {
		if old == tc || old.info.ConnectorID != tc.info.ConnectorID || old.info.Index != tc.info.Index {
			continue
		}
		log.Info("connector registered this slot again; closing its previous connection", "previous", old.info.ID)
		s.spawn(func() { s.disconnect(old, tunnel.CodeNormal, "replaced by a newer connection of the same connector") })
	}
}
