package tunnelws

import (
	"crypto/tls"
	"net"
	"sync"
)

// batchConn sits under TLS and, while held, gathers what TLS writes into
// one buffer, written with one syscall when released (or when it reaches
// maxBatch). TLS writes each record with its own syscall, and the WebSocket
// library flushes every 4 KiB when it masks a client's frames, so without
// it a 32 KiB yamux frame from the connector costs eight writes.
type batchConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  *[]byte // from batchBufs while held and not empty
	err  error   // a failed batched write, returned by the next Write or release
}

// maxBatch is the most bytes a batch gathers before it is written.
const maxBatch = 128 << 10

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch); return &b }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if !b.held {
		return b.Conn.Write(p)
	}
	if b.buf != nil && len(*b.buf)+len(p) > maxBatch {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) >= maxBatch {
		return b.Conn.Write(p)
	}
	if b.buf == nil {
		b.buf = batchBufs.Get().(*[]byte)
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// hold starts gathering writes.
func (b *batchConn) hold() {
	b.mu.Lock()
	b.held = true
	b.mu.Unlock()
}

// release writes what was gathered and stops gathering.
func (b *batchConn) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = false
	return b.flushLocked()
}

// flushLocked writes the buffer and returns it to the pool.
func (b *batchConn) flushLocked() error {
	if b.buf == nil {
		return b.err
	}
	if b.err == nil && len(*b.buf) > 0 {
		_, b.err = b.Conn.Write(*b.buf)
	}
	*b.buf = (*b.buf)[:0]
	batchBufs.Put(b.buf)
	b.buf = nil
	return b.err
}

// batchOf returns the batchConn under a TLS connection, or nil.
func batchOf(c net.Conn) *batchConn {
	if tc, ok := c.(*tls.Conn); ok {
		b, _ := tc.NetConn().(*batchConn)
		return b
	}
	return nil
}

// batchListener wraps each accepted connection in a batchConn.
type batchListener struct{ net.Listener }

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &batchConn{Conn: c}, nil
}
