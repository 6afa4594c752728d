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
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/tunnel"
)

// RequestIDHeader carries the edge's request ID on every proxied response
// and on error pages; the connector logs the same ID.
const RequestIDHeader = layer.RequestIDHeader

// router maps a public hostname to a tunnel ID. controlserver.State implements it.
type router interface {
	Route(host string) (tunnelID string, ok bool)
}

// proxy is the public HTTP handler: it routes each request by Host to a
// tunnel and sends it down one of that tunnel's connections as a stream.
//
// The path of a request: ServeHTTP (route by Host) → forward (the header
// rewritten for the origin: hop-by-hop fields out, X-Forwarded-* set) →
// tunnelTransport.roundTrip (failover.go: pick a connection, open a
// stream; exchange: write the request header and body frames, read the
// response header) → the connector (connector/stream.go) → the origin; and
// back: writeResponse (header, body, trailers). A 101 answer to an upgrade
// is piped by upgrade.go.
//
// Forward to a peer edge (peer.go): when the tunnel lookup fails locally
// (this edge holds no connection of the tunnel that can take the request,
// openStreamSkip in failover.go), the stream goes over the peer link to an
// edge of the fleet that holds one, which sends it down its own connection
// unchanged; the rest of the path is the same. One hop at most.
type proxy struct {
	router router
	log    *slog.Logger
	t      *tunnelTransport
	chain  layer.Handler // the layers (layers.go), then serveRouted
	// trusted are the proxies whose X-Forwarded-For names the visitor
	// (Config.TrustedProxies).
	trusted []netip.Prefix
}

func newProxy(rt router, reg *registry, m *edgeMetrics, log *slog.Logger, layers []layer.Layer) *proxy {
	p := &proxy{router: rt, log: log, t: &tunnelTransport{reg: reg, m: m}}
	p.chain = chain(layers, layer.HandlerFunc(p.serveRouted))
	return p
}

// ServeHTTP routes r by Host, then runs it through the layers (IP rules,
// rate limits, WAF, Access: layers.go) to serveRouted.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := newRequestID()
	w.Header().Set(RequestIDHeader, id)
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		// A request with both Content-Length and Transfer-Encoding is
		// answered and its connection closed (RFC 9112 §6.3), so that a
		// front proxy that framed it by its length cannot smuggle the
		// rest in as another request. net/http drops Content-Length from
		// a chunked request before any handler sees it, so every chunked
		// HTTP/1 request is treated so: it costs them only keep-alive.
		w.Header().Set("Connection", "close")
	}
	tunnelID, ok := p.router.Route(r.Host)
	if !ok {
		writeErrorPage(w, r, http.StatusNotFound, "No tunnel for this hostname",
			fmt.Sprintf("No tunnel is routed for the hostname %q.", hostOnly(r.Host)), id)
		return
	}
	info := &layer.Request{ID: id, Host: routedHost(r.Host), TunnelID: tunnelID, ClientAddr: r.RemoteAddr, TLS: r.TLS != nil}
	var viaProxy bool
	info.ClientIP, viaProxy = clientIP(r, p.trusted) // public.go
	if viaProxy {
		info.ClientAddr = info.ClientIP.String()
	}
	rewriteRequestHeader(r, info.ClientIP, viaProxy)
	p.chain.ServeRouted(w, r, info)
}

// serveRouted is the chain's end: the request goes down its tunnel.
func (p *proxy) serveRouted(w http.ResponseWriter, r *http.Request, info *layer.Request) {
	if isAccessRequest(r) {
		p.serveAccess(w, r, info) // access.go: `adit access` over a WebSocket
		return
	}
	p.forward(w, r, info)
}

// routedHost is a Host header as layers see it: without port or trailing
// dot, lower-case (allocating only when it was not).
func routedHost(host string) string {
	return strings.ToLower(strings.TrimSuffix(hostOnly(host), "."))
}

// forward sends r to its tunnel and writes the answer. The request is the
// handler's own, so its header is rewritten in place rather than copied.
func (p *proxy) forward(w http.ResponseWriter, r *http.Request, info *layer.Request) {
	ctx := r.Context()
	var up *upgradeState
	if tunnel.IsUpgrade(r.Header) {
		up = p.startUpgrade(w, r) // upgrade.go
		defer up.finish()
		ctx = up.ctx
	}
	resp, err := p.t.roundTrip(ctx, r, info)
	if err != nil {
		p.proxyError(w, r, info, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if err := takeUpgrade(r, resp, up, info); err != nil {
			p.proxyError(w, r, info, err)
		}
		return
	}
	p.writeResponse(w, r, resp, info)
}

// hopByHop are the header fields that describe one connection, not the
// message (RFC 9110 §7.6.1), with those of older HTTP and proxies; the
// fields a Connection header names are dropped too.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func dropHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}

var (
	forwardedHTTP  = []string{"http"}
	forwardedHTTPS = []string{"https"}
)

// rewriteRequestHeader makes r's header the one the origin gets: the
// hop-by-hop fields go, except "TE: trailers" (gRPC needs it) and an
// upgrade's Connection and Upgrade; X-Forwarded-For, -Host and -Proto,
// X-Real-Ip and Cf-Connecting-Ip are the edge's, never the client's (a
// trusted proxy's X-Forwarded-For is kept and extended: viaProxy), and a
// client's Forwarded and True-Client-Ip are dropped. It runs before the
// layers, so they see what the origin will see.
func rewriteRequestHeader(r *http.Request, client netip.Addr, viaProxy bool) {
	h := r.Header
	upgrade := upgradeType(h)
	teTrailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	dropHopByHop(h)
	if teTrailers {
		h["Te"] = []string{"trailers"}
	}
	if upgrade != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upgrade}
	}
	delete(h, "Forwarded")
	delete(h, "True-Client-Ip")
	// The values set here share one array: X-Forwarded-For, the client
	// address, X-Forwarded-Host.
	vals := make([]string, 3)
	peer, _, _ := net.SplitHostPort(r.RemoteAddr)
	if viaProxy {
		vals[0] = strings.Join(append(h["X-Forwarded-For"], peer), ", ")
		h["X-Forwarded-For"] = vals[0:1:1]
	} else if peer != "" {
		vals[0] = peer
		h["X-Forwarded-For"] = vals[0:1:1]
	} else {
		delete(h, "X-Forwarded-For")
	}
	if client.IsValid() {
		if a, err := netip.ParseAddr(peer); err == nil && a.Is4() && a == client {
			vals[1] = peer // the same text (IPv4 parses only from its one form)
		} else {
			vals[1] = client.String()
		}
		ip := vals[1:2:2]
		h["X-Real-Ip"] = ip
		h["Cf-Connecting-Ip"] = ip
	} else {
		delete(h, "X-Real-Ip")
		delete(h, "Cf-Connecting-Ip")
	}
	vals[2] = r.Host
	h["X-Forwarded-Host"] = vals[2:3:3]
	if r.TLS != nil {
		h["X-Forwarded-Proto"] = forwardedHTTPS
	} else {
		h["X-Forwarded-Proto"] = forwardedHTTP
	}
}

// writeResponse relays the connector's answer to the client: header,
// body, then trailers. A streamed answer (server-sent events, or one of
// unknown length) is flushed after every read, so each event reaches the
// client when the origin sends it. A body that breaks off aborts the
// client's connection, so the client sees an error, not a short answer.
func (p *proxy) writeResponse(w http.ResponseWriter, r *http.Request, resp *http.Response, info *layer.Request) {
	body := resp.Body.(*tunnel.BodyReader) // exchange made it
	defer body.Close()
	cl := resp.Header["Content-Length"]
	cleanResponseHeader(resp.Header) // respheader.go
	h := w.Header()                  // holds the request ID
	for k, vv := range resp.Header {
		if old, ok := h[k]; ok {
			vv = append(old, vv...)
		}
		h[k] = vv
	}
	setContentLength(h, resp, cl)
	// The body fills resp.Trailer, with any fields it did not announce.
	var announced []string
	if len(resp.Trailer) > 0 {
		for k := range resp.Trailer {
			announced = append(announced, k)
		}
		h["Trailer"] = []string{strings.Join(announced, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	dst := io.Writer(w)
	if resp.ContentLength < 0 || isEventStream(resp.Header) {
		dst = &flushWriter{w: w, rc: http.NewResponseController(w)}
	}
	_, readErr, writeErr := tunnel.CopyBody(dst, body)
	if readErr != nil || writeErr != nil {
		if readErr != nil {
			p.log.Warn("response body from the tunnel broke off", "host", r.Host, "request_id", info.ID, "err", readErr)
		}
		// Abort the client's connection: the answer is incomplete.
		panic(http.ErrAbortHandler)
	}
	if len(body.Trailer) == 0 {
		return
	}
	// Send the body as chunks, even a short one: net/http would give it a
	// Content-Length otherwise, which leaves no room for trailers.
	http.NewResponseController(w).Flush()
	for k, vv := range body.Trailer {
		if !slices.Contains(announced, k) {
			k = http.TrailerPrefix + k
		}
		h[k] = vv
	}
}

func isEventStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

// flushWriter sends every write to the client at once.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

func (p *proxy) proxyError(w http.ResponseWriter, r *http.Request, info *layer.Request, err error) {
	id := info.ID
	var oe *originError
	switch {
	case bodyTooLarge(r) > 0: // limits.go
		tooLarge(w, r, bodyTooLarge(r), id)
	case r.Context().Err() != nil:
		// The client went away (closed its connection, reset its HTTP/2
		// stream): whatever failed after that failed because of it, and
		// nobody reads an answer. 499 in the metrics, nothing logged.
		w.WriteHeader(statusClientClosed)
	case errors.Is(err, errTunnelOffline):
		writeErrorPage(w, r, http.StatusBadGateway, "Tunnel offline",
			fmt.Sprintf("The tunnel for %q has no connector online. Start it with `adit tunnel run`.", hostOnly(r.Host)), id)
	case errors.As(err, &oe):
		writeErrorPage(w, r, http.StatusBadGateway, "Origin unreachable",
			fmt.Sprintf("The tunnel's connector could not reach the origin service for %q. The connector's log has the cause under this request ID.", hostOnly(r.Host)), id)
	default:
		p.log.Warn("tunnel stream failed", "host", r.Host, "request_id", id, "err", err)
		writeErrorPage(w, r, http.StatusBadGateway, "Tunnel error",
			fmt.Sprintf("The request for %q failed inside the tunnel: %v", hostOnly(r.Host), err), id)
	}
}

var errTunnelOffline = errors.New("edge: tunnel has no live connection")

// statusClientClosed is nginx's status for a request whose client went
// away before the answer, for the metrics.
const statusClientClosed = 499

// originError is the connector's report that it could not reach the origin.
type originError struct{ msg string }

func (e *originError) Error() string { return "origin unreachable: " + e.msg }

// tunnelTransport carries one request over one stream of a tunnel
// connection.
type tunnelTransport struct {
	reg   *registry
	m     *edgeMetrics // nil records nothing
	peers *peers       // peer.go: where to forward when reg has no connection; nil: nowhere
}

// openStream picks a connection and opens a stream on it (see
// openStreamSkip). The caller gives the connection's inflight slot back.
func (t *tunnelTransport) openStream(ctx context.Context, tunnelID string) (*tunnelConn, tunnel.Stream, error) {
	return t.openStreamSkip(ctx, tunnelID, nil)
}

func (t *tunnelTransport) exchange(req *http.Request, info *layer.Request, a *attempt) (*http.Response, error) {
	s := &a.watched
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
	h := &a.reqH
	*h = tunnel.RequestHeader{
		Type:          typ,
		Method:        req.Method,
		Host:          req.Host,
		Path:          req.URL.RequestURI(),
		Header:        req.Header,
		ClientAddr:    info.ClientAddr,
		RequestID:     info.ID,
		ContentLength: cl,
	}
	for k := range req.Trailer {
		h.Trailer = append(h.Trailer, k)
	}
	hp := headerBufPool.Get().(*[]byte)
	hb, err := tunnel.AppendMessage((*hp)[:0], h)
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
	a.br = br
	rh := &a.respH
	if err := tunnel.ReadMessage(br, rh); err != nil {
		return nil, fmt.Errorf("edge: reading response header: %w", err)
	}
	if rh.Error != "" {
		return nil, &originError{msg: rh.Error}
	}
	if rh.Status < 200 && !(typ == tunnel.StreamWebSocket && rh.Status == http.StatusSwitchingProtocols) {
		// Interim answers are not relayed; a 101 only answers an upgrade.
		return nil, fmt.Errorf("edge: connector sent status %d", rh.Status)
	}
	resp := &a.resp
	*resp = http.Response{
		Status:        statusLine(rh.Status),
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
		resp.Body = &rawBody{r: br, s: s, release: a.release}
		a.br = nil // the rawBody's now
		return resp, nil
	}
	if len(rh.Trailer) > 0 {
		resp.Trailer = make(http.Header, len(rh.Trailer))
		for _, k := range rh.Trailer {
			resp.Trailer[http.CanonicalHeaderKey(k)] = nil
		}
	}
	body := tunnel.NewBodyReader(br, resp.Trailer)
	body.OnClose = a.closeBody
	resp.Body = body
	return resp, nil
}

// sendBody streams the request body as data frames, then its trailers.
func sendBody(req *http.Request, bw *tunnel.BodyWriter, s tunnel.Stream) {
	body := &readErr{r: req.Body}
	if _, err := io.Copy(bw, body); err != nil {
		if body.err != nil {
			// The client's body broke off: abort so the origin sees an
			// error, not a short body.
			s.Close()
		}
		// Else the stream took no more: the other side stopped reading,
		// and may have answered already (an early 413, a peer edge's
		// refusal). The response is read as ever; closing the stream here
		// would throw that answer away.
		return
	}
	if err := bw.CloseWithTrailers(req.Trailer); err != nil {
		return
	}
	s.CloseWrite()
}

// readErr is a reader that keeps its read error other than io.EOF, so
// sendBody tells a client's broken body from a stream that took no more.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
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

// statusLines are the Status of an http.Response for the codes net/http
// names, made once rather than for every answer.
var statusLines = func() (lines [600]string) {
	for code := range lines {
		if text := http.StatusText(code); text != "" {
			lines[code] = strconv.Itoa(code) + " " + text
		}
	}
	return lines
}()

// statusLine is "200 OK" for 200: an http.Response's Status.
func statusLine(code int) string {
	if code >= 0 && code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return fmt.Sprintf("%d %s", code, http.StatusText(code))
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
