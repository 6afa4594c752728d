package tunnelws

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// countConn records each Write it gets; it fails them from the failAt-th
// on (0: never). Close is recorded too.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	failAt int
	closed bool
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failAt > 0 && len(c.writes)+1 >= c.failAt {
		return 0, errors.New("broken pipe")
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *countConn) SetWriteDeadline(time.Time) error { return nil }

func (c *countConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *countConn) got() (all []byte, lens []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.writes {
		all = append(all, w...)
		lens = append(lens, len(w))
	}
	return all, lens
}

// TestBatchConn: whatever is held or queued reaches the socket in order
// and in few writes; Close writes what is queued before it closes.
func TestBatchConn(t *testing.T) {
	chunk := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	for _, tc := range []struct {
		name     string
		held     bool
		parts    [][]byte
		maxWrite int // no write to the socket larger than this
		writes   int // at most this many writes (0: no check)
	}{
		{"not held: each write goes out", false, [][]byte{chunk(10, 'a'), chunk(20, 'b')}, 20, 2},
		{"held: one write", true, [][]byte{chunk(4096, 'a'), chunk(4096, 'b'), chunk(100, 'c')}, 8292, 1},
		{"held: a full queue is written while holding", true, [][]byte{chunk(maxBatch-10, 'a'), chunk(20, 'b'), chunk(maxBatch, 'c'), chunk(7, 'd')}, 2*maxBatch + 10, 3},
		{"held: nothing written", true, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tunneltest.CheckLeaks(t)
			under := &countConn{}
			b := newBatchConn(under)
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
			if err := b.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			got, lens := under.got()
			if !bytes.Equal(got, want) {
				t.Errorf("socket got %d bytes, want the %d written, in order", len(got), len(want))
			}
			if tc.writes > 0 && len(lens) > tc.writes {
				t.Errorf("writes: got %v, want at most %d", lens, tc.writes)
			}
			for _, n := range lens {
				if n == 0 || n > tc.maxWrite {
					t.Errorf("writes: got %v, want each 1..%d bytes", lens, tc.maxWrite)
				}
			}
			if !under.closed {
				t.Error("the socket was not closed")
			}
		})
	}
}

// TestBatchConnOrder: many held and unheld writes interleaved, as TLS
// makes them, arrive in order.
func TestBatchConnOrder(t *testing.T) {
	tunneltest.CheckLeaks(t)
	under := &countConn{}
	b := newBatchConn(under)
	var want []byte
	for i := range 2000 {
		p := bytes.Repeat([]byte{byte(i)}, 1+i%700)
		if i%3 == 0 {
			b.hold()
		}
		if _, err := b.Write(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
		if i%3 == 2 {
			if err := b.release(); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.release()
	b.Close()
	if got, lens := under.got(); !bytes.Equal(got, want) {
		t.Fatalf("socket got %d bytes in %d writes, want the %d written, in order", len(got), len(lens), len(want))
	}
}

// TestBatchConnError: a failed write is returned by every later Write and
// release.
func TestBatchConnError(t *testing.T) {
	tunneltest.CheckLeaks(t)
	b := newBatchConn(&countConn{failAt: 2})
	if _, err := b.Write([]byte("first")); err != nil {
		t.Fatalf("first write: %v", err)
	}
	b.hold()
	if _, err := b.Write([]byte("queued")); err != nil {
		t.Fatalf("queued write: got %v, want nil (the socket's error comes later)", err)
	}
	b.release()
	b.Close() // waits for the flusher's write, which fails
	if _, err := b.Write([]byte("later")); err == nil {
		t.Fatal("write after the failure and Close: got nil, want an error")
	}
	if err := b.release(); err == nil {
		t.Fatal("release after the failure: got nil, want the socket's error")
	}

	// What a failed connection had queued must not leak into the next one
	// through the buffer pool: a write in flight fails while more is queued
	// behind it, and Close drops the queue.
	entered, fail := make(chan struct{}), make(chan struct{})
	failed := newBatchConn(&failConn{entered: entered, fail: fail})
	direct := make(chan error, 1)
	go func() {
		_, err := failed.Write([]byte("in flight"))
		direct <- err
	}()
	<-entered
	failed.hold()
	failed.Write([]byte("never sent"))
	failed.release()
	close(fail)
	if err := <-direct; err == nil {
		t.Fatal("write in flight: got nil, want the socket's error")
	}
	failed.Close()
	under := &countConn{}
	next := newBatchConn(under)
	next.hold()
	next.Write([]byte("x"))
	next.release()
	next.Close()
	if got, _ := under.got(); string(got) != "x" {
		t.Errorf("next connection's socket got %q, want %q", got, "x")
	}
}

// TestBatchConnCloseStuck: Close returns even while a write is stuck in a
// socket whose peer does not read (net.Pipe has no buffer), and the writer
// gets an error.
func TestBatchConnCloseStuck(t *testing.T) {
	tunneltest.CheckLeaks(t)
	c1, c2 := net.Pipe()
	defer c2.Close()
	entered := make(chan struct{})
	b := newBatchConn(&enterConn{Conn: c1, entered: entered})
	wrote := make(chan error, 1)
	go func() {
		_, err := b.Write([]byte("nobody reads this"))
		wrote <- err
	}()
	<-entered // the write is in flight
	b.hold()
	b.Write([]byte("queued behind it"))
	b.release()
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-wrote; err == nil {
		t.Error("stuck write: got nil error after Close, want one")
	}
}

// enterConn closes entered when its first Write starts.
type enterConn struct {
	net.Conn
	entered chan struct{}
	once    sync.Once
}

func (c *enterConn) Write(p []byte) (int, error) {
	c.once.Do(func() { close(c.entered) })
	return c.Conn.Write(p)
}

// failConn's Write signals entered, waits for fail to close, and fails.
type failConn struct {
	net.Conn
	entered, fail chan struct{}
	once          sync.Once
}

func (c *failConn) Write(p []byte) (int, error) {
	c.once.Do(func() { close(c.entered) })
	<-c.fail
	return 0, errors.New("connection reset")
}

func (c *failConn) SetWriteDeadline(time.Time) error { return nil }
func (c *failConn) Close() error                     { return nil }

// tcpPair returns the two ends of a TCP connection on loopback.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestBatchConnRead: reads through the read-ahead buffer return the
// socket's bytes in order whatever the size of each read, then io.EOF; no
// buffer is held once what was read ahead is handed out; deadlines and
// Close end a read as they do on the socket.
func TestBatchConnRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int // of each Read
	}{
		{"1 byte", 1},
		{"TLS header", 5},
		{"record", 16<<10 + 22},
		{"past read-ahead", readAhead + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			want := make([]byte, 3<<20)
			for i := range want {
				want[i] = byte(i * 7 / 3)
			}
			if tc.size == 1 {
				want = want[:300<<10]
			}
			go func() {
				client.Write(want)
				client.CloseWrite()
			}()
			b := newBatchConn(server)
			if b.rc == nil {
				t.Fatal("no raw socket under a TCP connection")
			}
			var got []byte
			p := make([]byte, tc.size)
			for {
				n, err := b.Read(p)
				got = append(got, p[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
				if len(b.rdata) == 0 && b.rbuf != nil {
					t.Fatal("a read-ahead buffer is held with nothing in it")
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want the %d written, in order", len(got), len(want))
			}
			if b.rbuf != nil {
				t.Error("a read-ahead buffer is held after the end")
			}
		})
	}

	t.Run("deadline", func(t *testing.T) {
		_, server := tcpPair(t)
		b := newBatchConn(server)
		b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := b.Read(make([]byte, 10))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %v, want a timeout (os.ErrDeadlineExceeded)", err)
		}
		if b.rbuf != nil {
			t.Error("a read-ahead buffer is held after a timeout")
		}
	})

	t.Run("close", func(t *testing.T) {
		_, server := tcpPair(t)
		b := newBatchConn(server)
		errc := make(chan error, 1)
		go func() {
			_, err := b.Read(make([]byte, 10))
			errc <- err
		}()
		b.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read across Close: got %v, want net.ErrClosed", err)
		}
	})
}
