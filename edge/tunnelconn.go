package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/tunnel"
)

// registerTimeout bounds how long a new connection may take to register.
const registerTimeout = 10 * time.Second

// serveTunnelConn registers one connector connection and holds it in the
// registry until it ends.
func (s *Server) serveTunnelConn(ctx context.Context, c tunnel.Conn) {
	log := s.log.With("remote", c.RemoteAddr().String(), "protocol", c.Protocol())
	if s.reg.stopping() { // drain.go, Close: the connector goes to another edge, or waits
		s.metrics.registration("refused")
		c.Close(tunnel.CodeShutdown, s.stoppingReason())
		return
	}
	if s.etcdLink.cut.Load() { // partition.go: it could not record the connection
		s.metrics.registration("refused")
		c.Close(tunnel.CodeShutdown, "edge cut off from etcd")
		return
	}
	host, place := s.reg.registering.begin(c.RemoteAddr()) // tunnellimits.go
	switch place {
	case placeNone:
		s.metrics.registration("busy")
		s.rl.Logger(log).Warn("too many connections registering from one address; closing one", "max", s.reg.registering.max)
		c.Close(tunnel.CodeNormal, "edge busy: too many connections registering from "+host)
		return
	case placeBusy:
		defer s.reg.registering.end(host)
		s.metrics.registration("busy")
		s.rl.Logger(log).Info("too many connections registering from one address; asking one to come back later", "max", s.reg.registering.max)
		s.answerBusy(ctx, c, "edge busy: too many connections registering from "+host)
		return
	}
	tc, ctrl, err := s.register(ctx, c, log, sync.OnceFunc(func() { s.reg.registering.end(host) }))
	if err != nil {
		s.metrics.registration(registrationResult(err))
		s.rl.Logger(log).Info("registration failed", "err", err)
		return
	}
	// The IDs once; later lines name the connection by its label.
	log = log.With("conn", tc.label())
	s.metrics.registration("ok")
	log.Info("connector registered", "tunnel", tc.info.TunnelID, "conn_id", tc.info.ID,
		"connector", tc.info.ConnectorID, "index", tc.info.Index, "version", tc.info.Version)
	s.replaceStale(tc, log) // health.go

	// The edge shutting down closes the connection, even one that
	// registered while Close was closing the others.
	stop := context.AfterFunc(ctx, func() { c.Close(tunnel.CodeShutdown, "edge shutting down") })
	defer stop()
	// The control stream is read on this goroutine, which would otherwise
	// only wait: one goroutine fewer per idle connection. The stream ends
	// with the connection, or before it when the connector breaks the
	// protocol (then readControl closes the connection).
	s.readControl(tc, ctrl, log)
	<-c.Done()
	s.unregister(tc)
	log.Info("connection closed", "after", tc.since().Round(time.Millisecond), "reason", c.Err())
}

func (s *Server) unregister(tc *tunnelConn) {
	if !s.reg.remove(tc) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.presence.Remove(ctx, tc.info.TunnelID, tc.info.ID); err != nil {
		s.log.Warn("removing connection record", "conn", tc.label(), "conn_id", tc.info.ID, "err", err)
	}
}

// answerBusy tells a connection that the edge has no place for now to
// register again later, as admission control does (register), within
// busyAnswerWait, and closes it.
func (s *Server) answerBusy(ctx context.Context, c tunnel.Conn, reason string) {
	ctx, cancel := context.WithTimeout(ctx, busyAnswerWait)
	defer cancel()
	ctrl, err := c.AcceptStream(ctx)
	if err != nil {
		c.Close(tunnel.CodeProtocol, "no control stream")
		return
	}
	stop := context.AfterFunc(ctx, func() { ctrl.Close() })
	defer stop()
	after := s.admit.retryAfter(s.admit.waiting.Load())
	tunnel.WriteMessage(ctrl, &tunnel.RegisterResponse{Error: fmt.Sprintf("%s; retry in %v", reason, after.Round(time.Millisecond)),
		RetryAfterMS: uint32(after.Milliseconds())})
	ctrl.CloseWrite()
	// The connector reads the answer and hangs up; code 0 (not 4, which
	// says the edge drains) if it does not in time.
	select {
	case <-c.Done():
	case <-ctx.Done():
	}
	c.Close(tunnel.CodeNormal, reason)
}

// register runs the registration on the control stream. On success the
// connection is in the registry and its record in etcd. read is called
// once the register frame is read (or could not be): it ends what
// tunnellimits.go counts against the connector's address.
func (s *Server) register(ctx context.Context, c tunnel.Conn, log *slog.Logger, read func()) (*tunnelConn, *bufferedStream, error) {
	defer read()
	rctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	ctrl, err := c.AcceptStream(rctx)
	if err != nil {
		c.Close(tunnel.CodeProtocol, "no control stream")
		return nil, nil, fmt.Errorf("waiting for the control stream: %w", err)
	}
	stop := context.AfterFunc(rctx, func() { ctrl.Close() })
	defer stop()
	// Control frames are small and rare, and the reader lives as long as
	// the connection: a small buffer (a longer frame is read past it).
	br := bufio.NewReaderSize(ctrl, 512)
	var req tunnel.RegisterRequest
	if err := tunnel.ReadMessageLimit(br, &req, maxControlFrame); err != nil {
		c.Close(tunnel.CodeProtocol, "bad register frame")
		return nil, nil, fmt.Errorf("reading register request: %w", err)
	}
	read()

	refuseAfter := func(reason string, permanent bool, retryAfter time.Duration) error {
		tunnel.WriteMessage(ctrl, &tunnel.RegisterResponse{Error: reason, Permanent: permanent,
			RetryAfterMS: uint32(retryAfter.Milliseconds())})
		ctrl.CloseWrite()
		// Give the connector a moment to read the answer and hang up
		// itself; then close.
		select {
		case <-c.Done():
		case <-time.After(time.Second):
		}
		c.Close(tunnel.CodeUnauthorized, reason)
		return &refusedError{reason: reason, busy: retryAfter > 0}
	}
	refuse := func(reason string, permanent bool) error { return refuseAfter(reason, permanent, 0) }

	// admission.go: a bounded number at once; the others come back later.
	release, retryAfter, ok := s.admit.acquire(rctx)
	if !ok {
		return nil, nil, refuseAfter(fmt.Sprintf("edge busy: too many connectors registering at once; retry in %v",
			retryAfter.Round(time.Millisecond)), false, retryAfter)
	}
	defer release()

	t, err := s.lookupTunnel(rctx, req.TunnelID)
	switch {
	case errors.Is(err, control.ErrNotFound):
		return nil, nil, refuse(fmt.Sprintf("unknown tunnel %s", req.TunnelID), true)
	case err != nil:
		return nil, nil, refuse(fmt.Sprintf("edge cannot check the tunnel now: %v", err), false)
	case t.DeletedAt != nil:
		return nil, nil, refuse(fmt.Sprintf("tunnel %s was deleted", req.TunnelID), true)
	case !control.VerifySecret(t, req.Secret):
		return nil, nil, refuse(fmt.Sprintf("wrong secret for tunnel %s", req.TunnelID), true)
	}

	originIP := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(originIP); err == nil {
		originIP = host
	}
	var rc *remoteConn // tunnelconfig.go
	if slices.Contains(req.Features, tunnel.FeatureRemoteConfig) {
		rc = &remoteConn{ctrl: ctrl}
		rc.mu.Lock() // no configuration before the answer
		defer rc.mu.Unlock()
	}
	var fc *fleetConn // fleetview.go
	if slices.Contains(req.Features, tunnel.FeatureFleet) {
		fc = &fleetConn{w: ctrl, mu: new(sync.Mutex)}
		if rc != nil {
			fc.mu = &rc.mu // one writer at a time on the control stream
		} else {
			fc.mu.Lock() // no list before the answer
			defer fc.mu.Unlock()
		}
	}
	tc := &tunnelConn{remote: rc, fleet: fc, conn: c, info: control.Connection{
		ID:          uuid.NewString(),
		TunnelID:    t.ID,
		ConnectorID: req.ConnectorID,
		Index:       int(req.ConnIndex),
		EdgeNode:    s.node,
		Protocol:    c.Protocol(),
		Version:     req.Version,
		OriginIP:    originIP,
		Since:       time.Now().UTC(),
	}}
	// health.go: a connector that heartbeats on QUIC is judged by its
	// heartbeats, the edge sending no keepalives (limits.go); on
	// WebSocket both sides ping as before.
	tc.health.heartbeat = c.Protocol() == "quic" && slices.Contains(req.Features, tunnel.FeatureHeartbeat)
	if err := s.presence.Add(rctx, tc.info); err != nil {
		return nil, nil, refuse(fmt.Sprintf("edge cannot record the connection now: %v", err), false)
	}
	if !s.reg.add(tc) {
		// The edge began to drain or close while this one registered: it
		// holds nobody new, and the record goes.
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.presence.Remove(dctx, tc.info.TunnelID, tc.info.ID)
		cancel()
		c.Close(tunnel.CodeShutdown, s.stoppingReason())
		return nil, nil, &refusedError{reason: s.stoppingReason()}
	}
	resp := &tunnel.RegisterResponse{ConnectionID: tc.info.ID, EdgeNode: s.node}
	if tc.health.heartbeat {
		resp.HeartbeatMS = uint32(edgeHeartbeat.Milliseconds())
	}
	err = tunnel.WriteMessage(ctrl, resp)
	if err == nil && !stop() {
		err = rctx.Err()
	}
	if err != nil {
		s.unregister(tc)
		c.Close(tunnel.CodeProtocol, "registration interrupted")
		return nil, nil, fmt.Errorf("answering registration: %w", err)
	}
	if fc != nil {
		s.spawn(func() { s.pushEdges(tc) }) // once the answer is out (fc.mu)
	}
	if doc, ok := s.configs.get(t.ID); ok && rc != nil {
		s.spawn(func() { s.pushConfig(tc, doc) }) // once the answer is out (rc.mu)
	}
	return tc, &bufferedStream{Stream: ctrl, r: br}, nil
}

// stoppingReason is the close reason for a registration the edge
// refuses because it drains or closes.
func (s *Server) stoppingReason() string {
	if s.drain.on.Load() {
		return "edge draining"
	}
	return "edge shutting down"
}

// lookupTunnel reads the tunnel from the watched state, and from etcd when
// the state has not seen it yet (a tunnel created a moment ago).
func (s *Server) lookupTunnel(ctx context.Context, id string) (control.Tunnel, error) {
	if _, err := uuid.Parse(id); err != nil {
		return control.Tunnel{}, control.ErrNotFound
	}
	if t, ok := s.state.Tunnel(id); ok {
		return t, nil
	}
	return s.svc.GetTunnel(ctx, id)
}

// readControl reads the connector's control messages until the stream ends.
func (s *Server) readControl(tc *tunnelConn, ctrl *bufferedStream, log *slog.Logger) {
	defer ctrl.Close()
	for {
		t, p, err := tunnel.ReadFrameLimit(ctrl.r, maxControlFrame)
		if err != nil {
			if controlBroken(err) { // health.go
				s.rl.Logger(log).Warn("bad control frame", "err", err)
				tc.conn.Close(tunnel.CodeProtocol, "control stream: "+err.Error())
			}
			return
		}
		switch t {
		case tunnel.FrameUnregister:
			var m tunnel.Unregister
			if err := tunnel.DecodeMessage(p, &m); err != nil {
				s.rl.Logger(log).Warn("bad control frame", "err", err)
				tc.conn.Close(tunnel.CodeProtocol, "bad unregister frame")
				return
			}
			if tc.draining.Swap(true) {
				continue // said already; one watcher is enough
			}
			log.Info("connector unregistered; no new requests on this connection", "reason", m.Reason)
			s.spawn(func() { s.closeWhenDrained(tc) }) // health.go
		case tunnel.FrameHeartbeat:
			// The packet that carried it is what counts (health.go);
			// its padding is discarded.
			if !tc.health.heartbeat {
				s.rl.Logger(log).Warn("unexpected control frame", "type", t)
				tc.conn.Close(tunnel.CodeProtocol, "heartbeat frame from a connection that did not ask for heartbeats")
				return
			}
		case tunnel.FrameConfigResult:
			var m tunnel.ConfigResult
			if err := tunnel.DecodeMessage(p, &m); err != nil || tc.remote == nil || !s.configResult(tc, &m, log) { // tunnelconfig.go
				s.rl.Logger(log).Warn("bad control frame", "type", t, "err", err)
				tc.conn.Close(tunnel.CodeProtocol, "unexpected or bad config_result frame")
				return
			}
		default:
			s.rl.Logger(log).Warn("unexpected control frame", "type", t)
			tc.conn.Close(tunnel.CodeProtocol, fmt.Sprintf("unexpected %s frame on the control stream", t))
			return
		}
	}
}

// disconnect ends a connection with a code and reason the connector sees.
// serveTunnelConn then drops it from the registry and etcd.
func (s *Server) disconnect(tc *tunnelConn, code tunnel.ErrorCode, reason string) {
	tc.draining.Store(true)
	tc.conn.Close(code, reason)
}

// bufferedStream is a stream whose reads go through a bufio.Reader that
// already holds bytes read from it.
type bufferedStream struct {
	tunnel.Stream
	r *bufio.Reader
}

func (b *bufferedStream) Read(p []byte) (int, error) { return b.r.Read(p) }
