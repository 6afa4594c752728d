package edge

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/edgeview"
	"github.com/adit-dev/adit/tunnel"
)

// The fleet as connectors see it: the registry (store.EdgesPrefix, fleet.go
// writes this edge's record, s.edgeView watches it), and every connection
// whose connector announced tunnel.FeatureFleet gets the list of live
// edges (tunnel.EdgeList) right after it registers and again on every
// change, so connectors spread over the fleet and move off edges that
// drain (package connector, edges.go).

// fleetView is the registry in memory.
type fleetView struct {
	mu    sync.Mutex
	edges map[string]control.EdgeNode // by name
}

// list is the edges as an EdgeList, by name.
func (v *fleetView) list() []tunnel.FleetEdge {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]tunnel.FleetEdge, 0, len(v.edges))
	for _, e := range v.edges {
		if e.TunnelAddr == "" {
			continue
		}
		out = append(out, tunnel.FleetEdge{Name: e.Name, Addr: e.TunnelAddr, Region: e.Region, Draining: e.Health != control.EdgeHealthOK})
	}
	slices.SortFunc(out, func(a, b tunnel.FleetEdge) int { return cmp.Compare(a.Name, b.Name) })
	if len(out) > tunnel.MaxFleetEdges {
		out = out[:tunnel.MaxFleetEdges]
	}
	return out
}

// others is how many edges other than node take connectors and visitors.
func (v *fleetView) others(node string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, e := range v.edges {
		if e.Name != node && e.Health == control.EdgeHealthOK {
			n++
		}
	}
	return n
}

// set replaces the view with kvs (kept: the registry never changes a set
// it hands out); it reports whether it changed.
func (v *fleetView) set(kvs edgeview.Edges) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	changed := len(kvs) != len(v.edges)
	for k, e := range kvs {
		if old, ok := v.edges[k]; !ok || old.TunnelAddr != e.TunnelAddr || old.Region != e.Region || old.Health != e.Health || !old.Started.Equal(e.Started) {
			changed = true
		}
	}
	v.edges = kvs
	return changed
}

// watchFleet follows the registry (the edge's edgeview.View) until the
// server stops, pushing the list to connectors on every change that
// matters to them.
func (s *Server) watchFleet() {
	s.fleetView = &fleetView{edges: map[string]control.EdgeNode{}}
	stop := s.edgeView.Subscribe(func(edges edgeview.Edges) {
		if s.fleetView.set(edges) {
			s.pushEdgesAll()
		}
	})
	context.AfterFunc(s.ctx, stop)
}

// fleetConn is the fleet side of a connection whose connector announced
// tunnel.FeatureFleet: its control stream, written under mu (the remote
// configuration's lock when it has one too).
type fleetConn struct {
	mu *sync.Mutex
	w  interface{ Write([]byte) (int, error) }
}

func (fc *fleetConn) send(m tunnel.Message) error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return tunnel.WriteMessage(fc.w, m)
}

// pushEdgesAll sends the list to every connection that takes it.
func (s *Server) pushEdgesAll() {
	for _, tc := range s.reg.all() {
		if tc.fleet != nil {
			s.spawn(func() { s.pushEdges(tc) })
		}
	}
}

// pushEdges sends the list to tc, if the fleet is known. The list is read
// under the connection's write lock, so the last one sent is the newest
// whatever order the pushes run in.
func (s *Server) pushEdges(tc *tunnelConn) {
	fc := tc.fleet
	fc.mu.Lock()
	defer fc.mu.Unlock()
	l := s.fleetView.list()
	if len(l) == 0 {
		return
	}
	if err := tunnel.WriteMessage(fc.w, &tunnel.EdgeList{Edges: l}); err != nil {
		s.rl.Logger(s.log).Info("sending the fleet's edges failed", "conn", tc.label(), "err", err)
	}
}
