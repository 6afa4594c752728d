package tunnel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// maxDataFrame is the largest data frame a BodyWriter emits. Larger writes
// are split.
const maxDataFrame = 256 << 10

// BodyWriter writes an HTTP body as data frames. Each Write becomes frames
// at once, with no buffering, so streamed responses (SSE) arrive as sent.
// Finish the body with Close or CloseWithTrailers.
type BodyWriter struct {
	w   io.Writer
	hdr [1 + binary.MaxVarintLen32]byte
}

// NewBodyWriter returns a BodyWriter that writes frames to w.
func NewBodyWriter(w io.Writer) *BodyWriter { return &BodyWriter{w: w} }

// Write sends p as one or more data frames. A small write goes to the
// stream as a single write (one packet or multiplexer frame, which matters
// for SSE events); a large one is split into frames of maxDataFrame.
func (bw *BodyWriter) Write(p []byte) (int, error) {
	const room = 1 + binary.MaxVarintLen32
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) <= smallWrite {
		var buf [room + smallWrite]byte
		h := AppendFrameHeader(buf[:0], FrameData, len(p))
		n := copy(buf[len(h):], p)
		if _, err := bw.w.Write(buf[:len(h)+n]); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxDataFrame)]
		h := AppendFrameHeader(bw.hdr[:0], FrameData, len(chunk))
		if _, err := bw.w.Write(h); err != nil {
			return written, err
		}
		n, err := bw.w.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[len(chunk):]
	}
	return written, nil
}

// smallWrite is the largest write that BodyWriter.Write copies to send
// header and payload in one write.
const smallWrite = 4 << 10

// ReadFrom copies r into data frames from pooled buffers, so io.Copy to a
// BodyWriter neither allocates nor waits to fill a buffer before sending.
// Like Copy, it waits for r with a small buffer (a streamed body such as
// SSE may sit idle for hours) and moves to a large one while a bulk body
// flows (see useLarge), so a bulk body goes out in large frames.
func (bw *BodyWriter) ReadFrom(r io.Reader) (int64, error) {
	const room = 1 + binary.MaxVarintLen32
	bp := smallBodyBufs.Get().(*[]byte)
	large := false
	defer func() { bodyBufPool(large).Put(bp) }()
	var total int64
	for {
		buf := *bp
		n, err := r.Read(buf[room:])
		if n > 0 {
			// Build header and payload in one buffer: one write per frame.
			h := AppendFrameHeader(bw.hdr[:0], FrameData, n)
			start := room - len(h)
			copy(buf[start:], h)
			if _, werr := bw.w.Write(buf[start : room+n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if next := useLarge(large, n); next != large {
			bodyBufPool(large).Put(bp)
			large = next
			bp = bodyBufPool(large).Get().(*[]byte)
		}
	}
}

// CopyBody copies src to dst with ReadFrom's buffers and its way of
// choosing between them (useLarge): it waits for src with the small one
// and moves to the large one while a bulk body flows. Each read is written
// at once. Unlike io.Copy it says which side failed: readErr is
// src's error (nil at io.EOF), writeErr dst's.
func CopyBody(dst io.Writer, src io.Reader) (n int64, readErr, writeErr error) {
	bp := smallBodyBufs.Get().(*[]byte)
	large := false
	defer func() { bodyBufPool(large).Put(bp) }()
	for {
		buf := (*bp)[1+binary.MaxVarintLen32:] // the room ReadFrom keeps for a header
		nr, rerr := src.Read(buf)
		if nr > 0 {
			if werr := WriteFull(dst, buf[:nr]); werr != nil {
				return n, nil, werr
			}
			n += int64(nr)
		}
		if rerr == io.EOF {
			return n, nil, nil
		}
		if rerr != nil {
			return n, rerr, nil
		}
		if next := useLarge(large, nr); next != large {
			bodyBufPool(large).Put(bp)
			large = next
			bp = bodyBufPool(large).Get().(*[]byte)
		}
	}
}

// The buffers of ReadFrom and CopyBody, with room for a frame header
// before the payload: a small one to wait with, a large one for bulk.
const (
	smallBodyBuf = 4 << 10
	largeBodyBuf = 128 << 10
)

var (
	smallBodyBufs = sync.Pool{New: func() any { b := make([]byte, 1+binary.MaxVarintLen32+smallBodyBuf); return &b }}
	largeBodyBufs = sync.Pool{New: func() any { b := make([]byte, 1+binary.MaxVarintLen32+largeBodyBuf); return &b }}
)

// useLarge says whether the read after one of n bytes uses the large
// buffer (large: the one just read used it). A read that fills the small
// buffer means more is queued: move to the large one. There, only a read
// that the small buffer would have held moves back (a trickle, or the end
// of a burst before a pause). A read that returns part of the large buffer
// keeps it: a bulk source rarely has 128 KiB ready at once (a QUIC or
// yamux stream gives what has arrived so far, often 8 to 64 KiB), and
// each read is one write downstream, so moving back after each would cut
// a bulk body into 4 KiB writes, a syscall or a frame each. The large
// buffer may then be held through a pause after a burst larger than the
// small one, until the next read.
func useLarge(large bool, n int) bool {
	if !large {
		return n >= smallBodyBuf
	}
	return n > smallBodyBuf
}

func bodyBufPool(large bool) *sync.Pool {
	if large {
		return &largeBodyBufs
	}
	return &smallBodyBufs
}

// Close ends the body without trailers.
func (bw *BodyWriter) Close() error {
	_, err := bw.w.Write(AppendEnd(bw.hdr[:0]))
	return err
}

// CloseWithTrailers ends the body with trailer fields. An empty trailer
// ends it like Close.
func (bw *BodyWriter) CloseWithTrailers(trailer http.Header) error {
	if len(trailer) == 0 {
		return bw.Close()
	}
	return WriteMessage(bw.w, &Trailers{Header: trailer})
}

// ErrBodyTruncated reports a body whose stream ended before its end frame:
// the peer or the path failed mid-body.
var ErrBodyTruncated = errors.New("tunnel: body ended before its end frame")

// BodyReader reads an HTTP body from data frames. It returns io.EOF after
// an end or trailers frame; trailers are merged into Trailer, which may be the
// Trailer map of an http.Request or http.Response.
type BodyReader struct {
	r       *bufio.Reader
	left    int // payload bytes left in the current data frame
	done    bool
	err     error
	Trailer http.Header
	// OnClose, if set, is called once by Close.
	OnClose func() error
	closed  sync.Once
}

// NewBodyReader returns a BodyReader reading frames from r. Trailers are
// stored in trailer (which may be nil: then a new map is made).
func NewBodyReader(r *bufio.Reader, trailer http.Header) *BodyReader {
	return &BodyReader{r: r, Trailer: trailer}
}

// Read reads body bytes.
func (br *BodyReader) Read(p []byte) (int, error) {
	if br.err != nil {
		return 0, br.err
	}
	for br.left == 0 {
		if err := br.next(); err != nil {
			br.err = err
			return 0, err
		}
	}
	if len(p) > br.left {
		p = p[:br.left]
	}
	n, err := br.r.Read(p)
	br.left -= n
	if err != nil {
		if err == io.EOF {
			err = ErrBodyTruncated
		}
		br.err = err
	}
	return n, err
}

func (br *BodyReader) next() error {
	t, n, err := ReadFrameHeader(br.r)
	if err != nil {
		return truncated(err)
	}
	switch t {
	case FrameData:
		br.left = n
		return nil
	case FrameEnd:
		if _, err := br.r.Discard(n); err != nil {
			return truncated(err)
		}
		br.done = true
		return io.EOF
	case FrameTrailers:
		p := make([]byte, n)
		if _, err := io.ReadFull(br.r, p); err != nil {
			return truncated(err)
		}
		var tr Trailers
		if err := tr.decode(p); err != nil {
			return err
		}
		if br.Trailer == nil {
			br.Trailer = make(http.Header, len(tr.Header))
		}
		for k, v := range tr.Header {
			br.Trailer[k] = v
		}
		br.done = true
		return io.EOF
	}
	return fmt.Errorf("tunnel: unexpected %s frame in a body", t)
}

// truncated turns the end of the stream inside a body, even in the middle of
// a frame header, into ErrBodyTruncated; other errors (a reset stream, a
// frame too large) pass through.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrBodyTruncated
	}
	return err
}

// Done reports whether the body was read to its end frame.
func (br *BodyReader) Done() bool { return br.done }

// Close calls OnClose once.
func (br *BodyReader) Close() error {
	var err error
	br.closed.Do(func() {
		if br.OnClose != nil {
			err = br.OnClose()
		}
	})
	return err
}
