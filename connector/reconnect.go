package connector

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// Reconnecting.
//
// Two promises pull the retry schedule in opposite directions: after an
// edge restart or crash, connectors serve again within 2s of the edge
// being back, and an outage of minutes heals without a restart; yet an
// edge that is reachable but refuses us (its state store is down, it is
// overloaded, it broke the protocol) must not be hammered. One exponential
// backoff capped at 30s breaks the first promise (the edge comes back while
// we sleep 30s); a short fixed interval breaks the second. So failures are
// told apart (classify):
//
//   - Transport failures: the edge did not answer the handshake, the
//     connection died while registering, or a registered connection was
//     lost (edge shut down, crashed, network gone). Retrying is cheap (a few
//     QUIC Initial packets) and is the only way to notice the edge is back.
//     The first connection to each edge address is a prober: it retries
//     every ReconnectDelay (500ms, jittered ±50%) for as long as it takes. A
//     dial gives up after 2s without an answer (the handshake idle timeout;
//     any answer resets it, so slow links still connect), and within a dial
//     quic-go resends its Initial at about 0.2, 0.6 and 1.4s. So an edge
//     that comes back is reached within about 1.4s (the longest silence
//     between two Initials, across attempts), and serves a round trip later.
//   - The other HA connections to that address retry at once after a loss,
//     then back off exponentially (RetryBase doubling to RetryMax), and wake
//     as soon as any connection to their address registers: the prober's
//     success is their signal. A long outage costs one prober's packets per
//     connector, not one per HA connection.
//   - Refusals: exponential backoff, RetryBase doubling to RetryMax with
//     jitter, for every connection; it starts over once a connection has
//     stayed registered for RetryMax.
//   - Refusals for now ("edge busy", with retry_after_ms: the edge's
//     admission control when a crowd registers at once, as after its
//     restart): the delay the edge asked for plus up to half again, not
//     shortened by a sibling's registration; they do not count as
//     refusals for the backoff, nor against the edge's health.
//   - Handshakes refused for now (the edge bounds the transport handshakes
//     it works on: QUIC CONNECTION_REFUSED at the first packet, or an HTTP
//     503 before TLS; tunnelquic.ErrEdgeBusy, tunnelws.ErrEdgeBusy): no
//     delay comes with them, so handshakeRetryBase doubling to
//     handshakeRetryMax, jittered, over the refusals in a row, not
//     shortened by a sibling's registration. Like refusals for now, they
//     say nothing against the edge's health, nor that it drains, nor that
//     UDP is blocked (transport.go does not fall back to WebSocket on them).
//   - Permanent refusals (wrong secret, unknown or deleted tunnel) end Run.
//
// Noticing the loss is the other half. An edge that shuts down says so
// (code 4). One that crashes and comes back answers our next packet with a
// stateless reset, at least for packets large enough to carry one; the
// siblings of a connection that got a reset are checked at once
// (edgeRestarted). One that is just gone is found by the heartbeats
// (heartbeat.go: in 3–5s, and its connections closed a second later) or,
// on an edge that takes none, by the 5s idle timeout.

// dialHandshakeTimeout is the connector's QUIC handshake idle timeout
// unless Config.QUIC sets one (see above).
const dialHandshakeTimeout = 2 * time.Second

// handshakeRetryBase and handshakeRetryMax shape the backoff after
// handshakes the edge refused for now (see above).
const (
	handshakeRetryBase = time.Second
	handshakeRetryMax  = 10 * time.Second
)

// handshakeBusy reports whether a dial failed because the edge refused the
// transport handshake for now.
func handshakeBusy(err error) bool {
	return errors.Is(err, tunnelquic.ErrEdgeBusy) || errors.Is(err, tunnelws.ErrEdgeBusy)
}

// attempt is what one call of serveConn reports back to its supervisor.
type attempt struct {
	registered time.Time       // when the edge registered the connection; zero if it did not
	node       string          // the edge node that registered it
	onRegister func()          // called once when it registers
	move       <-chan struct{} // closed when the slot has moved on: unregister and drain (edges.go)
}

func (a *attempt) setRegistered(node string) {
	a.registered = time.Now()
	a.node = node
	if a.onRegister != nil {
		a.onRegister()
	}
}

// refusal marks an error where the edge answered but did not register the
// connection (or ended it for a protocol error).
type refusal struct{ err error }

func (e *refusal) Error() string { return e.err.Error() }
func (e *refusal) Unwrap() error { return e.err }

// edgeLink is shared by the HA connections that dial one edge address: a
// registration on any of them wakes the others, one of them carries the
// heartbeats for all (heartbeat.go), and a stateless reset or a silent
// sentinel on any of them has the others checked.
type edgeLink struct {
	mu      sync.Mutex
	up      chan struct{}             // closed, and replaced, at each registration
	conns   map[tunnel.Conn]time.Time // registered connections, and when
	members map[tunnel.Conn]linkConn  // the same connections: what heartbeat.go needs of them
	beating bool                      // heartbeat.go: beat runs
}

// linkConn is a registered connection of an edgeLink.
type linkConn struct {
	ctrl      *control
	index     int           // its HA slot
	heartbeat time.Duration // the period its edge asked for; zero: the edge keeps it alive
}

func (l *edgeLink) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up
}

func (l *edgeLink) registered() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.up)
	l.up = make(chan struct{})
}

// add records a registered connection; one that heartbeats starts the
// link's heartbeat if it has none running.
func (l *edgeLink) add(c tunnel.Conn, m linkConn, log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns[c] = time.Now()
	if l.members == nil {
		l.members = make(map[tunnel.Conn]linkConn)
	}
	l.members[c] = m
	if m.heartbeat > 0 && !l.beating {
		l.beating = true
		go l.beat(m.heartbeat, log)
	}
}

func (l *edgeLink) remove(c tunnel.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	delete(l.members, c)
}

// An edge that crashed and came back answers a packet of a connection it
// lost with a stateless reset (tunnelquic.Config.StatelessResetKey), but
// only a packet too large to be a reset itself: a heartbeat is (see
// heartbeat.go), a keepalive is not. So when one connection gets a reset,
// or its heartbeats go unanswered, the edge at its address has restarted
// or is gone, and the others to that address are dead too unless they
// are to another node behind the same address. probe tells them apart:
// each is sent a heartbeat (its edge acknowledges it, or answers it with
// a reset), or, to an edge that does not take heartbeats and so sends
// keepalives every second, just listened to; one that receives nothing
// for quietProof (a heartbeat is answered within a round trip and the
// edge's 25ms ACK delay; a keepalive comes every second) is closed now
// rather than at its idle timeout.
const (
	quietProof          = 1500 * time.Millisecond
	quietProofHeartbeat = time.Second
)

// edgeRestarted checks the connections to this address other than lost,
// which ended with a stateless reset.
func (l *edgeLink) edgeRestarted(lost tunnel.Conn, log *slog.Logger) {
	l.probe(lost, "the edge restarted and this connection has gone quiet; reconnecting", log)
}

// probe checks the connections to this address other than except.
func (l *edgeLink) probe(except tunnel.Conn, msg string, log *slog.Logger) {
	l.mu.Lock()
	others := make(map[tunnel.Conn]linkConn, len(l.members))
	for c, m := range l.members {
		if c != except {
			others[c] = m
		}
	}
	l.mu.Unlock()
	for c, m := range others {
		go func() {
			n := c.PacketsReceived()
			wait := quietProof
			if m.heartbeat > 0 {
				go m.ctrl.write(tunnel.NewHeartbeat())
				wait = quietProofHeartbeat
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-c.Done():
				return
			case <-t.C:
			}
			if c.PacketsReceived() == n {
				log.Info(msg, "conn_index", m.index, "quiet_for", wait)
				c.Close(tunnel.CodeNormal, "edge restarted or gone")
			}
		}()
	}
}

// isStatelessReset reports whether a connection ended with a stateless
// reset from the edge.
func isStatelessReset(err error) bool {
	var sr *quic.StatelessResetError
	return errors.As(err, &sr)
}

// failureKind sorts a failed attempt into the classes above.
type failureKind int

const (
	failTransport failureKind = iota
	failRefused
)

// classify sorts a failed attempt: a refusal is marked by serveConn (the
// edge answered the registration with an error or with nonsense), or is a
// connection the edge closed for a protocol error; anything else is the
// transport.
func classify(err error) failureKind {
	var r *refusal
	if errors.As(err, &r) {
		return failRefused
	}
	var ce *tunnel.CloseError
	if errors.As(err, &ce) && ce.Remote && (ce.Code == tunnel.CodeProtocol || ce.Code == tunnel.CodeUnauthorized) {
		return failRefused
	}
	return failTransport
}

// run is one serveConn of a slot, on its own goroutine.
type run struct {
	addr       string
	started    time.Time // when it began to dial
	at         *attempt
	move       chan struct{} // closed to have it unregister and drain
	registered chan struct{} // closed when it registers
	done       chan struct{} // closed when serveConn returned, with err
	err        error
}

func (r *run) isRegistered() bool {
	select {
	case <-r.registered:
		return true
	default:
		return false
	}
}

// startRun starts serveConn for slot index on the edge at addr.
func (c *Connector) startRun(ctx context.Context, index int, addr string, log *slog.Logger) *run {
	r := &run{addr: addr, started: time.Now(), move: make(chan struct{}), registered: make(chan struct{}), done: make(chan struct{})}
	link := c.edges.link(addr)
	r.at = &attempt{move: r.move, onRegister: func() {
		c.metrics.registrations.WithLabelValues("ok").Inc()
		link.registered()
		c.edges.registered(addr, r.at.node)
		close(r.registered)
	}}
	c.runs.Add(1)
	go func() {
		defer c.runs.Done()
		defer close(r.done)
		r.err = c.serveFn(ctx, index, addr, log.With("edge", addr), r.at)
	}()
	return r
}

// superviseConn keeps HA connection index up until ctx ends. It returns a
// non-nil error only for a permanent refusal.
func (c *Connector) superviseConn(ctx context.Context, index int) error {
	log := c.log.With("conn_index", index)
	noisy := c.rl.Logger(log)
	refusals, losses, busyHandshakes := 0, 0, 0
	rotated := false // this slot holds the rotation (transport.go) until its next connection registers
	for {
		addr := c.edges.choose(index) // edges.go
		link := c.edges.link(addr)
		woken := link.wait()
		changed := c.edges.changedChan()
		first := c.startRun(ctx, index, addr, log)
		if rotated {
			// The next slot drains only once this one serves again, so
			// one connection at most is away while they move to QUIC.
			rotated = false
			go func() {
				select {
				case <-first.registered:
				case <-first.done:
				}
				c.transport.endRotation()
			}()
		}
		r := c.holdSlot(ctx, index, first, log)
		err, at := r.err, r.at
		addr = r.addr
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrAuth) {
			c.metrics.registrations.WithLabelValues("refused").Inc()
			log.Error("edge refused the tunnel", "edge", addr, "err", err)
			return err
		}
		kind := classify(err)
		if at.registered.IsZero() {
			result := "failed"
			if kind == failRefused || handshakeBusy(err) {
				result = "refused"
			}
			c.metrics.registrations.WithLabelValues(result).Inc()
		} else {
			losses = 0
			if time.Since(at.registered) >= c.cfg.RetryMax {
				refusals = 0
			}
		}
		c.edgeEnded(r, kind)

		var delay time.Duration
		wake := woken // a sibling registering while we could not
		if !at.registered.IsZero() {
			wake = nil // we closed it ourselves
		}
		if !handshakeBusy(err) {
			busyHandshakes = 0
		}
		var busy *busyError
		switch {
		case handshakeBusy(err):
			// The edge has too many handshakes in progress: dial it
			// again after a jittered backoff, woken by nothing else, so
			// the crowd spreads out.
			delay = backoff(handshakeRetryBase, handshakeRetryMax, busyHandshakes)
			busyHandshakes++
			wake, changed = nil, nil
		case errors.As(err, &busy):
			// The edge registers a crowd and asked for this one later
			// (admission control): wait what it asked plus up to half
			// again, so the crowd spreads out, and nothing else wakes us.
			delay = busy.after + rand.N(busy.after/2+1)
			wake, changed = nil, nil
		case errors.Is(err, errRotate):
			// transport.go: QUIC works again; redial at once.
			log.Info("moving the connection back to QUIC")
			losses = 0
			rotated = true
			continue
		case c.edges.elsewhere(addr):
			// Another edge is healthy: go there now.
			c.metrics.reconnects.Inc()
			noisy.Warn("connection to the edge ended; reconnecting to another edge", "edge", addr, "err", err)
			continue
		case kind == failRefused:
			delay = backoff(c.cfg.RetryBase, c.cfg.RetryMax, refusals)
			refusals++
			wake = nil
		case c.edges.prober(index, addr) || losses == 0:
			delay = jitter(c.cfg.ReconnectDelay)
			losses++
		default:
			delay = backoff(c.cfg.RetryBase, c.cfg.RetryMax, losses-1)
			losses++
		}
		c.metrics.reconnects.Inc()
		lost := "could not connect; retrying"
		if !at.registered.IsZero() {
			lost = "connection lost; reconnecting"
		} else if busy != nil {
			lost = "edge busy; registering again later"
		} else if handshakeBusy(err) {
			lost = "edge busy with other handshakes; dialing again later"
		} else if kind == failRefused {
			lost = "edge did not register the connection; backing off"
		}
		noisy.Warn(lost, "edge", addr, "err", err, "retry_in", delay.Round(time.Millisecond))

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
			t.Stop()
		case <-changed:
			// An edge joined or came back, or a slot registered.
			t.Stop()
		case <-t.C:
		}
	}
}

// edgeEnded records what the end of run r says about its edge
// (edges.go): code 4 from the edge means it is leaving; any other failure
// but an orderly close by the edge marks it failed.
func (c *Connector) edgeEnded(r *run, kind failureKind) {
	addr, err := r.addr, r.err
	since := r.at.registered
	if since.IsZero() {
		since = r.started
	}
	var ce *tunnel.CloseError
	var busy *busyError
	switch {
	case err == nil, errors.Is(err, errRotate), errors.Is(err, errMoved):
	case errors.As(err, &busy), handshakeBusy(err):
		// busy registering others, or with their handshakes: the edge is fine
	case errors.As(err, &ce) && ce.Remote && ce.Code == tunnel.CodeShutdown:
		c.edges.setDraining(addr, since)
	case errors.As(err, &ce) && ce.Remote && ce.Code == tunnel.CodeNormal && kind == failTransport:
		// drained or replaced: the edge is fine
	default:
		c.edges.failed(addr)
	}
}

// holdSlot waits for r to end, moving the slot to another edge when the
// edges say so (edges.go: make-before-break). It returns the run that
// ended: r, or the one it moved to.
func (c *Connector) holdSlot(ctx context.Context, index int, r *run, log *slog.Logger) *run {
	for {
		changed, retry := c.edges.changedChan(), c.edges.retryChan()
		select {
		case <-r.done:
			return r
		case <-changed:
		case <-retry:
		}
		if !r.isRegistered() || ctx.Err() != nil {
			continue
		}
		to, why, ok := c.edges.moveTarget(index, r.addr)
		if !ok {
			continue
		}
		log.Info("moving the connection to another edge", "from", r.addr, "to", to, "why", why)
		nr := c.startRun(ctx, index, to, log)
		select {
		case <-nr.registered:
			c.edges.moved(index, to, true)
			close(r.move) // the old one unregisters and drains on its own
			r = nr
		case <-nr.done:
			c.edges.moved(index, to, false)
			c.rl.Logger(log).Info("could not move the connection; keeping it", "to", to, "err", nr.err)
		case <-r.done:
			// The old connection ended while the new one was dialing:
			// the new one is the slot's now.
			c.edgeEnded(r, classify(r.err))
			c.edges.moved(index, to, true)
			log.Info("connection lost while moving it", "edge", r.addr, "err", r.err)
			r = nr
		}
	}
}

// backoff is base·2^attempt capped at limit, with the upper half jittered
// so that many connectors restarting together spread out.
func backoff(base, limit time.Duration, attempt int) time.Duration {
	d := base
	for range attempt {
		d *= 2
		if d >= limit {
			d = limit
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

// jitter is d ±50%.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d+1)
}

// quicConfig is Config.QUIC with the connector's dial default.
func (c *Connector) quicConfig() tunnelquic.Config {
	q := c.cfg.QUIC
	if q.HandshakeTimeout == 0 {
		q.HandshakeTimeout = dialHandshakeTimeout
	}
	if q.KeepAlivePeriod == 0 {
		q.KeepAlivePeriod = idleKeepAlive // heartbeat.go
	}
	if q.MaxIdleTimeout == 0 {
		q.MaxIdleTimeout = idleTimeout
	}
	if q.Logger == nil {
		q.Logger = c.log
	}
	return q
}
