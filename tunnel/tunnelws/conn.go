package tunnelws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"

	"github.com/adit-dev/adit/tunnel"
)

// Stream errors. A stream's reads and writes fail with the connection's
// error (see conn.Err) once the connection is gone.
var (
	errStreamClosed = errors.New("tunnelws: stream closed")
	errStreamReset  = errors.New("tunnelws: stream reset by peer")
	errPeerStopped  = errors.New("tunnelws: peer stopped reading the stream")
	errWriteClosed  = errors.New("tunnelws: write after CloseWrite")
	errConnClosed   = errors.New("tunnelws: connection closed")
)

// maxCloseReason is the longest reason a WebSocket close frame carries.
const maxCloseReason = 123

// streamState is what the wire learned about one stream, kept from the
// stream's first frame until the stream is closed.
type streamState struct {
	fin  atomic.Bool // the peer sent FIN
	rst  atomic.Bool // the peer sent RST
	stop atomic.Bool // the peer sent STOP
	ys   *yamux.Stream

	// incoming: the peer opened the stream. unread counts the bytes it
	// sent on it that this side has not read; -1 once the stream is
	// closed here and its bytes no longer count (see conn.buffered).
	incoming bool
	unread   atomic.Int64

	// ctx is the stream's Context, made at its first call; cancel ends it
	// with the reason the peer stopped reading. Both are guarded by the
	// conn's mu.
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// stopped ends the stream's Context, if it was made, with cause. The
// caller holds the conn's mu.
func (st *streamState) stopped(cause error) {
	if st.cancel != nil {
		st.cancel(cause)
	}
}

// pastDeadline wakes blocked yamux reads or writes.
var pastDeadline = time.Unix(1, 0)

type conn struct {
	sess          *yamux.Session // set once sessReady is closed
	sessReady     chan struct{}
	wire          *wire
	local, remote net.Addr
	keepAlive     time.Duration
	pingTimeout   time.Duration

	mu       sync.Mutex
	states   map[uint32]*streamState // by stream ID; also the ys fields
	cause    error                   // the first reason the connection ended
	incoming int                     // states of streams the peer opened

	// Limits on what the peer's streams may hold (Config).
	maxIncoming int
	maxBuffered int64
	buffered    atomic.Int64 // the sum of the unread counts

	done chan struct{}
	err  error // set before done is closed

	// ctx ends when the session does, with the connection's error: the
	// parent of every stream's Context.
	ctx       context.Context
	cancelCtx context.CancelCauseFunc
}

func newConn(ws *websocket.Conn, raw net.Conn, client bool, cfg Config) *conn {
	ws.SetReadLimit(-1) // messages are streamed, never held whole
	c := &conn{
		local:       raw.LocalAddr(),
		remote:      raw.RemoteAddr(),
		keepAlive:   cfg.keepAlive(),
		pingTimeout: cfg.writeTimeout(),
		states:      make(map[uint32]*streamState),
		maxIncoming: cfg.MaxIncomingStreams,
		maxBuffered: int64(cfg.MaxIncomingBuffer),
		sessReady:   make(chan struct{}),
		done:        make(chan struct{}),
	}
	c.ctx, c.cancelCtx = context.WithCancelCause(context.Background())
	c.wire = newWire(ws, raw, c)
	var err error
	if client {
		c.sess, err = yamux.Client(c.wire, cfg.yamuxConfig())
	} else {
		c.sess, err = yamux.Server(c.wire, cfg.yamuxConfig())
	}
	if err != nil {
		// validate keeps the yamux config valid.
		panic("tunnelws: yamux config: " + err.Error())
	}
	close(c.sessReady)
	go c.run()
	return c
}

// run sends keepalives until the session ends, then records why.
func (c *conn) run() {
	defer close(c.done)
	t := time.NewTimer(c.keepAlive)
	defer t.Stop()
	ended := c.sess.CloseChan()
loop:
	for {
		select {
		case <-ended:
			break loop
		case <-t.C:
			// A pong can wait behind megabytes of data on a slow link:
			// only a peer that sent nothing at all is gone.
			before := c.wire.received.Load()
			if _, err := c.sess.Ping(); err != nil && !c.sess.IsClosed() && c.wire.received.Load() == before {
				c.setCause(fmt.Errorf("tunnelws: keepalive: no answer to a ping within %s: %w", c.pingTimeout, err))
				c.sess.Close()
				break loop
			}
			t.Reset(c.keepAlive)
		}
	}
	// Streams learn at once that the peer reads no more; the close
	// handshake below may take a while.
	c.cancelCtx(c.connErr())
	c.sess.Close() // waits for a Close in progress elsewhere
	c.wire.Close()
	c.err = c.finalErr()
}

func (c *conn) setCause(err error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = err
	}
	c.mu.Unlock()
}

func (c *conn) getCause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// finalErr is the connection's error once everything stopped.
func (c *conn) finalErr() error {
	if err := c.getCause(); err != nil {
		return err
	}
	return errConnClosed
}

// connErr is the error for operations on a connection that has ended.
func (c *conn) connErr() error {
	if err := c.getCause(); err != nil {
		return err
	}
	return errConnClosed
}

// wireFailed implements wireHooks.
func (c *conn) wireFailed(err error, read bool) {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		switch {
		case ce.Code >= 4000 && ce.Code <= 4999:
			err = &tunnel.CloseError{Code: tunnel.ErrorCode(ce.Code - 4000), Reason: ce.Reason, Remote: true}
		case ce.Code == websocket.StatusNormalClosure:
			err = &tunnel.CloseError{Code: tunnel.CodeNormal, Reason: ce.Reason, Remote: true}
		default:
			err = fmt.Errorf("tunnelws: peer closed the connection with status %d: %q", int(ce.Code), ce.Reason)
		}
	case errors.Is(err, errProtocol):
	case read:
		err = fmt.Errorf("tunnelws: read: %w", err)
	default:
		err = fmt.Errorf("tunnelws: write: %w", err)
	}
	c.setCause(err)
}

// closeStatus implements wireHooks.
func (c *conn) closeStatus() (websocket.StatusCode, string, time.Duration) {
	cause := c.getCause()
	if cause == nil {
		// yamux stopped on its own, at a protocol error it tells only to
		// AcceptStream.
		c.setCause(c.yamuxErr())
		cause = c.getCause()
	}
	var ce *tunnel.CloseError
	switch {
	case errors.As(cause, &ce):
		if ce.Remote {
			return websocket.StatusNormalClosure, "", closeTimeout // answered already
		}
		return websocket.StatusCode(4000 + min(ce.Code, 999)), truncate(ce.Reason, maxCloseReason), closeTimeout
	case errors.Is(cause, errProtocol):
		return websocket.StatusCode(4000 + tunnel.CodeProtocol), truncate(cause.Error(), maxCloseReason), closeTimeout
	default:
		// The connection failed (keepalive, read or write error): the
		// peer will not answer.
		return websocket.StatusGoingAway, truncate(cause.Error(), maxCloseReason), 0
	}
}

// yamuxErr is why the yamux session ended, once it has.
func (c *conn) yamuxErr() error {
	<-c.sessReady  // yamux may fail before yamux.Client returns
	for range 64 { // skip the streams still queued for accepting
		_, err := c.sess.AcceptStream()
		if err != nil && err != yamux.ErrSessionShutdown {
			return fmt.Errorf("%w: yamux: %w", errProtocol, err)
		}
	}
	return errConnClosed
}

// truncate cuts s to at most n bytes, at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// frameIn implements wireHooks: it records FIN, RST and STOP before yamux
// sees them, creates the state of streams the peer opens, resets those past
// MaxIncomingStreams and counts the bytes the peer sends on its streams.
func (c *conn) frameIn(h hdr) (bool, error) {
	if !h.isStreamFrame() {
		return true, nil
	}
	f := h.flags()
	id := h.streamID()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.states[id]
	if st == nil {
		if f&flagSYN == 0 {
			return true, nil // a stream already closed here
		}
		// Every state made here is a stream the peer opened, whatever
		// the parity of its ID: this side's own are made in frameOut.
		if c.maxIncoming > 0 && c.incoming >= c.maxIncoming {
			return false, c.refuse(id)
		}
		st = &streamState{incoming: true}
		c.states[id] = st
		c.incoming++
	}
	if n := int64(h.bodyLen()); n > 0 && st.incoming && c.maxBuffered > 0 {
		st.unread.Add(n)
		if c.buffered.Add(n) > c.maxBuffered {
			return false, fmt.Errorf("%w: the peer sent more than %d bytes on its streams that were not read yet", errProtocol, c.maxBuffered)
		}
	}
	if f&flagFIN != 0 {
		st.fin.Store(true)
	}
	if f&flagRST != 0 {
		st.rst.Store(true)
		st.stopped(errStreamReset)
	}
	if f&flagStop != 0 {
		st.stop.Store(true)
		st.stopped(errPeerStopped)
		if st.ys != nil {
			st.ys.SetWriteDeadline(pastDeadline)
		}
	}
	return true, nil
}

// maxPendingResets bounds the resets of refused streams waiting to be
// sent: a peer that keeps opening streams and reads nothing is closed.
const maxPendingResets = 1024

// refuse resets a stream the peer opened past MaxIncomingStreams. yamux
// never hears of it: its later frames are dropped by yamux as those of an
// unknown stream. The caller holds mu.
func (c *conn) refuse(id uint32) error {
	if c.wire.toPeerLen() >= maxPendingResets {
		return fmt.Errorf("%w: the peer opened more than %d streams past the limit of %d without reading the resets", errProtocol, maxPendingResets, c.maxIncoming)
	}
	c.wire.toPeerSession(newHdr(typeWindowUpdate, flagRST, id, 0))
	return nil
}

// dropState forgets a stream's state. The caller holds mu.
func (c *conn) dropState(id uint32, st *streamState) {
	if c.states[id] != st {
		return
	}
	delete(c.states, id)
	if st.incoming {
		c.incoming--
		if n := st.unread.Swap(-1); n > 0 {
			c.buffered.Add(-n)
		}
	}
}

// consumed takes n bytes read by this side off an incoming stream's count.
func (c *conn) consumed(st *streamState, n int) {
	if !st.incoming || n <= 0 || c.maxBuffered == 0 {
		return
	}
	for {
		cur := st.unread.Load()
		if cur < 0 {
			return // closed: dropState took the rest
		}
		if st.unread.CompareAndSwap(cur, cur-int64(n)) {
			c.buffered.Add(-int64(n))
			return
		}
	}
}

// frameOut implements wireHooks: it creates the state of streams this side
// opens before the peer can answer, and drops the state of streams yamux
// refuses.
func (c *conn) frameOut(h hdr) {
	f := h.flags()
	if f&(flagSYN|flagRST) == 0 || !h.isStreamFrame() {
		return
	}
	id := h.streamID()
	c.mu.Lock()
	defer c.mu.Unlock()
	if f&flagSYN != 0 && c.states[id] == nil {
		c.states[id] = &streamState{}
	}
	if f&flagRST != 0 {
		// yamux resets only streams nobody accepted (backlog full);
		// this package's own resets bypass frameOut.
		if st := c.states[id]; st != nil {
			c.dropState(id, st)
		}
	}
}

func (c *conn) newStream(ys *yamux.Stream) *stream {
	c.mu.Lock()
	st := c.states[ys.StreamID()]
	if st == nil {
		st = &streamState{}
		c.states[ys.StreamID()] = st
	}
	st.ys = ys
	c.mu.Unlock()
	if st.stop.Load() {
		ys.SetWriteDeadline(pastDeadline)
	}
	return &stream{c: c, ys: ys, st: st}
}

func (c *conn) OpenStream(ctx context.Context) (tunnel.Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// yamux's OpenStream waits for a free slot without a context.
	type opened struct {
		ys  *yamux.Stream
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		ys, err := c.sess.OpenStream()
		ch <- opened{ys, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			return nil, c.sessionErr(o.err)
		}
		return c.newStream(o.ys), nil
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.ys != nil {
				c.newStream(o.ys).Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func (c *conn) AcceptStream(ctx context.Context) (tunnel.Stream, error) {
	ys, err := c.sess.AcceptStreamWithContext(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !c.sess.IsClosed() {
			return nil, ctxErr
		}
		return nil, c.sessionErr(err)
	}
	return c.newStream(ys), nil
}

// sessionErr maps an error of the yamux session.
func (c *conn) sessionErr(err error) error {
	if c.sess.IsClosed() {
		return c.connErr()
	}
	return fmt.Errorf("tunnelws: %w", err)
}

func (c *conn) Close(code tunnel.ErrorCode, reason string) error {
	c.setCause(&tunnel.CloseError{Code: code, Reason: reason})
	c.sess.Close()
	<-c.done
	return nil
}

func (c *conn) Done() <-chan struct{} { return c.done }

func (c *conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }
func (c *conn) Protocol() string     { return "websocket" }

// PacketsReceived implements tunnel.Conn: the pieces of WebSocket
// messages read from the peer so far. With keepalive pings on both sides it
// grows at least once per KeepAliveInterval on a live connection.
func (c *conn) PacketsReceived() uint64 { return c.wire.received.Load() }

// stream adapts a yamux stream: one reader and one writer at a time; Close
// may race with both.
type stream struct {
	c           *conn
	ys          *yamux.Stream
	st          *streamState
	writeClosed atomic.Bool
	closed      atomic.Bool
}

func (s *stream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, errStreamClosed
	}
	n, err := s.ys.Read(p)
	s.c.consumed(s.st, n)
	if err != nil {
		err = s.readErr(err)
	}
	return n, err
}

func (s *stream) readErr(err error) error {
	switch {
	case s.closed.Load():
		return errStreamClosed
	case err == io.EOF:
		// yamux also ends the reads of a stream whose session died.
		if s.st.fin.Load() {
			return io.EOF
		}
		return s.c.connErr()
	case err == yamux.ErrConnectionReset:
		return errStreamReset
	case err == yamux.ErrSessionShutdown:
		return s.c.connErr()
	}
	return fmt.Errorf("tunnelws: stream read: %w", err)
}

func (s *stream) Write(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, errStreamClosed
	}
	if s.st.stop.Load() {
		return 0, errPeerStopped
	}
	n, err := s.ys.Write(p)
	if err != nil {
		err = s.writeErr(err)
	}
	return n, err
}

func (s *stream) writeErr(err error) error {
	switch {
	case s.closed.Load():
		return errStreamClosed
	case s.st.stop.Load():
		return errPeerStopped
	case err == yamux.ErrConnectionReset:
		return errStreamReset
	case err == yamux.ErrStreamClosed:
		if s.writeClosed.Load() && !s.c.sess.IsClosed() {
			return errWriteClosed
		}
		return s.c.connErr()
	case err == yamux.ErrSessionShutdown:
		return s.c.connErr()
	}
	return fmt.Errorf("tunnelws: stream write: %w", err)
}

// Context implements tunnel.Stream: it ends when the peer sends STOP (it
// closed the stream after its CloseWrite) or RST (it aborted the stream),
// when the stream is closed here, or when the connection ends. A STOP
// after this side's CloseWrite ends it too (QUIC cannot tell that one).
func (s *stream) Context() context.Context {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st := s.st
	if st.ctx == nil {
		st.ctx, st.cancel = context.WithCancelCause(c.ctx)
		switch {
		case s.closed.Load():
			st.cancel(errStreamClosed)
		case st.rst.Load():
			st.cancel(errStreamReset)
		case st.stop.Load():
			st.cancel(errPeerStopped)
		}
	}
	return st.ctx
}

// CloseWrite sends yamux FIN after everything written.
func (s *stream) CloseWrite() error {
	if s.closed.Load() {
		return errStreamClosed
	}
	s.writeClosed.Store(true)
	return s.ys.Close()
}

// Close abandons the stream. Unless the write side was closed, the peer
// gets RST: its reads and writes fail. After CloseWrite, the peer gets STOP
// instead (unless it finished too): its writes fail, and it still reads
// everything up to the FIN. Either way the local session forgets the
// stream now, through an RST of its own.
func (s *stream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	c := s.c
	id := s.ys.StreamID()
	c.mu.Lock()
	c.dropState(id, s.st)
	s.st.stopped(errStreamClosed)
	c.mu.Unlock()
	// Wake this side's blocked Read and Write now: the local RST may wait
	// behind frames already received.
	s.ys.SetDeadline(pastDeadline)
	select {
	case <-c.done:
		return nil
	default:
	}
	writeClosed, peerDone := s.writeClosed.Load(), s.st.fin.Load()
	switch {
	case !writeClosed:
		c.wire.toPeerSession(newHdr(typeWindowUpdate, flagRST, id, 0))
	case !peerDone:
		c.wire.toPeerSession(newHdr(typeWindowUpdate, flagStop, id, 0))
	}
	if !writeClosed || !peerDone {
		// Otherwise yamux has forgotten the stream already (both FINs).
		c.wire.toLocalSession(newHdr(typeWindowUpdate, flagRST, id, 0))
	}
	return nil
}
