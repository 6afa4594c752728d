package connector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/origin"
	"github.com/adit-dev/adit/tunnel"
)

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// maxIdleAcceptors bounds the goroutines that wait for a connection's next
// stream once the streams they served are done.
const maxIdleAcceptors = 16

// acceptStreams serves conn's streams, counted in streams, until conn
// ends. The goroutine that accepts a stream serves it, after making sure
// another one waits for the next: the request runs on the goroutine
// quic-go (or yamux) woke, without a second wake-up to hand it over. Once
// done it goes back to accepting, unless maxIdleAcceptors others wait
// already. Reusing them matters: a new goroutine's stack grows, copied
// each time it doubles, on the way down to the origin's transport, which
// cost the connector 6-7% of its CPU at 50 concurrent requests when every
// stream had a goroutine of its own.
func (c *Connector) acceptStreams(conn tunnel.Conn, streams *countGroup, log *slog.Logger) {
	var waiting atomic.Int32 // goroutines in AcceptStream, or about to be
	var accept func()
	accept = func() {
		for {
			s, err := conn.AcceptStream(context.Background())
			if err != nil {
				return // the connection ended
			}
			streams.add()
			if waiting.Add(-1) == 0 {
				waiting.Add(1)
				go accept()
			}
			c.serveStream(c.metrics.track(s), log)
			streams.done()
			if !addBelow(&waiting, maxIdleAcceptors) {
				return
			}
		}
	}
	waiting.Add(1)
	go accept()
}

// addBelow adds one to n unless that would take it past limit, and
// reports whether it did.
func addBelow(n *atomic.Int32, limit int32) bool {
	for {
		v := n.Load()
		if v >= limit {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// serveStream serves one request stream from the edge: read the request
// header, match the ingress rules, send the request to the origin, and
// stream the answer back.
func (c *Connector) serveStream(s tunnel.Stream, log *slog.Logger) {
	defer s.Close()
	rd := newStreamReader(s)
	defer rd.release()

	h := &rd.header
	if err := tunnel.ReadMessage(rd.Reader, h); err != nil {
		c.rl.Logger(log).Warn("bad request stream", "err", err)
		return
	}
	log = withLazy(log, slog.String("request_id", h.RequestID), slog.String("host", h.Host))
	switch h.Type {
	case tunnel.StreamHTTP:
		c.serveHTTP(s, rd, h, log)
	case tunnel.StreamWebSocket:
		c.serveUpgrade(s, rd, h, log) // upgrade.go
	case tunnel.StreamTCP:
		if c.localTCP != nil {
			c.serveLocalTCP(s, rd, h) // listen.go
			return
		}
		c.serveTCP(s, rd.Reader, h, log) // tcp.go
	default:
		c.rl.Logger(log).Warn("unsupported stream type", "type", h.Type)
		tunnel.WriteMessage(s, &tunnel.ResponseHeader{Status: http.StatusBadGateway, Error: "connector does not serve " + h.Type.String() + " streams"})
		s.CloseWrite()
	}
}

// streamReader is a stream's pooled reader, which holds the request header
// and what follows it, and the request and response headers (allocated
// with it). A long-lived stream (an upgraded connection) gives the reader
// back early; release is safe to call again.
type streamReader struct {
	*bufio.Reader // nil once released
	header        tunnel.RequestHeader
	respHeader    tunnel.ResponseHeader // serveHTTP's answer
}

func newStreamReader(s tunnel.Stream) *streamReader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(s)
	return &streamReader{Reader: br}
}

func (r *streamReader) release() {
	if r.Reader != nil {
		r.Reader.Reset(nil)
		readerPool.Put(r.Reader)
		r.Reader = nil
	}
}

// take releases the reader and returns a copy of the bytes it held.
func (r *streamReader) take() []byte {
	var p []byte
	if n := r.Buffered(); n > 0 {
		b, _ := r.Peek(n)
		p = append([]byte(nil), b...)
	}
	r.release()
	return p
}

// route rebuilds the request of an HTTP or WebSocket stream and finds its
// origin; if it cannot, it answers the stream and returns ok false.
func (c *Connector) route(s tunnel.Stream, h *tunnel.RequestHeader, log *slog.Logger) (req *http.Request, rule *ingress.Rule, svc origin.HTTPService, ok bool) {
	req, err := newOriginRequest(h)
	if err != nil {
		c.rl.Logger(log).Warn("bad request header", "err", err)
		respondError(s, http.StatusBadRequest, "bad request: "+err.Error())
		return nil, nil, nil, false
	}
	rt := c.router.Load()
	rule, svc = rt.match(h.Host, req.URL.Path)
	if rule != nil {
		if why := rt.checkAccess(rule.Index, h.Host, req.Header); why != "" {
			c.rl.Logger(log).Warn("refused by originRequest.access", "rule", rule.Index+1, "reason", why)
			refuseAccess(s, h.RequestID, why, log)
			return nil, nil, nil, false
		}
	}
	if svc == nil {
		msg := "no ingress rule matches"
		if rule != nil {
			msg = fmt.Sprintf("ingress rule %d serves %s, not HTTP; reach it with `adit access`", rule.Index+1, rule.Service.Kind)
		}
		log.Warn(""+msg, "path", req.URL.Path)
		respondError(s, http.StatusBadGateway, msg)
		return nil, nil, nil, false
	}
	return req, rule, svc, true
}

func (c *Connector) serveHTTP(s tunnel.Stream, rd *streamReader, h *tunnel.RequestHeader, log *slog.Logger) {
	req, rule, svc, ok := c.route(s, h, log)
	if !ok {
		return
	}
	br := rd.Reader
	body := tunnel.NewBodyReader(br, req.Trailer)
	req.Body = body
	if h.ContentLength == 0 {
		// Nothing to send, but the end frame must still be consumed.
		io.Copy(io.Discard, body)
		req.Body = http.NoBody
	} else {
		// The origin's transport may go on reading the body after it
		// returned the answer (an origin that answers before reading it
		// all), past this function's end: the reader is not returned to
		// the pool, where it would be reset under that read.
		rd.Reader = nil
	}
	// The edge abandons the stream when its client goes away. While the
	// origin sends nothing (a gRPC stream or a long poll waiting for an
	// event) no write fails to tell us, so the origin request ends with
	// the stream's context: when the transport says the edge stopped
	// reading, or when serveStream closes the stream after this returns.
	req = req.WithContext(s.Context())

	resp, err := svc.RoundTrip(req)
	if err != nil {
		c.originUnreachable(s, rule, svc, err, log)
		return
	}
	defer resp.Body.Close()

	rh := &rd.respHeader
	*rh = responseHeader(resp)
	if h.Method != http.MethodHead && len(resp.Trailer) == 0 && resp.ContentLength >= 0 && resp.ContentLength <= smallBody {
		// A small answer of known length goes out in one write: header,
		// body and end together (one packet instead of three).
		if writeSmallResponse(s, rh, resp.Body, log) {
			c.served(log, h.Method, req.URL.Path, resp.StatusCode)
		}
		return
	}
	if err := tunnel.WriteMessage(s, rh); err != nil {
		log.Debug("edge went away", "err", err)
		return
	}
	if c.sendBody(s, resp, log) {
		c.served(log, h.Method, req.URL.Path, resp.StatusCode)
	}
}

// originUnreachable answers a request whose origin could not be reached.
func (c *Connector) originUnreachable(s tunnel.Stream, rule *ingress.Rule, svc origin.HTTPService, err error, log *slog.Logger) {
	if c.abandoned(s, log) {
		return // the failure is the cancellation; nobody reads an answer
	}
	c.metrics.originErrors.Inc()
	log.Error("origin unreachable", "rule", rule.Index+1, "service", svc.String(), "err", err)
	respondError(s, http.StatusBadGateway, err.Error())
}

// abandoned reports whether the edge gave up on the request of stream s
// (its client went away), which cancels the origin's request. That is no
// fault of the origin's, and a visitor can cause it at will (a burst of
// HTTP/2 resets), so it is logged once per interval, as a 499; the
// stream's metrics count it as 499 too (metrics.go).
func (c *Connector) abandoned(s tunnel.Stream, log *slog.Logger) bool {
	if s.Context().Err() == nil {
		return false
	}
	c.rl.Logger(log).Info("request cancelled: the edge's client went away", "status", statusClientClosed)
	return true
}

// statusClientClosed is nginx's status for a request whose client closed
// the connection first, used in logs and metrics.
const statusClientClosed = 499

// responseHeader is the stream's answer header for resp.
func responseHeader(resp *http.Response) tunnel.ResponseHeader {
	rh := tunnel.ResponseHeader{
		Status:        resp.StatusCode,
		Header:        resp.Header,
		ContentLength: resp.ContentLength,
	}
	for k := range resp.Trailer {
		rh.Trailer = append(rh.Trailer, k)
	}
	return rh
}

// sendBody streams resp's body and trailers to the edge after the answer
// header, and reports whether all of it went.
func (c *Connector) sendBody(s tunnel.Stream, resp *http.Response, log *slog.Logger) bool {
	bw := tunnel.NewBodyWriter(s)
	if _, err := io.Copy(bw, resp.Body); err != nil {
		if !c.abandoned(s, log) {
			// Abort: the edge must see a broken body, not a short one.
			log.Warn("response body from origin broke off", "err", err)
		}
		return false
	}
	if err := bw.CloseWithTrailers(resp.Trailer); err != nil {
		return false
	}
	s.CloseWrite()
	return true
}

// newOriginRequest rebuilds a server-style request from the header.
func newOriginRequest(h *tunnel.RequestHeader) (*http.Request, error) {
	if h.Method == "" {
		return nil, errors.New("no method")
	}
	if !strings.HasPrefix(h.Path, "/") && h.Path != "*" {
		return nil, errors.New("path must start with /")
	}
	u, err := url.ParseRequestURI(h.Path)
	if err != nil {
		return nil, err
	}
	header := h.Header
	if header == nil {
		header = make(http.Header)
	}
	req := &http.Request{
		Method:        h.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Host:          h.Host,
		ContentLength: h.ContentLength,
		RemoteAddr:    h.ClientAddr,
		RequestURI:    h.Path,
	}
	if len(h.Trailer) > 0 {
		req.Trailer = make(http.Header, len(h.Trailer))
		for _, k := range h.Trailer {
			req.Trailer[http.CanonicalHeaderKey(k)] = nil
		}
	}
	return req, nil
}

func respondError(s tunnel.Stream, status int, msg string) {
	tunnel.WriteMessage(s, &tunnel.ResponseHeader{Status: status, Error: msg})
	s.CloseWrite()
}

// smallBody is the largest response body of known length that is sent
// with its header in a single write.
const smallBody = 16 << 10

var smallBufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, smallBody+4096)
	return &b
}}

// writeSmallResponse reads a body of rh.ContentLength bytes and writes the
// header, the body and the end frame in one write, then finishes the
// stream. It reports whether the whole answer was sent.
func writeSmallResponse(s tunnel.Stream, rh *tunnel.ResponseHeader, body io.Reader, log *slog.Logger) bool {
	bp := smallBufPool.Get().(*[]byte)
	defer smallBufPool.Put(bp)
	b, err := tunnel.AppendMessage((*bp)[:0], rh)
	if err != nil {
		log.Warn("response header too large", "err", err)
		respondError(s, http.StatusBadGateway, "origin response header too large")
		return false
	}
	n := int(rh.ContentLength)
	hdrLen := len(b)
	b = tunnel.AppendFrameHeader(b, tunnel.FrameData, n)
	dataAt := len(b)
	b = append(b, make([]byte, n)...)
	if _, err := io.ReadFull(body, b[dataAt:]); err != nil {
		// The origin sent less than it announced: send what we have as a
		// broken body, so the edge sees an error, not a short answer.
		log.Warn("response body from origin broke off", "err", err)
		s.Write(b[:hdrLen])
		return false
	}
	if n == 0 {
		b = b[:hdrLen]
	}
	b = tunnel.AppendEnd(b)
	*bp = b[:0]
	if _, err := s.Write(b); err != nil {
		log.Debug("edge went away", "err", err)
		return false
	}
	s.CloseWrite()
	return true
}

// served logs a request served: at info level with Config.LogRequests,
// else at debug level.
func (c *Connector) served(log *slog.Logger, method, path string, status int) {
	lvl := slog.LevelDebug
	if c.cfg.LogRequests {
		lvl = slog.LevelInfo
	}
	if !log.Enabled(context.Background(), lvl) {
		return // before the arguments are boxed: two allocations a request
	}
	log.Log(context.Background(), lvl, "served", "method", method, "path", path, "status", status)
}
