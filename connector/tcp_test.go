package connector

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/proxy"

	"github.com/adit-dev/adit/carrier"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// tcpTestPair returns both ends of a loopback TCP connection.
func tcpTestPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1.(*net.TCPConn), c2.(*net.TCPConn)
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func testConnector(t *testing.T, config string) *Connector {
	t.Helper()
	cfg, err := ingress.Parse([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingress.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	r, err := newRouter(ing, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &Connector{log: log}
	c.router.Store(r)
	t.Cleanup(r.close)
	return c
}

// openTCP runs serveTCP for h on one end of a TCP pair standing in for a
// tunnel stream, and returns the answer and the edge's end.
func openTCP(t *testing.T, c *Connector, h tunnel.RequestHeader) (tunnel.ResponseHeader, *net.TCPConn, *bufio.Reader) {
	t.Helper()
	edge, conn := tcpTestPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.serveTCP(&fakeStream{TCPConn: conn}, bufio.NewReader(conn), &h, c.log)
		conn.Close()
	}()
	t.Cleanup(func() { edge.Close(); <-done })
	br := bufio.NewReader(edge)
	var rh tunnel.ResponseHeader
	if err := tunnel.ReadMessage(br, &rh); err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return rh, edge, br
}

// roundTrip writes msg, half-closes, and reads to the end.
func roundTrip(t *testing.T, w *net.TCPConn, r io.Reader, msg string) string {
	t.Helper()
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatal(err)
	}
	w.CloseWrite()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	return string(got)
}

func TestServeTCP(t *testing.T) {
	t.Parallel()
	origin := tunneltest.EchoServer(t, "")
	dead := closedAddr(t)
	c := testConnector(t, `
ingress:
  - hostname: echo.example.test
    service: tcp://`+origin+`
  - hostname: ssh.example.test
    service: ssh://`+origin+`
  - hostname: dead.example.test
    service: tcp://`+dead+`
  - hostname: web.example.test
    service: http://`+origin+`
  - hostname: bastion.example.test
    service: bastion
    originRequest: {ipRules: [{prefix: 127.0.0.0/8, allow: true}]}
  - hostname: mode.example.test
    service: tcp://`+dead+`
    originRequest:
      bastionMode: true
      ipRules: [{prefix: 127.0.0.0/8, allow: true}]
  - hostname: fenced.example.test
    service: bastion
    originRequest:
      ipRules:
        - prefix: 127.0.0.0/8
          ports: [1]
          allow: true
        - prefix: 10.0.0.0/8
          allow: true
  - service: http_status:404
`)
	dest := func(name, v string) http.Header { return http.Header{name: {v}} }
	tests := []struct {
		name       string
		host       string
		header     http.Header
		wantStatus int
		wantErr    string // in the answer's error; "" for a working pipe
	}{
		{"tcp origin", "echo.example.test", nil, 200, ""},
		{"ssh origin, host with port", "SSH.example.test:443", nil, 200, ""},
		{"unreachable origin", "dead.example.test", nil, 502, "connection refused"},
		{"http rule", "web.example.test", nil, 421, "serves http over HTTP, not TCP"},
		{"catch-all http_status rule", "other.example.test", nil, 421, "not TCP"},
		{"bastion", "bastion.example.test", dest(carrier.DestinationHeader, origin), 200, ""},
		{"bastion, cloudflared header", "bastion.example.test", dest(carrier.JumpDestinationHeader, "tcp://"+origin), 200, ""},
		{"bastion mode overrides the origin", "mode.example.test", dest(carrier.DestinationHeader, origin), 200, ""},
		{"bastion without destination", "bastion.example.test", nil, 400, "no destination"},
		{"bastion with a bad destination", "bastion.example.test", dest(carrier.DestinationHeader, "nope"), 400, "want host:port"},
		{"bastion, denied by ipRules", "fenced.example.test", dest(carrier.DestinationHeader, origin), 502, "not allowed by the rule's ipRules"},
		{"bastion, denied: no rule matches", "fenced.example.test", dest(carrier.DestinationHeader, "192.0.2.1:22"), 502, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rh, edge, br := openTCP(t, c, tunnel.RequestHeader{Type: tunnel.StreamTCP, Host: tt.host, Header: tt.header, RequestID: "r1"})
			if rh.Status != tt.wantStatus || !strings.Contains(rh.Error, tt.wantErr) || (tt.wantErr == "") != (rh.Error == "") {
				t.Fatalf("answer = %d %q, want %d with an error containing %q", rh.Status, rh.Error, tt.wantStatus, tt.wantErr)
			}
			if rh.Status != 200 {
				if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
					t.Errorf("after an error answer: read %q, %v; want a clean end", rest, err)
				}
				return
			}
			msg := strings.Repeat("ping ", 10_000)
			if got := roundTrip(t, edge, br, msg); got != msg {
				t.Errorf("echo of %d bytes = %d bytes, want the same", len(msg), len(got))
			}
		})
	}
}

func TestServeTCPSOCKS(t *testing.T) {
	t.Parallel()
	origin := tunneltest.EchoServer(t, "")
	c := testConnector(t, `
ingress:
  - hostname: socks.example.test
    service: socks-proxy
    originRequest:
      ipRules:
        - prefix: 127.0.0.0/8
          allow: true
  - hostname: tcpsocks.example.test
    service: tcp://127.0.0.1:1
    originRequest:
      proxyType: socks
      ipRules: [{prefix: 127.0.0.0/8, allow: true}]
  - service: http_status:404
`)
	for _, host := range []string{"socks.example.test", "tcpsocks.example.test"} {
		t.Run(host, func(t *testing.T) {
			rh, edge, br := openTCP(t, c, tunnel.RequestHeader{Type: tunnel.StreamTCP, Host: host})
			if rh.Status != 200 || rh.Error != "" {
				t.Fatalf("answer = %d %q, want 200", rh.Status, rh.Error)
			}
			d, err := proxy.SOCKS5("tcp", "unused", nil, &connDialer{c: &bufConn{TCPConn: edge, r: br}})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := d.Dial("tcp", origin)
			if err != nil {
				t.Fatalf("SOCKS5 CONNECT %s: %v", origin, err)
			}
			if got := roundTrip(t, edge, conn, "through socks"); got != "through socks" {
				t.Errorf("echo through SOCKS = %q", got)
			}
		})
	}

	t.Run("denied", func(t *testing.T) {
		_, edge, br := openTCP(t, c, tunnel.RequestHeader{Type: tunnel.StreamTCP, Host: "socks.example.test"})
		d, _ := proxy.SOCKS5("tcp", "unused", nil, &connDialer{c: &bufConn{TCPConn: edge, r: br}})
		if _, err := d.Dial("tcp", "192.0.2.1:22"); err == nil || !strings.Contains(err.Error(), "not allowed") {
			t.Errorf("SOCKS5 CONNECT to a denied address: got %v, want not allowed", err)
		}
	})

	t.Run("domain name", func(t *testing.T) {
		_, edge, br := openTCP(t, c, tunnel.RequestHeader{Type: tunnel.StreamTCP, Host: "socks.example.test"})
		_, port, _ := net.SplitHostPort(origin)
		d, _ := proxy.SOCKS5("tcp", "unused", nil, &connDialer{c: &bufConn{TCPConn: edge, r: br}})
		conn, err := d.Dial("tcp", "localhost:"+port)
		if err != nil {
			t.Skipf("localhost does not resolve to 127.0.0.1 here: %v", err)
		}
		if got := roundTrip(t, edge, conn, "by name"); got != "by name" {
			t.Errorf("echo = %q", got)
		}
	})

	t.Run("bind is refused", func(t *testing.T) {
		_, edge, br := openTCP(t, c, tunnel.RequestHeader{Type: tunnel.StreamTCP, Host: "socks.example.test"})
		edge.Write([]byte{5, 1, 0})
		var sel [2]byte
		if _, err := io.ReadFull(br, sel[:]); err != nil || sel != [2]byte{5, 0} {
			t.Fatalf("method selection = %v, %v; want no-auth", sel, err)
		}
		req := socksRequest{Cmd: 2, Atyp: socksAtypIPv4, Host: "127.0.0.1", Port: 80}
		edge.Write(appendSOCKSRequest(nil, req))
		var reply [10]byte
		if _, err := io.ReadFull(br, reply[:]); err != nil || reply[1] != socksCommandNotSupported {
			t.Errorf("reply to BIND = %v, %v; want code %d", reply, err, socksCommandNotSupported)
		}
	})

	t.Run("authentication only", func(t *testing.T) {
		_, edge, br := openTCP(t, c, tunnel.RequestHeader{Type: tunnel.StreamTCP, Host: "socks.example.test"})
		edge.Write([]byte{5, 1, 2})
		got, _ := io.ReadAll(br)
		if !bytes.Equal(got, []byte{5, 0xff}) {
			t.Errorf("answer to a client wanting user/password = %v, want [5 255] and an end", got)
		}
	})
}

// bufConn reads through the buffered reader that read the answer header.
type bufConn struct {
	*net.TCPConn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connDialer hands an existing connection to the SOCKS client.
type connDialer struct{ c net.Conn }

func (d *connDialer) Dial(network, addr string) (net.Conn, error) { return d.c, nil }

func TestTCPModeOf(t *testing.T) {
	tests := []struct {
		service string
		or      ingress.OriginRequest
		want    tcpMode
	}{
		{"tcp://h:1", ingress.OriginRequest{}, tcpFixed},
		{"ssh://h", ingress.OriginRequest{}, tcpFixed},
		{"rdp://h", ingress.OriginRequest{}, tcpFixed},
		{"smb://h", ingress.OriginRequest{}, tcpFixed},
		{"bastion", ingress.OriginRequest{}, tcpBastion},
		{"tcp://h:1", ingress.OriginRequest{BastionMode: true}, tcpBastion},
		{"http://h", ingress.OriginRequest{BastionMode: true}, tcpBastion},
		{"socks-proxy", ingress.OriginRequest{}, tcpSOCKS},
		{"ssh://h", ingress.OriginRequest{ProxyType: "socks"}, tcpSOCKS},
		{"http://h", ingress.OriginRequest{}, tcpNone},
		{"hello_world", ingress.OriginRequest{}, tcpNone},
		{"http_status:404", ingress.OriginRequest{}, tcpNone},
	}
	for _, tt := range tests {
		svc, err := ingress.ParseService(tt.service)
		if err != nil {
			t.Fatal(err)
		}
		rule := &ingress.Rule{Service: svc, Origin: tt.or}
		if got := tcpModeOf(rule); got != tt.want {
			t.Errorf("tcpModeOf(%s, %+v) = %d, want %d", tt.service, tt.or, got, tt.want)
		}
	}
}

func TestIPAllowed(t *testing.T) {
	rules := []ingress.IPRule{
		{Prefix: "10.1.0.0/16", Ports: []int{22}, Allow: false},
		{Prefix: "10.0.0.0/8", Allow: true},
		{Prefix: "2001:db8::/32", Ports: []int{443, 8443}, Allow: true},
		{Prefix: "not a prefix", Allow: true},
	}
	tests := []struct {
		rules []ingress.IPRule
		addr  string
		port  int
		want  bool
	}{
		{nil, "192.0.2.1", 22, true},
		{rules, "10.1.2.3", 22, false},
		{rules, "10.1.2.3", 80, true},
		{rules, "10.9.9.9", 22, true},
		{rules, "::ffff:10.9.9.9", 22, true},
		{rules, "2001:db8::1", 443, true},
		{rules, "2001:db8::1", 22, false},
		{rules, "192.0.2.1", 22, false},
	}
	for _, tt := range tests {
		if got := ipAllowed(tt.rules, netip.MustParseAddr(tt.addr), tt.port); got != tt.want {
			t.Errorf("ipAllowed(%d rules, %s, %d) = %v, want %v", len(tt.rules), tt.addr, tt.port, got, tt.want)
		}
	}
}

func TestParseDestination(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"10.0.0.1:22", "10.0.0.1:22", true},
		{"db.internal:5432", "db.internal:5432", true},
		{"[2001:db8::1]:22", "[2001:db8::1]:22", true},
		{"tcp://10.0.0.1:22", "10.0.0.1:22", true},
		{"ssh://host:2222", "host:2222", true},
		{"10.0.0.1", "", false},
		{"host:0", "", false},
		{"host:70000", "", false},
		{"host:ssh", "", false},
		{":22", "", false},
		{"a b:22", "", false},
		{"tcp://", "", false},
	}
	for _, tt := range tests {
		got, err := parseDestination(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDestination(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzParseDestination checks that accepted destinations are canonical
// host:port with a valid port.
func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"10.0.0.1:22", "tcp://h:1", "[::1]:80", "h", "h:0", "ssh://[::1]:22/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseDestination(s)
		if err != nil {
			return
		}
		again, err := parseDestination(got)
		if err != nil || again != got {
			t.Fatalf("parseDestination(%q) = %q, which parses to %q, %v", s, got, again, err)
		}
	})
}

// appendSOCKSRequest encodes q as a SOCKS5 request.
func appendSOCKSRequest(b []byte, q socksRequest) []byte {
	b = append(b, socksVersion, q.Cmd, 0, q.Atyp)
	switch q.Atyp {
	case socksAtypIPv4, socksAtypIPv6:
		b = append(b, netip.MustParseAddr(q.Host).AsSlice()...)
	case socksAtypDomain:
		b = append(b, byte(len(q.Host)))
		b = append(b, q.Host...)
	}
	return binary.BigEndian.AppendUint16(b, q.Port)
}

func TestReadSOCKSRequest(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want socksRequest
		err  string
	}{
		{"ipv4", []byte{5, 1, 0, 1, 10, 0, 0, 1, 0, 22}, socksRequest{Cmd: 1, Atyp: 1, Host: "10.0.0.1", Port: 22}, ""},
		{"ipv6", append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 1, 187), socksRequest{Cmd: 1, Atyp: 4, Host: "2001:db8::1", Port: 443}, ""},
		{"domain", []byte{5, 1, 0, 3, 3, 'a', '.', 'b', 0, 80}, socksRequest{Cmd: 1, Atyp: 3, Host: "a.b", Port: 80}, ""},
		{"empty domain", []byte{5, 1, 0, 3, 0, 0, 80}, socksRequest{}, "bad domain"},
		{"bad address type", []byte{5, 1, 0, 9}, socksRequest{}, "unsupported address type"},
		{"version 4", []byte{4, 1, 0, 1, 10, 0, 0, 1, 0, 22}, socksRequest{}, "version"},
		{"truncated", []byte{5, 1, 0, 1, 10, 0}, socksRequest{}, "unexpected EOF"},
	}
	for _, tt := range tests {
		got, err := readSOCKSRequest(bytes.NewReader(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: got %+v, %v; want an error with %q", tt.name, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// FuzzReadSOCKSRequest checks that a request read back from its encoding
// is the same request, and that reading never consumes more than it needs.
func FuzzReadSOCKSRequest(f *testing.F) {
	f.Add([]byte{5, 1, 0, 1, 10, 0, 0, 1, 0, 22})
	f.Add([]byte{5, 1, 0, 3, 3, 'a', '.', 'b', 0, 80})
	f.Add(append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 1, 187))
	f.Add([]byte{5, 2, 0, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		q, err := readSOCKSRequest(r)
		if err != nil {
			return
		}
		used := bytes.Clone(in[:len(in)-r.Len()])
		used[2] = 0 // RSV is ignored
		enc := appendSOCKSRequest(nil, q)
		if !bytes.Equal(enc, used) {
			t.Fatalf("request %+v read from %x encodes to %x", q, used, enc)
		}
		again, err := readSOCKSRequest(bytes.NewReader(enc))
		if err != nil || again != q {
			t.Fatalf("request %+v reads back as %+v, %v", q, again, err)
		}
	})
}
