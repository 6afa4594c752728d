package tunnelws

import (
	"io"
	"net"
	"sync"
	"testing"
)

// stallingRelay forwards one TCP connection to a target until stall is
// called; then it forwards nothing more but keeps both connections open,
// like a peer that froze.
type stallingRelay struct {
	ln      net.Listener
	stalled chan struct{}
	once    sync.Once
	mu      sync.Mutex
	closed  bool
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newStallingRelay(t *testing.T, target string) *stallingRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &stallingRelay{ln: ln, stalled: make(chan struct{})}
	t.Cleanup(r.close)
	r.wg.Go(func() {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closed {
			in.Close()
			out.Close()
			return
		}
		r.conns = append(r.conns, in, out)
		r.wg.Go(func() { r.pipe(out, in) })
		r.wg.Go(func() { r.pipe(in, out) })
	})
	return r
}

func (r *stallingRelay) addr() string { return r.ln.Addr().String() }

func (r *stallingRelay) stall() {
	select {
	case <-r.stalled:
	default:
		close(r.stalled)
	}
}

// pipe copies src to dst until the relay stalls; then it reads and drops.
func (r *stallingRelay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-r.stalled:
			default:
				dst.Write(buf[:n])
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

func (r *stallingRelay) close() {
	r.once.Do(func() {
		r.ln.Close()
		r.mu.Lock()
		r.closed = true
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
}
