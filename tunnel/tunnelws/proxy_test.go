package tunnelws

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// tinyproxy is Debian's tinyproxy running in the foreground with a config
// made for the test, logging to a pipe the test reads.
type tinyproxy struct {
	url *url.URL
	cmd *exec.Cmd

	mu    sync.Mutex
	lines []string
	done  chan struct{} // closed when its output ends
}

// startTinyproxy starts tinyproxy on 127.0.0.1 allowing CONNECT to
// connectPort only, with extra config lines. It skips the test if
// tinyproxy is not installed.
func startTinyproxy(t *testing.T, connectPort int, extra ...string) *tinyproxy {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Skip("tinyproxy is not installed (apt-get install tinyproxy; .ci/run installs it)")
	}
	// tinyproxy cannot listen on port 0: pick a free port, and try another
	// if someone takes it first.
	var lastErr error
	for range 3 {
		tp, err := tryTinyproxy(t, bin, freePort(t), connectPort, extra)
		if err == nil {
			return tp
		}
		lastErr = err
	}
	t.Fatalf("starting tinyproxy: %v", lastErr)
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tryTinyproxy(t *testing.T, bin string, port, connectPort int, extra []string) (*tinyproxy, error) {
	dir := t.TempDir()
	conf := []string{
		"Listen 127.0.0.1",
		fmt.Sprintf("Port %d", port),
		"Timeout 30",
		"MaxClients 20",
		"Allow 127.0.0.1",
		fmt.Sprintf("ConnectPort %d", connectPort),
		"DisableViaHeader Yes",
		"LogLevel Info", // no LogFile, no Syslog: the log goes to stdout
	}
	conf = append(conf, extra...)
	confPath := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-d", "-c", confPath)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	tp := &tinyproxy{
		url:  &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)},
		cmd:  cmd,
		done: make(chan struct{}),
	}
	ready := make(chan struct{})
	go func() {
		defer close(tp.done)
		sc := bufio.NewScanner(out)
		signaled := false
		for sc.Scan() {
			line := sc.Text()
			tp.mu.Lock()
			tp.lines = append(tp.lines, line)
			tp.mu.Unlock()
			// Logged once the socket listens.
			if !signaled && strings.Contains(line, "Accepting connections") {
				signaled = true
				close(ready)
			}
		}
		io.Copy(io.Discard, out)
	}()
	stop := func() {
		cmd.Process.Kill()
		<-tp.done
		cmd.Wait()
	}
	select {
	case <-ready:
		t.Cleanup(stop)
		return tp, nil
	case <-tp.done:
		stop()
		return nil, fmt.Errorf("tinyproxy exited: %s", tp.log())
	case <-time.After(10 * time.Second):
		stop()
		return nil, fmt.Errorf("tinyproxy not ready after 10s: %s", tp.log())
	}
}

func (tp *tinyproxy) log() string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return strings.Join(tp.lines, "\n")
}

// sawConnect says whether tinyproxy logged a CONNECT request for addr.
func (tp *tinyproxy) sawConnect(addr string) bool {
	return strings.Contains(tp.log(), "CONNECT "+addr+" ")
}

// listenerPort is the port of a tunnel listener.
func listenerPort(ln tunnel.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// fixedProxy is a Config.Proxy that always answers u.
func fixedProxy(u *url.URL) func(*url.URL) (*url.URL, error) {
	return func(*url.URL) (*url.URL, error) { return u, nil }
}

// TestDialThroughTinyproxy dials the edge through a real HTTP CONNECT
// proxy and runs streams over it.
func TestDialThroughTinyproxy(t *testing.T) {
	tunneltest.CheckLeaks(t)
	tt := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", tt.Server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tp := startTinyproxy(t, listenerPort(ln))
	addr := ln.Addr().String()

	p := dialPair(t, ln, tt.Client, Config{Proxy: fixedProxy(tp.url)}, addr)
	if !tp.sawConnect(addr) {
		t.Errorf("tinyproxy did not log CONNECT %s; its log:\n%s", addr, tp.log())
	}
	if got, want := p.Client.RemoteAddr().String(), tp.url.Host; got != want {
		t.Errorf("client RemoteAddr: got %s, want the proxy's %s", got, want)
	}
	for _, dir := range []struct {
		name     string
		from, to tunnel.Conn
	}{{"connector opens", p.Client, p.Server}, {"edge opens", p.Server, p.Client}} {
		t.Run(dir.name, func(t *testing.T) {
			if err := echoOnceAccepting(tunneltest.Context(t), dir.from, dir.to, 1<<20); err != nil {
				t.Error(err)
			}
		})
	}
}

// echoOnceAccepting opens a stream on from, echoes size bytes through an
// accepter on to, and checks them.
func echoOnceAccepting(ctx context.Context, from, to tunnel.Conn, size int) error {
	errc := make(chan error, 1)
	go func() {
		s, err := to.AcceptStream(ctx)
		if err != nil {
			errc <- err
			return
		}
		defer s.Close()
		io.Copy(s, s)
		errc <- s.CloseWrite()
	}()
	s, err := from.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	go func() {
		s.Write(msg)
		s.CloseWrite()
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo: got %d bytes, want %d (equal: false)", len(got), len(msg))
	}
	return <-errc
}

// TestTinyproxyRefusals: the proxy's refusals come back as dial errors
// naming the status, and credentials in the proxy URL are sent.
func TestTinyproxyRefusals(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	tt := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", tt.Server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	port := listenerPort(ln)

	t.Run("port not allowed", func(t *testing.T) {
		tp := startTinyproxy(t, port+1)
		c, err := Dial(ctx, addr, tt.Client, Config{Proxy: fixedProxy(tp.url)})
		if err == nil {
			c.Close(tunnel.CodeNormal, "")
			t.Fatal("Dial through a proxy refusing the port: got a connection")
		}
		if !strings.Contains(err.Error(), "403") {
			t.Errorf("got %v, want the proxy's 403", err)
		}
	})

	tp := startTinyproxy(t, port, "BasicAuth adit s3cret")
	for _, tc := range []struct {
		name     string
		user     *url.Userinfo
		wantFail string // "" for success
	}{
		{"no credentials", nil, "407"},
		{"wrong password", url.UserPassword("adit", "nope"), "401"}, // tinyproxy's answer to bad credentials
		{"right credentials", url.UserPassword("adit", "s3cret"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := *tp.url
			u.User = tc.user
			if tc.wantFail == "" {
				p := dialPair(t, ln, tt.Client, Config{Proxy: fixedProxy(&u)}, addr)
				w, r := tunneltest.Open(t, p.Client, p.Server)
				w.Close()
				r.Close()
				return
			}
			c, err := Dial(ctx, addr, tt.Client, Config{Proxy: fixedProxy(&u)})
			if err == nil {
				c.Close(tunnel.CodeNormal, "")
				t.Fatal("got a connection, want the proxy's refusal")
			}
			if !strings.Contains(err.Error(), tc.wantFail) {
				t.Errorf("got %v, want %s", err, tc.wantFail)
			}
			if strings.Contains(err.Error(), "nope") {
				t.Errorf("error %q shows the proxy password", err)
			}
		})
	}
}

// TestDialProxyFromEnvironment: with Config.Proxy nil, HTTPS_PROXY sends
// the connection through the proxy unless NO_PROXY names the edge.
//
// The edge is dialed as "127.1", 127.0.0.1 in the short form that
// inet_aton (and so tinyproxy) accepts but net/http's proxy rules do not
// see as loopback, which is never proxied.
func TestDialProxyFromEnvironment(t *testing.T) {
	tunneltest.CheckLeaks(t)
	tt := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", tt.Server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tp := startTinyproxy(t, listenerPort(ln))
	addr := fmt.Sprintf("127.1:%d", listenerPort(ln))
	conf := tt.Client.Clone()
	conf.ServerName = "edge.test"

	t.Run("HTTPS_PROXY", func(t *testing.T) {
		t.Setenv("HTTPS_PROXY", tp.url.String())
		t.Setenv("NO_PROXY", "other.test")
		p := dialPair(t, ln, conf, Config{}, addr)
		if !tp.sawConnect(addr) {
			t.Errorf("tinyproxy did not log CONNECT %s; its log:\n%s", addr, tp.log())
		}
		w, r := tunneltest.Open(t, p.Client, p.Server)
		w.Close()
		r.Close()
	})
	t.Run("NO_PROXY", func(t *testing.T) {
		before := strings.Count(tp.log(), "CONNECT "+addr+" ")
		t.Setenv("HTTPS_PROXY", tp.url.String())
		t.Setenv("NO_PROXY", "other.test,127.1")
		ctx := tunneltest.Context(t)
		c, err := Dial(ctx, addr, conf, Config{})
		// Direct: Go's own resolver does not read "127.1" as an address
		// (a DNS error); the cgo resolver does (a connection, which the
		// listener's handler hands to nobody here).
		var dnsErr *net.DNSError
		switch {
		case err == nil:
			c.Close(tunnel.CodeNormal, "")
		case !errors.As(err, &dnsErr):
			t.Errorf("direct dial: got %v, want a connection or a DNS error", err)
		}
		if after := strings.Count(tp.log(), "CONNECT "+addr+" "); after != before {
			t.Errorf("tinyproxy saw CONNECT %s despite NO_PROXY; its log:\n%s", addr, tp.log())
		}
	})
}

// TestProxyFor: which proxy Dial uses, from Config.Proxy or the
// environment.
func TestProxyFor(t *testing.T) {
	proxyURL, _ := url.Parse("http://proxy.test:3128")
	for _, tc := range []struct {
		name    string
		env     map[string]string
		proxy   func(*url.URL) (*url.URL, error)
		addr    string
		want    string // proxy URL, "" for none
		wantErr string
	}{
		{"no environment", nil, nil, "edge.example.com:7844", "", ""},
		{"HTTPS_PROXY", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128"}, nil, "edge.example.com:7844", "http://proxy.test:3128", ""},
		{"https_proxy", map[string]string{"https_proxy": "http://proxy.test:3128"}, nil, "edge.example.com:7844", "http://proxy.test:3128", ""},
		{"HTTP_PROXY is for http", map[string]string{"HTTP_PROXY": "http://proxy.test:3128"}, nil, "edge.example.com:7844", "", ""},
		{"scheme-less proxy", map[string]string{"HTTPS_PROXY": "proxy.test:3128"}, nil, "edge.example.com:7844", "http://proxy.test:3128", ""},
		{"NO_PROXY domain", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "example.com"}, nil, "edge.example.com:7844", "", ""},
		{"NO_PROXY exact", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "edge.example.com"}, nil, "edge.example.com:7844", "", ""},
		{"NO_PROXY other", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "other.com"}, nil, "edge.example.com:7844", "http://proxy.test:3128", ""},
		{"NO_PROXY other port", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "edge.example.com:443"}, nil, "edge.example.com:7844", "http://proxy.test:3128", ""},
		{"NO_PROXY this port", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "edge.example.com:7844"}, nil, "edge.example.com:7844", "", ""},
		{"NO_PROXY *", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "*"}, nil, "edge.example.com:7844", "", ""},
		{"NO_PROXY CIDR", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "10.0.0.0/8"}, nil, "10.1.2.3:7844", "", ""},
		{"loopback never", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128"}, nil, "127.0.0.1:7844", "", ""},
		{"localhost never", map[string]string{"HTTPS_PROXY": "http://proxy.test:3128"}, nil, "localhost:7844", "", ""},
		{"Config.Proxy wins", map[string]string{"HTTPS_PROXY": "http://other.test:1"}, fixedProxy(proxyURL), "edge.example.com:7844", "http://proxy.test:3128", ""},
		{"Config.Proxy none", map[string]string{"HTTPS_PROXY": "http://other.test:1"}, func(*url.URL) (*url.URL, error) { return nil, nil }, "edge.example.com:7844", "", ""},
		{"Config.Proxy sees the edge", nil, func(u *url.URL) (*url.URL, error) {
			if u.String() != "https://edge.example.com:7844" {
				return nil, fmt.Errorf("got %s", u)
			}
			return proxyURL, nil
		}, "edge.example.com:7844", "http://proxy.test:3128", ""},
		{"Config.Proxy error", nil, func(*url.URL) (*url.URL, error) { return nil, errors.New("no proxy today") }, "edge.example.com:7844", "", "no proxy today"},
		{"https proxy unsupported", map[string]string{"HTTPS_PROXY": "https://proxy.test:3128"}, nil, "edge.example.com:7844", "", `scheme "https" not supported`},
		{"socks proxy unsupported", map[string]string{"HTTPS_PROXY": "socks5://proxy.test:1080"}, nil, "edge.example.com:7844", "", `scheme "socks5" not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "REQUEST_METHOD"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := Config{Proxy: tc.proxy}.proxyFor(tc.addr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %q", err, tc.want)
			}
			gotS := ""
			if got != nil {
				gotS = got.String()
			}
			if gotS != tc.want {
				t.Errorf("got proxy %q, want %q", gotS, tc.want)
			}
		})
	}
}

// fakeProxy answers one CONNECT with a canned response, and records the
// request.
func fakeProxy(t *testing.T, answer string) (u *url.URL, got <-chan *http.Request) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *http.Request, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		ch <- req
		io.WriteString(c, answer)
		// Hold the connection until the client hangs up.
		io.Copy(io.Discard, c)
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return &url.URL{Scheme: "http", Host: l.Addr().String()}, ch
}

// TestConnectRequest checks the CONNECT request itself, and answers a
// proxy may give.
func TestConnectRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		user     *url.Userinfo
		answer   string
		wantAuth string
		wantErr  string
	}{
		{"refused", nil, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad", "", "502 Bad Gateway"},
		{"basic auth", url.UserPassword("al:ice", "p@ss"), "HTTP/1.1 403 Forbidden\r\n\r\n", "Basic YWw6aWNlOnBAc3M=", "403"},
		{"user only", url.User("bob"), "HTTP/1.1 403 Forbidden\r\n\r\n", "Basic Ym9iOg==", "403"},
		{"bytes after 200", nil, "HTTP/1.1 200 Connection established\r\n\r\nsurprise", "", "unexpected bytes"},
		{"not HTTP", nil, "SSH-2.0-OpenSSH\r\n", "", "malformed HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tunneltest.CheckLeaks(t)
			ctx := tunneltest.Context(t)
			u, got := fakeProxy(t, tc.answer)
			u.User = tc.user
			c, err := Dial(ctx, "edge.test:7844", tunneltest.NewTestPKI(t).Client, Config{Proxy: fixedProxy(u)})
			if err == nil {
				c.Close(tunnel.CodeNormal, "")
				t.Fatal("got a connection, want an error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Dial: got %v, want an error containing %q", err, tc.wantErr)
			}
			req := <-got
			if req.Method != http.MethodConnect || req.RequestURI != "edge.test:7844" || req.Host != "edge.test:7844" {
				t.Errorf("request: got %s %s (Host %s), want CONNECT edge.test:7844", req.Method, req.RequestURI, req.Host)
			}
			if got := req.Header.Get("Proxy-Authorization"); got != tc.wantAuth {
				t.Errorf("Proxy-Authorization: got %q, want %q", got, tc.wantAuth)
			}
		})
	}
}

// TestConnectTimeout: a proxy that never answers costs HandshakeTimeout.
func TestConnectTimeout(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	u := &url.URL{Scheme: "http", Host: l.Addr().String()}
	c, err := Dial(ctx, "edge.test:7844", tunneltest.NewTestPKI(t).Client, Config{Proxy: fixedProxy(u), HandshakeTimeout: 100 * time.Millisecond})
	if err == nil {
		c.Close(tunnel.CodeNormal, "")
		t.Fatal("got a connection, want a timeout")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	(<-accepted).Close()
}
