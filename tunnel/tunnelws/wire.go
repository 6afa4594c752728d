package tunnelws

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The yamux frame header (yamux spec.md): version, type, flags, stream ID,
// length, big endian. A data frame's length is its payload's; every other
// frame is the header alone.
const (
	hdrSize = 12

	typeData         uint8 = 0
	typeWindowUpdate uint8 = 1

	flagSYN uint16 = 1 << 0
	flagACK uint16 = 1 << 1
	flagFIN uint16 = 1 << 2
	flagRST uint16 = 1 << 3
	// flagStop is adit's extension on a window update: the sender reads no
	// more of the stream; the receiver fails its writes. yamux ignores it.
	flagStop uint16 = 1 << 15
)

type hdr [hdrSize]byte

func newHdr(typ uint8, flags uint16, id, length uint32) hdr {
	var h hdr
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

func (h *hdr) typ() uint8       { return h[1] }
func (h *hdr) flags() uint16    { return binary.BigEndian.Uint16(h[2:4]) }
func (h *hdr) streamID() uint32 { return binary.BigEndian.Uint32(h[4:8]) }
func (h *hdr) length() uint32   { return binary.BigEndian.Uint32(h[8:12]) }

// bodyLen is how many payload bytes follow the header on the wire.
func (h *hdr) bodyLen() uint32 {
	if h.typ() == typeData {
		return h.length()
	}
	return 0
}

// isStreamFrame says whether the frame concerns a stream (its flags are
// stream flags), as opposed to a ping or go-away.
func (h *hdr) isStreamFrame() bool {
	return h.typ() == typeData || h.typ() == typeWindowUpdate
}

// pieceSize bounds one piece of a frame handed from the reading goroutine to
// yamux.
const pieceSize = 32 << 10

var piecePool = sync.Pool{New: func() any { b := make([]byte, pieceSize); return &b }}

// piece is a run of bytes within one frame.
type piece struct {
	buf *[]byte // from piecePool, or nil
	b   []byte
	end bool // b ends a frame
}

func (p piece) release() {
	if p.buf != nil {
		piecePool.Put(p.buf)
	}
}

// splitFrames reads yamux frames from r and hands them to emit in pieces of
// at most pieceSize bytes, none spanning two frames: the header with the
// start of the body, then the rest of the body. onHeader sees each header
// before its first piece is emitted: if it says not to keep the frame, the
// frame is read and dropped; if it returns an error, splitFrames returns
// it. It returns r's error, or net.ErrClosed once emit returns false. While
// it waits for a header it holds no pooled buffer: that is what an idle
// connection's reading goroutine costs.
func splitFrames(r io.Reader, onHeader func(hdr) (keep bool, err error), emit func(piece) bool) error {
	hb := make([]byte, hdrSize) // made once: a header read into a local array would escape
	for {
		if _, err := io.ReadFull(r, hb); err != nil {
			return err
		}
		h := hdr(hb)
		keep, err := onHeader(h)
		if err != nil {
			return err
		}
		left := h.bodyLen()
		if !keep {
			if left == 0 {
				continue
			}
			bp := piecePool.Get().(*[]byte)
			buf := *bp
			for left > 0 {
				n := min(left, uint32(len(buf)))
				if _, err := io.ReadFull(r, buf[:n]); err != nil {
					piecePool.Put(bp)
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return err
				}
				left -= n
			}
			piecePool.Put(bp)
			continue
		}
		bp := piecePool.Get().(*[]byte)
		buf := *bp
		copy(buf, h[:])
		start := hdrSize
		for {
			n := start + int(min(left, uint32(len(buf)-start)))
			if _, err := io.ReadFull(r, buf[start:n]); err != nil {
				piecePool.Put(bp)
				if err == io.EOF {
					err = io.ErrUnexpectedEOF // the stream ended in a frame
				}
				return err
			}
			left -= uint32(n - start)
			if !emit(piece{buf: bp, b: buf[:n], end: left == 0}) {
				piecePool.Put(bp)
				return net.ErrClosed
			}
			if left == 0 {
				break
			}
			bp = piecePool.Get().(*[]byte)
			buf = *bp
			start = 0
		}
	}
}

// msgReader reads the binary messages of a WebSocket as one byte stream.
type msgReader struct {
	ws *websocket.Conn
	r  io.Reader // the current message
}

// errProtocol marks the peer breaking the protocol: the connection is
// closed with code 1 (protocol).
var errProtocol = errors.New("tunnelws: protocol error")

var errTextMessage = fmt.Errorf("%w: text message on the tunnel", errProtocol)

func (m *msgReader) Read(p []byte) (int, error) {
	for {
		if m.r == nil {
			typ, r, err := m.ws.Reader(context.Background())
			if err != nil {
				return 0, err
			}
			if typ != websocket.MessageBinary {
				return 0, errTextMessage
			}
			m.r = r
		}
		n, err := m.r.Read(p)
		if err == io.EOF {
			m.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// closeTimeout bounds the WebSocket close handshake with a live peer:
// after it the TCP connection is cut.
const closeTimeout = 2 * time.Second

// wireHooks is what the wire tells the connection.
type wireHooks interface {
	// frameIn sees each header from the peer before yamux does, and says
	// whether yamux gets the frame; an error ends the connection.
	frameIn(h hdr) (keep bool, err error)
	// frameOut sees each header yamux sends before it is written.
	frameOut(h hdr)
	// wireFailed reports the first read or write error.
	wireFailed(err error, read bool)
	// closeStatus is the close frame to send when the wire closes, and
	// how long to wait for the peer's answer before cutting TCP.
	closeStatus() (code websocket.StatusCode, reason string, wait time.Duration)
}

// wire is the io.ReadWriteCloser yamux runs on: yamux's bytes in binary
// WebSocket messages, one frame per message. It tracks frame boundaries in
// both directions so that frames yamux cannot send itself (RST, STOP) go to
// the peer, and RST to the local session, between yamux's own frames: a
// frame for the peer ends the message of the frame before it, or goes alone
// when yamux is idle.
type wire struct {
	ws    *websocket.Conn
	out   messages   // ws, but for tests
	raw   net.Conn   // under ws; closed to cut a stuck close handshake
	batch *batchConn // under raw's TLS: gathers one Write's records, or nil
	hooks wireHooks

	// Reading: a goroutine splits frames off the WebSocket into pieces.
	pieces   chan piece
	received atomic.Uint64 // pieces read so far: proof of life
	rerr     error         // why pieces was closed
	cur      piece         // owned by yamux's reading goroutine, like off and mid
	off      int
	mid      bool // the last piece handed to yamux did not end its frame
	stop     chan struct{}
	pumpDone chan struct{}
	injDone  chan struct{}

	qmu       sync.Mutex
	toLocal   []hdr // for yamux, at the next incoming frame boundary
	toPeer    []hdr // for the peer, at the next outgoing frame boundary
	localWake chan struct{}
	peerWake  chan struct{}

	// Writing: yamux writes a header, then a data frame's body.
	wmu      sync.Mutex
	whdr     hdr
	whdrN    int
	bodyLeft uint32
	mw       io.WriteCloser // the message of the frame being written
	werr     error

	closeOnce sync.Once
}

// messages takes the wire's outgoing binary messages.
type messages interface {
	Writer(ctx context.Context, typ websocket.MessageType) (io.WriteCloser, error)
	Write(ctx context.Context, typ websocket.MessageType, p []byte) error
}

func newWire(ws *websocket.Conn, raw net.Conn, hooks wireHooks) *wire {
	w := &wire{
		ws:        ws,
		out:       ws,
		raw:       raw,
		batch:     batchOf(raw),
		hooks:     hooks,
		pieces:    make(chan piece, 4),
		stop:      make(chan struct{}),
		pumpDone:  make(chan struct{}),
		injDone:   make(chan struct{}),
		localWake: make(chan struct{}, 1),
		peerWake:  make(chan struct{}, 1),
	}
	go w.pump()
	go w.injector()
	return w
}

func (w *wire) pump() {
	defer close(w.pumpDone)
	err := splitFrames(&msgReader{ws: w.ws}, w.hooks.frameIn, func(p piece) bool {
		w.received.Add(1)
		select {
		case w.pieces <- p:
			return true
		case <-w.stop:
			return false
		}
	})
	w.hooks.wireFailed(err, true)
	w.rerr = err
	close(w.pieces)
}

// Read gives yamux the peer's bytes, with local frames put in between
// frames.
func (w *wire) Read(p []byte) (int, error) {
	for w.cur.b == nil {
		if w.mid {
			pc, ok := <-w.pieces
			if !ok {
				return 0, w.rerr
			}
			w.cur = pc
			break
		}
		if h, ok := pop(&w.qmu, &w.toLocal); ok {
			w.cur = piece{b: h[:], end: true}
			break
		}
		select {
		case pc, ok := <-w.pieces:
			if !ok {
				return 0, w.rerr
			}
			w.cur = pc
		case <-w.localWake:
		}
	}
	n := copy(p, w.cur.b[w.off:])
	w.off += n
	if w.off == len(w.cur.b) {
		w.mid = !w.cur.end
		w.cur.release()
		w.cur, w.off = piece{}, 0
	}
	return n, nil
}

func pop(mu *sync.Mutex, q *[]hdr) (hdr, bool) {
	mu.Lock()
	defer mu.Unlock()
	if len(*q) == 0 {
		return hdr{}, false
	}
	h := (*q)[0]
	*q = (*q)[1:]
	if len(*q) == 0 {
		*q = nil
	}
	return h, true
}

// toLocalSession queues a frame for the local yamux session.
func (w *wire) toLocalSession(h hdr) {
	w.qmu.Lock()
	w.toLocal = append(w.toLocal, h)
	w.qmu.Unlock()
	notify(w.localWake)
}

// toPeerLen is the number of frames queued for the peer.
func (w *wire) toPeerLen() int {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return len(w.toPeer)
}

// toPeerSession queues a frame for the peer.
func (w *wire) toPeerSession(h hdr) {
	w.qmu.Lock()
	w.toPeer = append(w.toPeer, h)
	w.qmu.Unlock()
	notify(w.peerWake)
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Write takes yamux's frames and sends each as one binary message. What
// one call sends reaches the socket in one write where it can.
func (w *wire) Write(p []byte) (n int, err error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.werr != nil {
		return 0, w.werr
	}
	if w.batch != nil {
		w.batch.hold()
		defer func() {
			if rerr := w.batch.release(); rerr != nil && err == nil {
				n, err = 0, w.failWrite(rerr)
			}
		}()
	}
	return w.write(p)
}

func (w *wire) write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.bodyLeft == 0 {
			k := copy(w.whdr[w.whdrN:], p)
			w.whdrN += k
			p = p[k:]
			if w.whdrN < hdrSize {
				break
			}
			w.whdrN = 0
			w.hooks.frameOut(w.whdr)
			if body := w.whdr.bodyLen(); body > 0 {
				mw, err := w.out.Writer(context.Background(), websocket.MessageBinary)
				if err == nil {
					_, err = mw.Write(w.whdr[:])
				}
				if err != nil {
					return 0, w.failWrite(err)
				}
				w.mw, w.bodyLeft = mw, body
				continue
			}
			if err := w.writeMessage(w.whdr[:]); err != nil {
				return 0, w.failWrite(err)
			}
			continue
		}
		k := min(uint32(len(p)), w.bodyLeft)
		if _, err := w.mw.Write(p[:k]); err != nil {
			return 0, w.failWrite(err)
		}
		p = p[k:]
		w.bodyLeft -= k
		if w.bodyLeft == 0 {
			var err error
			if q := w.takeToPeer(nil); len(q) > 0 {
				_, err = w.mw.Write(q)
			}
			if err == nil {
				err = w.mw.Close()
			}
			w.mw = nil
			if err != nil {
				return 0, w.failWrite(err)
			}
		}
	}
	return n, nil
}

// writeMessage sends frame (if any) and the frames queued for the peer as
// one message. The caller holds wmu, at a frame boundary.
func (w *wire) writeMessage(frame []byte) error {
	if q := w.takeToPeer(frame); q != nil {
		frame = q
	}
	if len(frame) == 0 {
		return nil
	}
	return w.out.Write(context.Background(), websocket.MessageBinary, frame)
}

// takeToPeer empties the queue of frames for the peer: it returns them
// after prefix, or nil if there are none.
func (w *wire) takeToPeer(prefix []byte) []byte {
	w.qmu.Lock()
	q := w.toPeer
	w.toPeer = nil
	w.qmu.Unlock()
	if len(q) == 0 {
		return nil
	}
	b := make([]byte, 0, len(prefix)+len(q)*hdrSize)
	b = append(b, prefix...)
	for _, h := range q {
		b = append(b, h[:]...)
	}
	return b
}

func (w *wire) failWrite(err error) error {
	w.werr = err
	w.hooks.wireFailed(err, false)
	return err
}

// injector sends frames queued for the peer while yamux is not writing.
func (w *wire) injector() {
	defer close(w.injDone)
	for {
		select {
		case <-w.stop:
			return
		case <-w.peerWake:
		}
		w.wmu.Lock()
		if w.werr == nil && w.whdrN == 0 && w.bodyLeft == 0 {
			if err := w.writeMessage(nil); err != nil {
				w.failWrite(err)
			}
		}
		w.wmu.Unlock()
	}
}

// Close sends the close frame, waits a while for the peer's, cuts the TCP
// connection and waits for the wire's goroutines. yamux calls it when its
// session closes.
func (w *wire) Close() error {
	w.closeOnce.Do(func() {
		code, reason, wait := w.hooks.closeStatus()
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.ws.Close(code, reason)
		}()
		t := time.NewTimer(wait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
		close(w.stop)
		w.raw.Close()
		<-done
		<-w.pumpDone
		<-w.injDone
	})
	return nil
}
