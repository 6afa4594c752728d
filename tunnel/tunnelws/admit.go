package tunnelws

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Bounding handshakes (Config.Admit).
//
// The edge asks Admit for each TCP connection it accepts, before TLS. A
// connection refused there never costs a TLS handshake: the edge writes
// busyAnswer, a plain-text HTTP response, half-closes, drains what the
// client sent (its ClientHello; closing with unread data would reset the
// connection and could lose the answer) for at most refuseLinger, and
// closes. A TLS client reads the answer as a record that is not TLS; Dial
// recognises the 503 and reports ErrEdgeBusy. A person with curl or
// openssl sees the 503 too.

// busyAnswer is the refusal. Retry-After is a hint; the connector retries
// on its own schedule (connector: reconnect.go).
const busyAnswer = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Retry-After: 1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: 52\r\n" +
	"Connection: close\r\n" +
	"\r\n" +
	"adit edge: too many handshakes at once; retry later\n"

// refuseLinger bounds how long a refused connection is drained.
const refuseLinger = time.Second

// gateListener asks admit for each connection it accepts: a connection
// admitted is returned holding its place (heldConn), one refused gets
// busyAnswer on a goroutine of its own.
type gateListener struct {
	net.Listener
	admit func(net.Addr) (func(), bool)
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := l.admit(c.RemoteAddr())
		if ok {
			return &heldConn{Conn: c, release: release}, nil
		}
		go refuse(c)
	}
}

// refuse answers a connection refused for now and closes it.
func refuse(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(refuseLinger))
	if _, err := io.WriteString(c, busyAnswer); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// heldConn is an admitted connection: it gives its place back once, when
// its handshake is over (releasePlace) or when it closes, if that is first.
type heldConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *heldConn) done() { c.once.Do(c.release) }

// SyscallConn is the socket's, for batchConn's reads.
func (c *heldConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (c *heldConn) Close() error {
	c.done()
	return c.Conn.Close()
}

// releasePlace gives back the place of the connection under the TLS
// connection c, if it holds one.
func releasePlace(c net.Conn) {
	if b := batchOf(c); b != nil {
		if h, ok := b.Conn.(*heldConn); ok {
			h.done()
		}
	}
}

// firstBytes is the connector's TCP connection to the edge: it keeps the
// first bytes the edge sent, to tell its refusal from other failures.
type firstBytes struct {
	net.Conn
	seen []byte // the first len(busyStatus) bytes read, or fewer
}

// busyStatus is how busyAnswer begins.
const busyStatus = "HTTP/1.1 503 "

func (c *firstBytes) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if k := min(n, len(busyStatus)-len(c.seen)); k > 0 {
		c.seen = append(c.seen, p[:k]...)
	}
	return n, err
}

// refusedNow reports whether a TLS client handshake failed on the edge's
// busyAnswer: a first record that is not TLS but an HTTP 503.
func (c *firstBytes) refusedNow(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) && string(c.seen) == busyStatus
}
