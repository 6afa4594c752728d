package connector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/adit-dev/adit/tunnel"
)

// serveConn dials one connection, registers it and serves its streams until
// it ends, reporting its progress in at. When ctx is cancelled it drains:
// unregister, wait until the edge closes the connection (it does once every
// request it sent on it is finished) or GracePeriod is over, close.
func (c *Connector) serveConn(ctx context.Context, index int, addr string, log *slog.Logger, at *attempt) error {
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return err
	}
	defer conn.Close(tunnel.CodeNormal, "connector closing")

	ctrl, err := c.registerConn(ctx, conn, index)
	if err != nil {
		select {
		case <-conn.Done():
			return err // the connection died: a transport failure
		default:
			return &refusal{err} // reconnect.go: the edge said no, or nothing sensible
		}
	}
	// The connection's ID once; later lines carry conn_index (reconnect.go).
	log = log.With("edge_node", ctrl.edgeNode)
	log.Info("connection registered", "conn_id", ctrl.connID, "protocol", conn.Protocol())
	c.live.Add(1)
	defer c.live.Add(-1)
	c.readyOnce.Do(func() { close(c.ready) })
	at.setRegistered(ctrl.edgeNode)
	go c.readControl(ctrl, addr, log)                                                  // remote.go; ends with the connection
	link := c.edges.link(addr)                                                         // reconnect.go
	link.add(conn, linkConn{ctrl: ctrl, index: index, heartbeat: ctrl.heartbeat}, log) // heartbeat.go
	defer link.remove(conn)

	// Streams of this connection; waited for when draining.
	var streams countGroup
	c.acceptStreams(conn, &streams, log) // stream.go

	var quicBack <-chan struct{} // transport.go: closed when QUIC works again
	if conn.Protocol() == "websocket" && c.cfg.Protocol != ProtocolWebSocket {
		quicBack = c.transport.quicBackChan()
	}
	rotating, moving := false, false
	select {
	case <-conn.Done():
		if isStatelessReset(conn.Err()) {
			link.edgeRestarted(conn, log)
		}
		return connError(conn)
	case <-ctx.Done():
	case <-quicBack:
		// Move to QUIC one connection at a time, so capacity stays up.
		// The slot's supervisor (reconnect.go) ends the rotation once
		// the connection that replaces this one has registered.
		if !c.transport.startRotation(ctx) {
			return nil
		}
		rotating = true
	case <-at.move:
		// edges.go: the slot has a connection to another edge now.
		moving = true
	}

	// Drain: ask for no new requests, let the ones in flight finish. Only
	// the edge knows when none is left: a request it sent just before it
	// read the unregister may still be on its way, and a response may
	// still be in our send buffer. It closes the connection then.
	reason := "connector shutting down"
	if moving {
		reason = "connection moved to another edge"
	}
	ctrl.write(&tunnel.Unregister{Reason: reason})
	log.Info("unregistered; draining", "reason", reason, "in_flight", streams.count())
	grace := time.NewTimer(c.cfg.GracePeriod)
	defer grace.Stop()
	select {
	case <-conn.Done():
		log.Info("drained", "reason", conn.Err())
	case <-grace.C:
		log.Warn("grace period over; closing with requests in flight", "in_flight", streams.count())
	}
	conn.Close(tunnel.CodeNormal, reason)
	switch {
	case rotating:
		return errRotate
	case moving:
		return errMoved
	}
	return nil
}

// errMoved ends a connection that drained because its slot moved to
// another edge (edges.go).
var errMoved = errors.New("connection moved to another edge")

func connError(conn tunnel.Conn) error {
	err := conn.Err()
	var ce *tunnel.CloseError
	if errors.As(err, &ce) && ce.Remote && ce.Code == tunnel.CodeTunnelDeleted {
		return fmt.Errorf("edge closed the connection: %s", ce.Reason)
	}
	if err == nil {
		err = errors.New("connection closed")
	}
	return err
}

type control struct {
	wmu      sync.Mutex // writes (write, remote.go)
	s        tunnel.Stream
	r        *bufio.Reader
	connID   string
	edgeNode string
	// heartbeat is the period the edge asked for (heartbeat.go); zero if
	// it keeps the connection alive itself.
	heartbeat time.Duration
}

// registerConn opens the control stream and registers the connection.
func (c *Connector) registerConn(ctx context.Context, conn tunnel.Conn, index int) (*control, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := conn.OpenStream(rctx)
	if err != nil {
		return nil, fmt.Errorf("opening the control stream: %w", err)
	}
	stop := context.AfterFunc(rctx, func() { s.Close() })
	defer stop()
	err = tunnel.WriteMessage(s, &tunnel.RegisterRequest{
		TunnelID:    c.cfg.TunnelID,
		Secret:      c.cfg.Secret,
		ConnIndex:   uint32(index),
		ConnectorID: c.id,
		Version:     Version,
		Protocol:    tunnel.ProtocolVersion,
		Features:    append(c.features(), tunnel.FeatureHeartbeat), // remote.go, heartbeat.go
	})
	if err != nil {
		return nil, fmt.Errorf("sending registration: %w", err)
	}
	br := bufio.NewReaderSize(s, 512)
	var resp tunnel.RegisterResponse
	if err := tunnel.ReadMessage(br, &resp); err != nil {
		if rctx.Err() != nil {
			err = rctx.Err()
		}
		return nil, fmt.Errorf("reading the registration answer: %w", err)
	}
	if resp.Error != "" {
		if resp.Permanent {
			return nil, fmt.Errorf("%w for tunnel %s: %s", ErrAuth, c.cfg.TunnelID, resp.Error)
		}
		if resp.RetryAfterMS > 0 {
			// The edge asks for 0.5–30s; an edge asking for more gets maxBusyWait.
			return nil, &busyError{reason: resp.Error, after: min(time.Duration(resp.RetryAfterMS)*time.Millisecond, maxBusyWait)}
		}
		return nil, fmt.Errorf("edge refused the connection: %s", resp.Error)
	}
	if !stop() {
		return nil, rctx.Err()
	}
	return &control{s: s, r: br, connID: resp.ConnectionID, edgeNode: resp.EdgeNode, heartbeat: heartbeatPeriod(resp.HeartbeatMS)}, nil
}

// busyError is a refusal for now: the edge is busy registering others and
// asks for this one again after a delay (protocol version 4,
// retry_after_ms). reconnect.go waits that long plus jitter.
// maxBusyWait bounds the wait an edge's retry_after_ms asks for.
const maxBusyWait = time.Minute

type busyError struct {
	reason string
	after  time.Duration
}

func (e *busyError) Error() string { return "edge refused the connection for now: " + e.reason }

// countGroup counts running goroutines.
type countGroup struct {
	mu sync.Mutex
	n  int
}

func (g *countGroup) add() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
}

func (g *countGroup) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
}

func (g *countGroup) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}
