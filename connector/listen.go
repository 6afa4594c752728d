package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/origin"
	"github.com/adit-dev/adit/tunnel"
)

// The connector as a library: a Go program serves its tunnel itself, with
// no daemon beside it and no local port, as ngrok-go's Listen does.
//
// Listen returns a net.Listener. The edge sends each public request as a
// stream of framed messages (tunnel.RequestHeader, body frames,
// trailers), not as HTTP/1.1 bytes; the listener turns each HTTP request
// (and each WebSocket or other upgrade) into a connection of its own that
// speaks plain HTTP/1.1, written and read by Go's own http.Transport
// (origin.NewDialHTTP) over an in-memory pipe. So http.Serve, an
// http.Server with its timeouts and Shutdown, or any router built on
// net/http serves the tunnel unchanged; chunked bodies stream, trailers
// and 101 upgrades pass. One connection per request also lets RemoteAddr
// be the visitor's address. The price is one HTTP/1.1 encoding and
// decoding in memory per request, and a pipe instead of a socket.
//
// We chose this over a Serve(ctx, cfg, http.Handler) that would hand the
// rebuilt request straight to a handler: a listener serves every Go HTTP
// stack (and servers that are not net/http's), keeps the program's own
// server settings, and is the same shape as the TCP side. TCP streams
// (from `adit access tcp|ssh` and the edges' public TCP ports) are not
// HTTP: they arrive on a second listener, Listener.TCP, as the raw
// bytes of the client's connection.

// acceptTimeout bounds how long a request waits for the program to call
// Accept before it gets a 502.
const acceptTimeout = 30 * time.Second

// ConfigFromToken returns the Config that runs the tunnel of a token
// (`adit tunnel token NAME`): its ID, secret, edge addresses and edge CA.
func ConfigFromToken(token string) (Config, error) {
	f, err := credentials.ParseToken(token)
	if err != nil {
		return Config{}, fmt.Errorf("connector: %w", err)
	}
	return Config{TunnelID: f.TunnelID, Secret: f.TunnelSecret, EdgeAddrs: f.EdgeAddrs, EdgeCA: []byte(f.EdgeCA)}, nil
}

// Listener is a running connector whose origin is the program itself:
// each HTTP request its tunnel receives is accepted as a net.Conn
// speaking HTTP/1.1 (serve it with http.Serve or an http.Server), each TCP
// stream on the listener of TCP.
type Listener struct {
	c      *Connector
	http   *connQueue
	tcp    *connQueue
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's, once done is closed
}

// Listen starts a connector for cfg, whose Ingress and RemoteConfig must
// be unset (the program is the origin), and waits until its first
// connection to the edge is registered, or ctx ends, or the edge refuses
// the tunnel (an error wrapping ErrAuth). ctx bounds only that wait: the
// connector then runs until Close. Everything else in cfg works as for
// New and Run (HAConnections, Protocol, GracePeriod, MetricsAddr, Logger,
// ...).
func Listen(ctx context.Context, cfg Config) (*Listener, error) {
	if cfg.Ingress != nil || cfg.RemoteConfig {
		return nil, errors.New("connector: Listen: leave Config.Ingress and RemoteConfig unset: the listener is the origin")
	}
	ing, err := ingress.FromURL("http_status:503") // one catch-all rule; its origin is replaced below
	if err != nil {
		return nil, err
	}
	cfg.Ingress = ing
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		c:    c,
		http: newConnQueue(c.cfg.TunnelID),
		tcp:  newConnQueue(c.cfg.TunnelID),
		done: make(chan struct{}),
	}
	svc, err := origin.NewDialHTTP("listener", l.dialHTTP, c.log)
	if err != nil {
		return nil, err
	}
	old := c.router.Swap(&router{ing: ing, http: []origin.HTTPService{localOrigin{svc}}})
	old.close()
	c.localTCP = l.tcp

	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() {
		l.err = c.Run(runCtx)
		err := l.err
		if err == nil {
			err = net.ErrClosed
		}
		l.http.close(err)
		l.tcp.close(err)
		close(l.done)
	}()
	select {
	case <-c.Ready():
		return l, nil
	case <-l.done:
		return nil, l.err
	case <-ctx.Done():
		cancel()
		<-l.done
		return nil, fmt.Errorf("connector: Listen: no connection to the edge registered: %w", context.Cause(ctx))
	}
}

// Accept waits for the next HTTP request and returns its connection, on
// which it arrives as HTTP/1.1 with "Connection: close". Its RemoteAddr
// is the visitor's address (as the edge saw it); the request's Host is the
// public hostname, and the edge's X-Forwarded-For, X-Forwarded-Proto and
// Cf-Connecting-Ip headers are there as for any origin. After Close, or
// once the connector has stopped, Accept returns net.ErrClosed (or the
// connector's error, such as ErrAuth when the tunnel was deleted).
func (l *Listener) Accept() (net.Conn, error) { return l.http.accept() }

// TCP is the listener of the tunnel's TCP streams: each connection a
// client makes with `adit access tcp` (or `ssh` through `adit access
// ssh`) or to a public TCP port the edges keep for the tunnel (`adit
// tunnel route tcp`) is accepted as a *TCPConn carrying its bytes. The
// client is told it is connected as soon as the stream arrives, as a
// kernel completes a TCP handshake before accept. Closing it closes l.
func (l *Listener) TCP() net.Listener { return tcpListener{l} }

// Close stops the connector: it unregisters from the edge and lets the
// requests in flight finish for up to Config.GracePeriod (see Wait).
// Accept then returns net.ErrClosed.
func (l *Listener) Close() error {
	l.cancel()
	l.http.close(net.ErrClosed)
	l.tcp.close(net.ErrClosed)
	return nil
}

// Wait waits until the connector has stopped (after Close, or for an
// error such as ErrAuth) and returns Run's error: nil after Close.
func (l *Listener) Wait() error {
	<-l.done
	return l.err
}

// Addr names the tunnel: network "adit", the tunnel ID.
func (l *Listener) Addr() net.Addr { return l.http.addr }

// ID is the connector's ID, as the edge records it (`adit tunnel info`).
func (l *Listener) ID() string { return l.c.ID() }

// Connections is the number of connections to the edge now registered.
func (l *Listener) Connections() int { return l.c.Connections() }

// dialHTTP is the origin's dial: a pipe whose other end Accept returns.
func (l *Listener) dialHTTP(ctx context.Context) (net.Conn, error) {
	remote, _ := ctx.Value(clientAddrKey{}).(string)
	client, server := net.Pipe()
	conn := &pipeConn{Conn: server, local: l.http.addr, remote: clientAddr(remote)}
	if err := l.http.hand(ctx, conn); err != nil {
		client.Close()
		server.Close()
		return nil, err
	}
	return client, nil
}

// localOrigin passes each request's client address to dialHTTP.
type localOrigin struct{ origin.HTTPService }

func (o localOrigin) RoundTrip(req *http.Request) (*http.Response, error) {
	return o.HTTPService.RoundTrip(req.WithContext(context.WithValue(req.Context(), clientAddrKey{}, req.RemoteAddr)))
}

// Addr is a tunnel's address: network "adit".
type Addr struct {
	// TunnelID is the tunnel's UUID.
	TunnelID string
}

func (a Addr) Network() string { return "adit" }
func (a Addr) String() string  { return a.TunnelID }

// clientAddrKey carries the edge's client address to the dial.
type clientAddrKey struct{}

// clientAddr is the edge's client address ("ip:port", or an IP) as a
// net.Addr: a *net.TCPAddr when it parses.
func clientAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
	}
	return Addr{TunnelID: "client " + s}
}

// pipeConn is the program's end of an HTTP request's pipe.
type pipeConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }

// connQueue hands connections to Accept: each waits for an Accept (the
// hand-off is unbuffered, so a program that stops accepting holds the
// requests back, not memory).
type connQueue struct {
	addr      Addr
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	err       error // set before closed is closed
}

func newConnQueue(tunnelID string) *connQueue {
	return &connQueue{addr: Addr{TunnelID: tunnelID}, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, q.err
	}
}

// hand gives c to an Accept, waiting up to acceptTimeout.
func (q *connQueue) hand(ctx context.Context, c net.Conn) error {
	t := time.NewTimer(acceptTimeout)
	defer t.Stop()
	select {
	case q.ch <- c:
		return nil
	case <-q.closed:
		return fmt.Errorf("the program's listener is closed: %w", q.err)
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("the program did not accept the connection within %v", acceptTimeout)
	}
}

func (q *connQueue) close(err error) {
	q.closeOnce.Do(func() {
		q.err = err
		close(q.closed)
	})
}

// tcpListener is Listener.TCP.
type tcpListener struct{ l *Listener }

func (t tcpListener) Accept() (net.Conn, error) { return t.l.tcp.accept() }
func (t tcpListener) Close() error              { return t.l.Close() }
func (t tcpListener) Addr() net.Addr            { return t.l.tcp.addr }

// serveLocalTCP serves a TCP stream of a Listen connector: it answers that
// the stream is connected, hands it to the program, and waits until the
// program closes it.
func (c *Connector) serveLocalTCP(s tunnel.Stream, rd *streamReader, h *tunnel.RequestHeader) {
	log := c.log.With("request_id", h.RequestID, "host", h.Host)
	if err := tunnel.WriteMessage(s, &tunnel.ResponseHeader{Status: http.StatusOK}); err != nil {
		log.Debug("edge went away", "err", err)
		return
	}
	conn := &TCPConn{
		s: s, pending: rd.take(), host: h.Host, requestID: h.RequestID,
		local: c.localTCP.addr, remote: clientAddr(h.ClientAddr), closed: make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(s.Context(), acceptTimeout)
	defer cancel()
	if err := c.localTCP.hand(ctx, conn); err != nil {
		log.Warn("tcp stream not accepted", "err", err)
		return
	}
	<-conn.closed
}

// TCPConn is a TCP stream accepted by Listener.TCP: the client's bytes
// both ways. CloseWrite half-closes it (the client reads EOF); deadlines
// work as a net.Conn's.
type TCPConn struct {
	s             tunnel.Stream
	pending       []byte // read with the stream's header
	host          string
	requestID     string
	local, remote net.Addr
	closeOnce     sync.Once
	closed        chan struct{}
}

// Hostname is the public hostname the client asked for: the route of the
// TCP port it connected to, or `adit access --hostname`.
func (c *TCPConn) Hostname() string { return c.host }

// RequestID is the edge's ID for the stream, as in its logs.
func (c *TCPConn) RequestID() string { return c.requestID }

func (c *TCPConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	n, err := c.s.Read(p)
	return n, c.mapErr(err)
}

func (c *TCPConn) Write(p []byte) (int, error) {
	n, err := c.s.Write(p)
	return n, c.mapErr(err)
}

// mapErr makes a passed deadline's error os.ErrDeadlineExceeded (a
// net.Error whose Timeout is true), whatever the transport wrapped it in.
func (c *TCPConn) mapErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return os.ErrDeadlineExceeded
	}
	return err
}

// CloseWrite finishes the sending direction: the client reads EOF.
func (c *TCPConn) CloseWrite() error { return c.s.CloseWrite() }

// Close ends the stream (an abort unless CloseWrite came first).
func (c *TCPConn) Close() error {
	c.closeOnce.Do(func() {
		c.s.Close()
		close(c.closed)
	})
	return nil
}

func (c *TCPConn) LocalAddr() net.Addr  { return c.local }
func (c *TCPConn) RemoteAddr() net.Addr { return c.remote }

// deadliner is a stream with deadlines (both of adit's transports).
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// errNoDeadlines is what setting a deadline on a stream without them says.
var errNoDeadlines = errors.New("connector: this stream has no deadlines")

// setDeadline sets s's read or write deadline, if it has them.
func setDeadline(s tunnel.Stream, write bool, t time.Time) error {
	d, ok := s.(deadliner)
	switch {
	case !ok:
		return errNoDeadlines
	case write:
		return d.SetWriteDeadline(t)
	}
	return d.SetReadDeadline(t)
}

// The metrics' stream wrapper (metrics.go) passes deadlines on.
func (s *trackedStream) SetReadDeadline(t time.Time) error  { return setDeadline(s.Stream, false, t) }
func (s *trackedStream) SetWriteDeadline(t time.Time) error { return setDeadline(s.Stream, true, t) }

func (c *TCPConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *TCPConn) SetReadDeadline(t time.Time) error  { return setDeadline(c.s, false, t) }
func (c *TCPConn) SetWriteDeadline(t time.Time) error { return setDeadline(c.s, true, t) }
