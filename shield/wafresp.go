package shield

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/layer"
)

// The WAF's response phases (the CRS's RESPONSE-95x rules: SQL errors,
// directory listings, stack traces and other leakages in an answer, scored
// against the outbound threshold).
//
// Which answers are inspected, so that streaming stays streaming:
//   - every answer's status and header (phase 3), in block and detect mode;
//   - the body (phase 4) of an answer whose Content-Type is one Coraza
//     inspects (SecResponseBodyMimeType: text/plain, text/html, text/xml,
//     application/json) and whose Content-Length is at most the response
//     body limit, or unknown (in block mode, not one that announces
//     trailers: it passes as in detect mode). Anything else (server-sent events, gRPC,
//     images, a download longer than the limit) streams through as before,
//     uninspected; an upgraded connection (WebSocket) too.
//
// In block mode an inspected body is held until it ends (at most the limit)
// and then sent or refused: an answer that reaches the outbound threshold
// gets the refusal page (403) instead, and nothing of the origin's answer
// reaches the client. An answer of unknown length that has not ended within
// streamAfter, or that passes the limit, is judged on what arrived so far
// and then streams. In detect mode nothing is held: the body is inspected
// as it passes, and a match is logged.

// streamAfter is how long a held answer of unknown length waits for its
// end before it is judged on what arrived and then streams (a text/plain
// log tail, a slow page).
const streamAfter = time.Second

// respMimeTypes are the Content-Types whose bodies are inspected.
const respMimeTypes = "text/plain text/html text/xml application/json"

// Response states.
const (
	respPending   = iota // no status yet
	respHolding          // block mode: the body is held for the verdict
	respPassing          // status sent, the body passes (inspected in detect mode up to the limit)
	respRefused          // the refusal page went out; the origin's answer is dropped
	respAbandoned        // the handler broke off; write nothing more
)

// respInspector is the ResponseWriter the WAF gives the rest of the chain
// of a hostname in block or detect mode.
type respInspector struct {
	w     http.ResponseWriter
	r     *http.Request
	req   *layer.Request
	tx    types.Transaction
	e     *engine
	waf   *WAF
	block bool
	// requestDone, if set, ends the request's inspection before the
	// answer's begins (detect mode's streamed body: teeBody.finish), so
	// the phases run in order and never at once.
	requestDone func()

	mu      sync.Mutex
	state   int
	code    int
	n       int64 // body bytes given to the transaction
	inspect bool  // the body goes to the transaction
	timer   *time.Timer
}

var _ http.Flusher = (*respInspector)(nil)

func newRespInspector(waf *WAF, e *engine, w http.ResponseWriter, r *http.Request, req *layer.Request, tx types.Transaction) *respInspector {
	return &respInspector{w: w, r: r, req: req, tx: tx, e: e, waf: waf, block: e.cfg.Mode == control.WAFBlock}
}

func (ri *respInspector) Header() http.Header { return ri.w.Header() }

// Unwrap lets http.ResponseController reach the connection (an upgrade's
// Hijack, deadlines).
func (ri *respInspector) Unwrap() http.ResponseWriter { return ri.w }

func (ri *respInspector) WriteHeader(code int) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	ri.writeHeader(code)
}

func (ri *respInspector) writeHeader(code int) {
	if ri.state != respPending {
		return
	}
	if code < 200 {
		// 1xx: informational (and 101, an upgrade: a pipe from here on).
		if code == http.StatusSwitchingProtocols {
			ri.state = respPassing
		}
		ri.w.WriteHeader(code)
		return
	}
	ri.code = code
	if ri.requestDone != nil {
		ri.requestDone()
	}
	h := ri.w.Header()
	for k, vv := range h {
		for _, v := range vv {
			ri.tx.AddResponseHeader(k, v)
		}
	}
	if it := ri.tx.ProcessResponseHeaders(code, ri.r.Proto); it != nil && ri.block {
		ri.refuse(it)
		return
	}
	ri.inspect = bodyAllowed(ri.r.Method, code) && ri.tx.IsResponseBodyAccessible() && ri.tx.IsResponseBodyProcessable()
	if ri.inspect {
		if cl := h.Get("Content-Length"); cl != "" {
			n, err := strconv.ParseInt(cl, 10, 64)
			ri.inspect = err == nil && n <= ri.e.cfg.ResponseBodyLimit
		}
	}
	if ri.inspect && ri.block && h.Get("Trailer") == "" {
		ri.state = respHolding
		if h.Get("Content-Length") == "" {
			ri.timer = time.AfterFunc(streamAfter, ri.judgeNow)
		}
		return
	}
	ri.state = respPassing
	ri.w.WriteHeader(code)
}

// bodyAllowed reports whether an answer to method with code has a body.
func bodyAllowed(method string, code int) bool {
	return method != http.MethodHead && code != http.StatusNoContent && code != http.StatusNotModified
}

func (ri *respInspector) Write(p []byte) (int, error) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.state == respPending {
		ri.writeHeader(http.StatusOK)
	}
	switch ri.state {
	case respRefused, respAbandoned:
		return len(p), nil
	case respPassing:
		if ri.inspect && ri.n < ri.e.cfg.ResponseBodyLimit {
			ri.feed(p)
		}
		return ri.w.Write(p)
	}
	// Holding: into the transaction, up to the limit; past it, judge what
	// arrived and let the rest stream.
	room := ri.e.cfg.ResponseBodyLimit - ri.n
	if int64(len(p)) <= room {
		ri.feed(p)
		return len(p), nil
	}
	ri.feed(p[:room])
	if !ri.judge() {
		return len(p), nil
	}
	return ri.w.Write(p[room:])
}

// feed gives the transaction body bytes (at most up to the limit).
func (ri *respInspector) feed(p []byte) {
	p = p[:min(int64(len(p)), ri.e.cfg.ResponseBodyLimit-ri.n)]
	if _, _, err := ri.tx.WriteResponseBody(p); err != nil {
		ri.waf.errs.Inc()
	}
	ri.n += int64(len(p))
}

// judge runs the body phase on what is held, then refuses the answer or
// sends what is held and lets the rest pass; it reports whether the answer
// goes on. Called with mu held, in the holding state.
func (ri *respInspector) judge() bool {
	if ri.timer != nil {
		ri.timer.Stop()
	}
	it, err := ri.tx.ProcessResponseBody()
	if err != nil {
		ri.waf.errs.Inc()
		ri.waf.log.Error("waf response body processing", "request_id", ri.req.ID, "err", err)
	}
	if it != nil {
		ri.refuse(it)
		return false
	}
	ri.state = respPassing
	ri.inspect = false // judged
	ri.w.WriteHeader(ri.code)
	if ri.n > 0 {
		rbr, err := ri.tx.ResponseBodyReader()
		if err == nil {
			_, err = io.Copy(ri.w, rbr)
		}
		if err != nil {
			ri.state = respAbandoned
			return false
		}
	}
	return true
}

// judgeNow judges a held answer of unknown length that has not ended in
// time, so it streams from here on.
func (ri *respInspector) judgeNow() {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.state == respHolding && ri.judge() {
		if f, ok := ri.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// refuse answers with the refusal page instead of the origin's answer.
// Called with mu held, before anything of the answer was sent.
func (ri *respInspector) refuse(it *types.Interruption) {
	ri.state = respRefused
	h := ri.w.Header()
	for k := range h {
		if k != layer.RequestIDHeader {
			delete(h, k)
		}
	}
	status := it.Status
	if status < 400 || status > 599 {
		status = http.StatusForbidden
	}
	ri.waf.blockedResponse.Inc()
	ri.waf.log.Info("waf blocked an answer", "host", ri.req.Host, "request_id", ri.req.ID, "client", ri.req.ClientAddr,
		"method", ri.r.Method, "path", ri.r.URL.Path, "origin_status", ri.code, "rules", matchedIDs(ri.tx), "rule", it.RuleID, "status", status)
	layer.Refuse(ri.w, ri.r, ri.req, status, "Blocked by the web application firewall",
		"The firewall of "+ri.req.Host+" blocked the answer to this request. If you think it should not have, give the site's owner the request ID below.")
}

// Flush sends what has passed; a held answer stays held.
func (ri *respInspector) Flush() {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.state == respPassing {
		if f, ok := ri.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// Hijack is the upgrade's (edge/upgrade.go, through
// http.ResponseController and Unwrap; here for callers that assert).
func (ri *respInspector) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	ri.mu.Lock()
	ri.state = respPassing
	ri.mu.Unlock()
	return http.NewResponseController(ri.w).Hijack()
}

// finish ends the answer once the handler returned: a held answer is
// judged, and in detect mode the body phase runs on what passed. ok is
// false when the handler broke off (a panic): nothing more is written.
func (ri *respInspector) finish(ok bool) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.timer != nil {
		ri.timer.Stop()
	}
	if !ok {
		ri.state = respAbandoned
		return
	}
	switch ri.state {
	case respHolding:
		ri.judge()
	case respPassing:
		if ri.inspect {
			ri.tx.ProcessResponseBody() // too late to refuse; logged
		}
	}
}
