package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/tunnel"
)

// Failover. A request goes to the tunnel connection with the fewest
// streams in flight (Registry.pick). It moves to another connection when:
//
//   - the stream cannot be opened (any request: nothing was sent);
//   - the request is replayable (isReplayable) and its stream fails before
//     the connector has sent back a single byte: the connection died, was
//     reset, or went quiet (health.go abandons it).
//
// A request with a body, or with a method that is not safe to repeat, is
// never sent twice: once its header may have reached the connector, a
// failure is the client's 502.

// maxAttempts bounds the connections one replayable request tries.
const maxAttempts = 3

// isReplayable reports whether req may be sent again after a failure that
// left no answer: a safe method (RFC 9110 §9.2.1) and no body. A WebSocket
// handshake is a GET and qualifies.
func isReplayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody
}

// roundTrip carries req over one stream, moving to another connection as
// the rules above allow. ctx bounds the stream: the request's, or for an
// upgrade one that outlives it (upgrade.go).
func (t *tunnelTransport) roundTrip(ctx context.Context, req *http.Request, info *layer.Request) (*http.Response, error) {
	replay := isReplayable(req)
	var tried []*tunnelConn
	var lastErr error
	for attempt := 1; ; attempt++ {
		tc, s, err := t.openStreamSkip(ctx, info.TunnelID, tried)
		if err != nil {
			if lastErr != nil && errors.Is(err, errTunnelOffline) {
				return nil, lastErr
			}
			return nil, err
		}
		a := t.newAttempt(s, tc)
		ws := &a.watched
		// From here on, the stream belongs to the response body (or is
		// closed on error). A cancelled request aborts the stream.
		a.stop = context.AfterFunc(ctx, func() { s.Close() })
		if replay {
			tc.health.watch(ws)
		}
		resp, err := t.exchange(req, info, a)
		if replay {
			tc.health.unwatch(ws)
		}
		if err == nil {
			return resp, nil
		}
		a.release()
		if !replay || ws.answered() || ctx.Err() != nil || attempt == maxAttempts {
			return nil, err
		}
		lastErr = err
		tried = append(tried, tc)
		t.m.retried()
	}
}

// openStreamSkip picks a connection other than those in skip and opens a
// stream on it. A connection that fails to open a stream costs no request:
// the next one is tried. Once this edge has none left, the edges of the
// fleet that hold one are tried (peer.go), each as one more connection. The connection's inflight count includes the
// stream; the caller gives it back.
func (t *tunnelTransport) openStreamSkip(ctx context.Context, tunnelID string, skip []*tunnelConn) (*tunnelConn, tunnel.Stream, error) {
	tried := slices.Clip(skip) // appends never write into the caller's array
	var lastErr error
	for {
		tc := t.reg.pick(tunnelID, tried)
		if tc == nil && t.peers != nil {
			tc = t.peers.pick(tunnelID, tried) // peer.go: forward to an edge that holds one
		}
		if tc == nil {
			if lastErr != nil {
				return nil, nil, fmt.Errorf("%w (last error: %v)", errTunnelOffline, lastErr)
			}
			return nil, nil, errTunnelOffline
		}
		s, err := tc.conn.OpenStream(ctx)
		if err == nil {
			return tc, s, nil
		}
		tc.inflight.Add(-1)
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		lastErr = err
		tried = append(tried, tc)
	}
}

// attempt is one try of a request on one stream, with all it needs
// allocated together: the stream counted for the metrics and watched by
// the health check, the encoded headers, and what gives the stream back.
type attempt struct {
	watched watchedStream // its Stream is &counted, or s when nothing is counted
	counted countedStream
	s       tunnel.Stream // the stream as opened
	tc      *tunnelConn
	stop    func() bool   // of the context.AfterFunc that aborts s
	br      *bufio.Reader // the response's pooled reader, until the body is closed
	reqH    tunnel.RequestHeader
	respH   tunnel.ResponseHeader
	resp    http.Response
}

func (t *tunnelTransport) newAttempt(s tunnel.Stream, tc *tunnelConn) *attempt {
	a := &attempt{s: s, tc: tc}
	a.watched.Stream = s
	if t.m != nil {
		a.counted = countedStream{Stream: s, m: t.m}
		a.watched.Stream = &a.counted
	}
	return a
}

// release closes the stream and gives its connection slot back.
func (a *attempt) release() {
	a.stop()
	a.s.Close()
	a.tc.inflight.Add(-1)
}

// closeBody is the response body's OnClose: the proxy reads the body and
// closes it on one goroutine, so nobody reads the reader after this.
func (a *attempt) closeBody() error {
	a.release()
	a.br.Reset(nil)
	readerPool.Put(a.br)
	a.br = nil
	return nil
}

// watchedStream is a request stream that knows whether the connector has
// answered anything yet, and that the health check can abandon while it
// has not.
type watchedStream struct {
	tunnel.Stream
	state atomic.Int32 // streamWaiting, streamAnswered or streamAbandoned
}

const (
	streamWaiting int32 = iota
	streamAnswered
	streamAbandoned
)

var errAbandoned = errors.New("edge: connection went quiet; request moved to another connection")

func (s *watchedStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if n > 0 && s.state.Load() != streamAnswered && !s.state.CompareAndSwap(streamWaiting, streamAnswered) {
		// Abandoned while these bytes were on their way: the request is
		// being sent again, so they must not be used.
		return 0, errAbandoned
	}
	if err != nil && s.state.Load() == streamAbandoned {
		err = errAbandoned
	}
	return n, err
}

// abandon closes the stream if nothing was read from it yet, and reports
// whether it did.
func (s *watchedStream) abandon() bool {
	if !s.state.CompareAndSwap(streamWaiting, streamAbandoned) {
		return false
	}
	s.Stream.Close()
	return true
}

// answered reports whether any byte came back on the stream.
func (s *watchedStream) answered() bool { return s.state.Load() == streamAnswered }
