package edge

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/adit-dev/adit/tunnel"
)

func TestRewriteRequestHeader(t *testing.T) {
	tests := []struct {
		name    string
		header  http.Header
		remote  string
		tls     bool
		trusted []netip.Prefix
		want    http.Header
	}{
		{
			name: "hop-by-hop fields and those Connection names go",
			header: http.Header{
				"Connection": {"keep-alive, X-Hop", " x-other "}, "X-Hop": {"1"}, "X-Other": {"2"},
				"Keep-Alive": {"timeout=5"}, "Proxy-Connection": {"keep-alive"}, "Proxy-Authorization": {"Basic eA=="},
				"Transfer-Encoding": {"chunked"}, "Trailer": {"X-Sum"}, "Te": {"gzip"}, "Upgrade": {"h2c"},
				"Accept": {"*/*"},
			},
			remote: "192.0.2.1:5555",
			want: http.Header{"Accept": {"*/*"}, "X-Forwarded-For": {"192.0.2.1"}, "X-Real-Ip": {"192.0.2.1"}, "Cf-Connecting-Ip": {"192.0.2.1"},
				"X-Forwarded-Host": {"app.test"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name:   "TE: trailers is kept alone",
			header: http.Header{"Te": {"gzip, trailers"}},
			remote: "192.0.2.1:5555",
			want: http.Header{"Te": {"trailers"}, "X-Forwarded-For": {"192.0.2.1"}, "X-Real-Ip": {"192.0.2.1"}, "Cf-Connecting-Ip": {"192.0.2.1"},
				"X-Forwarded-Host": {"app.test"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name: "the client's forwarding fields are not trusted",
			header: http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"evil.test"},
				"X-Forwarded-Proto": {"https"}, "Forwarded": {"for=6.6.6.6"}},
			remote: "[2001:db8::1]:443",
			tls:    true,
			want: http.Header{"X-Forwarded-For": {"2001:db8::1"}, "X-Forwarded-Host": {"app.test"},
				"X-Forwarded-Proto": {"https"}, "X-Real-Ip": {"2001:db8::1"}, "Cf-Connecting-Ip": {"2001:db8::1"}},
		},
		{
			name: "a client's X-Real-Ip, Cf-Connecting-Ip and True-Client-Ip are replaced",
			header: http.Header{"X-Real-Ip": {"6.6.6.6"}, "Cf-Connecting-Ip": {"6.6.6.6"}, "True-Client-Ip": {"6.6.6.6"},
				"X-Forwarded-For": {"6.6.6.6"}},
			remote: "192.0.2.1:5555",
			want: http.Header{"X-Forwarded-For": {"192.0.2.1"}, "X-Real-Ip": {"192.0.2.1"}, "Cf-Connecting-Ip": {"192.0.2.1"},
				"X-Forwarded-Host": {"app.test"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name:    "a trusted proxy's X-Forwarded-For is kept and extended; the visitor is its rightmost untrusted entry",
			header:  http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7", "10.0.0.2"}, "X-Real-Ip": {"6.6.6.6"}},
			remote:  "10.0.0.1:5555",
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			want: http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.0.0.2, 10.0.0.1"},
				"X-Real-Ip": {"198.51.100.7"}, "Cf-Connecting-Ip": {"198.51.100.7"},
				"X-Forwarded-Host": {"app.test"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name:    "an untrusted peer's X-Forwarded-For is replaced even when proxies are configured",
			header:  http.Header{"X-Forwarded-For": {"6.6.6.6"}},
			remote:  "192.0.2.1:5555",
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			want: http.Header{"X-Forwarded-For": {"192.0.2.1"}, "X-Real-Ip": {"192.0.2.1"}, "Cf-Connecting-Ip": {"192.0.2.1"},
				"X-Forwarded-Host": {"app.test"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name:   "an upgrade keeps Connection and Upgrade",
			header: http.Header{"Connection": {"Upgrade, X-Hop"}, "Upgrade": {"websocket"}, "X-Hop": {"1"}},
			remote: "192.0.2.1:5555",
			want: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "X-Forwarded-For": {"192.0.2.1"}, "X-Real-Ip": {"192.0.2.1"}, "Cf-Connecting-Ip": {"192.0.2.1"},
				"X-Forwarded-Host": {"app.test"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name:   "no client address, no X-Forwarded-For",
			header: http.Header{},
			remote: "",
			want:   http.Header{"X-Forwarded-Host": {"app.test"}, "X-Forwarded-Proto": {"http"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{Header: tt.header, Host: "app.test", RemoteAddr: tt.remote}
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			ip, viaProxy := clientIP(r, tt.trusted)
			rewriteRequestHeader(r, ip, viaProxy)
			if !reflect.DeepEqual(r.Header, tt.want) {
				t.Errorf("header:\n got %v\nwant %v", r.Header, tt.want)
			}
		})
	}
}

// get sends a GET for path on the rig's routed host.
func (r *upgradeRig) get(t *testing.T, path string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest("GET", r.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "ws.test"
	return http.DefaultClient.Do(req)
}

func dataFrame(p string) []byte {
	return append(tunnel.AppendFrameHeader(nil, tunnel.FrameData, len(p)), p...)
}

func TestResponseRelayed(t *testing.T) {
	rig := newUpgradeRig(t, func(t *testing.T, s *testStream, br *bufio.Reader, h *tunnel.RequestHeader) {
		io.Copy(io.Discard, br)
		rh := &tunnel.ResponseHeader{Status: http.StatusCreated, ContentLength: -1, Header: http.Header{
			"Connection": {"X-Drop"}, "X-Drop": {"1"}, "Keep-Alive": {"timeout=5"},
			"X-Multi": {"a", "b"}, "Content-Type": {"text/plain"},
		}, Trailer: []string{"X-Sum"}}
		answer(t, s, rh, string(dataFrame("hello, "))+string(dataFrame("world")))
		// X-Late was not announced: it travels with the TrailerPrefix.
		tunnel.NewBodyWriter(s).CloseWithTrailers(http.Header{"X-Sum": {"42"}, "X-Late": {"yes"}})
		s.CloseWrite()
	})
	resp, err := rig.get(t, "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"status", resp.StatusCode, http.StatusCreated},
		{"body", string(body), "hello, world"},
		{"multi-valued header", strings.Join(resp.Header.Values("X-Multi"), ","), "a,b"},
		{"field named by Connection", resp.Header.Get("X-Drop"), ""},
		{"Keep-Alive", resp.Header.Get("Keep-Alive"), ""},
		{"request ID", resp.Header.Get(RequestIDHeader) != "", true},
		{"announced trailer", resp.Trailer.Get("X-Sum"), "42"},
		{"unannounced trailer", resp.Trailer.Get("X-Late"), "yes"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	rig.waitIdle(t)
}

// A body that breaks off must reach the client as an error, never as a
// shorter answer that looks whole.
func TestResponseBrokenBodyAborts(t *testing.T) {
	rig := newUpgradeRig(t, func(t *testing.T, s *testStream, br *bufio.Reader, h *tunnel.RequestHeader) {
		io.Copy(io.Discard, br)
		answer(t, s, &tunnel.ResponseHeader{Status: 200, ContentLength: 100,
			Header: http.Header{"Content-Length": {"100"}}}, string(dataFrame("only ten..")))
		// Closing without CloseWrite resets the stream.
	})
	// The client sees the error at the header (nothing was flushed yet)
	// or in the body.
	resp, err := rig.get(t, "/x")
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("got %d %q and no error, want an error", resp.StatusCode, body)
		}
	}
	rig.waitIdle(t)
}

// An event stream reaches the client event by event.
func TestEventStreamFlushed(t *testing.T) {
	next := make(chan struct{})
	rig := newUpgradeRig(t, func(t *testing.T, s *testStream, br *bufio.Reader, h *tunnel.RequestHeader) {
		io.Copy(io.Discard, br)
		answer(t, s, &tunnel.ResponseHeader{Status: 200, ContentLength: -1,
			Header: http.Header{"Content-Type": {"text/event-stream; charset=utf-8"}}}, string(dataFrame("data: 1\n\n")))
		<-next
		s.Write(dataFrame("data: 2\n\n"))
		s.Write(tunnel.AppendEnd(nil))
		s.CloseWrite()
	})
	resp, err := rig.get(t, "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i, want := range []string{"data: 1\n", "\n", "data: 2\n", "\n"} {
		if i == 2 {
			close(next) // the first event came while the stream is open
		}
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("line %d: got %q, %v; want %q", i, line, err, want)
		}
	}
	rig.waitIdle(t)
}

func TestIsEventStream(t *testing.T) {
	tests := []struct {
		ct   string
		want bool
	}{
		{"text/event-stream", true},
		{"Text/Event-Stream; charset=utf-8", true},
		{" text/event-stream ;x", true},
		{"text/plain", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isEventStream(http.Header{"Content-Type": {tt.ct}}); got != tt.want {
			t.Errorf("isEventStream(%q): got %v, want %v", tt.ct, got, tt.want)
		}
	}
}
