package connector

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/adit-dev/adit/tunnel"
)

// Upgrades (WebSocket and any other `Connection: Upgrade`). The origin's
// answer goes back like any other; after a 101 the stream and the origin
// connection are piped, one goroutine per direction (the stream's own
// goroutine is one of them), each waiting with tunnel.Copy's small buffer.
// The stream's 16 KiB header reader goes back to its pool first: an idle
// WebSocket holds no buffer of its own beyond those two small ones.
//
// The handshake (routing, dialing the origin, maybe TLS, the answer) runs
// on a short-lived goroutine of its own. It takes a deep stack, and a
// goroutine keeps the stack it grew to until a garbage collection finds it
// mostly unused; the stream's goroutine, which then waits on an idle pipe
// for hours, would keep 8 KiB instead of 4 KiB.

// upgraded is a switched origin connection, ready to pipe.
type upgraded struct {
	origin  io.ReadWriteCloser
	pending []byte // read from the stream past the request header
}

// serveUpgrade serves an upgrade stream: the handshake aside, then the
// pipe on this goroutine.
func (c *Connector) serveUpgrade(s tunnel.Stream, rd *streamReader, h *tunnel.RequestHeader, log *slog.Logger) {
	ch := make(chan *upgraded, 1)
	go func() { ch <- c.upgradeHandshake(s, rd, h, log) }()
	u := <-ch
	if u == nil {
		return
	}
	pipeUpgrade(s, u.pending, u.origin, log)
}

// upgradeHandshake sends an upgrade request to its origin and the answer
// back to the edge. On a 101 it returns the connection to pipe; otherwise
// it has sent the whole answer (or an error) and returns nil.
func (c *Connector) upgradeHandshake(s tunnel.Stream, rd *streamReader, h *tunnel.RequestHeader, log *slog.Logger) *upgraded {
	req, rule, svc, ok := c.route(s, h, log)
	if !ok {
		return nil
	}
	// What follows the 101 is piped, not sent as a body.
	req.Body = http.NoBody
	// The context bounds the handshake, not the switched connection.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := svc.RoundTrip(req.WithContext(ctx))
	if err != nil {
		c.originUnreachable(s, rule, svc, err, log)
		return nil
	}
	switched := false
	defer func() {
		if !switched {
			resp.Body.Close()
		}
	}()
	rh := responseHeader(resp)
	if err := tunnel.WriteMessage(s, &rh); err != nil {
		log.Debug("edge went away", "err", err)
		return nil
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		if c.sendBody(s, resp, log) {
			c.served(log, req.Method, req.URL.Path, resp.StatusCode)
		}
		return nil
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		log.Error("origin switched protocols without a writable body")
		return nil
	}
	log.Debug("upgraded", "path", req.URL.Path, "upgrade", resp.Header.Get("Upgrade"))
	switched = true
	return &upgraded{origin: rwc, pending: rd.take()}
}

// pipeUpgrade copies bytes both ways between the edge stream and the
// origin's upgraded connection, pending (what the stream's reader had
// already read) first, until both directions have ended. A clean end of
// one side's reads is passed on as a half-close of the other (the origin
// connection is closed if it cannot half-close); an error in either
// direction aborts both, so that the edge sees a broken stream, not a
// clean end. It returns when both directions are done.
func pipeUpgrade(s tunnel.Stream, pending []byte, origin io.ReadWriteCloser, log *slog.Logger) {
	var aborted atomic.Bool
	abort := func(dir string, err error) {
		if aborted.Swap(true) {
			return // the error is the first abort's doing
		}
		log.Debug("upgraded connection broke off", "direction", dir, "err", err)
		s.Close()
		origin.Close()
	}
	// closedOrigin is set when the origin connection was closed for want
	// of a half-close: the error that gives the other direction is no
	// failure.
	var closedOrigin atomic.Bool
	done := make(chan struct{})
	go func() { // edge → origin
		defer close(done)
		err := tunnel.WriteFull(origin, pending)
		if err == nil {
			_, err = tunnel.Copy(origin, s)
		}
		if err != nil {
			abort("to origin", err)
			return
		}
		if cw, ok := origin.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			return
		}
		closedOrigin.Store(true)
		origin.Close()
	}()
	// origin → edge
	if _, err := tunnel.Copy(s, origin); err != nil && !closedOrigin.Load() {
		abort("to edge", err)
	} else {
		s.CloseWrite()
	}
	<-done
	origin.Close()
}
