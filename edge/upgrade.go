package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"

	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/tunnel"
)

// Upgrades (WebSocket and any other `Connection: Upgrade`). The request
// takes the usual path (proxy.forward), so it is rewritten (X-Forwarded-*,
// hop-by-hop headers), sent down a stream and answered like any other; a
// non-101 answer is written as usual. A 101 is taken over here:
// takeUpgrade hijacks the client connection, writes the 101 and pipes the
// connection and the stream, and the handler returns.
//
// An idle WebSocket is the unit of cost here (tens of thousands stay open
// on one edge), so an upgraded connection keeps two new goroutines, one per
// direction, with small stacks, each waiting with tunnel.Copy's small
// buffer, and nothing else of the request: the handler goroutine, its deep
// stack and the HTTP server's buffers for the connection are gone once the
// 101 is written (nothing the pipe keeps may lead to the ResponseWriter),
// and the stream's 16 KiB header reader is back in its pool.
//
// The connection and the stream outlive the request context: a client that
// goes away before the 101 cancels the request as usual; after it, the
// pipe ends on its own, when both directions have ended or one failed. On
// Close the edge closes its tunnel connections, which fails the streams and
// so ends every pipe.

// upgradeState is what takeUpgrade needs to take an upgraded connection
// over from the handler.
type upgradeState struct {
	w       http.ResponseWriter
	ctx     context.Context // the stream's: see startUpgrade
	log     *slog.Logger
	cancel  context.CancelFunc // ends the stream's context
	unwatch func() bool        // stops the request context from cancelling it
	taken   bool               // set by takeUpgrade on the handler's goroutine
}

// startUpgrade makes the context of an upgrade's stream. It is not the
// request's: the upgraded connection lives on after the handler returns.
// Until the 101, the request's end (the client went away) still cancels
// it. It carries no values: one derived from the request's would keep the
// HTTP server's contexts for the connection alive as long as the pipe.
func (p *proxy) startUpgrade(w http.ResponseWriter, r *http.Request) *upgradeState {
	ctx, cancel := context.WithCancel(context.Background())
	up := &upgradeState{w: w, ctx: ctx, log: p.log, cancel: cancel}
	up.unwatch = context.AfterFunc(r.Context(), cancel)
	return up
}

// finish ends the stream's context when the handler returns, unless the
// pipe took it.
func (up *upgradeState) finish() {
	if !up.taken {
		up.unwatch()
		up.cancel()
	}
}

// takeUpgrade takes over a 101 answer to req: it hijacks the client
// connection, writes the 101 and starts the pipe. It returns nil once the
// connection is the pipe's (or is gone), or an error for proxyError to
// answer the client with; either way resp is finished with.
func takeUpgrade(req *http.Request, resp *http.Response, up *upgradeState, info *layer.Request) error {
	body, ok := resp.Body.(*rawBody)
	if !ok || up == nil {
		resp.Body.Close()
		return errors.New("edge: 101 switching protocols answer to a request that is not an upgrade")
	}
	// The answer must switch to the protocol asked for.
	reqType, respType := upgradeType(req.Header), upgradeType(resp.Header)
	if !isPrintableASCII(respType) {
		body.Close()
		return fmt.Errorf("edge: origin tried to switch to invalid protocol %q", respType)
	}
	if !strings.EqualFold(reqType, respType) {
		body.Close()
		return fmt.Errorf("edge: origin tried to switch protocol %q when %q was requested", respType, reqType)
	}
	if !up.unwatch() {
		// The client went away while the origin was answering.
		body.Close()
		return context.Canceled
	}
	conn, brw, err := http.NewResponseController(up.w).Hijack()
	if err != nil {
		body.Close()
		return fmt.Errorf("edge: hijack failed on protocol switch: %w", err)
	}
	up.taken = true
	h := up.w.Header() // the request ID is already there
	up.w = nil         // nothing of the pipe's may hold the server's buffers

	cleanResponseHeader(resp.Header) // respheader.go; Connection and Upgrade are the edge's
	for k, vv := range resp.Header {
		h[k] = append(h[k], vv...)
	}
	h["Connection"] = []string{"Upgrade"}
	h["Upgrade"] = []string{respType}
	resp.Header = h
	resp.Body = nil // only the header goes out
	if err = resp.Write(brw); err == nil {
		err = brw.Flush()
	}
	if err != nil {
		up.log.Debug("writing 101 to the client failed", "request_id", info.ID, "host", req.Host, "err", err)
		conn.Close()
		body.Close()
		up.cancel()
		return nil
	}

	// Bytes already read past the headers on either side go first. The
	// readers holding them are let go: the pipe reads the connection and
	// the stream directly.
	var toStream []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		toStream = append([]byte(nil), b...)
	}
	toClient := body.takeBuffered()

	u := &upgradedConn{conn: conn, s: body.s, release: body.release, cancel: up.cancel,
		log: up.log, requestID: info.ID, host: req.Host}
	u.left.Store(2)
	go u.copyToClient(toClient)
	go u.copyToStream(toStream)
	return nil
}

// upgradedConn pipes a hijacked client connection and its tunnel stream.
// Each direction passes a clean end (io.EOF) on as a half-close of the
// other side; an error in either one aborts both.
type upgradedConn struct {
	conn    net.Conn
	s       tunnel.Stream
	release func() // closes the stream and gives its connection slot back
	cancel  context.CancelFunc
	left    atomic.Int32 // directions still running
	once    sync.Once
	closed  atomic.Bool // close has begun

	// For the logs, which are rare: a logger With these would cost every
	// idle connection a handler of its own.
	log             *slog.Logger
	requestID, host string
}

// copyToClient carries the stream to the client, after pending.
func (u *upgradedConn) copyToClient(pending []byte) {
	err := tunnel.WriteFull(u.conn, pending)
	if err == nil {
		_, err = tunnel.Copy(u.conn, u.s)
	}
	if err == nil {
		if cw, ok := u.conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	u.end("to client", err)
}

// copyToStream carries the client to the stream, after pending.
func (u *upgradedConn) copyToStream(pending []byte) {
	err := tunnel.WriteFull(u.s, pending)
	if err == nil {
		_, err = tunnel.Copy(u.s, u.conn)
	}
	if err == nil {
		err = u.s.CloseWrite()
	}
	u.end("to stream", err)
}

// end records that one direction is over: on an error both sides are
// closed at once (which ends the other direction too); otherwise the last
// direction to end closes them.
func (u *upgradedConn) end(dir string, err error) {
	if err != nil {
		if !u.closed.Load() { // else the error is the close's doing
			u.log.Debug("upgraded connection broke off", "request_id", u.requestID, "host", u.host, "direction", dir, "err", err)
		}
		u.close()
	}
	if u.left.Add(-1) == 0 {
		u.close()
	}
}

func (u *upgradedConn) close() {
	u.once.Do(func() {
		u.closed.Store(true)
		u.conn.Close()
		u.release()
		u.cancel()
	})
}

// upgradeType is the protocol h switches to, or "" if it does not.
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
