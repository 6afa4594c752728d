package connector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// Transports.
//
// "quic" and "websocket" dial only that transport. "auto" (the default)
// dials QUIC first. It falls back to WebSocket over TCP (the same host and
// port number) only on evidence that UDP is blocked: the QUIC handshake got
// no answer (or the UDP path was refused), a WebSocket dial then worked, so
// the edge is up, and a second QUIC handshake, made now that the edge is
// known to be up and given longer (quicConfirmTimeout), gets no answer
// either. A QUIC dial that failed while the
// edge was down (a restart) is not such evidence: when the edge is back,
// the second QUIC handshake works and the WebSocket connection is closed
// unused. A fallback is logged with why; dials stay on WebSocket for
// QUICRetryInterval, and QUIC is probed again soon (quicFirstProbe, then
// doubling up to QUICRetryInterval): once a probe works, the WebSocket
// connections move back one at a time. A TLS failure on QUIC does not fall
// back: the edge answered, and the same certificate would fail over TCP too.
//
// That evidence misleads when the edge is up but cannot answer a QUIC
// handshake in time: it has just restarted and a crowd of connectors
// dials it at once (issue 16: 99 of 100 connectors fell back during an
// edge restart and came back to QUIC together minutes later). So an edge
// address over which a QUIC connection has worked before, in this
// process, has proved that UDP gets through; evidence against it counts
// only once it has lasted: seen quicDoubtTimes times in a row over at
// least quicDoubtFor, with TCP working each time and no QUIC success in
// between (a WebSocket dial that fails, the edge being down, starts the
// count over). Until then the dial fails as a transport failure and
// reconnect.go retries it at its usual pace. A connector whose network
// really starts dropping UDP (a laptop moving to a stricter network) thus
// falls back about quicDoubtFor later than one that never had QUIC; a
// restarting or overloaded edge never makes it fall back.

const (
	ProtocolAuto      = "auto"
	ProtocolQUIC      = "quic"
	ProtocolWebSocket = "websocket"
)

// defaultQUICRetryInterval is how long "auto" stays on WebSocket after a
// QUIC failure before trying QUIC again.
const defaultQUICRetryInterval = 5 * time.Minute

// quicDoubtTimes and quicDoubtFor: how long the evidence that UDP is
// blocked must last for an edge address QUIC has worked to (see above).
const (
	quicDoubtTimes = 3
	quicDoubtFor   = 20 * time.Second
)

// quicConfirmTimeout is the handshake timeout of the QUIC dial that
// confirms UDP is blocked, once TCP has answered.
const quicConfirmTimeout = 5 * time.Second

// quicFirstProbe is how soon after a fallback QUIC is probed again; the
// probes then double their interval up to QUICRetryInterval.
const quicFirstProbe = 3 * time.Second

func validProtocol(p string) error {
	switch p {
	case "", ProtocolAuto, ProtocolQUIC, ProtocolWebSocket:
		return nil
	}
	return fmt.Errorf("connector: protocol %q is not supported (use auto, quic or websocket)", p)
}

// transportState is the "auto" fallback state shared by all connections.
type transportState struct {
	wsUntil atomic.Int64 // unix nanos until which "auto" dials WebSocket

	mu       sync.Mutex
	worked   map[string]*quicDoubt // edge addresses QUIC has worked to, and the evidence against them since
	quicBack chan struct{}         // closed (and replaced) when a probe finds QUIC working
	rotate   chan struct{}         // a one-slot semaphore: one connection moves at a time
	fellBack chan struct{}         // one slot: a fallback started; probeQUIC starts over
}

// fallback records that "auto" fell back to WebSocket until until; it
// reports whether this starts a fallback (none was in force).
func (t *transportState) fallback(until time.Time) bool {
	old := t.wsUntil.Swap(until.UnixNano())
	t.mu.Lock()
	if t.fellBack == nil {
		t.fellBack = make(chan struct{}, 1)
	}
	select {
	case t.fellBack <- struct{}{}:
	default:
	}
	t.mu.Unlock()
	return time.Now().UnixNano() >= old
}

func (t *transportState) fellBackChan() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fellBack == nil {
		t.fellBack = make(chan struct{}, 1)
	}
	return t.fellBack
}

// quicDoubt is the evidence against UDP to an edge address QUIC worked to.
type quicDoubt struct {
	times int       // QUIC failed while TCP worked, this many times in a row
	since time.Time // the first of them
}

// quicWorked records that a QUIC connection to addr completed its
// handshake, which clears the evidence against it.
func (t *transportState) quicWorked(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.worked == nil {
		t.worked = make(map[string]*quicDoubt)
	}
	t.worked[addr] = &quicDoubt{}
}

// tcpFailed starts the evidence against addr over: the edge is down,
// which says nothing about UDP.
func (t *transportState) tcpFailed(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.worked[addr]; d != nil {
		*d = quicDoubt{}
	}
}

// doubt records that QUIC to addr failed while TCP worked, and reports
// whether that is enough to fall back: always for an address QUIC never
// worked to, else once the evidence has lasted (see above).
func (t *transportState) doubt(addr string, now time.Time) (fallBack bool, times int, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.worked[addr]
	if d == nil {
		return true, 1, now
	}
	if d.times == 0 {
		d.since = now
	}
	d.times++
	if d.times >= quicDoubtTimes && now.Sub(d.since) >= quicDoubtFor {
		return true, d.times, d.since
	}
	return false, d.times, d.since
}

// errRotate ends a WebSocket connection that drained to move to QUIC.
var errRotate = errors.New("connector: moving to QUIC")

func (t *transportState) quicBackChan() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.quicBack == nil {
		t.quicBack = make(chan struct{})
	}
	return t.quicBack
}

// quicWorks tells every WebSocket connection that QUIC works again.
func (t *transportState) quicWorks() {
	t.wsUntil.Store(0)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.quicBack != nil {
		close(t.quicBack)
	}
	t.quicBack = make(chan struct{})
}

func (t *transportState) startRotation(ctx context.Context) bool {
	t.mu.Lock()
	if t.rotate == nil {
		t.rotate = make(chan struct{}, 1)
	}
	ch := t.rotate
	t.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (t *transportState) endRotation() {
	t.mu.Lock()
	ch := t.rotate
	t.mu.Unlock()
	<-ch
}

// probeQUIC runs while the connector does, in "auto" mode: after a
// fallback it tries a QUIC handshake with the first edge quicFirstProbe
// later, then at doubling intervals up to QUICRetryInterval; when one
// completes, the WebSocket connections drain and redial (one at a time),
// and so move back to QUIC.
func (c *Connector) probeQUIC(ctx context.Context) {
	retry := c.quicRetryInterval()
	fellBack := c.transport.fellBackChan()
	timer := time.NewTimer(retry)
	defer timer.Stop()
	delay := retry
	for {
		select {
		case <-ctx.Done():
			return
		case <-fellBack:
			delay = min(quicFirstProbe, retry)
			timer.Reset(delay)
			continue
		case <-timer.C:
		}
		delay = min(2*delay, retry)
		timer.Reset(delay)
		if c.transport.wsUntil.Load() == 0 {
			continue // not in a fallback
		}
		addr := c.cfg.EdgeAddrs[0]
		tc, err := c.edgeTLS(addr)
		if err != nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := tunnelquic.Dial(pctx, addr, tc, c.quicConfig())
		cancel()
		if err != nil {
			c.log.Debug("QUIC still fails; staying on WebSocket", "edge", addr, "err", err, "next_probe", delay)
			continue
		}
		conn.Close(tunnel.CodeNormal, "probe")
		c.transport.quicWorked(addr)
		c.log.Info("QUIC works again; moving connections back from WebSocket", "edge", addr)
		c.transport.quicWorks()
	}
}

func (c *Connector) quicRetryInterval() time.Duration {
	if c.cfg.QUICRetryInterval > 0 {
		return c.cfg.QUICRetryInterval
	}
	return defaultQUICRetryInterval
}

// dialTransport dials addr with the configured protocol.
func (c *Connector) dialTransport(ctx context.Context, addr string, tc *tls.Config) (tunnel.Conn, error) {
	switch c.cfg.Protocol {
	case ProtocolQUIC:
		return tunnelquic.Dial(ctx, addr, tc, c.quicConfig())
	case ProtocolWebSocket:
		return tunnelws.Dial(ctx, addr, tc, c.cfg.WebSocket)
	}
	if time.Now().UnixNano() < c.transport.wsUntil.Load() {
		return tunnelws.Dial(ctx, addr, tc, c.cfg.WebSocket)
	}
	conn, err := tunnelquic.Dial(ctx, addr, tc, c.quicConfig())
	if err == nil {
		c.transport.quicWorked(addr)
	}
	if err == nil || ctx.Err() != nil || !quicBlocked(err) {
		return conn, err
	}
	wconn, werr := tunnelws.Dial(ctx, addr, tc, c.cfg.WebSocket)
	if werr != nil {
		// Neither gets through: the edge is down or unreachable, which
		// says nothing about UDP.
		c.transport.tcpFailed(addr)
		return nil, fmt.Errorf("quic: %v; websocket: %w", err, werr)
	}
	// TCP works, so the edge is up: a QUIC handshake now tells whether
	// UDP gets through (the first may have failed while it restarted).
	// It may take longer: an edge that just came back may be busy with a
	// crowd of handshakes, and silence now is what makes us fall back.
	qc := c.quicConfig()
	qc.HandshakeTimeout = max(qc.HandshakeTimeout, quicConfirmTimeout)
	qconn, qerr := tunnelquic.Dial(ctx, addr, tc, qc)
	switch {
	case qerr == nil:
		c.transport.quicWorked(addr)
		wconn.Close(tunnel.CodeNormal, "quic works")
		return qconn, nil
	case ctx.Err() != nil || !quicBlocked(qerr):
		wconn.Close(tunnel.CodeNormal, "quic answered")
		return nil, qerr
	}
	err = qerr
	if fallBack, times, since := c.transport.doubt(addr, time.Now()); !fallBack {
		// QUIC worked to this edge before: it restarts or is overloaded.
		wconn.Close(tunnel.CodeNormal, "quic worked before")
		c.log.Debug("QUIC to the edge failed while TCP works, but QUIC worked to it before; not falling back yet",
			"edge", addr, "quic_err", err, "times", times, "for", time.Since(since).Round(time.Millisecond))
		return nil, fmt.Errorf("quic (worked to this edge before; not falling back yet): %w", err)
	}
	retry := c.quicRetryInterval()
	if c.transport.fallback(time.Now().Add(retry)) {
		c.log.Warn("QUIC to the edge failed while TCP works; using WebSocket over TCP (is UDP blocked?)",
			"edge", addr, "quic_err", err, "retry_quic_after", retry, "first_probe", min(quicFirstProbe, retry))
	}
	return wconn, nil
}

// quicBlocked reports whether a QUIC dial error looks like a path that
// drops or refuses UDP, rather than an edge that answered and refused.
func quicBlocked(err error) bool {
	if errors.Is(err, tunnelquic.ErrEdgeBusy) {
		return false // the edge answered: busy with other handshakes
	}
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode.IsCryptoError() {
		return false
	}
	var ae *quic.ApplicationError
	return !errors.As(err, &ae)
}
