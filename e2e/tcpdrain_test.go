package e2e

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/adit-dev/adit/connector"
)

// TestTCPPortDrain: an edge that drains closes its public TCP ports to
// new visitors while a connection in flight keeps working, and finishes
// draining once that connection ends.
func TestTCPPortDrain(t *testing.T) {
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "tcp", "web.example.test")
	l := listenTunnel(t, srv, tun, "quic")
	port := freeTCPPort(t)
	if _, err := srv.Service().RouteTCP(t.Context(), tun.ID, port, "tcp.example.test", false); err != nil {
		t.Fatal(err)
	}
	waitPorts(t, srv, port)
	go func() {
		for {
			c, err := l.TCP().Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.(*connector.TCPConn).CloseWrite()
				c.Close()
			}()
		}
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	client, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(msg string) {
		t.Helper()
		client.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(client, msg); err != nil {
			t.Fatalf("writing %q: %v", msg, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(client, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
	echo("before")

	drained := make(chan struct{})
	go func() {
		srv.Drain(context.Background())
		close(drained)
	}()
	waitFor(t, "the port to refuse new visitors", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	echo("during the drain")
	select {
	case <-drained:
		t.Fatal("the drain ended while a tcp connection was in flight")
	default:
	}
	client.Close()
	select {
	case <-drained:
	case <-time.After(30 * time.Second):
		t.Fatal("the drain did not end after the last tcp connection did")
	}
}
