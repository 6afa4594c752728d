package edge

import (
	"context"
	"net"
	"net/http"
	"sync"

	"github.com/adit-dev/adit/tunnel"
)

// newConns tracks the public connections that have not sent a byte of a
// request yet (http.StateNew). http.Server.Shutdown waits up to 5s for
// them, as if a request might still come; clients open such connections
// all the time (a pool dialing ahead), so the edge closes them itself when
// it shuts down. A client loses nothing: a request not yet written is
// retried on a new connection.
type newConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// track is the http.Server's ConnState hook.
func (n *newConns) track(c net.Conn, st http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if st == http.StateNew {
		if n.m == nil {
			n.m = make(map[net.Conn]struct{})
		}
		n.m[c] = struct{}{}
		return
	}
	delete(n.m, c)
}

func (n *newConns) closeAll() {
	n.mu.Lock()
	conns := make([]net.Conn, 0, len(n.m))
	for c := range n.m {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// closeTunnelConns closes every tunnel connection at once, telling each
// connector the edge is shutting down, and waits for them until ctx ends
// (a WebSocket close waits for its peer's answer).
func (s *Server) closeTunnelConns(ctx context.Context) {
	var wg sync.WaitGroup
	for _, tc := range s.reg.all() {
		wg.Go(func() { tc.conn.Close(tunnel.CodeShutdown, "edge shutting down") })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
