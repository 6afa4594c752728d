package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/tunnel"
)

// TestForgedAnswerHeader (issue 13): a connector's answer header is data
// from another party. Whatever the case of the names it sends, its
// Content-Length, Transfer-Encoding, Connection, the fields Connection
// names, the other hop-by-hop fields and a forged request ID never reach
// the public client; the length the client sees is the one the answer
// announced, once.
func TestForgedAnswerHeader(t *testing.T) {
	srv := startEdgeLogged(t, &syncBuffer{})
	tun := createTunnel(t, srv, "forger", "forger.test")
	conn := fakeDial(t, srv)
	fakeRegister(t, conn, tun)
	forged := http.Header{
		"content-length":    {"999"},
		"Content-Length":    {"998"},
		"transfer-encoding": {"chunked"},
		"connection":        {"close, x-secret"},
		"x-secret":          {"internal"},
		"keep-alive":        {"timeout=5"},
		"PROXY-CONNECTION":  {"keep-alive"},
		"upgrade":           {"h2c"},
		"te":                {"trailers"},
		"adit-request-id":   {"forged"},
		"ADIT-REQUEST-ID":   {"forged too"},
		"x-origin":          {"kept"},
	}
	go func() {
		for {
			s, err := conn.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() {
				defer s.Close()
				var h tunnel.RequestHeader
				if err := tunnel.ReadMessage(bufio.NewReader(s), &h); err != nil {
					return
				}
				b, _ := tunnel.AppendMessage(nil, &tunnel.ResponseHeader{Status: 200, ContentLength: 5, Header: forged})
				b = tunnel.AppendData(b, []byte("hello"))
				s.Write(tunnel.AppendEnd(b))
				s.CloseWrite()
				io.Copy(io.Discard, s)
			}()
		}
	}()

	for _, method := range []string{"GET", "HEAD"} {
		t.Run(method, func(t *testing.T) {
			header, body := rawExchange(t, srv, method+" / HTTP/1.1\r\nHost: forger.test\r\n\r\n")
			for _, name := range []string{"Transfer-Encoding", "Connection", "X-Secret", "Keep-Alive", "Proxy-Connection", "Upgrade", "Te"} {
				if v, ok := header[name]; ok {
					t.Errorf("%s reached the client: %q", name, v)
				}
			}
			if got := header["Content-Length"]; len(got) != 1 || got[0] != "5" {
				t.Errorf("Content-Length lines: got %q, want one, 5", got)
			}
			if got := header[edge.RequestIDHeader]; len(got) != 1 || strings.Contains(got[0], "forged") {
				t.Errorf("%s lines: got %q, want the edge's one", edge.RequestIDHeader, got)
			}
			if got := header["X-Origin"]; len(got) != 1 || got[0] != "kept" {
				t.Errorf("X-Origin: got %q, want kept", got)
			}
			want := "hello"
			if method == "HEAD" {
				want = ""
			}
			if body != want {
				t.Errorf("body: got %q, want %q", body, want)
			}
		})
	}
}

// rawExchange sends a raw request to the edge's public listener and returns
// the answer's header lines (names canonicalized, every line kept, so
// duplicates of one name in any case show) and as much body as arrives
// before the connection goes quiet.
func rawExchange(t testing.TB, srv *edge.Server, req string) (http.Header, string) {
	t.Helper()
	c, err := net.Dial("tcp", srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the status line: %v", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200 ") {
		t.Fatalf("status line %q, want 200", status)
	}
	header := http.Header{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the header: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("header line %q", line)
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		header[key] = append(header[key], strings.TrimSpace(value))
	}
	var body []byte
	if cl := header.Get("Content-Length"); cl != "" && !strings.HasPrefix(req, "HEAD") {
		var n int
		fmt.Sscan(cl, &n)
		body = make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatalf("reading the body: %v", err)
		}
	}
	return header, string(body)
}
