package edge

import (
	"context"
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
// the QUIC idle timeout fires (20s at the edge, see limits.go). Meanwhile
// the edge would keep sending it requests. So the edge watches each
// connection's received-packet count. An idle connection hears at least
// the keepalive exchange once per keepalive period (10s, limits.go); a
// live connector acknowledges whatever the edge sends it within a round
// trip. Hence a probe: a stream opened to the connector (a request, or
// while requests are in flight and the connection has been silent for
// probeAfter, an empty stream the edge abandons at once, which the
// connector acknowledges and drops). A connection is suspect when
//
//   - a probe has gone unanswered for probeAfter (2s): nothing at all was
//     heard since a stream was opened on it; or
//   - nothing was heard for suspectAfter (the keepalive period and a
//     margin, 12s): an idle connection whose keepalive went unanswered.
//
// Then:
//
//   - new requests go to the tunnel's other connections (if it has any
//     that are not suspect; a suspect connection still beats none);
//   - requests on it that are safe to send again (GET, HEAD, OPTIONS,
//     TRACE without a body; see failover.go) and still wait for their
//     response header are abandoned and sent again on another connection.
//
// A probe unanswered for deadAfter (5s) closes the connection, so the
// requests that are not safe to replay fail with a 502 then rather than at
// the idle timeout. A connection heard from again before (a SIGCONT, a
// network blip) is healthy again at once.

// probeAfter is how long a connection may stay silent after a stream was
// opened on it before it is suspect, and how long one with requests in
// flight may stay silent before it is probed.
const probeAfter = 2 * time.Second

// deadAfter is how long a probe may go unanswered before the connection
// is closed.
const deadAfter = 5 * time.Second

// healthTick is how often the watchdog looks at every connection.
const healthTick = 500 * time.Millisecond

// connHealth is one connection's liveness.
type connHealth struct {
	suspect atomic.Bool

	// probeSince is when the first stream opened since the connection
	// was last heard from was opened (unix nanoseconds), or 0: opened
	// sets it, the watchdog clears it when it hears the connection.
	probeSince atomic.Int64
	closing    atomic.Bool // the watchdog closes the connection: a probe went unanswered

	// Only the watchdog goroutine uses these two.
	lastPackets uint64
	lastHeard   time.Time

	mu      sync.Mutex
	waiters map[*watchedStream]struct{} // replayable requests waiting for their response header
}

// opened notes a stream opened on the connection, a probe of its peer.
func (h *connHealth) opened(now time.Time) {
	if h.probeSince.Load() == 0 {
		h.probeSince.CompareAndSwap(0, now.UnixNano())
	}
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

// suspectAfter is how long a connection may go without a packet before it
// is suspect: a keepalive period (the edge's own keepalive is sent by
// then) and a margin for its answer on a loaded machine.
func (s *Server) suspectAfter() time.Duration {
	return max(edgeQUIC(s.cfg.QUIC).KeepAlivePeriod, edgeWS(s.cfg.WebSocket).KeepAliveInterval) + 2*time.Second
}

// An edge that was stopped (SIGSTOP) and resumed still holds the
// connections it had, though their connectors gave up on them long ago:
// until their idle timeout ends them (at once, now that timers run again)
// it would route to them and answer 502. The watchdog notices the pause
// as a gap between its ticks; /ready then answers 503 until the idle
// timeout has passed since the resume, so load balancers wait for the
// connections that are alive. A tick that has not come for pauseGap
// (this goroutine is not running) is answered 503 too.
const pauseGap = 2 * time.Second

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
	if r := s.healthClock.resumedAt.Load(); r != 0 && now.Sub(time.Unix(0, r)) < edgeQUIC(s.cfg.QUIC).MaxIdleTimeout {
		return "edge resuming after a pause: waiting for its stale tunnel connections to time out"
	}
	return ""
}

// watchHealth runs the watchdog until the server closes.
func (s *Server) watchHealth() {
	t := time.NewTicker(healthTick)
	defer t.Stop()
	after := s.suspectAfter()
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
			for _, tc := range s.reg.all() {
				s.checkHealth(tc, now, after)
			}
			s.checkEtcd(now) // partition.go
		}
	}
}

func (s *Server) checkHealth(tc *tunnelConn, now time.Time, after time.Duration) {
	h := &tc.health
	n := tc.conn.PacketsReceived()
	if h.lastHeard.IsZero() || n != h.lastPackets {
		quiet := now.Sub(h.lastHeard)
		h.lastPackets, h.lastHeard = n, now
		h.probeSince.Store(0)
		if h.suspect.CompareAndSwap(true, false) {
			s.log.Info("connection heard from again", "conn", tc.label(),
				"quiet_for", quiet.Round(time.Millisecond))
		}
		return
	}
	var probing time.Duration // how long the probe has waited
	if probed := h.probeSince.Load(); probed != 0 {
		probing = now.Sub(time.Unix(0, probed))
	} else if tc.inflight.Load() > 0 && now.Sub(h.lastHeard) >= probeAfter {
		h.opened(now)
		s.spawn(func() { s.probe(tc) })
		return
	}
	if probing >= deadAfter {
		if h.closing.Swap(true) {
			return
		}
		s.log.Warn("connection silent; closing it", "conn", tc.label(),
			"quiet_for", now.Sub(h.lastHeard).Round(time.Millisecond))
		s.spawn(func() {
			s.disconnect(tc, tunnel.CodeNormal, "connector silent: a stream went unacknowledged for "+deadAfter.String())
		})
		return
	}
	if h.suspect.Load() || (probing < probeAfter && now.Sub(h.lastHeard) < after) {
		return
	}
	h.suspect.Store(true)
	s.metrics.suspect()
	moved := h.abandonWaiters()
	s.log.Warn("connection quiet; routing around it until it is heard from or times out",
		"conn", tc.label(), "quiet_for", now.Sub(h.lastHeard).Round(time.Millisecond),
		"unanswered_stream", probing >= probeAfter, "requests_moved", moved)
}

// probe opens an empty stream on tc and abandons it at once: a live
// connector acknowledges it (and drops it, having read no request), so
// the connection is heard from.
func (s *Server) probe(tc *tunnelConn) {
	ctx, cancel := context.WithTimeout(s.ctx, probeAfter)
	defer cancel()
	if st, err := tc.conn.OpenStream(ctx); err == nil {
		st.Close()
	}
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
