package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestContentLengthAndChunked (issue 13, RFC 9112 §6.3): a request with
// both Content-Length and Transfer-Encoding is answered, then its
// connection closed: what a front proxy that trusted the length would
// send after it is never read as another request.
func TestContentLengthAndChunked(t *testing.T) {
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "smuggle", "smuggle.test")
	startConnector(t, srv, tun, mustIngress(t, helloOrigin(t, "hello").URL))

	c, err := net.Dial("tcp", srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// To a proxy framing by Content-Length, the body is "0\r\n\r\nGET /smuggled ...";
	// to the edge, the chunked body ends at "0\r\n\r\n".
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: smuggle.test\r\n\r\n"
	body := "0\r\n\r\n" + smuggled
	req := "POST / HTTP/1.1\r\nHost: smuggle.test\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + body
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello" {
		t.Errorf("answer: %d %q, want 200 hello", resp.StatusCode, b)
	}
	if !resp.Close {
		t.Error("the answer does not say Connection: close")
	}
	if second, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("a second answer came on the connection (%d): the smuggled request was served", second.StatusCode)
	}
}
