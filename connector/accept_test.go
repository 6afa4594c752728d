package connector

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/tunnel"
)

// acceptConn is a tunnel connection that hands out the streams sent on
// streams and counts the goroutines waiting in AcceptStream.
type acceptConn struct {
	tunnel.Conn // only AcceptStream is called
	streams     chan tunnel.Stream
	closed      chan struct{}
	waiting     atomic.Int32
}

func (c *acceptConn) AcceptStream(ctx context.Context) (tunnel.Stream, error) {
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	select {
	case s := <-c.streams:
		return s, nil
	case <-c.closed:
		return nil, errors.New("connection closed")
	}
}

// TestAcceptStreamsReusesGoroutines: the goroutines that served a burst of
// streams go back to accepting, up to maxIdleAcceptors of them (their
// stacks have grown already), and all of them end with the connection.
func TestAcceptStreamsReusesGoroutines(t *testing.T) {
	c := upgradeConnector(t, "http_status:200")
	conn := &acceptConn{streams: make(chan tunnel.Stream), closed: make(chan struct{})}
	var streams countGroup
	c.acceptStreams(conn, &streams, c.log)

	const burst = 3 * maxIdleAcceptors
	var edges []*fakeStream
	for range burst {
		a, b := tcpTestPair(t)
		edge := &fakeStream{TCPConn: a}
		edges = append(edges, edge)
		conn.streams <- &fakeStream{TCPConn: b} // served until edge closes
	}
	poll.Until(t, "every stream of the burst in service", func() bool { return streams.count() == burst })
	poll.Until(t, "one goroutine waiting for the next stream during the burst", func() bool { return conn.waiting.Load() == 1 })
	for _, e := range edges {
		e.Close() // serveStream reads no header and returns
	}
	poll.Until(t, "the burst served", func() bool { return streams.count() == 0 })
	poll.Until(t, "maxIdleAcceptors goroutines waiting", func() bool { return conn.waiting.Load() == maxIdleAcceptors })

	close(conn.closed)
	poll.Until(t, "no goroutine waiting once the connection ended", func() bool { return conn.waiting.Load() == 0 })
}
