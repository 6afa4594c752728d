package tunnel

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCopy(t *testing.T) {
	src := strings.Repeat("0123456789", 5000) // spans several buffers
	var dst bytes.Buffer
	n, err := Copy(&dst, iotest.HalfReader(strings.NewReader(src)))
	if err != nil || n != int64(len(src)) || dst.String() != src {
		t.Errorf("Copy = %d, %v; copied %d bytes equal=%v", n, err, dst.Len(), dst.String() == src)
	}
	errRead := errors.New("read failed")
	if _, err := Copy(io.Discard, iotest.ErrReader(errRead)); !errors.Is(err, errRead) {
		t.Errorf("read error: got %v, want %v", err, errRead)
	}
	if _, err := Copy(&failingWriter{}, strings.NewReader("x")); !errors.Is(err, errWrite) {
		t.Errorf("write error: got %v, want %v", err, errWrite)
	}
}

// scriptedReader returns the given chunks, one per Read (cut to the
// buffer it is given, the rest kept for the next Read), and records the
// size of every buffer it was given.
type scriptedReader struct {
	chunks [][]byte
	sizes  []int
}

func (r *scriptedReader) Read(p []byte) (int, error) {
	r.sizes = append(r.sizes, len(p))
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	if n == len(r.chunks[0]) {
		r.chunks = r.chunks[1:]
	} else {
		r.chunks[0] = r.chunks[0][n:]
	}
	return n, nil
}

// TestCopyBuffers checks what Copy waits with: the small buffer, except
// while reads keep filling the buffer they are given.
func TestCopyBuffers(t *testing.T) {
	const small, big = copySmallSize, copyBufSize
	chunk := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	for _, tc := range []struct {
		name   string
		chunks []int
		want   []int // buffer sizes given to Read, the last one for io.EOF
	}{
		{"one small message", []int{100}, []int{small, small}},
		{"small messages", []int{100, 200, small - 1}, []int{small, small, small, small}},
		{"exactly the small buffer, then more", []int{small, 100}, []int{small, big, small}},
		{"a burst, then idle", []int{small, big, big, 300}, []int{small, big, big, big, small}},
		{"a large message arriving whole", []int{3 * big}, []int{small, big, big, big, small}},
		{"two bursts", []int{small, 10, small, big, 1}, []int{small, big, small, big, big, small}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want bytes.Buffer
			r := &scriptedReader{}
			for _, n := range tc.chunks {
				c := chunk(n)
				want.Write(c)
				r.chunks = append(r.chunks, c)
			}
			var got bytes.Buffer
			n, err := Copy(&got, r)
			if err != nil || n != int64(want.Len()) || !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("Copy = %d, %v; want %d bytes, nil", n, err, want.Len())
			}
			if !slices.Equal(r.sizes, tc.want) {
				t.Errorf("buffers given to Read: got %v, want %v", r.sizes, tc.want)
			}
		})
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// TestCopyTCP runs Copy from a *net.TCPConn (copyTCP, whose small buffer is
// on the stack) over message sizes around the buffer sizes.
func TestCopyTCP(t *testing.T) {
	for _, size := range []int{1, copySmallSize - 1, copySmallSize, copySmallSize + 1, copyBufSize, 5*copyBufSize + 3} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			a, b := tcpPair(t)
			msg := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
			go func() {
				// Message by message, as a WebSocket would.
				for range 3 {
					a.Write(msg)
				}
				a.CloseWrite()
			}()
			var got bytes.Buffer
			n, err := Copy(&got, b)
			want := bytes.Repeat(msg, 3)
			if err != nil || n != int64(len(want)) || !bytes.Equal(got.Bytes(), want) {
				t.Errorf("Copy = %d, %v; want %d, nil and the same bytes", n, err, len(want))
			}
		})
	}
	t.Run("write error", func(t *testing.T) {
		a, b := tcpPair(t)
		go func() {
			a.Write([]byte("hello"))
			a.CloseWrite()
		}()
		if _, err := Copy(&failingWriter{}, b); !errors.Is(err, errWrite) {
			t.Errorf("got %v, want %v", err, errWrite)
		}
	})
	t.Run("read error", func(t *testing.T) {
		a, b := tcpPair(t)
		a.SetLinger(0)
		a.Close() // a reset
		if _, err := Copy(io.Discard, b); err == nil {
			t.Error("got nil, want the reset")
		}
	})
}
