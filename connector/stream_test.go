package connector

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/adit-dev/adit/tunnel"
)

// TestEarlyAnswerWhileBodyStillSent: an origin that answers before it has
// read the request body leaves the origin transport reading the body after
// the stream's handler returned; the body's reader must not be reset and
// reused under that read (it was: a nil-reader panic in the connector, and
// with -race -count=30 this test reports the reuse).
func TestEarlyAnswerWhileBodyStillSent(t *testing.T) {
	origin := scriptedOrigin(t, func(c *net.TCPConn, br *bufio.Reader, req *http.Request) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		io.Copy(io.Discard, br) // then the rest of the body, whatever comes
	})
	c := upgradeConnector(t, "http://"+origin)
	a, b := tcpTestPair(t)
	edge, conn := &fakeStream{TCPConn: a}, &fakeStream{TCPConn: b}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.serveStream(conn, c.log)
	}()
	t.Cleanup(func() { edge.Close(); conn.Close(); <-done })
	msg, err := tunnel.AppendMessage(nil, &tunnel.RequestHeader{
		Type: tunnel.StreamHTTP, Method: http.MethodPost, Host: "up.example.test", Path: "/upload",
		ContentLength: -1, RequestID: "req-early",
	})
	if err != nil {
		t.Fatal(err)
	}
	edge.SetDeadline(time.Now().Add(20 * time.Second))
	bw := tunnel.NewBodyWriter(edge)
	if _, err := edge.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := bw.Write([]byte("first part of the body")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(edge)
	var rh tunnel.ResponseHeader
	if err := tunnel.ReadMessage(br, &rh); err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if rh.Status != http.StatusOK {
		t.Fatalf("status = %d, want 200", rh.Status)
	}
	waitDone(t, done, "the stream's handler")
	// The origin's transport is still sending the body: more of it now,
	// paced so that it keeps arriving while the transport reads on after
	// the handler returned (the race under test).
	for range 20 {
		if _, err := bw.Write([]byte("more of the body, after the answer")); err != nil {
			break
		}
		time.Sleep(time.Millisecond) // the pacing: it waits for nothing
	}
	bw.Close()
}
