package carrier

import (
	"errors"
	"io"
	"net"

	"github.com/adit-dev/adit/tunnel"
)

// Pipe copies a to b and b to a until both directions have ended, then
// closes both. The clean end of one side's reads (io.EOF) is passed on as a
// half-close of the other side (its CloseWrite, if it has one), so each
// direction ends on its own, as TCP allows. An error in either direction
// aborts both sides (with their Abort method if they have one; a
// *net.TCPConn is reset) and is returned; a clean run returns nil.
func Pipe(a, b io.ReadWriteCloser) error {
	errc := make(chan error, 2)
	go func() { errc <- copyHalf(b, a) }()
	go func() { errc <- copyHalf(a, b) }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			// Unblock the other direction.
			Abort(a)
			Abort(b)
		}
	}
	if first == nil {
		a.Close()
		b.Close()
	}
	return first
}

// copyHalf copies src to dst, then half-closes dst.
func copyHalf(dst io.Writer, src io.Reader) error {
	if _, err := tunnel.Copy(dst, src); err != nil { // a small pooled buffer per direction
		return err
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return nil
}

// Abort ends c so that its peer sees an error rather than a clean end: it
// calls c's Abort method if it has one, resets a *net.TCPConn, and else
// closes c.
func Abort(c io.Closer) {
	switch c := c.(type) {
	case interface{ Abort() error }:
		c.Abort()
	case *net.TCPConn:
		c.SetLinger(0)
		c.Close()
	default:
		c.Close()
	}
}
