package tunneltest

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/adit-dev/adit/tunnel"
)

// CheckLeaks verifies, after every other cleanup of the test, that no
// goroutine is left. Call it first.
func CheckLeaks(t *testing.T) {
	t.Cleanup(func() {
		// Some goroutines outlive a closed connection for a while: quic-go
		// keeps a closed connection's IDs for three PTOs (about a second
		// after a failed handshake), net/http lingers 500ms after answering
		// a bad request (closeWriteAndWait). Both are longer than one
		// goleak.Find retries; give it a few.
		for i := 0; i < 10 && goleak.Find() != nil; i++ {
		}
		goleak.VerifyNone(t)
	})
}

// Context is the test's context, bounded so a hang fails instead of
// stalling the suite.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Pair is a listener and one connection through it, seen from both ends.
type Pair struct {
	Listener tunnel.Listener
	Client   tunnel.Conn // the connector's side, from dialing
	Server   tunnel.Conn // the edge's side, from Accept
}

// Connect dials ln with dial and accepts the connection. Both conns are
// closed, and waited for, at cleanup; ln is not.
func Connect(t testing.TB, ln tunnel.Listener, dial func(ctx context.Context) (tunnel.Conn, error)) Pair {
	t.Helper()
	ctx := Context(t)
	type accepted struct {
		c   tunnel.Conn
		err error
	}
	ch := make(chan accepted, 1)
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		c, err := ln.Accept(actx)
		ch <- accepted{c, err}
	}()
	client, err := dial(ctx)
	if err != nil {
		cancel()
		<-ch
		t.Fatalf("Dial: %v", err)
	}
	a := <-ch
	if a.err != nil {
		client.Close(tunnel.CodeNormal, "")
		t.Fatalf("Accept: %v", a.err)
	}
	p := Pair{Listener: ln, Client: client, Server: a.c}
	t.Cleanup(func() {
		p.Client.Close(tunnel.CodeNormal, "test done")
		p.Server.Close(tunnel.CodeNormal, "test done")
		<-p.Client.Done()
		<-p.Server.Done()
	})
	return p
}

// Open opens a stream on from and accepts it on to. Some transports (QUIC)
// announce a stream only with its first bytes, so Open writes "hello"
// first and checks that it arrives.
func Open(t *testing.T, from, to tunnel.Conn) (opened, accepted tunnel.Stream) {
	t.Helper()
	ctx := Context(t)
	s, err := from.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	a, err := to.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("AcceptStream: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("first bytes: got %q, %v; want %q", buf, err, "hello")
	}
	return s, a
}

// EchoServer is a TCP server on 127.0.0.1 that writes prefix to each
// connection, then echoes what it reads until the client half-closes, and
// half-closes too. It stops when the test ends. It returns its address.
func EchoServer(t testing.TB, prefix string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.WriteString(c, prefix)
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}
