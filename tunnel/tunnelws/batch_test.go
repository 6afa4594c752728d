package tunnelws

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// countConn records each Write it gets; it fails them after failAfter.
type countConn struct {
	net.Conn
	writes    [][]byte
	failAfter int // 0: never
}

func (c *countConn) Write(p []byte) (int, error) {
	if c.failAfter > 0 && len(c.writes) >= c.failAfter {
		return 0, errors.New("broken pipe")
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestBatchConn(t *testing.T) {
	chunk := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	for _, tc := range []struct {
		name       string
		held       bool
		parts      [][]byte
		wantWrites []int // length of each write that reached the socket
	}{
		{"not held: each write goes out", false, [][]byte{chunk(10, 'a'), chunk(20, 'b')}, []int{10, 20}},
		{"held: one write on release", true, [][]byte{chunk(4096, 'a'), chunk(4096, 'b'), chunk(100, 'c')}, []int{8292}},
		{"held: flushed at maxBatch", true, [][]byte{chunk(maxBatch-10, 'a'), chunk(20, 'b')}, []int{maxBatch - 10, 20}},
		{"held: a write of maxBatch goes straight out", true, [][]byte{chunk(5, 'a'), chunk(maxBatch, 'b'), chunk(7, 'c')}, []int{5, maxBatch, 7}},
		{"held: nothing written", true, nil, nil},
		{"held: only a large write, no empty flush", true, [][]byte{chunk(maxBatch+1, 'a')}, []int{maxBatch + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			under := &countConn{}
			b := &batchConn{Conn: under}
			if tc.held {
				b.hold()
			}
			var want []byte
			for _, p := range tc.parts {
				if n, err := b.Write(p); n != len(p) || err != nil {
					t.Fatalf("Write: got %d, %v; want %d, nil", n, err, len(p))
				}
				want = append(want, p...)
			}
			if err := b.release(); err != nil {
				t.Fatalf("release: %v", err)
			}
			var got []byte
			var lens []int
			for _, w := range under.writes {
				got = append(got, w...)
				lens = append(lens, len(w))
			}
			if !bytes.Equal(got, want) {
				t.Errorf("socket got %d bytes, want %d in order", len(got), len(want))
			}
			if len(lens) != len(tc.wantWrites) {
				t.Fatalf("writes: got %v, want %v", lens, tc.wantWrites)
			}
			for i := range lens {
				if lens[i] != tc.wantWrites[i] {
					t.Errorf("writes: got %v, want %v", lens, tc.wantWrites)
				}
			}
		})
	}
}

// TestBatchConnError: a failed batched write is returned by release and by
// every later Write.
func TestBatchConnError(t *testing.T) {
	b := &batchConn{Conn: &countConn{failAfter: 1}}
	if _, err := b.Write([]byte("first")); err != nil {
		t.Fatalf("first write: %v", err)
	}
	b.hold()
	if _, err := b.Write([]byte("gathered")); err != nil {
		t.Fatalf("held write: got %v, want nil (the error comes at release)", err)
	}
	if err := b.release(); err == nil {
		t.Fatal("release: got nil, want the socket's error")
	}
	if _, err := b.Write([]byte("later")); err == nil {
		t.Fatal("later write: got nil, want the earlier error")
	}
}
