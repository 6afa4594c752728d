package carrier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Subprotocol is the WebSocket subprotocol of a TCP connection carried to a
// tunnel (see the package doc).
const Subprotocol = "adit-access-tcp"

// Request headers naming the destination of a bastion rule, as host:port.
const (
	DestinationHeader     = "Adit-Access-Destination"
	JumpDestinationHeader = "Cf-Access-Jump-Destination" // cloudflared's name
)

// Conn is a TCP byte stream carried over a WebSocket with the
// [Subprotocol]. It is a net.Conn with CloseWrite, like *net.TCPConn.
//
// Deadlines work as in websocket.NetConn: when a deadline passes while a
// Read (or Write) is blocked, the whole connection is closed, not just the
// call interrupted.
type Conn struct {
	ws            *websocket.Conn
	local, remote net.Addr

	ctx    context.Context // bounds every read and write; cancelled on Close
	cancel context.CancelFunc

	rmu    sync.Mutex
	msg    io.Reader // the message being read
	msgLen int       // bytes read from msg so far
	rerr   error     // sticky read error (io.EOF after the peer's end)
	rdl    deadline

	wmu     sync.Mutex
	wclosed bool
	wdl     deadline

	closeOnce sync.Once
	closeErr  error
}

// NewConn wraps an established WebSocket that speaks the [Subprotocol]. It
// lifts the WebSocket read limit (the messages are stream bytes). local and
// remote are what LocalAddr and RemoteAddr return; nil gives a placeholder.
func NewConn(ws *websocket.Conn, local, remote net.Addr) *Conn {
	ws.SetReadLimit(-1)
	if local == nil {
		local = wsAddr("websocket")
	}
	if remote == nil {
		remote = wsAddr("websocket")
	}
	c := &Conn{ws: ws, local: local, remote: remote}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.rdl.cancel = c.cancel
	c.wdl.cancel = c.cancel
	return c
}

// Read reads stream bytes. It returns io.EOF once the peer has ended its
// direction (an empty message, or a normal close).
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return 0, c.rerr
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := c.rdl.start(); err != nil {
		return 0, err
	}
	defer c.rdl.done()
	for {
		if c.msg == nil {
			typ, r, err := c.ws.Reader(c.ctx)
			if err != nil {
				c.rerr = c.readError(err)
				return 0, c.rerr
			}
			if typ != websocket.MessageBinary {
				c.ws.Close(websocket.StatusUnsupportedData, "adit-access-tcp carries binary messages only")
				c.rerr = errors.New("carrier: protocol error: the peer sent a text message")
				return 0, c.rerr
			}
			c.msg, c.msgLen = r, 0
		}
		n, err := c.msg.Read(p)
		c.msgLen += n
		if err == io.EOF {
			empty := c.msgLen == 0
			c.msg = nil
			if empty {
				c.rerr = io.EOF
				return 0, io.EOF
			}
			err = nil
		}
		if err != nil {
			c.rerr = c.readError(err)
			return n, c.rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// readError turns a WebSocket read error into what a stream reader expects:
// io.EOF for a normal close, a timeout for a passed deadline.
func (c *Conn) readError(err error) error {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return io.EOF
	}
	if c.rdl.expired.Load() {
		return os.ErrDeadlineExceeded
	}
	return fmt.Errorf("carrier: read: %w", err)
}

// Write sends p as one message.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // an empty message would end the stream
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return 0, errors.New("carrier: write after CloseWrite")
	}
	if err := c.wdl.start(); err != nil {
		return 0, err
	}
	defer c.wdl.done()
	if err := c.ws.Write(c.ctx, websocket.MessageBinary, p); err != nil {
		if c.wdl.expired.Load() {
			return 0, os.ErrDeadlineExceeded
		}
		return 0, fmt.Errorf("carrier: write: %w", err)
	}
	return len(p), nil
}

// CloseWrite ends this direction: the peer reads end of file after what was
// written before. Reading continues.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return nil
	}
	c.wclosed = true
	if err := c.ws.Write(c.ctx, websocket.MessageBinary, nil); err != nil {
		return fmt.Errorf("carrier: close write: %w", err)
	}
	return nil
}

// Close ends this direction if it was not ended yet and closes the
// WebSocket normally (waiting a few seconds at most for the peer's answer).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.CloseWrite()
		err := c.ws.Close(websocket.StatusNormalClosure, "")
		if err != nil && !errors.Is(err, net.ErrClosed) && websocket.CloseStatus(err) == -1 {
			c.closeErr = fmt.Errorf("carrier: close: %w", err)
		}
		c.cancel()
		c.rdl.stop()
		c.wdl.stop()
	})
	return c.closeErr
}

// Abort drops the connection without a close handshake: the peer sees an
// error, not an end of stream.
func (c *Conn) Abort() error {
	c.closeOnce.Do(func() {
		c.ws.CloseNow()
		c.cancel()
		c.rdl.stop()
		c.wdl.stop()
	})
	return nil
}

// LocalAddr returns the local address given to NewConn.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the remote address given to NewConn.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline; see Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline sets the write deadline; see Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// deadline is one direction's deadline. When it passes during an operation
// it cancels the connection's context (which closes the WebSocket); when it
// passes between operations, the next one fails at once.
type deadline struct {
	mu      sync.Mutex
	gen     uint64
	timer   *time.Timer
	expired atomic.Bool
	active  atomic.Bool
	cancel  context.CancelFunc
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.expired.Store(false)
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		d.expire()
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if gen == d.gen {
			d.expire()
		}
	})
}

// expire marks the deadline passed; d.mu is held.
func (d *deadline) expire() {
	d.expired.Store(true)
	if d.active.Load() {
		d.cancel()
	}
}

// start begins an operation, or fails if the deadline has passed.
func (d *deadline) start() error {
	d.active.Store(true)
	if d.expired.Load() {
		d.active.Store(false)
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (d *deadline) done() { d.active.Store(false) }

func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// wsAddr is the address of a WebSocket peer whose socket is not known.
type wsAddr string

func (a wsAddr) Network() string { return "websocket" }
func (a wsAddr) String() string  { return string(a) }
