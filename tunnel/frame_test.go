package tunnel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// unregisterOfSize returns an Unregister whose encoding is exactly n bytes,
// or false if no reason length gives n (n = 0 is the empty message).
func unregisterOfSize(n int) (*Unregister, bool) {
	if n == 0 {
		return &Unregister{}, true
	}
	for k := n - 1 - binary.MaxVarintLen32; k <= n-2; k++ {
		if k > 0 && 1+protowire.SizeVarint(uint64(k))+k == n {
			return &Unregister{Reason: strings.Repeat("r", k)}, true
		}
	}
	return nil, false
}

// TestWriteMessageLength checks the length prefix at every uvarint size
// boundary, where WriteMessage moves the header to fit the payload.
func TestWriteMessageLength(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload int
		lenSize int // bytes of the uvarint length
	}{
		{"0", 0, 1},
		{"127", 127, 1},
		{"128", 128, 2},
		{"16383", 16383, 2},
		{"16384", 16384, 3},
		{"max-1", MaxFramePayload - 1, 3},
		{"max", MaxFramePayload, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := unregisterOfSize(tc.payload)
			if !ok {
				t.Fatalf("no Unregister encodes to %d bytes", tc.payload)
			}
			var buf bytes.Buffer
			if err := WriteMessage(&buf, m); err != nil {
				t.Fatalf("WriteMessage: %v", err)
			}
			b := buf.Bytes()
			if got, want := len(b), 1+tc.lenSize+tc.payload; got != want {
				t.Fatalf("frame size: got %d, want %d", got, want)
			}
			if FrameType(b[0]) != FrameUnregister {
				t.Errorf("type byte: got 0x%02x, want 0x%02x", b[0], byte(FrameUnregister))
			}
			n, ln := binary.Uvarint(b[1:])
			if int(n) != tc.payload || ln != tc.lenSize {
				t.Errorf("length: got %d in %d bytes, want %d in %d bytes", n, ln, tc.payload, tc.lenSize)
			}
			if want := m.appendTo(nil); !bytes.Equal(b[1+ln:], want) {
				t.Errorf("payload differs from appendTo")
			}
			var got Unregister
			if err := ReadMessage(bufio.NewReader(&buf), &got); err != nil {
				t.Fatalf("ReadMessage: %v", err)
			}
			if got.Reason != m.Reason {
				t.Errorf("reason: got %d bytes, want %d", len(got.Reason), len(m.Reason))
			}
		})
	}
}

func TestWriteMessageTooLarge(t *testing.T) {
	m, ok := unregisterOfSize(MaxFramePayload + 1)
	if !ok {
		t.Fatal("no Unregister of MaxFramePayload+1 bytes")
	}
	var buf bytes.Buffer
	err := WriteMessage(&buf, m)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("got %v, want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %d bytes of a refused frame, want 0", buf.Len())
	}
}

func TestWriteFrame(t *testing.T) {
	for _, tc := range []struct {
		name    string
		t       FrameType
		payload int
		wantErr error
	}{
		{"empty end", FrameEnd, 0, nil},
		{"data 1", FrameData, 1, nil},
		{"data 128", FrameData, 128, nil},
		{"data max", FrameData, MaxFramePayload, nil},
		{"data max+1", FrameData, MaxFramePayload + 1, ErrFrameTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := bytes.Repeat([]byte{'d'}, tc.payload)
			var buf bytes.Buffer
			err := WriteFrame(&buf, tc.t, p)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("WriteFrame: got %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			typ, got, err := ReadFrame(bufio.NewReader(&buf))
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if typ != tc.t || !bytes.Equal(got, p) {
				t.Errorf("got %s frame of %d bytes, want %s frame of %d bytes", typ, len(got), tc.t, len(p))
			}
		})
	}
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestWriteFrameSingleWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(io.Writer) error
	}{
		{"WriteFrame", func(w io.Writer) error { return WriteFrame(w, FrameData, make([]byte, 100000)) }},
		{"WriteMessage", func(w io.Writer) error { return WriteMessage(w, &Unregister{Reason: strings.Repeat("x", 100000)}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w countingWriter
			if err := tc.write(&w); err != nil {
				t.Fatal(err)
			}
			if w.writes != 1 {
				t.Errorf("got %d Write calls, want 1", w.writes)
			}
		})
	}
}

func TestReadFrameHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		wantT   FrameType
		wantN   int
		wantErr error
	}{
		{"empty stream", nil, 0, 0, io.EOF},
		{"type only", []byte{0x20}, 0, 0, io.ErrUnexpectedEOF},
		{"cut length", []byte{0x20, 0x80}, 0, 0, io.ErrUnexpectedEOF},
		{"zero length", []byte{0x22, 0x00}, FrameEnd, 0, nil},
		{"two-byte length", []byte{0x20, 0x80, 0x01}, FrameData, 128, nil},
		{"non-minimal length", []byte{0x20, 0x81, 0x80, 0x00}, FrameData, 1, nil},
		{"max", AppendFrameHeader(nil, FrameData, MaxFramePayload), FrameData, MaxFramePayload, nil},
		{"max+1", AppendFrameHeader(nil, FrameData, MaxFramePayload+1), 0, 0, ErrFrameTooLarge},
		{"huge", binary.AppendUvarint([]byte{0x20}, 1<<62), 0, 0, ErrFrameTooLarge},
		{"unknown type", []byte{0x7f, 0x03}, 0x7f, 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, n, err := ReadFrameHeader(bufio.NewReader(bytes.NewReader(tc.in)))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if typ != tc.wantT || n != tc.wantN {
				t.Errorf("got %s, %d; want %s, %d", typ, n, tc.wantT, tc.wantN)
			}
		})
	}
	t.Run("varint overflow", func(t *testing.T) {
		in := append([]byte{0x20}, bytes.Repeat([]byte{0xff}, 11)...)
		if _, _, err := ReadFrameHeader(bufio.NewReader(bytes.NewReader(in))); err == nil {
			t.Errorf("got nil error for an 11-byte varint")
		}
	})
}

func TestReadFrameTruncatedPayload(t *testing.T) {
	in := append(AppendFrameHeader(nil, FrameData, 10), "12345"...)
	_, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(in)))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
	}
}

// exampleRequestHeader is the worked example in docs/protocol.md. One
// header value, so the encoding does not depend on map order.
var exampleRequestHeader = &RequestHeader{
	Type:          StreamHTTP,
	Method:        "GET",
	Host:          "a.example",
	Path:          "/hi",
	Header:        http.Header{"Accept": {"*/*"}},
	ClientAddr:    "192.0.2.1:5000",
	RequestID:     "r1",
	ContentLength: 0,
}

const exampleRequestHeaderHex = "" +
	"103a" +
	"0801" +
	"1203474554" +
	"1a09612e6578616d706c65" +
	"22032f6869" +
	"2a0d0a0641636365707412032a2f2a" +
	"320e3139322e302e322e313a35303030" +
	"3a027231"

// TestProtocolDocExample keeps the hex examples in docs/protocol.md true.
func TestProtocolDocExample(t *testing.T) {
	var req bytes.Buffer
	if err := WriteMessage(&req, exampleRequestHeader); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(req.Bytes()); got != exampleRequestHeaderHex {
		t.Errorf("encoding:\n got %s\nwant %s", got, exampleRequestHeaderHex)
	}
	var body bytes.Buffer
	bw := NewBodyWriter(&body)
	bw.Write([]byte("hi"))
	bw.CloseWithTrailers(http.Header{"Grpc-Status": {"0"}})

	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatalf("reading the protocol spec: %v", err)
	}
	for _, ex := range []struct {
		marker string
		want   []byte
	}{
		{"<!-- example-frame -->", req.Bytes()},
		{"<!-- example-body -->", body.Bytes()},
	} {
		if got, want := docHex(string(doc), ex.marker), hex.EncodeToString(ex.want); got != want {
			t.Errorf("docs/protocol.md %s:\n got %s\nwant %s", ex.marker, got, want)
		}
	}
}

// docHex returns the bytes of the hex dump in the code block after marker:
// lines like "0000: 10 3a 08 ...", offsets dropped.
func docHex(doc, marker string) string {
	_, after, ok := strings.Cut(doc, marker)
	if !ok {
		return ""
	}
	_, block, _ := strings.Cut(after, "```")
	block, _, _ = strings.Cut(block, "```")
	var out strings.Builder
	for line := range strings.Lines(block) {
		if _, rest, ok := strings.Cut(line, ":"); ok {
			out.WriteString(strings.Join(strings.Fields(rest), ""))
		}
	}
	return out.String()
}
