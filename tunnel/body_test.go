package tunnel

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// readerOnly hides every method but Read, so io.Copy has to use the
// destination's ReadFrom.
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(p []byte) (int, error) { return r.r.Read(p) }

// frames parses a whole stream into frames.
func frames(t *testing.T, b []byte) (types []FrameType, payloads [][]byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(b))
	for {
		typ, p, err := ReadFrame(r)
		if err == io.EOF {
			return types, payloads
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(types), err)
		}
		types = append(types, typ)
		payloads = append(payloads, p)
	}
}

func TestBodyRoundTrip(t *testing.T) {
	sizes := []struct {
		name string
		n    int
	}{
		{"0", 0}, {"1", 1}, {"32KiB", 32 << 10}, {"1MiB+1", 1<<20 + 1},
	}
	writes := []struct {
		name     string
		write    func(*BodyWriter, []byte) (int64, error)
		maxFrame int
	}{
		{"Write", func(bw *BodyWriter, p []byte) (int64, error) {
			n, err := bw.Write(p)
			return int64(n), err
		}, maxDataFrame},
		{"ReadFrom", func(bw *BodyWriter, p []byte) (int64, error) {
			return io.Copy(bw, readerOnly{bytes.NewReader(p)})
		}, 128 << 10},
		{"ReadFrom one byte reads", func(bw *BodyWriter, p []byte) (int64, error) {
			return bw.ReadFrom(iotest.OneByteReader(bytes.NewReader(p)))
		}, 1},
	}
	for _, size := range sizes {
		for _, wr := range writes {
			t.Run(wr.name+"/"+size.name, func(t *testing.T) {
				body := make([]byte, size.n)
				rand.Read(body)
				if wr.maxFrame == 1 && len(body) > 4096 {
					body = body[:4096] // one frame per byte: keep it small
				}
				var w countingWriter
				bw := NewBodyWriter(&w)
				n, err := wr.write(bw, body)
				if err != nil || n != int64(len(body)) {
					t.Fatalf("write: got %d, %v; want %d, nil", n, err, len(body))
				}
				if err := bw.Close(); err != nil {
					t.Fatal(err)
				}

				types, payloads := frames(t, w.Bytes())
				if got := types[len(types)-1]; got != FrameEnd {
					t.Errorf("last frame: got %s, want end", got)
				}
				for i, typ := range types[:len(types)-1] {
					if typ != FrameData {
						t.Errorf("frame %d: got %s, want data", i, typ)
					}
					if len(payloads[i]) == 0 || len(payloads[i]) > wr.maxFrame {
						t.Errorf("frame %d: got %d bytes, want 1..%d", i, len(payloads[i]), wr.maxFrame)
					}
				}
				if wr.name != "Write" && w.writes != len(types) {
					t.Errorf("ReadFrom: got %d writes for %d frames, want one write per frame", w.writes, len(types))
				}

				br := NewBodyReader(bufio.NewReader(&w), nil)
				got, err := io.ReadAll(br)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if !bytes.Equal(got, body) {
					t.Errorf("body: got %d bytes, want %d (equal: false)", len(got), len(body))
				}
				if !br.Done() {
					t.Errorf("Done: got false after the end frame, want true")
				}
				if len(br.Trailer) != 0 {
					t.Errorf("Trailer: got %v, want none", br.Trailer)
				}
			})
		}
	}
}

func TestBodyWriteSplitsLargeWrites(t *testing.T) {
	var w bytes.Buffer
	n, err := NewBodyWriter(&w).Write(make([]byte, 1<<20+1))
	if err != nil || n != 1<<20+1 {
		t.Fatalf("got %d, %v", n, err)
	}
	_, payloads := frames(t, w.Bytes())
	var sizes []int
	for _, p := range payloads {
		sizes = append(sizes, len(p))
	}
	want := []int{maxDataFrame, maxDataFrame, maxDataFrame, maxDataFrame, 1}
	if !reflect.DeepEqual(sizes, want) {
		t.Errorf("frame sizes: got %v, want %v", sizes, want)
	}
}

// TestBodyWriteIsNotBuffered checks that each Write reaches the stream
// before Write returns (streamed responses such as SSE).
func TestBodyWriteIsNotBuffered(t *testing.T) {
	var w bytes.Buffer
	bw := NewBodyWriter(&w)
	for i, ev := range []string{"data: 1\n\n", "data: 2\n\n"} {
		before := w.Len()
		bw.Write([]byte(ev))
		if got, want := w.Len()-before, 2+len(ev); got != want {
			t.Errorf("event %d: got %d bytes on the stream, want %d", i, got, want)
		}
	}
}

// failingWriter fails every write after the first ok writes.
type failingWriter struct{ ok int }

var errWrite = errors.New("write failed")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.ok == 0 {
		return 0, errWrite
	}
	w.ok--
	return len(p), nil
}

func TestBodyWriterErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   int
		do   func(*BodyWriter) error
	}{
		{"Write header", 0, func(bw *BodyWriter) error { _, err := bw.Write([]byte("x")); return err }},
		{"Write payload", 1, func(bw *BodyWriter) error { _, err := bw.Write(make([]byte, smallWrite+1)); return err }},
		{"ReadFrom", 0, func(bw *BodyWriter) error { _, err := bw.ReadFrom(strings.NewReader("x")); return err }},
		{"Close", 0, func(bw *BodyWriter) error { return bw.Close() }},
		{"CloseWithTrailers", 0, func(bw *BodyWriter) error { return bw.CloseWithTrailers(http.Header{"A": {"b"}}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(NewBodyWriter(&failingWriter{ok: tc.ok})); !errors.Is(err, errWrite) {
				t.Errorf("got %v, want %v", err, errWrite)
			}
		})
	}
	t.Run("ReadFrom read error", func(t *testing.T) {
		var w bytes.Buffer
		errRead := errors.New("origin went away")
		n, err := NewBodyWriter(&w).ReadFrom(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errRead)))
		if n != 3 || !errors.Is(err, errRead) {
			t.Errorf("got %d, %v; want 3, %v", n, err, errRead)
		}
	})
}

func TestBodyTrailers(t *testing.T) {
	// The trailer map of a response whose header announced two trailers.
	resp := &http.Response{Trailer: http.Header{"Grpc-Status": nil, "Grpc-Message": nil}}
	var w bytes.Buffer
	bw := NewBodyWriter(&w)
	bw.Write([]byte("payload"))
	sent := http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {""}, "X-Multi": {"a", "b"}}
	if err := bw.CloseWithTrailers(sent); err != nil {
		t.Fatal(err)
	}

	br := NewBodyReader(bufio.NewReader(&w), resp.Trailer)
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "payload" {
		t.Fatalf("got %q, %v; want %q, nil", got, err, "payload")
	}
	if !br.Done() {
		t.Errorf("Done: got false after trailers, want true")
	}
	if !reflect.DeepEqual(resp.Trailer, sent) {
		t.Errorf("resp.Trailer: got %v, want %v", resp.Trailer, sent)
	}
	// The reader filled the map it was given, not a copy.
	br.Trailer["X-Probe"] = []string{"1"}
	if resp.Trailer.Get("X-Probe") != "1" {
		t.Errorf("BodyReader.Trailer is not the map it was given")
	}
}

func TestBodyTrailersNilMap(t *testing.T) {
	var w bytes.Buffer
	NewBodyWriter(&w).CloseWithTrailers(http.Header{"Grpc-Status": {"0"}})
	br := NewBodyReader(bufio.NewReader(&w), nil)
	if _, err := io.ReadAll(br); err != nil {
		t.Fatal(err)
	}
	if got := br.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("Trailer[Grpc-Status]: got %q, want %q", got, "0")
	}
}

func TestBodyEmptyTrailersIsEnd(t *testing.T) {
	for _, tr := range []http.Header{nil, {}} {
		var w bytes.Buffer
		if err := NewBodyWriter(&w).CloseWithTrailers(tr); err != nil {
			t.Fatal(err)
		}
		if got, want := w.Bytes(), []byte{byte(FrameEnd), 0}; !bytes.Equal(got, want) {
			t.Errorf("CloseWithTrailers(%#v): got %x, want %x", tr, got, want)
		}
	}
}

func TestBodyReaderErrors(t *testing.T) {
	data := func(s string) []byte { return append(AppendFrameHeader(nil, FrameData, len(s)), s...) }
	frame := func(typ FrameType, p []byte) []byte { return append(AppendFrameHeader(nil, typ, len(p)), p...) }
	trailers := (&Trailers{Header: http.Header{"A": {"b"}}}).appendTo(nil)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	for _, tc := range []struct {
		name     string
		in       []byte
		wantBody string
		wantErr  error  // checked with errors.Is, if set
		wantMsg  string // else the error must contain this
	}{
		{"empty stream", nil, "", ErrBodyTruncated, ""},
		{"data then EOF", data("hello"), "hello", ErrBodyTruncated, ""},
		{"cut data payload", data("hello")[:4], "he", ErrBodyTruncated, ""},
		{"cut frame header", cat(data("hi"), []byte{byte(FrameData), 0x80}), "hi", ErrBodyTruncated, ""},
		{"type byte only", cat(data("hi"), []byte{byte(FrameData)}), "hi", ErrBodyTruncated, ""},
		{"cut end payload", cat(data("hi"), AppendFrameHeader(nil, FrameEnd, 3), []byte("x")), "hi", ErrBodyTruncated, ""},
		{"cut trailers", cat(data("hi"), frame(FrameTrailers, trailers)[:4]), "hi", ErrBodyTruncated, ""},
		{"request frame", cat(data("hi"), frame(FrameRequest, nil)), "hi", nil, "unexpected request frame in a body"},
		{"unknown frame", cat(frame(0x7f, []byte("?"))), "", nil, "unexpected frame(0x7f) frame in a body"},
		{"frame too large", cat(data("hi"), AppendFrameHeader(nil, FrameData, MaxFramePayload+1)), "hi", ErrFrameTooLarge, ""},
		{"bad trailers", cat(frame(FrameTrailers, []byte{0x0a, 0x05, 0x01})), "", nil, "tunnel: bad message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := NewBodyReader(bufio.NewReader(bytes.NewReader(tc.in)), nil)
			got, err := io.ReadAll(br)
			if string(got) != tc.wantBody {
				t.Errorf("body: got %q, want %q", got, tc.wantBody)
			}
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("got error %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && (err == nil || !strings.Contains(err.Error(), tc.wantMsg)):
				t.Errorf("got error %v, want one containing %q", err, tc.wantMsg)
			}
			if br.Done() {
				t.Errorf("Done: got true for a failed body, want false")
			}
			// The error sticks.
			if _, err2 := br.Read(make([]byte, 1)); err2 != err {
				t.Errorf("second Read: got %v, want %v again", err2, err)
			}
		})
	}
}

func TestBodyReaderStopsAtEnd(t *testing.T) {
	var w bytes.Buffer
	bw := NewBodyWriter(&w)
	bw.Write([]byte("body"))
	bw.Write(nil) // no frame
	bw.Close()
	WriteFrame(&w, FrameData, []byte("after the end")) // not part of the body
	r := bufio.NewReader(&w)
	br := NewBodyReader(r, nil)
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "body" {
		t.Fatalf("got %q, %v; want %q, nil", got, err, "body")
	}
	if n, err := br.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read after the end: got %d, %v; want 0, EOF", n, err)
	}
	typ, p, err := ReadFrame(r)
	if err != nil || typ != FrameData || string(p) != "after the end" {
		t.Errorf("next frame: got %s %q %v, want the data frame after the body", typ, p, err)
	}
}

func TestBodyReaderEmptyDataFrames(t *testing.T) {
	var w bytes.Buffer
	WriteFrame(&w, FrameData, nil)
	WriteFrame(&w, FrameData, []byte("a"))
	WriteFrame(&w, FrameData, nil)
	WriteFrame(&w, FrameEnd, []byte("ignored end payload"))
	got, err := io.ReadAll(NewBodyReader(bufio.NewReader(&w), nil))
	if err != nil || string(got) != "a" {
		t.Errorf("got %q, %v; want %q, nil", got, err, "a")
	}
}

func TestBodyReaderClose(t *testing.T) {
	calls := 0
	br := NewBodyReader(bufio.NewReader(strings.NewReader("")), nil)
	if err := br.Close(); err != nil {
		t.Errorf("Close without OnClose: got %v, want nil", err)
	}
	br = NewBodyReader(bufio.NewReader(strings.NewReader("")), nil)
	errClose := errors.New("reset")
	br.OnClose = func() error { calls++; return errClose }
	if err := br.Close(); err != errClose {
		t.Errorf("first Close: got %v, want %v", err, errClose)
	}
	if err := br.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	if calls != 1 {
		t.Errorf("OnClose calls: got %d, want 1", calls)
	}
}

// scriptReader gives, for each Read, at most the next of sizes bytes (all
// it may when sizes runs out), and records the buffer size of each call.
type scriptReader struct {
	r     io.Reader
	sizes []int
	bufs  []int
}

func (s *scriptReader) Read(p []byte) (int, error) {
	s.bufs = append(s.bufs, len(p))
	if len(s.sizes) > 0 {
		p = p[:min(len(p), s.sizes[0])]
		s.sizes = s.sizes[1:]
	}
	return s.r.Read(p)
}

// TestBodyCopyBuffers: ReadFrom and CopyBody wait with the small buffer, move
// to the large one after a read fills the small one, keep it through
// reads that fill part of it, and move back after a read the small one
// would have held.
func TestBodyCopyBuffers(t *testing.T) {
	const small, large = smallBodyBuf, largeBodyBuf
	sizes := []int{100, small, large, large / 2, small + 1, small, 10, 100}
	want := []int{small, small, large, large, large, large, small, small, small}
	for _, tt := range []struct {
		name string
		copy func(io.Reader) error
	}{
		{"ReadFrom", func(r io.Reader) error { _, err := NewBodyWriter(io.Discard).ReadFrom(r); return err }},
		{"CopyBody", func(r io.Reader) error { _, rerr, werr := CopyBody(io.Discard, r); return errors.Join(rerr, werr) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sr := &scriptReader{r: bytes.NewReader(make([]byte, 1<<20)), sizes: sizes}
			if err := tt.copy(sr); err != nil {
				t.Fatal(err)
			}
			for i, w := range want {
				if i >= len(sr.bufs) || sr.bufs[i] != w {
					t.Fatalf("buffer sizes of the reads: got %v, want %v first", sr.bufs, want)
				}
			}
		})
	}
}

// errWriter fails every write.
type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestCopyBody(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 40<<10) // 640 KiB: moves to the large buffer
	readFail := errors.New("read failed")
	writeFail := errors.New("write failed")
	tests := []struct {
		name              string
		src               io.Reader
		dst               io.Writer
		wantN             int64
		wantRead, wantErr error
	}{
		{"small", strings.NewReader("hello"), &bytes.Buffer{}, 5, nil, nil},
		{"bulk", bytes.NewReader(big), &bytes.Buffer{}, int64(len(big)), nil, nil},
		{"empty", strings.NewReader(""), &bytes.Buffer{}, 0, nil, nil},
		{"read fails", io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(readFail)), &bytes.Buffer{}, 3, readFail, nil},
		{"write fails", strings.NewReader("abc"), errWriter{writeFail}, 0, nil, writeFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, rerr, werr := CopyBody(tt.dst, tt.src)
			if n != tt.wantN || rerr != tt.wantRead || werr != tt.wantErr {
				t.Fatalf("got %d, %v, %v; want %d, %v, %v", n, rerr, werr, tt.wantN, tt.wantRead, tt.wantErr)
			}
			if buf, ok := tt.dst.(*bytes.Buffer); ok && tt.name == "bulk" && !bytes.Equal(buf.Bytes(), big) {
				t.Error("bulk: the copy differs from the source")
			}
		})
	}
}
