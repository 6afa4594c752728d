package tunnelws

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// batchConn sits under TLS and turns the connection's writes into few
// large syscalls. TLS writes each record (16 KiB at most) with its own
// syscall, and the WebSocket library flushes every 4 KiB when it masks a
// client's frames, so a 32 KiB yamux frame from the connector would cost
// eight writes; and under load, yamux's one writing goroutine would wait
// in a syscall for every frame of every stream.
//
// While the wire holds it (one yamux write), writes are queued. When it is
// released, a flusher goroutine writes the queue in one syscall, and while
// that write is in the kernel the next frames queue behind it: under load
// each syscall carries many frames (a group commit), and yamux never waits
// for the socket unless the queue is full (maxBatch). A write made while
// nothing is queued or in flight goes straight to the socket. Every byte
// goes out in the order it was written: TLS records are numbered, so one
// overtaking another would break the connection.
type batchConn struct {
	net.Conn
	mu      sync.Mutex
	drained sync.Cond // L is &mu; broadcast when the flusher finishes a write
	held    bool
	queue   *[]byte // bytes for the socket, in order (a pooled buffer); nil when empty
	busy    bool    // the flusher is in a write
	err     error   // the first failed write; every later Write returns it
	kick    chan struct{}
	running bool // the flusher goroutine runs (until Close)
	closed  bool

	// Reading (one reader at a time, as TLS reads): see Read.
	rc    syscall.RawConn // nil: reads go straight to Conn
	rbuf  *[]byte         // a pooled read-ahead buffer while it holds rdata
	rdata []byte          // read from the socket, not yet returned
}

// maxBatch is how much may be queued before a writer waits for the socket:
// enough that a bulk transfer's next frames queue while the last batch is
// in the kernel.
const maxBatch = 512 << 10

// closeFlushTimeout bounds how long Close waits to write what is queued.
const closeFlushTimeout = time.Second

// Queue buffers come small (most batches are a few frames) and are swapped
// for a large one when a batch outgrows them; only a connection moving
// bulk holds a large one, and only while it has something queued.
const (
	smallBatch = 32 << 10
	largeBatch = maxBatch + 64<<10 // a record or two past maxBatch
)

var (
	smallBatchBufs = sync.Pool{New: func() any { b := make([]byte, 0, smallBatch); return &b }}
	largeBatchBufs = sync.Pool{New: func() any { b := make([]byte, 0, largeBatch); return &b }}
)

// putBatchBuf returns a queue buffer to its pool; one that grew past the
// large size is left to the GC.
func putBatchBuf(b *[]byte) {
	*b = (*b)[:0]
	switch cap(*b) {
	case smallBatch:
		smallBatchBufs.Put(b)
	case largeBatch:
		largeBatchBufs.Put(b)
	}
}

// appendLocked queues p.
func (b *batchConn) appendLocked(p []byte) {
	if b.queue == nil {
		b.queue = smallBatchBufs.Get().(*[]byte)
	}
	if q := *b.queue; len(q)+len(p) > cap(q) && cap(q) < largeBatch {
		big := largeBatchBufs.Get().(*[]byte)
		*big = append(*big, q...)
		putBatchBuf(b.queue)
		b.queue = big
	}
	*b.queue = append(*b.queue, p...)
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c}
	b.drained.L = &b.mu
	b.readSocket(c)
	return b
}

// readSocket has Read take bytes straight from c's socket, if c has one,
// rather than through Conn. Call it before the first Read or between
// reads (Dial does, after the handshake that went through Conn).
func (b *batchConn) readSocket(c net.Conn) {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			b.rc = rc
		}
	}
}

// readAhead is the size of a read-ahead buffer: what one read syscall may
// take off the socket.
const readAhead = 256 << 10

var readAheadBufs = sync.Pool{New: func() any { b := make([]byte, readAhead); return &b }}

// Read reads what the socket holds, up to readAhead bytes, in one syscall
// and hands it out to the reads that follow. TLS reads the connection a
// record at a time (16 KiB at most, often less), each read a syscall; a
// bulk transfer queues far more than that in the socket, which one read
// takes at once. The buffer comes from a pool only when the socket has
// data, and goes back as soon as it is handed out: a connection waiting
// for its peer holds none, however long it waits.
func (b *batchConn) Read(p []byte) (int, error) {
	if b.rc == nil || len(p) >= readAhead {
		return b.Conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(b.rdata) == 0 {
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.rdata)
	b.rdata = b.rdata[n:]
	if len(b.rdata) == 0 {
		readAheadBufs.Put(b.rbuf)
		b.rbuf, b.rdata = nil, nil
	}
	return n, nil
}

// fill reads what the socket holds into a read-ahead buffer, waiting
// (without one) until it holds something. It returns io.EOF at the end of
// the stream, and errors as net.Conn.Read does.
func (b *batchConn) fill() error {
	var n int
	var errno error
	err := b.rc.Read(func(fd uintptr) bool {
		bp := readAheadBufs.Get().(*[]byte)
		for {
			n, errno = syscall.Read(int(fd), *bp)
			if errno != syscall.EINTR {
				break
			}
		}
		if errno == syscall.EAGAIN {
			readAheadBufs.Put(bp) // wait for data without a buffer
			return false
		}
		if errno != nil || n <= 0 {
			readAheadBufs.Put(bp)
			return true
		}
		b.rbuf, b.rdata = bp, (*bp)[:n]
		return true
	})
	if err == nil && errno != nil {
		err = os.NewSyscallError("read", errno)
	}
	if err != nil {
		return &net.OpError{Op: "read", Net: "tcp", Source: b.LocalAddr(), Addr: b.RemoteAddr(), Err: err}
	}
	if n <= 0 {
		return io.EOF
	}
	return nil
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, net.ErrClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	if !b.held && !b.busy && b.queue == nil {
		// Nothing queued or in flight: straight out, without the lock
		// (Close must not wait for a write stuck in the kernel).
		return b.writeOut(p)
	}
	for b.queue != nil && len(*b.queue) >= maxBatch && b.err == nil && !b.closed {
		b.kickLocked()
		b.drained.Wait()
	}
	if b.closed {
		return 0, net.ErrClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	b.appendLocked(p)
	if !b.held {
		b.kickLocked()
	}
	return len(p), nil
}

// writeOut writes p to the socket as the one write in flight. The caller
// holds mu, with nothing in flight; mu is released during the write.
func (b *batchConn) writeOut(p []byte) (int, error) {
	b.busy = true
	b.mu.Unlock()
	n, err := b.Conn.Write(p)
	b.mu.Lock()
	b.busy = false
	if err != nil && b.err == nil {
		b.err = err
	}
	if b.queue != nil && !b.held {
		b.kickLocked() // queued behind this write
	}
	b.drained.Broadcast()
	return n, err
}

// hold starts queueing writes.
func (b *batchConn) hold() {
	b.mu.Lock()
	b.held = true
	b.mu.Unlock()
}

// release hands what was queued to the flusher and stops queueing. It
// returns the error of an earlier write, if one failed.
func (b *batchConn) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = false
	if b.queue != nil {
		b.kickLocked()
	}
	return b.err
}

// kickLocked wakes the flusher, starting it the first time.
func (b *batchConn) kickLocked() {
	if b.closed {
		return
	}
	if !b.running {
		b.running = true
		b.kick = make(chan struct{}, 1)
		go b.flush(b.kick)
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// flush writes the queue whenever kicked, until kick is closed.
func (b *batchConn) flush(kick chan struct{}) {
	for range kick {
		b.mu.Lock()
		for b.queue != nil && b.err == nil && !b.closed {
			if b.busy { // a direct write is in flight: the queue goes after it
				b.drained.Wait()
				continue
			}
			buf := b.queue
			b.queue = nil
			b.writeOut(*buf)
			putBatchBuf(buf)
		}
		b.mu.Unlock()
	}
}

// Close writes what is queued (TLS's close_notify among it), giving up
// after closeFlushTimeout, stops the flusher and closes the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return net.ErrClosed
	}
	if (b.queue != nil || b.busy) && b.err == nil {
		b.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		for (b.queue != nil || b.busy) && b.err == nil {
			b.kickLocked()
			b.drained.Wait()
		}
	}
	b.closed = true
	if b.running {
		close(b.kick)
	}
	if b.queue != nil { // not written: the socket failed or timed out
		putBatchBuf(b.queue)
		b.queue = nil
	}
	b.drained.Broadcast()
	b.mu.Unlock()
	return b.Conn.Close()
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
	return newBatchConn(c), nil
}
