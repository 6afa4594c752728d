package tunnel

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
)

func benchRequestHeader() *RequestHeader {
	return &RequestHeader{
		Type:   StreamHTTP,
		Method: "GET",
		Host:   "app.example.com",
		Path:   "/api/v1/items?page=2",
		Header: http.Header{
			"Accept":          {"application/json"},
			"Accept-Encoding": {"gzip, br"},
			"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64)"},
			"Cookie":          {"session=0123456789abcdef", "theme=dark"},
			"X-Forwarded-For": {"203.0.113.7"},
		},
		ClientAddr:    "203.0.113.7:51234",
		RequestID:     "01J9ZQ3T5V7X9Z",
		ContentLength: -1,
	}
}

func BenchmarkRequestHeader(b *testing.B) {
	m := benchRequestHeader()
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := WriteMessage(io.Discard, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		var buf bytes.Buffer
		WriteMessage(&buf, m)
		frame := buf.Bytes()
		src := bytes.NewReader(frame)
		r := bufio.NewReader(src)
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			src.Reset(frame)
			r.Reset(src)
			var got RequestHeader
			if err := ReadMessage(r, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBodyCopy frames a body with io.Copy (the ReadFrom path) and reads
// it back with a BodyReader.
func BenchmarkBodyCopy(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20, 8 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			body := bytes.Repeat([]byte{'b'}, size)
			var stream bytes.Buffer
			stream.Grow(size + size/1000 + 64)
			src := bytes.NewReader(body)
			r := bufio.NewReaderSize(&stream, 64<<10)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				stream.Reset()
				src.Reset(body)
				bw := NewBodyWriter(&stream)
				if _, err := io.Copy(bw, readerOnly{src}); err != nil {
					b.Fatal(err)
				}
				bw.Close()
				r.Reset(&stream)
				n, err := io.Copy(io.Discard, NewBodyReader(r, nil))
				if err != nil || n != int64(size) {
					b.Fatalf("got %d, %v", n, err)
				}
			}
		})
	}
}
