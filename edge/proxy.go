package edge

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"

	"github.com/adit-dev/adit/tunnel"
)

// RequestIDHeader carries the edge's request ID on every proxied response
// and on error pages; the connector logs the same ID.
const RequestIDHeader = "Adit-Request-Id"

// router maps a public hostname to a tunnel ID. controlserver.State implements it.
type router interface {
	Route(host string) (tunnelID string, ok bool)
}

// proxy is the public HTTP handler: it routes each request by Host to a
// tunnel and sends it down one of that tunnel's connections as a stream.
//
// The path of a request: ServeHTTP (route by Host) → httputil.ReverseProxy
// (hop-by-hop headers, X-Forwarded-*, trailers, flushing) →
// tunnelTransport.RoundTrip (pick a connection, open a stream, write the
// request header and body frames, read the response header) → the
// connector (connector/stream.go) → the origin. A 101 answer to an upgrade
// is piped by upgrade.go, not by the ReverseProxy.
type proxy struct {
	router router
	reg    *registry
	log    *slog.Logger
	rp     *httputil.ReverseProxy
}

type ctxKey struct{}

// reqInfo travels from ServeHTTP to the transport in the request context.
type reqInfo struct {
	tunnelID   string
	requestID  string
	clientAddr string
	upgrade    *upgradeState // upgrade.go; nil unless the request asks for one
}

func newProxy(rt router, reg *registry, m *edgeMetrics, log *slog.Logger) *proxy {
	p := &proxy{router: rt, reg: reg, log: log}
	p.rp = &httputil.ReverseProxy{
		BufferPool: copyBuffers{},
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Rewrite has already dropped hop-by-hop and client-sent
			// Forwarded/X-Forwarded-* headers; set our own.
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = pr.In.Host
			pr.Out.Host = pr.In.Host
			// Share, not clone, the trailer map: the server fills in the
			// values only once the body has been read.
			pr.Out.Trailer = pr.In.Trailer
		},
		Transport:    &tunnelTransport{reg: reg, m: m},
		ErrorHandler: p.proxyError,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := newRequestID()
	w.Header().Set(RequestIDHeader, id)
	tunnelID, ok := p.router.Route(r.Host)
	if !ok {
		writeErrorPage(w, r, http.StatusNotFound, "No tunnel for this hostname",
			fmt.Sprintf("No tunnel is routed for the hostname %q.", hostOnly(r.Host)), id)
		return
	}
	info := &reqInfo{tunnelID: tunnelID, requestID: id, clientAddr: r.RemoteAddr}
	if isAccessRequest(r) {
		p.serveAccess(w, r, info) // access.go: `adit access` over a WebSocket
		return
	}
	if tunnel.IsUpgrade(r.Header) {
		p.serveUpgrade(w, r, info) // upgrade.go
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info)))
}

func (p *proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	info, _ := r.Context().Value(ctxKey{}).(*reqInfo)
	id := ""
	if info != nil {
		id = info.requestID
	}
	var oe *originError
	switch {
	case errors.Is(err, errUpgraded):
		// The connection was hijacked and is piped (upgrade.go).
	case bodyTooLarge(r) > 0: // limits.go
		tooLarge(w, r, bodyTooLarge(r), id)
	case errors.Is(err, errTunnelOffline):
		writeErrorPage(w, r, http.StatusBadGateway, "Tunnel offline",
			fmt.Sprintf("The tunnel for %q has no connector online. Start it with `adit tunnel run`.", hostOnly(r.Host)), id)
	case errors.As(err, &oe):
		writeErrorPage(w, r, http.StatusBadGateway, "Origin unreachable",
			fmt.Sprintf("The tunnel's connector could not reach the origin service for %q. The connector's log has the cause under this request ID.", hostOnly(r.Host)), id)
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
		w.WriteHeader(499)
	default:
		p.log.Warn("proxy: tunnel stream failed", "host", r.Host, "request_id", id, "err", err)
		writeErrorPage(w, r, http.StatusBadGateway, "Tunnel error",
			fmt.Sprintf("The request for %q failed inside the tunnel: %v", hostOnly(r.Host), err), id)
	}
}

var errTunnelOffline = errors.New("edge: tunnel has no live connection")

// originError is the connector's report that it could not reach the origin.
type originError struct{ msg string }

func (e *originError) Error() string { return "origin unreachable: " + e.msg }

// tunnelTransport is the ReverseProxy's RoundTripper: it carries one request
// over one stream of a tunnel connection.
type tunnelTransport struct {
	reg *registry
	m   *edgeMetrics // nil records nothing
}

func (t *tunnelTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if info, _ := req.Context().Value(ctxKey{}).(*reqInfo); info != nil && info.upgrade != nil {
		// The stream of an upgrade may live for hours: give it the
		// context serveUpgrade made, without what the ReverseProxy added
		// (a trace hook holding the ResponseWriter, and with it the HTTP
		// server's buffers for the connection).
		req = req.WithContext(info.upgrade.ctx)
	}
	resp, err := t.roundTrip(req) // failover.go
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		// Not for the ReverseProxy: the pipe is ours (upgrade.go).
		return nil, takeUpgrade(req, resp)
	}
	return resp, err
}

// openStream picks a connection and opens a stream on it (see
// openStreamSkip). The caller gives the connection's inflight slot back.
func (t *tunnelTransport) openStream(ctx context.Context, tunnelID string) (*tunnelConn, tunnel.Stream, error) {
	return t.openStreamSkip(ctx, tunnelID, nil)
}

func (t *tunnelTransport) exchange(req *http.Request, info *reqInfo, s tunnel.Stream, release func()) (*http.Response, error) {
	typ := tunnel.StreamHTTP
	if tunnel.IsUpgrade(req.Header) {
		typ = tunnel.StreamWebSocket
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	cl := req.ContentLength
	if !hasBody {
		cl = 0
	} else if cl == 0 {
		cl = -1
	}
	h := tunnel.RequestHeader{
		Type:          typ,
		Method:        req.Method,
		Host:          req.Host,
		Path:          req.URL.RequestURI(),
		Header:        req.Header,
		ClientAddr:    info.clientAddr,
		RequestID:     info.requestID,
		ContentLength: cl,
	}
	for k := range req.Trailer {
		h.Trailer = append(h.Trailer, k)
	}
	hp := headerBufPool.Get().(*[]byte)
	hb, err := tunnel.AppendMessage((*hp)[:0], &h)
	if err != nil {
		headerBufPool.Put(hp)
		return nil, fmt.Errorf("edge: request header: %w", err)
	}
	if typ == tunnel.StreamHTTP && !hasBody {
		// Header and end of body in one write: one packet.
		hb = tunnel.AppendEnd(hb)
	}
	_, err = s.Write(hb)
	if cap(hb) <= maxPooledHeader {
		*hp = hb
		headerBufPool.Put(hp)
	}
	if err != nil {
		return nil, fmt.Errorf("edge: writing request header: %w", err)
	}
	if typ == tunnel.StreamHTTP {
		if !hasBody {
			s.CloseWrite()
		} else {
			go sendBody(req, tunnel.NewBodyWriter(s), s)
		}
	}

	br := readerPool.Get().(*bufio.Reader)
	br.Reset(s)
	var rh tunnel.ResponseHeader
	if err := tunnel.ReadMessage(br, &rh); err != nil {
		return nil, fmt.Errorf("edge: reading response header: %w", err)
	}
	if rh.Error != "" {
		return nil, &originError{msg: rh.Error}
	}
	if rh.Status < 200 && !(typ == tunnel.StreamWebSocket && rh.Status == http.StatusSwitchingProtocols) {
		// Interim answers are not relayed; a 101 only answers an upgrade.
		return nil, fmt.Errorf("edge: connector sent status %d", rh.Status)
	}
	resp := &http.Response{
		Status:        fmt.Sprintf("%d %s", rh.Status, http.StatusText(rh.Status)),
		StatusCode:    rh.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rh.Header,
		ContentLength: rh.ContentLength,
		Request:       req,
	}
	if resp.Header == nil {
		resp.Header = make(http.Header)
	}
	if typ == tunnel.StreamWebSocket && rh.Status == http.StatusSwitchingProtocols {
		resp.Body = &rawBody{r: br, s: s, release: release}
		return resp, nil
	}
	if len(rh.Trailer) > 0 {
		resp.Trailer = make(http.Header, len(rh.Trailer))
		for _, k := range rh.Trailer {
			resp.Trailer[http.CanonicalHeaderKey(k)] = nil
		}
	}
	body := tunnel.NewBodyReader(br, resp.Trailer)
	body.OnClose = func() error {
		release()
		// The proxy reads the body and closes it on one goroutine, so
		// nobody reads br after this.
		br.Reset(nil)
		readerPool.Put(br)
		return nil
	}
	resp.Body = &trailerBody{BodyReader: body, resp: resp}
	return resp, nil
}

// trailerBody keeps resp.Trailer pointing at the map the body fills, in case
// the reader had to make one for unannounced trailers.
type trailerBody struct {
	*tunnel.BodyReader
	resp *http.Response
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.BodyReader.Read(p)
	if err == io.EOF && b.resp.Trailer == nil && b.BodyReader.Trailer != nil {
		b.resp.Trailer = b.BodyReader.Trailer
	}
	return n, err
}

// sendBody streams the request body as data frames, then its trailers.
func sendBody(req *http.Request, bw *tunnel.BodyWriter, s tunnel.Stream) {
	_, err := io.Copy(bw, req.Body)
	if err != nil {
		// The client's body broke off: abort so the origin sees an error,
		// not a short body.
		s.Close()
		return
	}
	if err := bw.CloseWithTrailers(req.Trailer); err != nil {
		return
	}
	s.CloseWrite()
}

// rawBody is the body of a 101 response: the stream, and the reader that
// holds what came after the response header. takeUpgrade pipes it.
type rawBody struct {
	r       *bufio.Reader // nil once taken
	s       tunnel.Stream
	release func()
}

func (b *rawBody) Read(p []byte) (int, error) {
	if b.r != nil {
		return b.r.Read(p)
	}
	return b.s.Read(p)
}

// takeBuffered returns a copy of the bytes the reader holds and gives the
// reader back to its pool: from then on the stream is read directly.
func (b *rawBody) takeBuffered() []byte {
	if b.r == nil {
		return nil
	}
	var p []byte
	if n := b.r.Buffered(); n > 0 {
		buf, _ := b.r.Peek(n)
		p = append([]byte(nil), buf...)
	}
	b.r.Reset(nil)
	readerPool.Put(b.r)
	b.r = nil
	return p
}

func (b *rawBody) Close() error {
	b.release()
	return nil
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func hostOnly(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host[:i]
	}
	return host
}

// headerBufPool holds the buffers request headers are encoded into (a
// Write does not keep its argument); one that grew past maxPooledHeader
// for a huge header is left to the GC.
var headerBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledHeader = 16 << 10

// readerPool holds the readers of response streams; a request returns its
// reader when its body is closed.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// copyBuffers lends the ReverseProxy its body copy buffers, which it would
// otherwise allocate (32 KiB) per request.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

func (copyBuffers) Get() []byte { return *copyBufferPool.Get().(*[]byte) }

func (copyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		b = b[:cap(b)]
		copyBufferPool.Put(&b)
	}
}
