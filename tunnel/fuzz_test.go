package tunnel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// seedBodies are real encodings of bodies: plain, empty, split, with
// trailers, and a truncated one.
func seedBodies() [][]byte {
	var out [][]byte
	enc := func(f func(*BodyWriter)) {
		var w bytes.Buffer
		f(NewBodyWriter(&w))
		out = append(out, w.Bytes())
	}
	enc(func(bw *BodyWriter) { bw.Close() })
	enc(func(bw *BodyWriter) { bw.Write([]byte("hello")); bw.Close() })
	enc(func(bw *BodyWriter) {
		bw.Write([]byte("data: 1\n\n"))
		bw.Write([]byte("data: 2\n\n"))
		bw.CloseWithTrailers(http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {"", "x"}})
	})
	enc(func(bw *BodyWriter) { bw.Write(bytes.Repeat([]byte{'z'}, 300)); bw.Close() })
	enc(func(bw *BodyWriter) { bw.Write([]byte("no end frame")) })
	return out
}

// FuzzDecodeMessages decodes arbitrary payloads as every message type.
// Whatever decodes must encode, and decode again to an equal value, and
// must not change when the payload it was decoded from is overwritten
// (ReadMessage decodes in the reader's buffer).
func FuzzDecodeMessages(f *testing.F) {
	for _, tc := range sampleMessages() {
		if p := tc.m.appendTo(nil); len(p) < 4096 {
			f.Add(p)
		}
	}
	f.Add(unknownFields())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, zero := range allMessages() {
			m := newMessage(zero)
			if err := m.decode(p); err != nil {
				continue
			}
			q := bytes.Clone(p)
			mq := newMessage(zero)
			if err := mq.decode(q); err != nil {
				t.Fatalf("%T: decoding a copy: %v", m, err)
			}
			clear(q)
			if !reflect.DeepEqual(m, mq) {
				t.Fatalf("%T: changed with its payload:\n got %+v\nwant %+v", m, mq, m)
			}
			var buf bytes.Buffer
			if err := WriteMessage(&buf, m); err != nil {
				t.Fatalf("%T: re-encoding a decoded value: %v", m, err)
			}
			m2 := newMessage(zero)
			if err := ReadMessage(bufio.NewReader(&buf), m2); err != nil {
				t.Fatalf("%T: decoding the re-encoding of %+v: %v", m, m, err)
			}
			if !reflect.DeepEqual(m, m2) {
				t.Fatalf("%T: round trip:\n got %+v\nwant %+v", m, m2, m)
			}
		}
	})
}

// FuzzFrameReader reads arbitrary bytes as frames. It must never panic,
// never return a payload over MaxFramePayload, and every frame it returns
// must be exactly the bytes it consumed: type, uvarint length, payload.
func FuzzFrameReader(f *testing.F) {
	for _, tc := range sampleMessages() {
		var buf bytes.Buffer
		if err := WriteMessage(&buf, tc.m); err == nil && buf.Len() < 4096 {
			f.Add(buf.Bytes())
		}
	}
	for _, b := range seedBodies() {
		f.Add(b)
	}
	f.Add(AppendFrameHeader(nil, FrameData, MaxFramePayload+1))
	f.Add([]byte{0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		r := bufio.NewReaderSize(src, 16)
		consumed := func() int { return len(data) - src.Len() - r.Buffered() }
		for {
			off := consumed()
			typ, p, err := ReadFrame(r)
			if err != nil {
				if err == io.EOF && off != len(data) {
					t.Fatalf("clean io.EOF at offset %d of %d", off, len(data))
				}
				if err != io.EOF && off == len(data) {
					t.Fatalf("at the end of the input: got %v, want io.EOF", err)
				}
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrFrameTooLarge) &&
					!strings.Contains(err.Error(), "overflow") {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(p) > MaxFramePayload {
				t.Fatalf("payload of %d bytes, over MaxFramePayload", len(p))
			}
			frame := data[off:consumed()]
			if FrameType(frame[0]) != typ {
				t.Fatalf("type: got %s, input has 0x%02x", typ, frame[0])
			}
			n, ln := binary.Uvarint(frame[1:])
			if ln <= 0 || int(n) != len(p) || 1+ln+len(p) != len(frame) || !bytes.Equal(frame[1+ln:], p) {
				t.Fatalf("frame at %d: consumed %x, returned %s payload %x", off, frame, typ, p)
			}
		}
	})
}

// FuzzBody reads arbitrary frame sequences as a body, in reads of varying
// size. It must never panic; a body that ends cleanly must have read exactly
// the data frames before its end or trailers frame, and trailers must match.
func FuzzBody(f *testing.F) {
	for _, b := range seedBodies() {
		f.Add(b, uint16(1))
		f.Add(b, uint16(7))
		f.Add(b, uint16(4096))
	}
	f.Fuzz(func(t *testing.T, data []byte, readSize uint16) {
		br := NewBodyReader(bufio.NewReader(bytes.NewReader(data)), nil)
		var got []byte
		buf := make([]byte, int(readSize)%8192+1)
		var err error
		for {
			var n int
			n, err = br.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if err != io.EOF {
			if br.Done() {
				t.Fatalf("Done after error %v", err)
			}
			return
		}
		if !br.Done() {
			t.Fatalf("io.EOF without Done")
		}

		// Parse the same bytes frame by frame, independently.
		r := bufio.NewReader(bytes.NewReader(data))
		var want []byte
		var wantTrailer http.Header
		for {
			typ, p, err := ReadFrame(r)
			if err != nil {
				t.Fatalf("BodyReader ended cleanly, ReadFrame fails: %v", err)
			}
			if typ == FrameData {
				want = append(want, p...)
				continue
			}
			if typ == FrameTrailers {
				var tr Trailers
				if err := tr.decode(p); err != nil {
					t.Fatalf("BodyReader accepted trailers that do not decode: %v", err)
				}
				wantTrailer = tr.Header
			} else if typ != FrameEnd {
				t.Fatalf("BodyReader ended cleanly at a %s frame", typ)
			}
			break
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("body: got %x, want the data frames %x", got, want)
		}
		if len(wantTrailer) == 0 {
			wantTrailer = nil
		}
		gotTrailer := br.Trailer
		if len(gotTrailer) == 0 {
			gotTrailer = nil
		}
		if !reflect.DeepEqual(gotTrailer, wantTrailer) {
			t.Fatalf("trailers: got %v, want %v", gotTrailer, wantTrailer)
		}
	})
}
