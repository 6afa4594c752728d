package edge

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/tunnel"
)

// tunnelConn is one registered connector connection held by this edge.
type tunnelConn struct {
	conn     tunnel.Conn
	info     control.Connection
	inflight atomic.Int64 // streams open on this connection
	draining atomic.Bool  // the connector unregistered: no new requests
	health   connHealth   // liveness, see health.go
	remote   *remoteConn  // tunnelconfig.go: nil unless the connector takes its configuration from the edge
	fleet    *fleetConn   // fleetview.go: nil unless the connector takes the fleet's edges
}

// label names the connection in log lines after its registration line
// (which has the full IDs): the tunnel ID's first 8 digits, the
// connector's, and the HA index, "7eb73f13/0bf89e5e#1".
func (tc *tunnelConn) label() string {
	return fmt.Sprintf("%.8s/%.8s#%d", tc.info.TunnelID, tc.info.ConnectorID, tc.info.Index)
}

// registry holds the live, registered tunnel connections of this edge, by
// tunnel. Lookups take a read lock and never touch etcd.
type registry struct {
	mu      sync.RWMutex
	tunnels map[string][]*tunnelConn // tunnel ID → connections
	byID    map[string]*tunnelConn   // connection ID → connection
	stopped bool                     // the edge drains or closes: add refuses

	registering registering // connections not registered yet, by address (tunnellimits.go)
}

func newRegistry() *registry {
	return &registry{
		tunnels: make(map[string][]*tunnelConn),
		byID:    make(map[string]*tunnelConn),
	}
}

// add holds tc, unless the edge has stopped taking registrations (stop):
// then it reports false.
func (r *registry) add(tc *tunnelConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	r.tunnels[tc.info.TunnelID] = append(r.tunnels[tc.info.TunnelID], tc)
	r.byID[tc.info.ID] = tc
	return true
}

// stop makes add refuse from now on. Whoever stops the edge's
// registrations (Drain, Close) then sees every connection it will ever
// hold in all.
func (r *registry) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
}

// stopping reports whether stop was called.
func (r *registry) stopping() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.stopped
}

// remove drops tc; it reports whether tc was still registered.
func (r *registry) remove(tc *tunnelConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[tc.info.ID] != tc {
		return false
	}
	delete(r.byID, tc.info.ID)
	conns := r.tunnels[tc.info.TunnelID]
	for i, c := range conns {
		if c == tc {
			// Copy so that slices handed out by pick stay valid.
			next := make([]*tunnelConn, 0, len(conns)-1)
			next = append(next, conns[:i]...)
			next = append(next, conns[i+1:]...)
			conns = next
			break
		}
	}
	if len(conns) == 0 {
		delete(r.tunnels, tc.info.TunnelID)
	} else {
		r.tunnels[tc.info.TunnelID] = conns
	}
	return true
}

// pick returns the live connection of a tunnel with the fewest streams in
// flight, skipping those in skip, and counts a stream in flight on it (the
// caller gives it back). Connections that are not suspect (health.go) come
// first. It returns nil if there is none.
//
// The count goes up before draining is checked again, and a drain sets
// draining before it waits for the count to reach zero (closeWhenDrained),
// so a connection never gets a stream after its drain has seen it idle.
func (r *registry) pick(tunnelID string, skip []*tunnelConn) *tunnelConn {
	r.mu.RLock()
	conns := r.tunnels[tunnelID]
	r.mu.RUnlock()
	for {
		var best *tunnelConn
		var bestN int64
		bestSuspect := false
		for _, c := range conns {
			if c.draining.Load() || contains(skip, c) {
				continue
			}
			n, suspect := c.inflight.Load(), c.health.suspect.Load()
			if best == nil || (bestSuspect && !suspect) || (suspect == bestSuspect && n < bestN) {
				best, bestN, bestSuspect = c, n, suspect
			}
		}
		if best == nil {
			return nil
		}
		best.inflight.Add(1)
		if !best.draining.Load() {
			return best
		}
		best.inflight.Add(-1) // lost a race with a drain: choose again
	}
}

func contains(list []*tunnelConn, c *tunnelConn) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}

// byTunnel returns a snapshot of a tunnel's connections.
func (r *registry) byTunnel(tunnelID string) []*tunnelConn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tunnels[tunnelID]
}

func (r *registry) get(connID string) *tunnelConn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[connID]
}

// all returns a snapshot of every connection.
func (r *registry) all() []*tunnelConn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*tunnelConn, 0, len(r.byID))
	for _, c := range r.byID {
		out = append(out, c)
	}
	return out
}

func (r *registry) count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byID)
}

// since is when the connection registered, for logs.
func (tc *tunnelConn) since() time.Duration { return time.Since(tc.info.Since) }
