package tunnel

import (
	"io"
	"net"
	"sync"
)

// A long-lived pipe (WebSocket, TCP) spends most of its life blocked in
// Read, and there may be tens of thousands of them, so what a direction
// holds while it waits is what an idle connection costs. Copy waits with a
// small buffer of its own and takes a pooled larger one only while data
// keeps coming:
//
//   - a read that fills the small buffer means more is queued: the next
//     reads use a pooled copyBufSize buffer;
//   - a read that does not fill the pooled buffer means the source is
//     drained for now: the buffer goes back to the pool and the next read,
//     which may block for minutes, uses the small one again.
//
// A message that fits the small buffer (a chat line, a keystroke, a
// WebSocket ping) never touches the pool. Reading a *net.TCPConn, the small
// buffer is not even on the heap (copyTCP).
const (
	copySmallSize = 512
	copyBufSize   = 8 << 10
)

var copyBufPool = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

// Copy copies src to dst like io.Copy, but holding only a 512-byte buffer
// while it waits for src (a pooled 8 KiB one while data streams, see
// above), and writing each read at once (no batching), as interactive
// pipes need. It never uses ReaderFrom or WriterTo, so it is safe inside
// their implementations.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	if tc, ok := src.(*net.TCPConn); ok {
		return copyTCP(dst, tc)
	}
	small := make([]byte, copySmallSize)
	buf := small
	var pooled *[]byte
	defer func() {
		if pooled != nil {
			copyBufPool.Put(pooled)
		}
	}()
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := writeFull(dst, buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
		switch {
		case pooled == nil && nr == len(small):
			pooled = copyBufPool.Get().(*[]byte)
			buf = *pooled
		case pooled != nil && nr < len(buf):
			copyBufPool.Put(pooled)
			pooled = nil
			buf = small
		}
	}
}

// copyTCP is Copy from a TCP connection, whose small buffer is an array on
// the goroutine's stack rather than on the heap: the Read of a concrete
// *net.TCPConn keeps nothing of its argument, so the compiler leaves the
// array where it is, in stack space the waiting goroutine has anyway. What
// is read into it is written from a pooled buffer, since an io.Writer may
// keep what it is given. An idle TCP source then costs no heap at all.
func copyTCP(dst io.Writer, src *net.TCPConn) (int64, error) {
	var small [copySmallSize]byte
	var pooled *[]byte // non-nil while data streams: read into it directly
	defer func() {
		if pooled != nil {
			copyBufPool.Put(pooled)
		}
	}()
	var n int64
	for {
		var nr int
		var rerr error
		fromSmall := pooled == nil
		if fromSmall {
			nr, rerr = src.Read(small[:])
		} else {
			nr, rerr = src.Read(*pooled)
		}
		if nr > 0 {
			if fromSmall {
				pooled = copyBufPool.Get().(*[]byte)
				copy(*pooled, small[:nr])
			}
			nw, werr := writeFull(dst, (*pooled)[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
		// As in Copy: keep the pooled buffer only after a read that
		// filled the buffer it was given.
		if pooled != nil && (fromSmall && nr < len(small) || !fromSmall && nr < len(*pooled)) {
			copyBufPool.Put(pooled)
			pooled = nil
		}
	}
}

// WriteFull writes all of p to w (nothing when p is empty), turning a short
// write without an error into io.ErrShortWrite.
func WriteFull(w io.Writer, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	_, err := writeFull(w, p)
	return err
}

func writeFull(w io.Writer, p []byte) (int, error) {
	n, err := w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}
