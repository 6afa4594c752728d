// Package tunnelquic is the QUIC transport for adit tunnels: TLS 1.3 over
// UDP with quic-go, ALPN "adit/1", one QUIC stream per tunnel stream. An
// edge may bound the handshakes it works on (Config.Admit, admit.go): past
// the bound it answers a first Initial with CONNECTION_REFUSED, which Dial
// reports as ErrEdgeBusy.
package tunnelquic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/tunnel"
)

// Config tunes the QUIC transport. The zero value is ready to use.
type Config struct {
	// KeepAlivePeriod is how long an idle connection waits for a packet
	// before it sends a keepalive (a PING; at most every half idle
	// timeout). If zero, 2s; if negative, it sends none and lives on the
	// peer's keepalives (quic-go's zero).
	KeepAlivePeriod time.Duration
	// MaxIdleTimeout closes a connection that hears nothing for this long,
	// so a dead peer is found in seconds. If zero, 10s.
	MaxIdleTimeout time.Duration
	// HandshakeTimeout bounds the QUIC+TLS handshake. If zero, 5s.
	HandshakeTimeout time.Duration
	// MaxIncomingStreams caps the streams the peer may have open at once on
	// one connection. If zero, 10000.
	MaxIncomingStreams int64
	// MaxStreamReceiveWindow is the per-stream flow-control window.
	// If zero, 6 MiB.
	MaxStreamReceiveWindow uint64
	// MaxConnectionReceiveWindow is the per-connection flow-control window.
	// If zero, 30 MiB.
	MaxConnectionReceiveWindow uint64
	// StatelessResetKey, if set, makes Listen answer packets of connections
	// it does not know with a stateless reset (RFC 9000 §10.3). Keep it
	// across restarts: a peer of a listener that crashed and came back then
	// learns at its next packet that its connection is gone, instead of
	// waiting for the idle timeout. If nil, no resets are sent.
	StatelessResetKey *[32]byte
	// Logger receives the warning when the kernel caps UDP buffers. If
	// nil, nothing is logged.
	Logger *slog.Logger
	// LocalAddr is the local IP address Dial sends from (on a port the
	// system picks). If nil, the system picks the address too.
	LocalAddr net.IP
	// Admit, if set, bounds the handshakes Listen works on. It is asked
	// at a new connection's first Initial packet, before any TLS work;
	// verified says a Retry token proved the client's address. If it
	// answers ok false, the Initial is answered with a CONNECTION_CLOSE
	// of CONNECTION_REFUSED (RFC 9000 §20.1) under the Initial keys, and
	// the edge keeps no state: Dial reports ErrEdgeBusy. Otherwise the
	// connection holds the place until release is called, exactly once:
	// when Accept returns it, when its handshake fails, times out or is
	// abandoned, when the listener closes, and in any case twice
	// HandshakeTimeout and a second after Admit (quic-go has a path, a
	// connection ID collision, in which a refused connection ends without
	// a word). If nil, handshakes are not bounded.
	Admit func(remote net.Addr, verified bool) (release func(), ok bool)
	// Crowded, if set, is asked at a new connection's first Initial
	// without an address-validation token: true sends a Retry (RFC 9000
	// §8.1.2; a round trip, no state), so the client proves its address
	// before it may take one of Admit's places. An edge asks for it when
	// its handshakes are crowded: Initials from spoofed addresses, which
	// never finish a handshake, then cannot hold the places.
	Crowded func() bool
}

// ErrEdgeBusy is the error of a Dial the edge refused for now at the
// first packet (CONNECTION_REFUSED before the handshake: its bound on
// handshakes in progress, Config.Admit, or its listener closing). Retry
// later, with jitter; it says nothing about the path or the edge's health.
var ErrEdgeBusy = errors.New("quic: the edge refused the handshake for now (busy)")

func (c Config) logger() *slog.Logger {
	return logs.Component(c.Logger, "tunnelquic")
}

func (c Config) quicConfig() *quic.Config {
	qc := &quic.Config{
		KeepAlivePeriod:            max(orDuration(c.KeepAlivePeriod, 2*time.Second), 0),
		MaxIdleTimeout:             orDuration(c.MaxIdleTimeout, 10*time.Second),
		HandshakeIdleTimeout:       orDuration(c.HandshakeTimeout, 5*time.Second),
		MaxIncomingStreams:         c.MaxIncomingStreams,
		MaxIncomingUniStreams:      -1,
		MaxStreamReceiveWindow:     c.MaxStreamReceiveWindow,
		MaxConnectionReceiveWindow: c.MaxConnectionReceiveWindow,
	}
	if qc.MaxIncomingStreams == 0 {
		qc.MaxIncomingStreams = 10000
	}
	if qc.MaxStreamReceiveWindow == 0 {
		qc.MaxStreamReceiveWindow = 6 << 20
	}
	if qc.MaxConnectionReceiveWindow == 0 {
		qc.MaxConnectionReceiveWindow = 30 << 20
	}
	return qc
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Dial connects to an edge at addr (host:port). tlsConf must verify the edge;
// its NextProtos is set to the adit ALPN.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg Config) (tunnel.Conn, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{tunnel.ALPN}
	tc.MinVersion = tls.VersionTLS13
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("quic: dial %s: %w", addr, err)
	}
	var local *net.UDPAddr
	if cfg.LocalAddr != nil {
		local = &net.UDPAddr{IP: cfg.LocalAddr}
	}
	pc, err := listenUDP(local, cfg.logger())
	if err != nil {
		return nil, fmt.Errorf("quic: dial %s: %w", addr, err)
	}
	tr := &quic.Transport{Conn: pc}
	qc, err := tr.Dial(ctx, ua, tc, cfg.quicConfig())
	if err != nil {
		tr.Close()
		pc.Close()
		if refusedNow(err) {
			return nil, fmt.Errorf("quic: dial %s: %w: %w", addr, ErrEdgeBusy, err)
		}
		return nil, fmt.Errorf("quic: dial %s: %w", addr, err)
	}
	context.AfterFunc(qc.Context(), func() {
		tr.Close()
		pc.Close()
	})
	return &conn{qc: qc}, nil
}

// Listen listens for tunnel connections on the UDP address addr.
func Listen(addr string, tlsConf *tls.Config, cfg Config) (tunnel.Listener, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{tunnel.ALPN}
	tc.MinVersion = tls.VersionTLS13
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("quic: listen %s: %w", addr, err)
	}
	pc, err := listenUDP(ua, cfg.logger())
	if err != nil {
		return nil, fmt.Errorf("quic: listen %s: %w", addr, err)
	}
	tr := &quic.Transport{Conn: pc, StatelessResetKey: (*quic.StatelessResetKey)(cfg.StatelessResetKey)}
	qconf := cfg.quicConfig()
	if cfg.Admit != nil {
		tr.ConnContext = admitter(cfg.Admit, 2*qconf.HandshakeIdleTimeout+time.Second)
	}
	if cfg.Crowded != nil {
		tr.VerifySourceAddress = func(net.Addr) bool { return cfg.Crowded() }
	}
	l, err := tr.Listen(tc, qconf)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("quic: listen %s: %w", addr, err)
	}
	return &listener{l: l, tr: tr}, nil
}

// listener is a QUIC listener on its own transport and socket. Closing
// it stops accepting; connections already accepted stay up, and the
// transport and socket close when the last of them ends.
type listener struct {
	l  *quic.Listener
	tr *quic.Transport

	mu     sync.Mutex
	live   int  // accepted connections not yet ended
	closed bool // Close was called
	once   sync.Once
}

func (l *listener) Accept(ctx context.Context) (tunnel.Conn, error) {
	qc, err := l.l.Accept(ctx)
	if err != nil {
		return nil, err
	}
	if h, ok := qc.Context().Value(placeKey{}).(*place); ok {
		h.accepted()
	}
	l.mu.Lock()
	l.live++
	l.mu.Unlock()
	context.AfterFunc(qc.Context(), func() {
		l.mu.Lock()
		l.live--
		last := l.closed && l.live == 0
		l.mu.Unlock()
		if last {
			l.closeTransport()
		}
	})
	return &conn{qc: qc}, nil
}

func (l *listener) Addr() net.Addr { return l.l.Addr() }

func (l *listener) Close() error {
	err := l.l.Close()
	l.mu.Lock()
	l.closed = true
	last := l.live == 0
	l.mu.Unlock()
	if last {
		l.closeTransport()
	}
	return err
}

func (l *listener) closeTransport() {
	l.once.Do(func() {
		l.tr.Close()
		l.tr.Conn.Close()
	})
}

type conn struct{ qc *quic.Conn }

func (c *conn) OpenStream(ctx context.Context) (tunnel.Stream, error) {
	s, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return &stream{s: s, connCtx: c.qc.Context()}, nil
}

func (c *conn) AcceptStream(ctx context.Context) (tunnel.Stream, error) {
	s, err := c.qc.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return &stream{s: s, connCtx: c.qc.Context()}, nil
}

func (c *conn) Close(code tunnel.ErrorCode, reason string) error {
	return c.qc.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

func (c *conn) Done() <-chan struct{} { return c.qc.Context().Done() }

func (c *conn) Err() error {
	err := context.Cause(c.qc.Context())
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return &tunnel.CloseError{Code: tunnel.ErrorCode(ae.ErrorCode), Reason: ae.ErrorMessage, Remote: ae.Remote}
	}
	return err
}

func (c *conn) LocalAddr() net.Addr  { return c.qc.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }
func (c *conn) Protocol() string     { return "quic" }

// PacketsReceived implements tunnel.Conn: the number of packets received
// on the connection so far.
func (c *conn) PacketsReceived() uint64 { return c.qc.ConnectionStats().PacketsReceived }

// RTT is QUIC's smoothed round-trip time on the connection (RFC 9002
// §5.3), sampled from every acknowledged packet, keepalives included; the
// edge ranks its peer links by it.
func (c *conn) RTT() time.Duration { return c.qc.ConnectionStats().SmoothedRTT }

// TLS is the connection's TLS state: the certificates the peer presented
// (the edge's peer links name the peer by its certificate).
func (c *conn) TLS() tls.ConnectionState { return c.qc.ConnectionState().TLS }

// streamAborted is the QUIC stream error code for an abandoned stream.
const streamAborted quic.StreamErrorCode = 1

// stream adapts a QUIC stream. Its methods follow quic-go's concurrency
// rules: one reader and one writer at a time; Close may race with both.
type stream struct {
	s           *quic.Stream
	connCtx     context.Context // ends with the connection
	writeClosed atomic.Bool

	mu     sync.Mutex
	closed bool
	ctx    context.Context // made at the first Context call
	cancel context.CancelCauseFunc
}

// errStreamClosed is the cause of the Context of a stream closed here.
var errStreamClosed = errors.New("quic: stream closed")

func (s *stream) Read(p []byte) (int, error)  { return s.s.Read(p) }
func (s *stream) Write(p []byte) (int, error) { return s.s.Write(p) }

// Context implements tunnel.Stream. quic-go's own stream context ends when
// this side finishes writing too; that end is not passed on.
func (s *stream) Context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx != nil {
		return s.ctx
	}
	s.ctx, s.cancel = context.WithCancelCause(s.connCtx)
	if s.closed {
		s.cancel(errStreamClosed)
		return s.ctx
	}
	qctx := s.s.Context() // ends with a reset, STOP_SENDING, the FIN or the connection
	cancel := s.cancel
	context.AfterFunc(qctx, func() {
		if cause := context.Cause(qctx); !errors.Is(cause, quic.ErrStreamClosed) {
			cancel(cause)
		}
	})
	return s.ctx
}

func (s *stream) CloseWrite() error {
	s.writeClosed.Store(true)
	return s.s.Close()
}

func (s *stream) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel(errStreamClosed)
	}
	s.mu.Unlock()
	// After a FIN, data still in flight must be delivered: only an
	// unfinished write side is reset, so the peer sees an error, not an end.
	if !s.writeClosed.Load() {
		s.s.CancelWrite(streamAborted)
	}
	s.s.CancelRead(streamAborted)
	return nil
}
