package tunnelws

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// refFrames splits data into its complete yamux frames the simple way;
// rest is what follows the last one.
func refFrames(data []byte) (frames [][]byte, rest []byte) {
	for len(data) >= hdrSize {
		h := hdr(data[:hdrSize])
		n := uint64(hdrSize) + uint64(h.bodyLen())
		if uint64(len(data)) < n {
			break
		}
		frames = append(frames, data[:n])
		data = data[n:]
	}
	return frames, data
}

// chunkReader returns at most chunk bytes per Read.
type chunkReader struct {
	data  []byte
	chunk int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// frameSeeds are encodings of real yamux traffic.
func frameSeeds() [][]byte {
	syn := newHdr(typeWindowUpdate, flagSYN, 1, 0)
	ack := newHdr(typeWindowUpdate, flagACK, 1, 6<<20-256<<10)
	data := newHdr(typeData, 0, 1, 5)
	fin := newHdr(typeWindowUpdate, flagFIN, 1, 0)
	ping := newHdr(2, flagSYN, 0, 7)
	goAway := newHdr(3, 0, 0, 0)
	big := newHdr(typeData, flagSYN, 3, 40<<10)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return [][]byte{
		nil,
		cat(syn[:], ack[:], data[:], []byte("hello"), fin[:]),
		cat(ping[:], goAway[:]),
		cat(big[:], bytes.Repeat([]byte{0xa5}, 40<<10), fin[:]),
		cat(data[:], []byte("hel")),        // cut in the body
		cat(syn[:], ack[:6]),               // cut in a header
		cat(big[:], make([]byte, 33<<10)),  // cut after one full piece
		newHdrSlice(typeData, 0, 5, 1<<31), // announces 2 GiB
	}
}

func newHdrSlice(typ uint8, flags uint16, id, length uint32) []byte {
	h := newHdr(typ, flags, id, length)
	return h[:]
}

// FuzzSplitFrames: splitFrames hands on exactly the input's bytes, less
// the frames onHeader drops (those of odd streams, when dropOdd is set), in
// pieces that never span two frames and end frames where the frames end.
func FuzzSplitFrames(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s, uint8(1), false)
		f.Add(s, uint8(200), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, dropOdd bool) {
		drop := func(h hdr) bool { return dropOdd && h.streamID()%2 == 1 }
		frames, rest := refFrames(data)
		var want []byte  // the input less the dropped frames
		var bounds []int // offsets in want where frames end
		for _, fr := range frames {
			if drop(hdr(fr[:hdrSize])) {
				continue
			}
			want = append(want, fr...)
			bounds = append(bounds, len(want))
		}
		complete := len(want)
		if len(rest) >= hdrSize && !drop(hdr(rest[:hdrSize])) {
			want = append(want, rest...)
		}
		var got []byte
		var headers, pos int // pos: where the next header is in data
		err := splitFrames(&chunkReader{data: data, chunk: int(chunk) + 1},
			func(h hdr) (bool, error) {
				if !bytes.Equal(h[:], data[pos:pos+hdrSize]) {
					t.Fatalf("header at %d: got %x, want %x", pos, h, data[pos:pos+hdrSize])
				}
				pos += hdrSize + int(h.bodyLen())
				headers++
				return !drop(h), nil
			},
			func(p piece) bool {
				defer p.release()
				if len(p.b) == 0 || len(p.b) > pieceSize {
					t.Fatalf("piece of %d bytes, want 1 to %d", len(p.b), pieceSize)
				}
				got = append(got, p.b...)
				atBound := contains(bounds, len(got))
				if p.end != atBound {
					t.Fatalf("piece ending at %d: end %v, want %v (frames end at %v)", len(got), p.end, atBound, bounds)
				}
				return true
			})
		if len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) {
			t.Fatalf("got %d bytes that are not a prefix of the %d kept", len(got), len(want))
		}
		if len(got) < complete {
			t.Fatalf("got %d bytes, want at least the %d of complete kept frames", len(got), complete)
		}
		wantErr := io.ErrUnexpectedEOF
		if len(rest) == 0 {
			wantErr = io.EOF
		}
		if err != wantErr {
			t.Errorf("error: got %v, want %v", err, wantErr)
		}
		if wantHeaders := len(frames) + boolInt(len(rest) >= hdrSize); headers != wantHeaders {
			t.Errorf("headers seen: got %d, want %d", headers, wantHeaders)
		}
	})
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func boolInt(b bool) int { return int(boolByte(b)) }

// FuzzWireRead: frames put in for the local session (a reset) arrive whole,
// between the peer's frames, which arrive unchanged.
func FuzzWireRead(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s, uint8(0), uint8(7), uint8(1))
		f.Add(s, uint8(3), uint8(255), uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk, readSize, injectEvery uint8) {
		w := &wire{pieces: make(chan piece, 2), localWake: make(chan struct{}, 1), stop: make(chan struct{})}
		go func() {
			w.rerr = splitFrames(&chunkReader{data: data, chunk: int(chunk) + 1}, func(hdr) (bool, error) { return true, nil }, func(p piece) bool {
				w.pieces <- p
				return true
			})
			close(w.pieces)
		}()
		inject := newHdr(typeWindowUpdate, flagRST, 0xabcdef, 0)
		pushed := 0
		var out []byte
		buf := make([]byte, int(readSize%64)+1)
		var err error
		for i := 1; ; i++ {
			if injectEvery > 0 && i%int(injectEvery) == 0 && pushed < 100 {
				w.toLocalSession(inject)
				pushed++
			}
			var n int
			n, err = w.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
		}
		frames, _ := refFrames(data)
		gotFrames, tail := refFrames(out)
		injected := 0
		for _, fr := range gotFrames {
			if len(frames) > 0 && bytes.Equal(fr, frames[0]) {
				frames = frames[1:]
				continue
			}
			if !bytes.Equal(fr, inject[:]) {
				t.Fatalf("frame %x is neither the next input frame nor the injected one", fr)
			}
			injected++
		}
		if len(frames) > 0 {
			t.Fatalf("%d input frames missing", len(frames))
		}
		if injected > pushed {
			t.Fatalf("injected frames: got %d, pushed %d", injected, pushed)
		}
		if !bytes.HasPrefix(data[len(data)-len(dataRest(data)):], tail) {
			t.Fatalf("tail %x is not the start of the input's incomplete frame", tail)
		}
		if len(tail) == 0 && injected != pushed {
			t.Errorf("injected frames: got %d, want all %d pushed", injected, pushed)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("error: got %v, want the input's end", err)
		}
	})
}

func dataRest(data []byte) []byte {
	_, rest := refFrames(data)
	return rest
}

// recMessages records the messages a wire writes.
type recMessages struct {
	msgs [][]byte
}

type recWriter struct {
	m   *recMessages
	buf bytes.Buffer
}

func (r *recWriter) Write(p []byte) (int, error) { return r.buf.Write(p) }
func (r *recWriter) Close() error {
	r.m.msgs = append(r.m.msgs, r.buf.Bytes())
	return nil
}

func (m *recMessages) Writer(context.Context, websocket.MessageType) (io.WriteCloser, error) {
	return &recWriter{m: m}, nil
}

func (m *recMessages) Write(_ context.Context, _ websocket.MessageType, p []byte) error {
	m.msgs = append(m.msgs, bytes.Clone(p))
	return nil
}

// nopHooks counts headers going out.
type nopHooks struct{ out *int }

func (nopHooks) frameIn(hdr) (bool, error) { return true, nil }
func (h nopHooks) frameOut(hdr)            { *h.out++ }
func (nopHooks) wireFailed(error, bool)    {}
func (nopHooks) closeStatus() (websocket.StatusCode, string, time.Duration) {
	return websocket.StatusNormalClosure, "", 0
}

// FuzzWireWrite: however yamux's bytes are split into writes, each message
// is one whole frame, followed by the frames queued for the peer.
func FuzzWireWrite(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s, uint8(0), uint8(1))
		f.Add(s, uint8(12), uint8(3))
		f.Add(s, uint8(255), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk, injectEvery uint8) {
		rec := &recMessages{}
		headers := 0
		w := &wire{out: rec, hooks: nopHooks{&headers}, peerWake: make(chan struct{}, 1)}
		inject := newHdr(typeWindowUpdate, flagStop, 0xabcdef, 0)
		pushed := 0
		for i, rest := 1, data; len(rest) > 0; i++ {
			if injectEvery > 0 && i%int(injectEvery) == 0 {
				w.toPeerSession(inject)
				pushed++
			}
			n := min(len(rest), int(chunk)+1)
			if k, err := w.Write(rest[:n]); k != n || err != nil {
				t.Fatalf("Write: got %d, %v; want %d, nil", k, err, n)
			}
			rest = rest[n:]
		}
		frames, rest := refFrames(data)
		if want := len(frames) + boolInt(len(rest) >= hdrSize); headers != want {
			t.Errorf("headers seen: got %d, want %d", headers, want)
		}
		if len(rec.msgs) != len(frames) {
			t.Fatalf("messages: got %d, want one per complete frame, %d", len(rec.msgs), len(frames))
		}
		injected := 0
		for i, msg := range rec.msgs {
			got, tail := refFrames(msg)
			if len(tail) != 0 || len(got) == 0 || !bytes.Equal(got[0], frames[i]) {
				t.Fatalf("message %d: got %x, want frame %x first, then whole frames", i, msg, frames[i])
			}
			for _, fr := range got[1:] {
				if !bytes.Equal(fr, inject[:]) {
					t.Fatalf("message %d: frame %x after the first is not the injected one", i, fr)
				}
				injected++
			}
		}
		if injected > pushed {
			t.Errorf("injected frames: got %d, pushed %d", injected, pushed)
		}
	})
}

// capReader records the capacity of the buffer of each Read that starts at
// a frame boundary (where the next header begins), reading from data.
type capReader struct {
	data       []byte
	boundaries map[int]bool // offsets in data where a frame starts
	off        int
	caps       []int
}

func (r *capReader) Read(p []byte) (int, error) {
	if len(r.data) == r.off {
		return 0, io.EOF
	}
	if r.boundaries[r.off] {
		r.caps = append(r.caps, cap(p))
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

// TestSplitFramesWaitsWithoutPiece: splitFrames waits for each header with
// a buffer of a header's size, not a pooled piece, so a connection idle
// between frames holds none.
func TestSplitFramesWaitsWithoutPiece(t *testing.T) {
	frames := [][]byte{
		newHdrSlice(typeWindowUpdate, flagSYN, 1, 0),
		append(newHdrSlice(typeData, 0, 1, 5), "hello"...),
		append(newHdrSlice(typeData, 0, 1, 40<<10), make([]byte, 40<<10)...),
		newHdrSlice(2, flagSYN, 0, 7), // a ping
	}
	r := &capReader{boundaries: map[int]bool{}}
	for _, f := range frames {
		r.boundaries[len(r.data)] = true
		r.data = append(r.data, f...)
	}
	err := splitFrames(r, func(hdr) (bool, error) { return true, nil }, func(p piece) bool { p.release(); return true })
	if err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
	if len(r.caps) != len(frames) {
		t.Fatalf("reads at frame boundaries: got %d, want %d", len(r.caps), len(frames))
	}
	for i, c := range r.caps {
		if c != hdrSize {
			t.Errorf("frame %d: header read into a buffer of capacity %d, want %d", i, c, hdrSize)
		}
	}
}
