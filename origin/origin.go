// Package origin holds the services a connector hands requests to once ingress has
// picked a rule: an HTTP(S) server on the network or a unix socket, a fixed
// http_status answer, or the built-in hello_world server.
//
// An [HTTPService] takes a server-style request rebuilt by the connector and returns
// the origin's response untouched: bodies stream both ways, trailers pass, bytes are
// not decompressed, and for a WebSocket (or other Upgrade) request the 101 response's
// Body is the io.ReadWriteCloser of the upgraded connection, for the caller to pipe.
//
// Each service's *http.Transport follows the rule's originRequest options
// (cloudflared's, see [ingress.OriginRequest]); the environment's HTTP proxy is never
// used for origins. Upgrade requests do not use the transport: each dials a
// connection of its own with the same dialer and TLS settings (see
// roundTripUpgrade for why).
package origin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/tunnel"
)

// HTTPService is an origin that serves HTTP requests.
type HTTPService interface {
	// RoundTrip sends req to the origin and returns its response, whose Body the
	// caller must close. Like http.RoundTripper, it closes req.Body, even on error
	// (but see Upgrade below).
	//
	// req is a server-style request: URL holds Path and RawQuery (Scheme and Host
	// may be empty), Host is the public hostname, Header the client's headers without
	// hop-by-hop ones except for an Upgrade's "Connection: Upgrade" and "Upgrade".
	// Body should be nil or http.NoBody when there is none, and ContentLength set
	// when known (else it is taken from a Content-Length header). Trailer is shared,
	// not copied: the caller may fill the keys it declared until Body returns io.EOF.
	// For an Upgrade request without a ContentLength, req.Body is neither sent nor
	// closed: the caller pipes the upgraded stream through the 101 response's Body,
	// an io.ReadWriteCloser that also has CloseWrite (a half-close of the
	// connection). req itself is not modified.
	RoundTrip(req *http.Request) (*http.Response, error)
	// Close releases idle connections and any server the service runs.
	// Responses already returned stay readable.
	Close() error
	// String returns the service as written in the config.
	String() string
}

// NewHTTP returns the service for rule's http, https, h2c, unix, unix+tls,
// http_status or hello_world service, with a transport built from rule.Origin
// (zero fields mean their defaults). A nil logger discards logs.
func NewHTTP(rule *ingress.Rule, logger *slog.Logger) (HTTPService, error) {
	logger = logs.Component(logger, "origin")
	svc := rule.Service
	logger = logger.With("service", svc.String())
	o := rule.Origin.WithDefaults()
	switch svc.Kind {
	case ingress.KindHTTPStatus:
		return &statusService{code: svc.Status, name: svc.String()}, nil
	case ingress.KindHelloWorld:
		return newHelloWorld(o, logger)
	case ingress.KindHTTP, ingress.KindHTTPS, ingress.KindH2C:
		if svc.URL == nil {
			return nil, fmt.Errorf("origin: service %q has no URL", svc.String())
		}
		port := svc.URL.Port()
		if port == "" {
			port = "80"
			if svc.Kind == ingress.KindHTTPS {
				port = "443"
			}
		}
		scheme := "http"
		if svc.Kind == ingress.KindHTTPS {
			scheme = "https"
		}
		return newProxy(proxyTarget{
			name: svc.String(), kind: svc.Kind, scheme: scheme, host: svc.URL.Host,
			network: "tcp", addr: net.JoinHostPort(svc.URL.Hostname(), port),
		}, o, logger)
	case ingress.KindUnix, ingress.KindUnixTLS:
		scheme := "http"
		if svc.Kind == ingress.KindUnixTLS {
			scheme = "https"
		}
		return newProxy(proxyTarget{
			name: svc.String(), kind: svc.Kind, scheme: scheme, host: "localhost",
			network: "unix", addr: svc.SocketPath,
		}, o, logger)
	}
	return nil, fmt.Errorf("origin: service kind %s is not an HTTP service", svc.Kind)
}

// statusService answers every request with a fixed status and no body.
type statusService struct {
	code int
	name string
}

func (s *statusService) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{
		Status:        strconv.Itoa(s.code) + " " + http.StatusText(s.code),
		StatusCode:    s.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{},
		Body:          http.NoBody,
		ContentLength: 0,
		Request:       req,
	}, nil
}

func (s *statusService) Close() error   { return nil }
func (s *statusService) String() string { return s.name }

// proxyTarget says where a proxy sends requests.
type proxyTarget struct {
	name    string       // String()
	kind    ingress.Kind // for the transport's protocols
	scheme  string       // "http" or "https" in the outgoing URL
	host    string       // the outgoing URL's host (sets the default SNI)
	network string       // "tcp" or "unix"
	addr    string       // what is dialed, whatever the URL says
	// dial, if set, replaces dialing network and addr (NewDialHTTP).
	dial func(ctx context.Context) (net.Conn, error)
}

// proxy sends requests to an HTTP origin.
type proxy struct {
	target         proxyTarget
	transport      *http.Transport
	tlsConf        *tls.Config   // for upgrades; nil unless the scheme is https
	tlsTimeout     time.Duration // for upgrades: tlsTimeout
	hostHeader     string
	matchSNI       bool // URL host (so SNI) follows the Host header
	disableChunked bool
	logger         *slog.Logger

	closeOnce sync.Once
	onClose   func() error // extra cleanup (hello world's server), may be nil
	closeErr  error
}

func newProxy(t proxyTarget, o ingress.OriginRequest, logger *slog.Logger) (*proxy, error) {
	transport, err := newTransport(t, o)
	if err != nil {
		return nil, err
	}
	p := &proxy{
		target:         t,
		transport:      transport,
		tlsTimeout:     o.TLSTimeout,
		hostHeader:     o.HTTPHostHeader,
		matchSNI:       o.MatchSNIToHost && o.OriginServerName == "" && t.scheme == "https",
		disableChunked: o.DisableChunkedEncoding,
		logger:         logger,
	}
	if transport.TLSClientConfig != nil {
		// A copy taken before the transport adds its ALPN protocols (h2):
		// HTTP/2 has no Upgrade, so upgrades always speak HTTP/1.1.
		p.tlsConf = transport.TLSClientConfig.Clone()
	}
	return p, nil
}

// newTransport builds the transport for t from the originRequest options.
func newTransport(t proxyTarget, o ingress.OriginRequest) (*http.Transport, error) {
	dialer := newDialer(o)
	network, addr := t.network, t.addr
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, addr)
	}
	if t.dial != nil {
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return t.dial(ctx) }
	}
	tr := &http.Transport{
		Proxy: nil, // never the environment's proxy
		// Always dial the origin, whatever host the URL names (see matchSNI).
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				return &bodyConn{tc}, nil
			}
			return c, err
		},
		TLSHandshakeTimeout: o.TLSTimeout,
		MaxIdleConns:        o.KeepAliveConnections,
		MaxIdleConnsPerHost: o.KeepAliveConnections,
		IdleConnTimeout:     o.KeepAliveTimeout,
		DisableCompression:  true,
		ForceAttemptHTTP2:   o.HTTP2Origin,
	}
	var protocols http.Protocols
	switch {
	case t.kind == ingress.KindH2C:
		protocols.SetUnencryptedHTTP2(true)
	case o.HTTP2Origin && t.scheme == "https":
		protocols.SetHTTP1(true)
		protocols.SetHTTP2(true)
	default:
		protocols.SetHTTP1(true)
	}
	tr.Protocols = &protocols
	if t.scheme == "https" {
		tlsConf := &tls.Config{
			// Origins are the user's own servers, often older than ours: TLS 1.2 is
			// the floor here, as in Go's default client.
			MinVersion:         tls.VersionTLS12,
			ServerName:         o.OriginServerName,
			InsecureSkipVerify: o.NoTLSVerify, //nolint:gosec // the user's explicit noTLSVerify
		}
		if o.CAPool != "" {
			pool, err := loadCAPool(o.CAPool)
			if err != nil {
				return nil, err
			}
			tlsConf.RootCAs = pool
		}
		tr.TLSClientConfig = tlsConf
	}
	return tr, nil
}

// bodyConn is a plain TCP connection to an origin whose ReadFrom, which
// http.Transport's copy of a request body ends in, writes each read of the
// body at once from tunnel.CopyBody's pooled buffers (up to 128 KiB). The
// generic ReadFrom of a TCP connection copies through 32 KiB, so an upload
// arriving faster than that cost a write syscall per 32 KiB or less.
type bodyConn struct{ *net.TCPConn }

func (c *bodyConn) ReadFrom(r io.Reader) (int64, error) {
	n, rerr, werr := tunnel.CopyBody(c.TCPConn, r)
	if werr != nil {
		return n, werr
	}
	return n, rerr
}

// newDialer returns the dialer for connectTimeout, tcpKeepAlive and noHappyEyeballs.
func newDialer(o ingress.OriginRequest) *net.Dialer {
	d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: o.TCPKeepAlive}
	if o.NoHappyEyeballs {
		d.FallbackDelay = -1 // no RFC 6555 fallback
	}
	return d
}

// loadCAPool returns the system pool plus the PEM certificates in file.
func loadCAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("origin: caPool: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("origin: caPool %s: no PEM certificates found", file)
	}
	return pool, nil
}

func (p *proxy) String() string { return p.target.name }

func (p *proxy) Close() error {
	p.closeOnce.Do(func() {
		p.transport.CloseIdleConnections()
		if p.onClose != nil {
			p.closeErr = p.onClose()
		}
	})
	return p.closeErr
}

func (p *proxy) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.WithContext(req.Context()) // a shallow copy; Trailer stays shared
	out.RequestURI = ""
	out.Header = req.Header.Clone()
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // send none rather than Go's default
	}

	public := req.Host
	if public == "" && req.URL != nil {
		public = req.URL.Host
	}
	out.Host = public
	if p.hostHeader != "" {
		out.Host = p.hostHeader
		if public != "" {
			out.Header.Set("X-Forwarded-Host", public)
		}
	}

	u := &url.URL{Scheme: p.target.scheme, Host: p.target.host}
	if req.URL != nil {
		u.Path, u.RawPath, u.RawQuery = req.URL.Path, req.URL.RawPath, req.URL.RawQuery
	}
	if u.Path == "" {
		u.Path = "/"
	}
	if p.matchSNI {
		if h := hostOnly(out.Host); h != "" {
			u.Host = h
			if strings.Contains(h, ":") {
				u.Host = "[" + h + "]"
			}
		}
	}
	out.URL = u

	if out.ContentLength <= 0 && hasBody(out) {
		if n, err := strconv.ParseInt(out.Header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
			out.ContentLength = n
			if n == 0 {
				req.Body.Close()
				out.Body = http.NoBody
			}
		}
	}

	var resp *http.Response
	var err error
	if tunnel.IsUpgrade(out.Header) {
		if out.ContentLength <= 0 {
			// The handshake has no body. req.Body is left open: what follows the
			// 101 is the caller's to pipe through the response's ReadWriteCloser.
			out.Body, out.ContentLength = nil, 0
		}
		resp, err = p.roundTripUpgrade(out)
	} else if p.disableChunked && out.ContentLength <= 0 && hasBody(out) && !lacksBody(out.Method) {
		req.Body.Close()
		p.logger.Info("refused a request body of unknown length (disableChunkedEncoding)", "host", public, "path", u.Path)
		return lengthRequired(req), nil
	} else {
		resp, err = p.transport.RoundTrip(out)
	}
	if err != nil {
		p.logger.Debug("request failed", "host", public, "path", u.Path, "err", err)
		return nil, fmt.Errorf("origin: %s: %w", p.target.name, err)
	}
	return resp, nil
}

// Upgrades. An upgraded connection (a WebSocket) may stay open, idle, for
// hours, and a connector may hold tens of thousands, so it should cost no
// more than its socket. http.Transport would dial it through its pool
// machinery (a dial goroutine, a read and a write loop, 4 KiB buffers each
// way) only to hand it over at the 101; here the request dials its own
// connection with the transport's dialer and TLS settings (connectTimeout,
// tcpKeepAlive, noHappyEyeballs, a unix socket; tlsTimeout,
// originServerName or the URL's host as SNI, noTLSVerify, caPool), writes
// the request, and reads the answer through a small reader. After a 101
// the response's Body is the connection itself; any other answer is read
// and the connection closed with its Body.

// upgradeReaderSize is the reader of an upgrade's answer: a 101 header
// is a few hundred bytes, and the reader is let go once it is parsed.
const upgradeReaderSize = 1 << 10

// maxUpgradeHeaderBytes bounds an upgrade answer's header, as
// http.Transport's default MaxResponseHeaderBytes bounds the others.
const maxUpgradeHeaderBytes = 10 << 20

// maxInterim bounds the informational (1xx) answers skipped before the
// real one, as http.Transport does.
const maxInterim = 5

// roundTripUpgrade sends an upgrade request out over a connection of its
// own. The request's context bounds the dial, the handshake and the wait
// for the answer, not the upgraded connection.
func (p *proxy) roundTripUpgrade(out *http.Request) (*http.Response, error) {
	ctx := out.Context()
	conn, err := p.transport.DialContext(ctx, p.target.network, p.target.addr)
	if err != nil {
		return nil, err
	}
	if bc, ok := conn.(*bodyConn); ok {
		conn = bc.TCPConn // the upgraded pipe reads a bare TCP connection best (tunnel.Copy)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	resp, err := p.upgradeExchange(ctx, conn, out)
	if !stop() && err == nil {
		// Cancelled just as the answer came: the connection is closed.
		resp.Body.Close()
		resp, err = nil, ctx.Err()
	}
	if err != nil {
		conn.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, err
	}
	return resp, nil
}

func (p *proxy) upgradeExchange(ctx context.Context, conn net.Conn, out *http.Request) (*http.Response, error) {
	if p.tlsConf != nil {
		cfg := p.tlsConf
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = out.URL.Hostname()
		}
		tc := tls.Client(conn, cfg)
		hctx := ctx
		if p.tlsTimeout > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, p.tlsTimeout)
			defer cancel()
		}
		if err := tc.HandshakeContext(hctx); err != nil {
			return nil, err
		}
		conn = tc
	}
	// One write for the whole request: a bytes.Buffer is an io.ByteWriter,
	// so Request.Write does not wrap it in a 4 KiB bufio.Writer.
	var req bytes.Buffer
	if err := out.Write(&req); err != nil {
		return nil, err
	}
	if _, err := conn.Write(req.Bytes()); err != nil {
		return nil, err
	}
	lr := &io.LimitedReader{R: conn, N: maxUpgradeHeaderBytes}
	br := bufio.NewReaderSize(lr, upgradeReaderSize)
	var resp *http.Response
	for interim := 0; ; interim++ {
		var err error
		resp, err = http.ReadResponse(br, out)
		if err != nil {
			if lr.N <= 0 {
				err = fmt.Errorf("answer header larger than %d bytes", maxUpgradeHeaderBytes)
			}
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if interim == maxInterim {
			return nil, fmt.Errorf("more than %d informational answers", maxInterim)
		}
	}
	lr.N = math.MaxInt64 // the header is in; the body is not bounded
	if resp.StatusCode == http.StatusSwitchingProtocols {
		_, halfCloses := conn.(interface{ CloseWrite() error })
		if n := br.Buffered(); n > 0 || !halfCloses {
			uc := &upgradedConn{Conn: conn}
			if n > 0 {
				b, _ := br.Peek(n)
				uc.pending = append([]byte(nil), b...)
			}
			resp.Body = uc
		} else {
			// The connection itself (usually a *net.TCPConn, which the
			// caller's pipe reads without a heap buffer; see tunnel.Copy).
			resp.Body = conn
		}
		return resp, nil
	}
	resp.Body = &closeConnBody{ReadCloser: resp.Body, conn: conn}
	return resp, nil
}

// upgradedConn is the 101 response's Body when the connection alone will
// not do: the origin connection, with the bytes read past the response
// header first.
type upgradedConn struct {
	net.Conn
	pending []byte
}

func (c *upgradedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection (a TLS close_notify over TLS); a
// connection that cannot is closed.
func (c *upgradedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// closeConnBody is the body of a non-101 answer to an upgrade: closing it
// closes the connection, which is never reused.
type closeConnBody struct {
	io.ReadCloser
	conn net.Conn
}

func (b *closeConnBody) Close() error {
	b.ReadCloser.Close()
	return b.conn.Close()
}

func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// lacksBody reports methods whose requests rarely have a body; for these Go's
// transport checks whether a body of unknown length is empty before sending it.
func lacksBody(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// hostOnly strips a port from a Host header value.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// lengthRequired answers a request the origin could not take: it wants a
// Content-Length and the request's body length is unknown.
func lengthRequired(req *http.Request) *http.Response {
	const msg = "411 Length Required: this origin does not accept chunked request bodies (disableChunkedEncoding), and the request has no Content-Length\n"
	return &http.Response{
		Status:     "411 Length Required",
		StatusCode: http.StatusLengthRequired,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":   {"text/plain; charset=utf-8"},
			"Content-Length": {strconv.Itoa(len(msg))},
		},
		Body:          io.NopCloser(strings.NewReader(msg)),
		ContentLength: int64(len(msg)),
		Request:       req,
	}
}
