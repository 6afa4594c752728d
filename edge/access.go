package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http/httpguts"

	"github.com/adit-dev/adit/carrier"
	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/tunnel"
)

// The `adit access` path: a WebSocket upgrade offering carrier.Subprotocol
// for a routed hostname becomes a TCP stream to that tunnel. The edge writes
// the request header, waits for the connector's answer (it dials the origin
// first), and only on a 200 accepts the WebSocket and bridges it to the
// stream; otherwise the client gets the usual error page.

// tcpAnswerTimeout bounds the wait for the connector's answer to a TCP
// stream; the connector's own connect timeout (30s by default) comes first.
const tcpAnswerTimeout = 2 * time.Minute

// isAccessRequest reports whether r is an `adit access` WebSocket upgrade.
func isAccessRequest(r *http.Request) bool {
	return tunnel.IsUpgrade(r.Header) &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		httpguts.HeaderValuesContainsToken(r.Header["Sec-Websocket-Protocol"], carrier.Subprotocol)
}

// serveAccess carries one `adit access` connection to the tunnel.
func (p *proxy) serveAccess(w http.ResponseWriter, r *http.Request, info *layer.Request) {
	log := p.log.With("host", r.Host, "request_id", info.ID, "client", info.ClientAddr)
	var dest http.Header
	// The Access layer's assertion goes along, for the connector's
	// originRequest.access check.
	for _, name := range []string{carrier.DestinationHeader, carrier.JumpDestinationHeader, "Adit-Access-Jwt-Assertion"} {
		if v := r.Header.Get(name); v != "" {
			if dest == nil {
				dest = make(http.Header)
			}
			dest.Set(name, v)
		}
	}
	ts, err := openTCPStream(r.Context(), p.t, info.TunnelID, &tunnel.RequestHeader{
		Type:       tunnel.StreamTCP,
		Host:       hostOnly(r.Host),
		Header:     dest,
		ClientAddr: info.ClientAddr,
		RequestID:  info.ID,
	})
	var refused *tcpRefusedError
	switch {
	case errors.As(err, &refused):
		// The client asked for what the rule cannot give (an HTTP
		// service, a bastion without a destination): say so to it.
		writeErrorPage(w, r, refused.status, "Refused by the tunnel's ingress rules", refused.msg, info.ID)
		return
	case err != nil:
		p.proxyError(w, r, info, err)
		return
	}
	defer ts.release()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{carrier.Subprotocol}})
	if err != nil {
		// Accept has answered the client.
		log.Info("access upgrade failed", "err", err)
		ts.stream.Close()
		return
	}
	if ws.Subprotocol() != carrier.Subprotocol {
		ws.Close(websocket.StatusProtocolError, "adit-access-tcp required")
		ts.stream.Close()
		return
	}
	remote, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	var remoteAddr net.Addr
	if remote != nil {
		remoteAddr = remote
	}
	conn := carrier.NewConn(ws, nil, remoteAddr)
	log.Debug("access connection open")
	if err := carrier.Pipe(conn, ts); err != nil {
		log.Debug("access connection broke off", "err", err)
		return
	}
	log.Debug("access connection closed")
}

// tcpStream is an open TCP stream whose connector answered 200: a byte pipe
// to the origin, usable with carrier.Pipe.
type tcpStream struct {
	tc     *tunnelConn
	stream tunnel.Stream
	br     *bufio.Reader // holds bytes read past the response header
}

func (t *tcpStream) Read(p []byte) (int, error)  { return t.br.Read(p) }
func (t *tcpStream) Write(p []byte) (int, error) { return t.stream.Write(p) }
func (t *tcpStream) CloseWrite() error           { return t.stream.CloseWrite() }
func (t *tcpStream) Close() error                { return t.stream.Close() }
func (t *tcpStream) Abort() error                { return t.stream.Close() }

// release closes the stream and gives its connection slot back.
func (t *tcpStream) release() {
	t.stream.Close()
	t.tc.inflight.Add(-1)
}

// openTCPStream opens a stream on one of the tunnel's connections, sends h
// and waits for the connector's answer. On a 200 it returns the stream; the
// caller must release it. Otherwise the error is errTunnelOffline, an
// *originError (the connector's reason, for the logs), a *tcpRefusedError
// (a 4xx answer, its reason for the client), or a stream failure.
func openTCPStream(ctx context.Context, tr *tunnelTransport, tunnelID string, h *tunnel.RequestHeader) (*tcpStream, error) {
	tc, s, err := tr.openStream(ctx, tunnelID)
	if err != nil {
		return nil, err
	}
	ts := &tcpStream{tc: tc, stream: s, br: bufio.NewReaderSize(s, 16<<10)}
	ctx, cancel := context.WithTimeout(ctx, tcpAnswerTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	rh, err := exchangeTCP(ts, h)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		ts.release()
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%v)", ctxErr, err)
		}
		return nil, err
	}
	if rh.Error != "" {
		ts.release()
		if rh.Status >= 400 && rh.Status < 500 {
			return nil, &tcpRefusedError{status: rh.Status, msg: rh.Error}
		}
		return nil, &originError{msg: rh.Error}
	}
	if rh.Status != http.StatusOK {
		ts.release()
		return nil, fmt.Errorf("edge: connector answered a tcp stream with status %d", rh.Status)
	}
	return ts, nil
}

func exchangeTCP(ts *tcpStream, h *tunnel.RequestHeader) (tunnel.ResponseHeader, error) {
	var rh tunnel.ResponseHeader
	if err := tunnel.WriteMessage(ts.stream, h); err != nil {
		return rh, fmt.Errorf("edge: writing request header: %w", err)
	}
	if err := tunnel.ReadMessage(ts.br, &rh); err != nil {
		return rh, fmt.Errorf("edge: reading response header: %w", err)
	}
	return rh, nil
}

// tcpRefusedError is a connector's 4xx answer to a TCP stream: the client
// asked for something the matching rule does not serve; msg is meant for it.
type tcpRefusedError struct {
	status int
	msg    string
}

func (e *tcpRefusedError) Error() string {
	return fmt.Sprintf("refused by the connector: %d %s", e.status, e.msg)
}

// logTCPRefusal logs why a TCP stream was not carried.
func logTCPRefusal(log *slog.Logger, err error) {
	var (
		oe      *originError
		refused *tcpRefusedError
	)
	switch {
	case errors.Is(err, errTunnelOffline):
		log.Info("tcp connection refused: tunnel offline")
	case errors.As(err, &refused):
		log.Info("tcp connection refused by the connector", "status", refused.status, "connector_error", refused.msg)
	case errors.As(err, &oe):
		log.Info("tcp connection refused: origin unreachable; the connector's log has the cause", "connector_error", oe.msg)
	default:
		log.Warn("tcp stream failed", "err", err)
	}
}
