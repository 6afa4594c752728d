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
// dials QUIC first. If the QUIC handshake gets no answer or the UDP path
// is refused (a firewall that drops UDP), it falls back to WebSocket over
// TCP at once (the same host and port number), logs why, and keeps dialing
// WebSocket for QUICRetryInterval; after that the next dial tries QUIC
// again. A TLS failure on QUIC does not fall back: the edge answered, and
// the same certificate would fail over TCP too.

const (
	ProtocolAuto      = "auto"
	ProtocolQUIC      = "quic"
	ProtocolWebSocket = "websocket"
)

// defaultQUICRetryInterval is how long "auto" stays on WebSocket after a
// QUIC failure before trying QUIC again.
const defaultQUICRetryInterval = 5 * time.Minute

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
	quicBack chan struct{} // closed (and replaced) when a probe finds QUIC working
	rotate   chan struct{} // a one-slot semaphore: one connection moves at a time
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

// probeQUIC runs while the connector does, in "auto" mode: every
// QUICRetryInterval during a fallback it tries a QUIC handshake with the
// first edge; when one completes, the WebSocket connections drain and
// redial (one at a time), and so move back to QUIC.
func (c *Connector) probeQUIC(ctx context.Context) {
	retry := c.cfg.QUICRetryInterval
	if retry <= 0 {
		retry = defaultQUICRetryInterval
	}
	t := time.NewTicker(retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
			c.log.Debug("connector: QUIC still fails; staying on WebSocket", "edge", addr, "err", err)
			continue
		}
		conn.Close(tunnel.CodeNormal, "probe")
		c.log.Info("connector: QUIC works again; moving connections back from WebSocket", "edge", addr)
		c.transport.quicWorks()
	}
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
	if err == nil || ctx.Err() != nil || !quicBlocked(err) {
		return conn, err
	}
	wconn, werr := tunnelws.Dial(ctx, addr, tc, c.cfg.WebSocket)
	if werr != nil {
		return nil, fmt.Errorf("quic: %v; websocket: %w", err, werr)
	}
	retry := c.cfg.QUICRetryInterval
	if retry <= 0 {
		retry = defaultQUICRetryInterval
	}
	until := time.Now().Add(retry)
	if old := c.transport.wsUntil.Swap(until.UnixNano()); time.Now().UnixNano() >= old {
		c.log.Warn("connector: QUIC to the edge failed; using WebSocket over TCP (is UDP blocked?)",
			"edge", addr, "quic_err", err, "retry_quic_after", retry)
	}
	return wconn, nil
}

// quicBlocked reports whether a QUIC dial error looks like a path that
// drops or refuses UDP, rather than an edge that answered and refused.
func quicBlocked(err error) bool {
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode.IsCryptoError() {
		return false
	}
	var ae *quic.ApplicationError
	return !errors.As(err, &ae)
}
