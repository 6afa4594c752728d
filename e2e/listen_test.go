package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/edge"
)

// tunnelToken is the token of tun on srv, as `adit tunnel token` gives it.
func tunnelToken(t testing.TB, srv *edge.Server, tun tunnelFixture) string {
	t.Helper()
	f := &credentials.File{TunnelID: tun.ID, TunnelSecret: tun.Secret, EdgeAddrs: []string{srv.TunnelAddr().String()}, EdgeCA: string(srv.CAPEM())}
	tok, err := f.Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// listenTunnel runs connector.Listen for tun and closes it at the end.
func listenTunnel(t testing.TB, srv *edge.Server, tun tunnelFixture, proto string) *connector.Listener {
	t.Helper()
	cfg, err := connector.ConfigFromToken(tunnelToken(t, srv, tun))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol, cfg.HAConnections, cfg.GracePeriod = proto, 2, 5*time.Second
	cfg.Logger = testLogger(t).With("side", "connector")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l, err := connector.Listen(ctx, cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		l.Close()
		if err := l.Wait(); err != nil {
			t.Errorf("Wait after Close: %v", err)
		}
	})
	return l
}

// TestListen serves a tunnel from the test itself with connector.Listen:
// http.Serve on the listener answers requests sent to the edge (the
// visitor's address as RemoteAddr, bodies streamed, trailers, a 101
// upgrade), and the TCP listener a public TCP port of the edge.
func TestListen(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, proto string) {
		srv := startEdge(t, "")
		tun := createTunnel(t, srv, "lib", "lib.example.test")
		l := listenTunnel(t, srv, tun, proto)
		if l.Connections() < 1 || l.Addr().String() != tun.ID || l.Addr().Network() != "adit" {
			t.Errorf("after Listen: %d connections, Addr %s %s", l.Connections(), l.Addr().Network(), l.Addr())
		}

		mux := http.NewServeMux()
		mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "host=%s remote=%s xff=%s", r.Host, r.RemoteAddr, r.Header.Get("X-Forwarded-For"))
		})
		mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			n, _ := io.Copy(w, r.Body)
			w.Header().Set("X-Sum", strconv.FormatInt(n, 10))
		})
		mux.HandleFunc("GET /upgrade", func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") != "echo" {
				http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
				return
			}
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			brw.Flush()
			io.Copy(c, brw)
		})
		hs := &http.Server{Handler: mux}
		served := make(chan error, 1)
		go func() { served <- hs.Serve(l) }()

		resp, err := edgeGet(srv, "lib.example.test", "/hello")
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != 200 || !regexp.MustCompile(`^host=lib\.example\.test remote=127\.0\.0\.1:\d+ xff=127\.0\.0\.1$`).MatchString(body) {
			t.Errorf("GET /hello: %d %q", resp.StatusCode, body)
		}

		// A body of unknown length streams through and its trailer comes back.
		pr, pw := io.Pipe()
		go func() {
			for range 64 {
				pw.Write(make([]byte, 16<<10))
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", edgeURL(srv, "/echo"), pr)
		req.Host = "lib.example.test"
		resp, err = edgeClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != 64<<14 || resp.Trailer.Get("X-Sum") != strconv.Itoa(64<<14) {
			t.Errorf("POST /echo: %d bytes (%v), trailer %q; want %d and its count", n, err, resp.Trailer.Get("X-Sum"), 64<<14)
		}

		// An upgrade: after the 101, bytes both ways.
		c, err := net.Dial("tcp", srv.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, "GET /upgrade HTTP/1.1\r\nHost: lib.example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		head := make([]byte, 0, 256)
		for !strings.Contains(string(head), "\r\n\r\n") {
			b := make([]byte, 1)
			if _, err := c.Read(b); err != nil {
				t.Fatalf("reading the 101: %v (got %q)", err, head)
			}
			head = append(head, b[0])
		}
		if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
			t.Fatalf("upgrade answer: %q", head)
		}
		io.WriteString(c, "ping")
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
			t.Errorf("after the upgrade: %q %v, want ping", got, err)
		}
		c.Close()

		// TCP: a public port of the edge carried to the TCP listener.
		tl := l.TCP()
		port := freeTCPPort(t)
		if _, err := srv.Service().RouteTCP(t.Context(), tun.ID, port, "tcp.example.test", false); err != nil {
			t.Fatal(err)
		}
		waitPorts(t, srv, port)
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := tl.Accept()
			if err != nil {
				t.Errorf("TCP Accept: %v", err)
				close(accepted)
				return
			}
			accepted <- c
		}()
		client, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		sc := <-accepted
		if sc == nil {
			t.FailNow()
		}
		tc := sc.(*connector.TCPConn)
		if tc.Hostname() != "tcp.example.test" || !strings.HasPrefix(tc.RemoteAddr().String(), "127.0.0.1:") {
			t.Errorf("TCP conn: hostname %q, remote %s", tc.Hostname(), tc.RemoteAddr())
		}
		// A read deadline passes as a net.Conn's does, and the conn still works.
		if err := tc.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatalf("SetReadDeadline: %v", err)
		}
		if _, err := tc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
		}
		tc.SetReadDeadline(time.Time{})
		go func() {
			io.Copy(tc, tc)
			tc.CloseWrite()
			tc.Close()
		}()
		echoCheck(t, client, "over tcp", "over tcp")

		// Close: Accept ends with net.ErrClosed, and the edge answers 502.
		hs.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve after Close: %v", err)
		}
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
		if err := l.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
		waitFor(t, "the tunnel to go offline", func() bool {
			resp, err := edgeGet(srv, "lib.example.test", "/hello")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusBadGateway
		})
	})
}

// TestListenErrors: Listen refuses ingress rules (the program is the
// origin), and a refused secret ends it with ErrAuth.
func TestListenErrors(t *testing.T) {
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "lib")
	cfg, err := connector.ConfigFromToken(tunnelToken(t, srv, tun))
	if err != nil {
		t.Fatal(err)
	}
	withRules := cfg
	withRules.Ingress = mustIngress(t, "http_status:404")
	if _, err := connector.Listen(t.Context(), withRules); err == nil || !strings.Contains(err.Error(), "Ingress") {
		t.Errorf("Listen with Ingress: %v, want a refusal naming it", err)
	}
	bad := cfg
	bad.Secret = []byte(strings.Repeat("x", 32))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := connector.Listen(ctx, bad); !errors.Is(err, connector.ErrAuth) {
		t.Errorf("Listen with a wrong secret: %v, want ErrAuth", err)
	}
	if _, err := connector.ConfigFromToken("not a token"); err == nil {
		t.Error("ConfigFromToken accepted garbage")
	}
}

// TestExampleListen builds examples/listen and runs it against an edge
// with the tunnel's token in the environment, fetches through the edge,
// and stops it with SIGTERM.
func TestExampleListen(t *testing.T) {
	bin := filepath.Join(filepath.Dir(aditBin), "listen-example")
	build := exec.Command("go", "build", "-o", bin, "github.com/adit-dev/adit/examples/listen")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building examples/listen: %v\n%s", err, out)
	}
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "example", "example.example.test")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(tunnelToken(t, srv, tun)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBin(t, bin, nil, "-token-file", tokenFile)
	p.waitMatch(t, regexp.MustCompile(`serving tunnel `+tun.ID))
	resp, err := edgeGet(srv, "example.example.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello from a Go program on example.example.test; you are 127.0.0.1:") {
		t.Errorf("GET /: %d %q", resp.StatusCode, body)
	}
	p.stop(t)
	if p.err != nil {
		t.Errorf("the example exited with %v after SIGTERM:\n%s", p.err, p.out.String())
	}
}

// BenchmarkListen is BenchmarkProxy with the origin served by
// connector.Listen in the process (each request re-encoded as HTTP/1.1
// over a pipe) instead of a connector dialing a local port.
func BenchmarkListen(b *testing.B) {
	handler := benchOrigin(b).Config.Handler
	srv := startEdge(b, "")
	tun := createTunnel(b, srv, "bench", "bench.test")
	l := listenTunnel(b, srv, tun, "quic")
	go http.Serve(l, handler)
	benchFetch(b, "http://"+srv.HTTPAddr().String(), "bench.test")
}
