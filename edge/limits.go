package edge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// Limits on what a public client or a connector can make the edge spend.
// Each costs only the connection or request that hits it, never the
// process. The Config fields that override them say so.
const (
	// DefaultMaxHeaderBytes bounds a public request's header; past it the
	// client gets a 431 from net/http.
	DefaultMaxHeaderBytes = 1 << 20
	// DefaultReadHeaderTimeout bounds how long a public client may take to
	// send its request header (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a keep-alive client connection that sends
	// no new request.
	DefaultIdleTimeout = 2 * time.Minute

	// On the tunnel listener, unless Config.QUIC says otherwise, the edge
	// sends no keepalives of its own: a keepalive costs the edge a timer,
	// a wake-up and a packet per connection, and with thousands of idle
	// connections that is most of its idle CPU. Connectors keep their
	// connections alive, and the edge acknowledges; health.go judges them:
	//
	//   - A connector that announces tunnel.FeatureHeartbeat on a QUIC
	//     connection is answered with edgeHeartbeat (RegisterResponse.
	//     HeartbeatMS): it sends a heartbeat that often on one of its
	//     connections to this edge and keeps the others alive rarely
	//     (every 10s). Its connections advertise a long idle timeout, so
	//     the negotiated one is edgeIdleTimeout; health.go routes around
	//     all of them once none was heard for two heartbeat periods, and
	//     closes them a few periods later.
	//   - An older connector sends a keepalive every legacyKeepAlive on
	//     every connection and advertises a legacyIdleTimeout, which is
	//     then the connection's idle timeout (the smaller side's wins):
	//     the edge finds it dead as before.
	//
	// A connector opens one stream, the control stream (the edge opens
	// every other), so it may have one open: on QUIC a second is a
	// stream-limit violation that closes the connection, on WebSocket it
	// is reset unread (tunnellimits.go has the rest). WebSocket keeps
	// yamux pings every second on both sides (tunnel/tunnelws).
	edgeKeepAlive          = -1 // none
	edgeIdleTimeout        = 20 * time.Second
	edgeHeartbeat          = 2 * time.Second
	legacyKeepAlive        = time.Second
	legacyIdleTimeout      = 5 * time.Second
	edgeMaxIncomingStreams = 1
)

// edgeQUIC fills in the edge's transport defaults.
func edgeQUIC(c tunnelquic.Config) tunnelquic.Config {
	if c.KeepAlivePeriod == 0 {
		c.KeepAlivePeriod = edgeKeepAlive
	}
	if c.MaxIdleTimeout == 0 {
		c.MaxIdleTimeout = edgeIdleTimeout
	}
	if c.MaxIncomingStreams == 0 {
		c.MaxIncomingStreams = edgeMaxIncomingStreams
	}
	return c
}

// edgeWS fills in the edge's WebSocket transport limits: the control
// stream is the only stream a connector may open, and what it sent there
// unread is bounded (tunnellimits.go).
func edgeWS(c tunnelws.Config) tunnelws.Config {
	if c.MaxIncomingStreams == 0 {
		c.MaxIncomingStreams = edgeMaxIncomingStreams
	}
	if c.MaxIncomingBuffer == 0 {
		c.MaxIncomingBuffer = maxControlUnread
	}
	return c
}

// tunnelQUIC is the tunnel listener's transport configuration: the edge's
// defaults, and the stateless reset key kept in the data directory
// (resetkey.go) unless Config.QUIC has one.
func (s *Server) tunnelQUIC() (tunnelquic.Config, error) {
	qc := edgeQUIC(s.cfg.QUIC)
	if qc.StatelessResetKey == nil {
		key, err := loadResetKey(s.cfg.DataDir)
		if err != nil {
			return qc, err
		}
		qc.StatelessResetKey = key
	}
	return qc, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// bodyLimitKey carries a request's *bodyLimit in its context.
type bodyLimitKey struct{}

// bodyLimit records that a request body went past Config.MaxRequestBody
// while it was streamed to the connector.
type bodyLimit struct {
	max      int64
	exceeded atomic.Bool
}

// bodyTooLarge returns the body limit if r's body was cut off by it, else 0.
func bodyTooLarge(r *http.Request) int64 {
	bl, _ := r.Context().Value(bodyLimitKey{}).(*bodyLimit)
	if bl == nil || !bl.exceeded.Load() {
		return 0
	}
	return bl.max
}

// limitBody enforces Config.MaxRequestBody: a declared length over it is
// refused at once with 413; a chunked body is cut off where it passes the
// limit, the stream to the connector is aborted (so the origin sees an
// error, not a short body) and the client gets 413 (see proxyError).
func (s *Server) limitBody(h http.Handler) http.Handler {
	max := s.cfg.MaxRequestBody
	if max <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			s.metrics.reject("body_too_large")
			tooLarge(w, r, max, newRequestID())
			return
		}
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength >= 0 {
			h.ServeHTTP(w, r)
			return
		}
		bl := &bodyLimit{max: max}
		r = r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, bl))
		r.Body = &limitedBody{rc: r.Body, max: max, left: max, bl: bl, m: s.metrics}
		h.ServeHTTP(w, r)
	})
}

func tooLarge(w http.ResponseWriter, r *http.Request, max int64, requestID string) {
	// The rest of the body is not read: close the connection after the
	// answer rather than drain it.
	w.Header().Set("Connection", "close")
	writeErrorPage(w, r, http.StatusRequestEntityTooLarge, "Request body too large",
		fmt.Sprintf("This edge accepts request bodies of at most %d bytes.", max), requestID)
}

// limitedBody is a request body that fails with *http.MaxBytesError once
// more than left bytes are read.
type limitedBody struct {
	rc   io.ReadCloser
	max  int64
	left int64
	bl   *bodyLimit
	m    *edgeMetrics
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, &http.MaxBytesError{Limit: b.max}
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		if b.bl.exceeded.CompareAndSwap(false, true) {
			b.m.reject("body_too_large")
		}
		return n + int(b.left), &http.MaxBytesError{Limit: b.max}
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
