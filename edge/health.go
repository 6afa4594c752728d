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
// the QUIC idle timeout fires (5s at the edge, see limits.go). Meanwhile
// the edge would keep sending it requests. So the edge watches each
// connection's received-packet count, which keepalives move every second
// on a live connection: once it has stood still for suspectAfter (two
// keepalive periods and a margin, 2.5s by default) the connection is
// suspect:
//
//   - new requests go to the tunnel's other connections (if it has any
//     that are not suspect; a suspect connection still beats none);
//   - requests on it that are safe to send again (GET, HEAD, OPTIONS,
//     TRACE without a body; see failover.go) and still wait for their
//     response header are abandoned and sent again on another connection.
//
// Requests that are not safe to replay stay and fail with a 502 when the
// idle timeout ends the connection. A connection heard from again (a
// SIGCONT, a network blip) is healthy again at once.

// healthTick is how often the watchdog looks at every connection.
const healthTick = 250 * time.Millisecond

// connHealth is one connection's liveness.
type connHealth struct {
	suspect atomic.Bool

	// Only the watchdog goroutine uses these two.
	lastPackets uint64
	lastHeard   time.Time

	mu      sync.Mutex
	waiters map[*watchedStream]struct{} // replayable requests waiting for their response header
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
// is suspect.
func (s *Server) suspectAfter() time.Duration {
	return 2*edgeQUIC(s.cfg.QUIC).KeepAlivePeriod + 500*time.Millisecond
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
		if h.suspect.CompareAndSwap(true, false) {
			s.log.Info("connection heard from again", "conn", tc.label(),
				"quiet_for", quiet.Round(time.Millisecond))
		}
		return
	}
	if h.suspect.Load() || now.Sub(h.lastHeard) < after {
		return
	}
	h.suspect.Store(true)
	s.metrics.suspect()
	moved := h.abandonWaiters()
	s.log.Warn("connection quiet; routing around it until it is heard from or times out",
		"conn", tc.label(),
		"quiet_for", now.Sub(h.lastHeard).Round(time.Millisecond), "requests_moved", moved)
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
