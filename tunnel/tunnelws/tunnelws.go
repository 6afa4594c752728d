// Package tunnelws is the WebSocket transport for adit tunnels, the fallback
// for networks that drop UDP or only let traffic out through an HTTP proxy.
//
// # Wire
//
//   - TCP to the edge's tunnel port (7844, the number QUIC uses on UDP),
//     optionally through an HTTP CONNECT proxy.
//   - TLS 1.3 with ALPN "http/1.1". The connector verifies the edge's
//     certificate exactly as on QUIC. An edge with too many handshakes in
//     progress (Config.Admit) answers before TLS with a plain-text
//     "HTTP/1.1 503" (busyAnswer) and closes: Dial reports ErrEdgeBusy.
//   - An HTTP/1.1 WebSocket upgrade: GET [Path] with subprotocol
//     [tunnel.ALPN] ("adit/1"). The edge answers 404 for any other path and
//     400 when the subprotocol is not offered; the connector refuses a 101
//     that did not select it.
//   - A yamux session (github.com/hashicorp/yamux, spec.md) whose bytes are
//     carried in binary WebSocket messages; message boundaries mean nothing
//     to the reader (this implementation sends each yamux frame in one
//     message, sometimes followed by frames of its own, below). A text
//     message is a protocol error. The connector is the yamux client (odd
//     stream IDs); both sides open streams: the connector its control
//     stream, the edge its request streams. One tunnel stream is one yamux
//     stream.
//   - Stream end: FIN is yamux FIN. Abort (Close without CloseWrite) is
//     yamux RST: the peer's reads and writes fail, and it never sees a clean
//     end. Close after CloseWrite must not destroy what was written, so it
//     sends STOP instead: a window update with delta 0 and flag 0x8000, an
//     adit extension meaning "I read no more: fail your writes" (QUIC's
//     STOP_SENDING). yamux implementations ignore unknown flags, so a peer
//     without the extension only misses the early write error.
//   - Connection close: a WebSocket close frame with status 4000+code (codes
//     0 to 999; larger ones are sent as 999) and the reason, at most 123
//     bytes, then the WebSocket close handshake (up to 2s). Conn.Err then
//     gives both sides a *tunnel.CloseError. A peer's status 1000 reads as
//     code 0; any other status is a plain error. A peer breaking the
//     protocol (text message, bad yamux frame) gets code 1 (protocol).
//   - Keepalive: a yamux ping every KeepAliveInterval (1s); a ping unanswered for
//     ConnectionWriteTimeout, with nothing else heard meanwhile, ends the
//     connection.
//
// hashicorp/yamux (v0.1.2) has no API to reset a stream, to half-close it
// apart from Close, or to stop the peer's sending. This package gets all
// three by writing yamux frames itself, at frame boundaries, into the byte
// stream between yamux and the WebSocket: RST and STOP toward the peer, and
// an RST toward the local session so it forgets an abandoned stream at once.
package tunnelws

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"

	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/tunnel"
)

// Path is the HTTP path of the WebSocket upgrade.
const Path = "/adit/tunnel"

// tlsALPN is the TLS application protocol: the adit protocol itself is
// named by the WebSocket subprotocol.
const tlsALPN = "http/1.1"

// Config tunes the WebSocket transport. The zero value is ready to use.
// Both sides should use the same AcceptBacklog and MaxStreamWindow.
type Config struct {
	// KeepAliveInterval is how often a yamux ping is sent. If zero, 1s (as
	// QUIC's keepalive: the edge suspects a connection silent for 2.5s).
	KeepAliveInterval time.Duration
	// ConnectionWriteTimeout bounds queueing a frame for the connection and
	// waiting for a ping's answer: past it the connection is considered
	// dead. If zero, 10s.
	ConnectionWriteTimeout time.Duration
	// MaxStreamWindow is yamux's per-stream receive window, at least
	// 256 KiB. If zero, 6 MiB.
	MaxStreamWindow uint32
	// AcceptBacklog is how many streams the peer may open that this side
	// has not accepted yet (yamux resets the ones past it), and how many of
	// this side's streams may wait for the peer to accept them (OpenStream
	// waits). yamux has no other limit on concurrent streams. If zero,
	// 10000.
	AcceptBacklog int
	// MaxIncomingStreams caps the streams the peer may have open at once
	// (opened by it, not yet closed by this side). A stream the peer opens
	// past it is reset at once, before yamux sees it: nothing of it is
	// buffered or queued for Accept. An edge sets 1, the control stream. If
	// zero, only AcceptBacklog limits them.
	MaxIncomingStreams int
	// MaxIncomingBuffer bounds the bytes the peer may have sent on the
	// streams it opened that this side has not read yet, all such streams
	// together. A peer past it breaks the protocol: the connection is
	// closed with code 1 (protocol), and the frame that went past it is
	// dropped unread. It bounds what an edge holds for a connector that
	// has not registered yet. If zero, only MaxStreamWindow bounds each
	// stream.
	MaxIncomingBuffer int
	// HandshakeTimeout bounds dialing (TCP, proxy CONNECT, TLS and the
	// WebSocket upgrade) and, on the edge, the TLS handshake, reading the
	// upgrade request, and the wait for Accept after the upgrade (past it
	// the connection is closed with code 4, shutdown). If zero, 10s.
	HandshakeTimeout time.Duration
	// Proxy returns the HTTP CONNECT proxy to reach the edge through, or
	// nil for none; it gets the URL https://host:port of the edge. Only
	// http:// proxies are supported; user info in the URL is sent as
	// Proxy-Authorization basic. If nil, HTTPS_PROXY and NO_PROXY decide,
	// as for http.ProxyFromEnvironment (read at every Dial; localhost and
	// loopback addresses are never proxied).
	Proxy func(*url.URL) (*url.URL, error)
	// Logger gets the edge's failed handshakes at debug level. If nil,
	// nothing is logged.
	Logger *slog.Logger
	// LocalAddr is the local IP address Dial connects from (to the edge,
	// or to the proxy). If nil, the system picks it.
	LocalAddr net.IP
	// Admit, if set, bounds the handshakes the edge works on. It is asked
	// for each accepted TCP connection, before TLS. If it answers ok
	// false, the connection is refused without TLS: it gets a plain-text
	// HTTP/1.1 503 with Retry-After (busyAnswer) and is closed, which Dial
	// reports as ErrEdgeBusy. Otherwise the connection holds the place
	// until release is called, exactly once: when the WebSocket upgrade
	// handler is done (Accept took the connection, or it failed), or when
	// the connection closes first (a TLS failure, a timeout, the listener
	// closing). If nil, handshakes are not bounded.
	Admit func(remote net.Addr) (release func(), ok bool)
}

// ErrEdgeBusy is the error of a Dial the edge refused for now before TLS
// (its bound on handshakes in progress, Config.Admit). Retry later, with
// jitter; it says nothing about the path or the edge's health.
var ErrEdgeBusy = errors.New("tunnelws: the edge refused the handshake for now (busy)")

// minStreamWindow is yamux's initial window, below which it refuses to run.
const minStreamWindow = 256 << 10

func (c Config) validate() error {
	switch {
	case c.KeepAliveInterval < 0, c.ConnectionWriteTimeout < 0, c.HandshakeTimeout < 0:
		return errors.New("tunnelws: config: negative duration")
	case c.AcceptBacklog < 0:
		return errors.New("tunnelws: config: negative AcceptBacklog")
	case c.MaxIncomingStreams < 0:
		return errors.New("tunnelws: config: negative MaxIncomingStreams")
	case c.MaxIncomingBuffer < 0:
		return errors.New("tunnelws: config: negative MaxIncomingBuffer")
	case c.MaxStreamWindow != 0 && c.MaxStreamWindow < minStreamWindow:
		return fmt.Errorf("tunnelws: config: MaxStreamWindow %d is below yamux's minimum %d", c.MaxStreamWindow, minStreamWindow)
	}
	return nil
}

func (c Config) keepAlive() time.Duration { return orDuration(c.KeepAliveInterval, time.Second) }
func (c Config) writeTimeout() time.Duration {
	return orDuration(c.ConnectionWriteTimeout, 10*time.Second)
}
func (c Config) handshakeTimeout() time.Duration {
	return orDuration(c.HandshakeTimeout, 10*time.Second)
}

func (c Config) logger() *slog.Logger {
	return logs.Component(c.Logger, "tunnelws")
}

func (c Config) yamuxConfig() *yamux.Config {
	yc := &yamux.Config{
		AcceptBacklog: c.AcceptBacklog,
		// conn runs the keepalive, to know why a connection ended.
		EnableKeepAlive:        false,
		KeepAliveInterval:      c.keepAlive(),
		ConnectionWriteTimeout: c.writeTimeout(),
		MaxStreamWindowSize:    c.MaxStreamWindow,
		// No timers on streams: a half-closed stream may live for hours
		// (a long response after the request), and Close always frees a
		// stream at once.
		StreamOpenTimeout:  0,
		StreamCloseTimeout: 0,
		LogOutput:          io.Discard,
	}
	if yc.AcceptBacklog == 0 {
		yc.AcceptBacklog = 10000
	}
	if yc.MaxStreamWindowSize == 0 {
		yc.MaxStreamWindowSize = 6 << 20
	}
	return yc
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Dial connects to an edge at addr (host:port): TCP, through a proxy if one
// applies, TLS 1.3, then the WebSocket upgrade. tlsConf must verify the
// edge; its NextProtos is replaced, and an empty ServerName is set to addr's
// host. Through a proxy, the connection's RemoteAddr is the proxy's.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg Config) (tunnel.Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tunnelws: dial %s: %w", addr, err)
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.handshakeTimeout())
	defer cancel()

	raw, err := cfg.dialTCP(hctx, addr)
	if err != nil {
		return nil, fmt.Errorf("tunnelws: dial %s: %w", addr, err)
	}
	var tc *tls.Config
	if tlsConf != nil {
		tc = tlsConf.Clone()
	} else {
		tc = &tls.Config{}
	}
	tc.NextProtos = []string{tlsALPN}
	tc.MinVersion = tls.VersionTLS13
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	// The handshake reads through first, which keeps what the edge sent
	// first (admit.go: its refusal); then reads go to the socket.
	first := &firstBytes{Conn: raw}
	bc := newBatchConn(first)
	tlsConn := tls.Client(bc, tc)
	if err := tlsConn.HandshakeContext(hctx); err != nil {
		busy := first.refusedNow(err)
		raw.Close()
		if busy {
			return nil, fmt.Errorf("tunnelws: dial %s: %w", addr, ErrEdgeBusy)
		}
		return nil, fmt.Errorf("tunnelws: dial %s: tls: %w", addr, err)
	}
	bc.readSocket(raw)
	ws, err := upgrade(hctx, tlsConn, addr)
	if err != nil {
		tlsConn.Close()
		return nil, fmt.Errorf("tunnelws: dial %s: %w", addr, err)
	}
	return newConn(ws, tlsConn, true, cfg), nil
}

// upgrade sends the WebSocket upgrade on an established TLS connection.
func upgrade(ctx context.Context, tlsConn *tls.Conn, addr string) (*websocket.Conn, error) {
	var used atomic.Bool
	tr := &http.Transport{
		DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
			if used.Swap(true) {
				return nil, errors.New("upgrade wanted a second connection")
			}
			return tlsConn, nil
		},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	ws, _, err := websocket.Dial(ctx, "wss://"+addr+Path, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		Subprotocols: []string{tunnel.ALPN},
	})
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	if got := ws.Subprotocol(); got != tunnel.ALPN {
		ws.CloseNow()
		return nil, fmt.Errorf("upgrade: edge selected subprotocol %q, want %q", got, tunnel.ALPN)
	}
	return ws, nil
}

// Listen listens for tunnel connections on the TCP address addr.
func Listen(addr string, tlsConf *tls.Config, cfg Config) (tunnel.Listener, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tunnelws: listen %s: %w", addr, err)
	}
	l, err := Serve(ln, tlsConf, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return l, nil
}

// Serve accepts tunnel connections from ln, which yields plain TCP
// connections: Serve adds TLS with tlsConf (which must hold the edge's
// certificate; its NextProtos is replaced) and serves the upgrade with an
// http.Server. Closing the listener closes ln and connections still in
// their handshake; accepted connections stay up.
func Serve(ln net.Listener, tlsConf *tls.Config, cfg Config) (tunnel.Listener, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if tlsConf == nil || len(tlsConf.Certificates) == 0 && tlsConf.GetCertificate == nil && tlsConf.GetConfigForClient == nil {
		return nil, errors.New("tunnelws: serve: the TLS config has no certificate")
	}
	tc := tlsConf.Clone()
	tc.NextProtos = []string{tlsALPN}
	tc.MinVersion = tls.VersionTLS13
	log := cfg.logger()
	l := &listener{
		ln:     ln,
		cfg:    cfg,
		log:    log,
		conns:  make(chan *conn),
		closed: make(chan struct{}),
		served: make(chan struct{}),
	}
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: cfg.handshakeTimeout(), // also bounds the TLS handshake
		IdleTimeout:       cfg.handshakeTimeout(),
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          httpErrorLog(log),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, rawConnKey{}, c)
		},
	}
	go func() {
		defer close(l.served)
		var inner net.Listener = ln
		if cfg.Admit != nil {
			inner = &gateListener{Listener: ln, admit: cfg.Admit}
		}
		l.srv.Serve(tls.NewListener(batchListener{inner}, tc))
	}()
	return l, nil
}

// httpErrorLog turns the http.Server's log lines (failed TLS handshakes,
// mostly scanners) into debug records.
func httpErrorLog(l *slog.Logger) *log.Logger {
	return log.New(writerFunc(func(p []byte) (int, error) {
		l.Debug("" + strings.TrimSpace(string(p)))
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// rawConnKey carries the accepted TLS connection in the request context, so
// a connection can be cut even in the middle of a close handshake.
type rawConnKey struct{}

type listener struct {
	ln     net.Listener
	srv    *http.Server
	cfg    Config
	log    *slog.Logger
	conns  chan *conn // unbuffered: a connection is handed to one Accept
	closed chan struct{}
	served chan struct{}
	once   sync.Once
}

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	if !offers(r.Header, tunnel.ALPN) {
		http.Error(w, "tunnelws: WebSocket subprotocol "+tunnel.ALPN+" required", http.StatusBadRequest)
		return
	}
	raw, _ := r.Context().Value(rawConnKey{}).(net.Conn)
	if raw == nil {
		http.Error(w, "tunnelws: no connection", http.StatusInternalServerError)
		return
	}
	defer releasePlace(raw) // admit.go: the handshake is over, whatever its end
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{tunnel.ALPN}})
	if err != nil {
		l.log.Debug("upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	raw.SetDeadline(time.Time{}) // the http.Server's handshake deadlines
	c := newConn(ws, raw, false, l.cfg)
	t := time.NewTimer(l.cfg.handshakeTimeout())
	defer t.Stop()
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close(tunnel.CodeShutdown, "edge listener closed")
	case <-t.C:
		c.Close(tunnel.CodeShutdown, "edge busy: connection not accepted")
	}
}

// offers says whether the request lists subprotocol proto.
func offers(h http.Header, proto string) bool {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == proto {
				return true
			}
		}
	}
	return false
}

func (l *listener) Accept(ctx context.Context) (tunnel.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.closed:
		return nil, fmt.Errorf("tunnelws: accept: %w", net.ErrClosed)
	}
}

func (l *listener) Addr() net.Addr { return l.ln.Addr() }

func (l *listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.srv.Close()
		<-l.served
	})
	return err
}
