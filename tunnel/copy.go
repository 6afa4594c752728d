package tunnel

import (
	"io"
	"sync"
)

// pipeBufSize is the buffer of one direction of a long-lived pipe
// (WebSocket, TCP): small, since an idle connection holds it while it waits
// in Read, and there may be tens of thousands of them.
const pipeBufSize = 8 << 10

var pipeBufPool = sync.Pool{New: func() any {
	b := make([]byte, pipeBufSize)
	return &b
}}

// Copy copies src to dst like io.Copy, but with a pooled 8 KiB buffer
// instead of a fresh 32 KiB one, and writing each read at once (no
// batching), as interactive pipes need. It never uses ReaderFrom or
// WriterTo, so it is safe inside their implementations.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	bp := pipeBufPool.Get().(*[]byte)
	defer pipeBufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
