package edge

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/tunnel"
)

// The fleet as connectors see it: the registry (store.EdgesPrefix, fleet.go
// writes this edge's record) is watched into memory, and every connection
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

// set replaces the view with kvs; it reports whether it changed.
func (v *fleetView) set(kvs map[string]control.EdgeNode) bool {
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

// watchFleet loads the registry and keeps the view current until the
// server stops, pushing the list to connectors on every change.
func (s *Server) watchFleet(ctx context.Context, cli *clientv3.Client) error {
	s.fleetView = &fleetView{edges: map[string]control.EdgeNode{}}
	rev, err := s.loadFleet(ctx, cli)
	if err != nil {
		return err
	}
	s.spawn(func() {
		for s.ctx.Err() == nil {
			rev = s.followFleet(cli, rev)
			select {
			case <-s.ctx.Done():
			case <-time.After(time.Second):
				if r, err := s.loadFleet(s.ctx, cli); err == nil {
					rev = r
				}
			}
		}
	})
	return nil
}

func (s *Server) loadFleet(ctx context.Context, cli *clientv3.Client) (int64, error) {
	resp, err := cli.Get(ctx, store.EdgesPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	m := make(map[string]control.EdgeNode, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if e, ok := controlserver.DecodeEdge(kv.Key, kv.Value); ok {
			m[e.Name] = e
		}
	}
	if s.fleetView.set(m) {
		s.pushEdgesAll()
	}
	return resp.Header.Revision, nil
}

func (s *Server) followFleet(cli *clientv3.Client, rev int64) int64 {
	wch := cli.Watch(clientv3.WithRequireLeader(s.ctx), store.EdgesPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			s.log.Warn("fleet registry watch failed; reloading", "err", err)
			return rev
		}
		s.fleetView.mu.Lock()
		m := make(map[string]control.EdgeNode, len(s.fleetView.edges))
		for k, e := range s.fleetView.edges {
			m[k] = e
		}
		s.fleetView.mu.Unlock()
		for _, ev := range wr.Events {
			name := string(ev.Kv.Key[len(store.EdgesPrefix):])
			if ev.Type == clientv3.EventTypeDelete {
				delete(m, name)
				continue
			}
			if e, ok := controlserver.DecodeEdge(ev.Kv.Key, ev.Kv.Value); ok {
				m[e.Name] = e
			}
		}
		if s.fleetView.set(m) {
			s.pushEdgesAll()
		}
		rev = wr.Header.Revision
	}
	return rev
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
