package origin

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/adit-dev/adit/ingress"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newRule compiles a one-rule config: service with the given originRequest (a YAML
// flow mapping body like "noTLSVerify: true").
func newRule(t *testing.T, service, originRequest string) *ingress.Rule {
	t.Helper()
	yml := fmt.Sprintf("ingress:\n  - service: %q\n    originRequest: {%s}\n", service, originRequest)
	cfg, err := ingress.Parse([]byte(yml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	in, err := ingress.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &in.Rules[0]
}

func newService(t *testing.T, service, originRequest string) HTTPService {
	t.Helper()
	svc, err := NewHTTP(newRule(t, service, originRequest), nil)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// serverRequest builds a request as the connector does: server-style, with the
// public hostname in Host and only a path and query in URL.
func serverRequest(method, host, target string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, target, body)
	req.Host = host
	req.RemoteAddr = ""
	if body == nil {
		req.Body = http.NoBody
	}
	return req
}

func roundTrip(t *testing.T, svc HTTPService, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := svc.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// seen is what an origin handler saw of a request.
type seen struct {
	method, host, uri, proto string
	header                   http.Header
	body                     string
	contentLength            int64
	transferEncoding         []string
	trailer                  http.Header
	sni                      string
}

// recorder is an origin handler that records each request and answers "ok".
func recorder(ch chan<- seen) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := seen{
			method: r.Method, host: r.Host, uri: r.RequestURI, proto: r.Proto,
			header: r.Header.Clone(), body: string(body), contentLength: r.ContentLength,
			transferEncoding: r.TransferEncoding, trailer: r.Trailer.Clone(),
		}
		if r.TLS != nil {
			s.sni = r.TLS.ServerName
		}
		ch <- s
		io.WriteString(w, "ok")
	}
}

func TestHTTPOrigin(t *testing.T) {
	ch := make(chan seen, 1)
	srv := httptest.NewServer(recorder(ch))
	defer srv.Close()
	svc := newService(t, srv.URL, "")
	if svc.String() != srv.URL {
		t.Errorf("String() = %q, want %q", svc.String(), srv.URL)
	}

	req := serverRequest("POST", "app.example.com", "/api/items?id=7&x=%2F", strings.NewReader("payload"))
	req.Header.Set("X-Custom", "yes")
	req.Header.Set("Content-Length", "7")
	req.ContentLength = -1 // as if the connector did not know
	resp, body := roundTrip(t, svc, req)
	got := <-ch
	tests := []struct {
		name      string
		got, want any
	}{
		{"status", resp.StatusCode, 200},
		{"response body", body, "ok"},
		{"method", got.method, "POST"},
		{"Host is the public hostname", got.host, "app.example.com"},
		{"path and query", got.uri, "/api/items?id=7&x=%2F"},
		{"custom header", got.header.Get("X-Custom"), "yes"},
		{"no User-Agent added", got.header.Values("User-Agent"), []string(nil)},
		{"no Accept-Encoding added", got.header.Values("Accept-Encoding"), []string(nil)},
		{"no X-Forwarded-Host", got.header.Get("X-Forwarded-Host"), ""},
		{"body", got.body, "payload"},
		{"Content-Length from header", got.contentLength, int64(7)},
		{"request not modified: URL", req.URL.String(), "/api/items?id=7&x=%2F"},
		{"request not modified: header", req.Header.Get("X-Forwarded-Host"), ""},
	}
	for _, tt := range tests {
		if fmt.Sprint(tt.got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestHTTPHostHeader(t *testing.T) {
	ch := make(chan seen, 1)
	srv := httptest.NewServer(recorder(ch))
	defer srv.Close()
	svc := newService(t, srv.URL, "httpHostHeader: internal.local")
	roundTrip(t, svc, serverRequest("GET", "app.example.com:443", "/", nil))
	got := <-ch
	if got.host != "internal.local" {
		t.Errorf("Host: got %q, want internal.local", got.host)
	}
	if xfh := got.header.Get("X-Forwarded-Host"); xfh != "app.example.com:443" {
		t.Errorf("X-Forwarded-Host: got %q, want app.example.com:443", xfh)
	}
}

func TestUserAgentAndEncodingPassThrough(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, "compressed")
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-UA", r.UserAgent())
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz.Bytes())
	}))
	defer srv.Close()
	svc := newService(t, srv.URL, "")
	req := serverRequest("GET", "a.example.com", "/", nil)
	req.Header.Set("User-Agent", "curl/8")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, body := roundTrip(t, svc, req)
	if ua := resp.Header.Get("X-UA"); ua != "curl/8" {
		t.Errorf("origin saw User-Agent %q, want curl/8", ua)
	}
	if body != gz.String() || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("got body %q encoding %q, want the gzip bytes untouched", body, resp.Header.Get("Content-Encoding"))
	}
}

func TestStreamingResponse(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer srv.Close()
	svc := newService(t, srv.URL, "")
	resp, err := svc.RoundTrip(serverRequest("GET", "a.example.com", "/events", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: got %q, %v", i, line, err)
		}
		br.ReadString('\n')
		next <- struct{}{} // the origin sends the next event only now: nothing buffered
	}
}

func TestTrailers(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Result")
		w.Header().Set("X-Saw-Trailer", "pending")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header().Set("X-Result", "req trailer "+r.Trailer.Get("X-Checksum")+" over "+r.Proto)
	})
	h1 := httptest.NewServer(handler)
	defer h1.Close()
	h2c := httptest.NewUnstartedServer(handler)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetHTTP1(true)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	defer h2c.Close()

	for _, tt := range []struct {
		name, service, proto string
	}{
		{"http1", h1.URL, "HTTP/1.1"},
		{"h2c", "h2c://" + h2c.Listener.Addr().String(), "HTTP/2.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, tt.service, "")
			pr, pw := io.Pipe()
			req := serverRequest("POST", "grpc.example.com", "/svc/Method", pr)
			req.ContentLength = -1
			req.Trailer = http.Header{"X-Checksum": nil}
			go func() {
				io.WriteString(pw, "request body")
				req.Trailer.Set("X-Checksum", "abc123") // filled before EOF, as a server does
				pw.Close()
			}()
			resp, body := roundTrip(t, svc, req)
			want := "req trailer abc123 over " + tt.proto
			if body != "body" || resp.Trailer.Get("X-Result") != want {
				t.Errorf("got body %q trailer %q, want body and %q", body, resp.Trailer.Get("X-Result"), want)
			}
		})
	}
}

func TestDisableChunkedEncoding(t *testing.T) {
	ch := make(chan seen, 1)
	srv := httptest.NewServer(recorder(ch))
	defer srv.Close()
	svc := newService(t, srv.URL, "disableChunkedEncoding: true")

	req := serverRequest("POST", "a.example.com", "/upload", io.NopCloser(strings.NewReader("12345")))
	req.ContentLength = -1
	req.Header.Set("Content-Length", "5")
	roundTrip(t, svc, req)
	got := <-ch
	if got.contentLength != 5 || len(got.transferEncoding) != 0 || got.body != "12345" {
		t.Errorf("origin got length %d, transfer-encoding %v, body %q; want 5, none, 12345", got.contentLength, got.transferEncoding, got.body)
	}

	closed := &closeRecorder{Reader: strings.NewReader("12345")}
	req = serverRequest("POST", "a.example.com", "/upload", closed)
	req.ContentLength = -1
	resp, body := roundTrip(t, svc, req)
	if resp.StatusCode != http.StatusLengthRequired || !strings.Contains(body, "disableChunkedEncoding") {
		t.Errorf("unknown length: got %d %q, want 411 naming disableChunkedEncoding", resp.StatusCode, body)
	}
	if !closed.closed {
		t.Error("request body not closed")
	}
	select {
	case s := <-ch:
		t.Errorf("origin got a request: %+v", s)
	default:
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestHTTPStatus(t *testing.T) {
	svc := newService(t, "http_status:418", "")
	body := &closeRecorder{Reader: strings.NewReader("ignored")}
	req := serverRequest("POST", "a.example.com", "/", body)
	resp, got := roundTrip(t, svc, req)
	if resp.StatusCode != 418 || got != "" || resp.Status != "418 I'm a teapot" {
		t.Errorf("got %q %q, want 418 with an empty body", resp.Status, got)
	}
	if !body.closed {
		t.Error("request body not closed")
	}
	if svc.String() != "http_status:418" {
		t.Errorf("String() = %q", svc.String())
	}
}

func TestNotHTTP(t *testing.T) {
	for _, service := range []string{"tcp://localhost:5432", "ssh://localhost", "bastion", "rdp://h", "smb://h", "socks-proxy"} {
		svc, err := ingress.ParseService(service)
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewHTTP(&ingress.Rule{Service: svc}, nil)
		want := fmt.Sprintf("origin: service kind %s is not an HTTP service", svc.Kind)
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %q", service, err, want)
		}
	}
}

func TestOriginDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	svc := newService(t, "http://"+addr, "connectTimeout: 2s")
	_, err = svc.RoundTrip(serverRequest("GET", "a.example.com", "/", nil))
	if err == nil || !strings.HasPrefix(err.Error(), "origin: http://"+addr+": ") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("got %v, want an origin error saying the connection was refused", err)
	}
}

func TestTransportOptions(t *testing.T) {
	rule := newRule(t, "https://localhost:8443", `connectTimeout: 3s, tlsTimeout: 4s, tcpKeepAlive: 5s,
		noHappyEyeballs: true, keepAliveConnections: 7, keepAliveTimeout: 8s, originServerName: origin.internal,
		noTLSVerify: true, http2Origin: true`)
	p, err := newProxy(proxyTarget{name: "x", kind: ingress.KindHTTPS, scheme: "https", host: "localhost:8443",
		network: "tcp", addr: "localhost:8443"}, rule.Origin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tr, d := p.transport, newDialer(rule.Origin)
	tests := []struct {
		name      string
		got, want any
	}{
		{"dial timeout", d.Timeout, 3 * time.Second},
		{"keep-alive", d.KeepAlive, 5 * time.Second},
		{"happy eyeballs off", d.FallbackDelay, time.Duration(-1)},
		{"TLS handshake timeout", tr.TLSHandshakeTimeout, 4 * time.Second},
		{"idle per host", tr.MaxIdleConnsPerHost, 7},
		{"idle timeout", tr.IdleConnTimeout, 8 * time.Second},
		{"no decompression", tr.DisableCompression, true},
		{"no proxy", tr.Proxy == nil, true},
		{"server name", tr.TLSClientConfig.ServerName, "origin.internal"},
		{"skip verify", tr.TLSClientConfig.InsecureSkipVerify, true},
		{"http2", tr.Protocols.HTTP2(), true},
		{"upgrades: server name", p.tlsConf.ServerName, "origin.internal"},
		{"upgrades: skip verify", p.tlsConf.InsecureSkipVerify, true},
		{"upgrades: TLS handshake timeout", p.tlsTimeout, 4 * time.Second},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// testPKI is a CA and a leaf certificate it signed.
type testPKI struct {
	caFile string // CA certificate, PEM
	leaf   tls.Certificate
}

func newPKI(t *testing.T, dnsNames []string, ips ...net.IP) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "adit test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "origin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dnsNames, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testPKI{caFile: caFile, leaf: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// newTLSServer starts an https origin on 127.0.0.1 with pki's leaf, offering h2
// and http/1.1.
func newTLSServer(t *testing.T, pki testPKI, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}, NextProtos: []string{"h2", "http/1.1"}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPSOrigin(t *testing.T) {
	// The certificate names origin.internal and 127.0.0.1; a second names only
	// origin.internal, so reaching it by address needs originServerName or
	// matchSNItoHost.
	pki := newPKI(t, []string{"origin.internal"}, net.IPv4(127, 0, 0, 1))
	ch := make(chan seen, 1)
	srv := newTLSServer(t, pki, recorder(ch))
	named := newPKI(t, []string{"origin.internal"})
	namedCh := make(chan seen, 1)
	namedSrv := newTLSServer(t, named, recorder(namedCh))

	tests := []struct {
		name, service, options, host string
		ch                           chan seen
		wantErr                      string
		wantSNI, wantProto           string
	}{
		{name: "caPool", service: srv.URL, options: "caPool: " + pki.caFile, ch: ch, wantProto: "HTTP/1.1"},
		{name: "unknown CA", service: srv.URL, wantErr: "certificate signed by unknown authority"},
		{name: "noTLSVerify", service: srv.URL, options: "noTLSVerify: true", ch: ch, wantProto: "HTTP/1.1"},
		{name: "http2Origin", service: srv.URL, options: "http2Origin: true, caPool: " + pki.caFile, ch: ch, wantProto: "HTTP/2.0"},
		{name: "name mismatch", service: namedSrv.URL, options: "caPool: " + named.caFile, wantErr: "doesn't contain any IP SANs"},
		{name: "originServerName", service: namedSrv.URL, options: "originServerName: origin.internal, caPool: " + named.caFile,
			ch: namedCh, wantSNI: "origin.internal", wantProto: "HTTP/1.1"},
		{name: "matchSNItoHost", service: namedSrv.URL, options: "matchSNItoHost: true, caPool: " + named.caFile,
			host: "origin.internal:443", ch: namedCh, wantSNI: "origin.internal", wantProto: "HTTP/1.1"},
		{name: "matchSNItoHost wrong host", service: namedSrv.URL, options: "matchSNItoHost: true, caPool: " + named.caFile,
			host: "other.example.com", wantErr: "certificate is valid for origin.internal, not other.example.com"},
		{name: "matchSNItoHost follows httpHostHeader", service: namedSrv.URL,
			options: "matchSNItoHost: true, httpHostHeader: origin.internal, caPool: " + named.caFile,
			host:    "app.example.com", ch: namedCh, wantSNI: "origin.internal", wantProto: "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, tt.service, tt.options)
			host := tt.host
			if host == "" {
				host = "app.example.com"
			}
			resp, err := svc.RoundTrip(serverRequest("GET", host, "/x", nil))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got := <-tt.ch
			if got.sni != tt.wantSNI || got.proto != tt.wantProto {
				t.Errorf("origin saw SNI %q over %s, want %q over %s", got.sni, got.proto, tt.wantSNI, tt.wantProto)
			}
			wantHost := host
			if strings.Contains(tt.options, "httpHostHeader") {
				wantHost = "origin.internal"
			}
			if got.host != wantHost {
				t.Errorf("origin saw Host %q, want %q", got.host, wantHost)
			}
		})
	}
}

func TestBadCAPool(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tt := range []struct{ file, want string }{
		{notPEM, "no PEM certificates found"},
		{filepath.Join(t.TempDir(), "missing.pem"), "no such file"},
	} {
		_, err := NewHTTP(newRule(t, "https://localhost:1", "caPool: "+tt.file), nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "origin: caPool") {
			t.Errorf("caPool %s: got %v, want an error containing %q", tt.file, err, tt.want)
		}
	}
}

// listenUnix serves h on a unix socket in a temporary directory.
func listenUnix(t *testing.T, h http.Handler, tlsConf *tls.Config) string {
	dir, err := os.MkdirTemp("", "adit-origin") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "origin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return path
}

func TestUnixSocketOrigin(t *testing.T) {
	ch := make(chan seen, 1)
	path := listenUnix(t, recorder(ch), nil)
	svc := newService(t, "unix:"+path, "")
	resp, body := roundTrip(t, svc, serverRequest("GET", "app.example.com", "/sock?q=1", nil))
	got := <-ch
	if resp.StatusCode != 200 || body != "ok" || got.host != "app.example.com" || got.uri != "/sock?q=1" {
		t.Errorf("got %d %q, origin saw host %q uri %q", resp.StatusCode, body, got.host, got.uri)
	}
}

func TestUnixTLSOrigin(t *testing.T) {
	pki := newPKI(t, []string{"localhost"})
	ch := make(chan seen, 1)
	path := listenUnix(t, recorder(ch), &tls.Config{Certificates: []tls.Certificate{pki.leaf}})
	svc := newService(t, "unix+tls:"+path, "caPool: "+pki.caFile)
	resp, _ := roundTrip(t, svc, serverRequest("GET", "app.example.com", "/", nil))
	got := <-ch
	if resp.StatusCode != 200 || got.sni != "localhost" || got.host != "app.example.com" {
		t.Errorf("got %d, origin saw SNI %q host %q; want 200, localhost, app.example.com", resp.StatusCode, got.sni, got.host)
	}
}

// rtFunc lets a service be an http.Client's transport.
type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func echoWS(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), data...)); err != nil {
				return
			}
		}
	})
}

// wsEcho dials path through svc as a WebSocket and checks one echo.
func wsEcho(t *testing.T, svc HTTPService, url, wantPrefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: rtFunc(svc.RoundTrip)}})
	if err != nil {
		t.Fatalf("Dial through RoundTrip: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	for _, msg := range []string{"hello", "again"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != wantPrefix+msg {
			t.Fatalf("got %q, %v; want %q", got, err, wantPrefix+msg)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestWebSocket(t *testing.T) {
	h1 := httptest.NewServer(echoWS(t))
	defer h1.Close()
	pki := newPKI(t, nil, net.IPv4(127, 0, 0, 1))
	h2 := newTLSServer(t, pki, echoWS(t))

	for _, tt := range []struct{ name, service, options string }{
		{"http", h1.URL, ""},
		{"https with http2Origin", h2.URL, "http2Origin: true, caPool: " + pki.caFile},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, tt.service, tt.options)
			wsEcho(t, svc, "ws://chat.example.com/ws", "echo: ")
		})
	}
}

func TestUpgradeBodyIsReadWriteCloser(t *testing.T) {
	// An origin speaking a made-up protocol after 101: it upper-cases lines.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "shout" || r.Host != "public.example.com" {
			http.Error(w, "bad upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(strings.ToUpper(line))
			brw.Flush()
		}
	}))
	defer srv.Close()
	svc := newService(t, srv.URL, "")

	// The connector's request body is the client's stream: it must be left alone.
	clientStream := &closeRecorder{Reader: strings.NewReader("")}
	req := serverRequest("GET", "public.example.com", "/shout", clientStream)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "shout")
	resp, err := svc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is %T, want an io.ReadWriteCloser", resp.Body)
	}
	if clientStream.closed {
		t.Error("the request body was closed; the caller still needs it")
	}
	br := bufio.NewReader(rwc)
	for _, msg := range []string{"hello\n", "tunnel\n"} {
		io.WriteString(rwc, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != strings.ToUpper(msg) {
			t.Fatalf("got %q, %v; want %q", got, err, strings.ToUpper(msg))
		}
	}
}

func TestHelloWorld(t *testing.T) {
	svc := newService(t, "hello_world", "")
	if svc.String() != "hello_world" {
		t.Errorf("String() = %q", svc.String())
	}

	t.Run("page", func(t *testing.T) {
		req := serverRequest("POST", "hello.example.com", "/some/path?x=1", nil)
		req.Header.Set("X-Test", "<b>escaped</b>")
		resp, body := roundTrip(t, svc, req)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("got %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{"adit's built-in hello world", "POST", "hello.example.com", "/some/path",
			"X-Test", "&lt;b&gt;escaped&lt;/b&gt;"} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %q", want)
			}
		}
	})

	t.Run("uptime", func(t *testing.T) {
		resp, body := roundTrip(t, svc, serverRequest("GET", "hello.example.com", "/uptime", nil))
		if resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"uptimeSeconds":`) || !strings.Contains(body, `"startedAt":`) {
			t.Errorf("got %s %s", resp.Header.Get("Content-Type"), body)
		}
	})

	t.Run("sse", func(t *testing.T) {
		resp, err := svc.RoundTrip(serverRequest("GET", "hello.example.com", "/sse", nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("Content-Type %q", ct)
		}
		sc := bufio.NewScanner(resp.Body)
		var data []string
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				data = append(data, d)
			}
		}
		if len(data) != helloSSEEvents+1 || !strings.HasPrefix(data[0], "hello 1 of 5") || data[len(data)-1] != "bye" {
			t.Errorf("got events %q, want %d hellos and bye", data, helloSSEEvents)
		}
	})

	t.Run("ws", func(t *testing.T) {
		wsEcho(t, svc, "ws://hello.example.com/ws", "")
	})

	t.Run("close stops the server", func(t *testing.T) {
		other := newService(t, "hello_world", "")
		if err := other.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := other.RoundTrip(serverRequest("GET", "hello.example.com", "/", nil)); err == nil {
			t.Error("RoundTrip after Close succeeded")
		}
		if err := other.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestHelloWorldCloseEndsOpenWebSocket(t *testing.T) {
	svc, err := NewHTTP(newRule(t, "hello_world", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://hello.example.com/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: rtFunc(svc.RoundTrip)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	closed := make(chan error, 1)
	go func() { closed <- svc.Close() }()
	if _, _, err := c.Read(ctx); err == nil {
		t.Error("Read succeeded after Close")
	}
	if err := <-closed; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("Close: %v", err)
	}
}

// upgradeRequest is a server-style upgrade request to a made-up protocol.
func upgradeRequest(host, target string) *http.Request {
	req := serverRequest("GET", host, target, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	return req
}

// upgradeEcho is an origin handler that records the request, switches
// protocols and echoes bytes until the client half-closes.
func upgradeEcho(ch chan<- seen) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := seen{method: r.Method, host: r.Host, uri: r.RequestURI, proto: r.Proto, header: r.Header.Clone()}
		if r.TLS != nil {
			s.sni = r.TLS.ServerName
		}
		ch <- s
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}
}

// checkEcho sends msg over an upgraded connection, half-closes it, and
// expects msg back and a clean end.
func checkEcho(t *testing.T, resp *http.Response, msg string) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is %T, want an io.ReadWriteCloser", resp.Body)
	}
	cw, ok := resp.Body.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("101 body is %T, want a CloseWrite method", resp.Body)
	}
	if _, err := io.WriteString(rwc, msg); err != nil {
		t.Fatal(err)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	got, err := io.ReadAll(rwc)
	if err != nil || string(got) != msg {
		t.Errorf("echo: got %q, %v; want %q and a clean end", got, err, msg)
	}
}

// TestUpgradeOriginOptions: upgrades dial their own connection, with the
// rule's TLS and socket settings, and always speak HTTP/1.1.
func TestUpgradeOriginOptions(t *testing.T) {
	pki := newPKI(t, []string{"origin.internal"}, net.IPv4(127, 0, 0, 1))
	ch := make(chan seen, 1)
	srv := newTLSServer(t, pki, upgradeEcho(ch))
	named := newPKI(t, []string{"origin.internal"})
	namedSrv := newTLSServer(t, named, upgradeEcho(ch))
	plain := httptest.NewServer(upgradeEcho(ch))
	t.Cleanup(plain.Close)
	sock := listenUnix(t, upgradeEcho(ch), nil)
	tlsSock := listenUnix(t, upgradeEcho(ch), &tls.Config{Certificates: []tls.Certificate{named.leaf}})

	tests := []struct {
		name, service, options, host string
		wantErr, wantSNI, wantHost   string
	}{
		{name: "http", service: plain.URL},
		{name: "httpHostHeader", service: plain.URL, options: "httpHostHeader: internal.example", wantHost: "internal.example"},
		{name: "unix", service: "unix:" + sock},
		{name: "unix+tls checks the name", service: "unix+tls:" + tlsSock, options: "caPool: " + named.caFile,
			wantErr: "certificate is valid for origin.internal, not localhost"},
		{name: "unix+tls originServerName", service: "unix+tls:" + tlsSock, options: "originServerName: origin.internal, caPool: " + named.caFile,
			wantSNI: "origin.internal"},
		{name: "caPool", service: srv.URL, options: "caPool: " + pki.caFile},
		{name: "unknown CA", service: srv.URL, wantErr: "certificate signed by unknown authority"},
		{name: "noTLSVerify", service: srv.URL, options: "noTLSVerify: true"},
		{name: "http2Origin still upgrades over HTTP/1.1", service: srv.URL, options: "http2Origin: true, caPool: " + pki.caFile},
		{name: "originServerName", service: namedSrv.URL, options: "originServerName: origin.internal, caPool: " + named.caFile,
			wantSNI: "origin.internal"},
		{name: "matchSNItoHost", service: namedSrv.URL, options: "matchSNItoHost: true, caPool: " + named.caFile,
			host: "origin.internal:443", wantSNI: "origin.internal"},
		{name: "connect refused", service: "http://" + closedAddr(t), options: "connectTimeout: 2s", wantErr: "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, tt.service, tt.options)
			host := tt.host
			if host == "" {
				host = "app.example.com"
			}
			resp, err := svc.RoundTrip(upgradeRequest(host, "/chat?room=1"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "origin: ") {
					t.Fatalf("got %v, want an origin error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			checkEcho(t, resp, "hello over "+tt.name)
			got := <-ch
			wantHost := tt.wantHost
			if wantHost == "" {
				wantHost = host
			}
			if got.sni != tt.wantSNI || got.proto != "HTTP/1.1" || got.host != wantHost || got.uri != "/chat?room=1" {
				t.Errorf("origin saw SNI %q, %s, Host %q, %s; want SNI %q, HTTP/1.1, Host %q, /chat?room=1",
					got.sni, got.proto, got.host, got.uri, tt.wantSNI, wantHost)
			}
			if got.header.Get("Upgrade") != "echo" || got.header.Get("Connection") != "Upgrade" || got.header.Get("User-Agent") != "" {
				t.Errorf("origin saw Upgrade %q, Connection %q, User-Agent %q; want echo, Upgrade and none",
					got.header.Get("Upgrade"), got.header.Get("Connection"), got.header.Get("User-Agent"))
			}
			if tt.wantHost != "" && got.header.Get("X-Forwarded-Host") != host {
				t.Errorf("origin saw X-Forwarded-Host %q, want %q", got.header.Get("X-Forwarded-Host"), host)
			}
		})
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scriptedOrigin answers each connection with answer once it has read the
// request, then runs after (if any) on the connection.
func scriptedOrigin(t *testing.T, answer string, after func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, answer)
		if after != nil {
			after(c, br)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// TestUpgradeAnswers covers what an origin can answer an upgrade with.
func TestUpgradeAnswers(t *testing.T) {
	const switched = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
	echo := func(c net.Conn, br *bufio.Reader) { io.Copy(c, br) }
	t.Run("bytes right after the 101", func(t *testing.T) {
		svc := newService(t, "http://"+scriptedOrigin(t, switched+"early bird ", echo), "")
		resp, err := svc.RoundTrip(upgradeRequest("app.example.com", "/"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rwc := resp.Body.(io.ReadWriteCloser)
		io.WriteString(rwc, "then the echo")
		resp.Body.(interface{ CloseWrite() error }).CloseWrite()
		if got, err := io.ReadAll(rwc); err != nil || string(got) != "early bird then the echo" {
			t.Errorf("got %q, %v; want the origin's early bytes, then the echo", got, err)
		}
	})
	t.Run("interim answers are skipped", func(t *testing.T) {
		svc := newService(t, "http://"+scriptedOrigin(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"+switched, echo), "")
		resp, err := svc.RoundTrip(upgradeRequest("app.example.com", "/"))
		if err != nil {
			t.Fatal(err)
		}
		checkEcho(t, resp, "after the hints")
	})
	t.Run("refused", func(t *testing.T) {
		closed := make(chan error, 1)
		svc := newService(t, "http://"+scriptedOrigin(t, "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nX-Reason: rules\r\n\r\nno",
			func(c net.Conn, br *bufio.Reader) {
				_, err := br.ReadByte()
				closed <- err
			}), "")
		resp, err := svc.RoundTrip(upgradeRequest("app.example.com", "/"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Reason") != "rules" || string(body) != "no" || err != nil {
			t.Errorf("got %d, X-Reason %q, body %q, %v; want 403, rules, no", resp.StatusCode, resp.Header.Get("X-Reason"), body, err)
		}
		resp.Body.Close()
		if err := <-closed; err != io.EOF {
			t.Errorf("origin: after Close got %v, want io.EOF (the connection is not kept)", err)
		}
	})
	t.Run("origin closes", func(t *testing.T) {
		svc := newService(t, "http://"+scriptedOrigin(t, switched+"bye", nil), "")
		resp, err := svc.RoundTrip(upgradeRequest("app.example.com", "/"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if got, err := io.ReadAll(resp.Body); err != nil || string(got) != "bye" {
			t.Errorf("got %q, %v; want bye and a clean end", got, err)
		}
	})
	t.Run("not HTTP", func(t *testing.T) {
		svc := newService(t, "http://"+scriptedOrigin(t, "SSH-2.0-OpenSSH_9.6\r\n", nil), "")
		if _, err := svc.RoundTrip(upgradeRequest("app.example.com", "/")); err == nil || !strings.HasPrefix(err.Error(), "origin: ") {
			t.Errorf("got %v, want an origin error", err)
		}
	})
}

// TestUpgradeCancelled: the request's context bounds the wait for the
// origin's answer.
func TestUpgradeCancelled(t *testing.T) {
	closed := make(chan error, 1)
	asked := make(chan struct{})
	addr := scriptedOrigin(t, "", func(c net.Conn, br *bufio.Reader) {
		close(asked)
		_, err := br.ReadByte()
		closed <- err
	})
	svc := newService(t, "http://"+addr, "")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-asked
		cancel()
	}()
	_, err := svc.RoundTrip(upgradeRequest("app.example.com", "/").WithContext(ctx))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if err := <-closed; err != io.EOF {
		t.Errorf("origin: got %v, want io.EOF (the connection closed)", err)
	}
}

// sizeRecorder records the buffer size of each Read of r.
type sizeRecorder struct {
	r    io.Reader
	bufs []int
}

func (s *sizeRecorder) Read(p []byte) (int, error) {
	s.bufs = append(s.bufs, len(p))
	return s.r.Read(p)
}

// TestUploadReads: a request body bound for a TCP origin is read into
// buffers of up to 128 KiB (tunnel.CopyBody's), not the 32 KiB of net's
// generic copy, and arrives whole.
func TestUploadReads(t *testing.T) {
	got := make(chan seen, 1)
	srv := httptest.NewServer(recorder(got))
	defer srv.Close()
	svc := newService(t, srv.URL, "")

	body := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	src := &sizeRecorder{r: strings.NewReader(body)}
	req := serverRequest("POST", "public.example.com", "/up", src)
	req.ContentLength = int64(len(body))
	resp, _ := roundTrip(t, svc, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if s := <-got; s.body != body {
		t.Fatalf("the origin got %d bytes, want the %d sent", len(s.body), len(body))
	}
	if largest := slices.Max(src.bufs); largest != 128<<10 {
		t.Errorf("largest read of the body: got %d bytes, want %d (reads %v)", largest, 128<<10, src.bufs)
	}
}
