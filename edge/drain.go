package edge

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/tunnel"
)

// Draining: taking an edge out of the fleet without losing a request, for
// a rolling upgrade (SIGTERM to `adit edge`, or `adit edge drain NODE`
// through any edge's API, which asks by a key in etcd: the edge named
// watches store.EdgeDrainKey of its own name). Drain, in order:
//
//  1. marks the edge draining: its registry record says so (other edges,
//     DNS and connectors send it nothing new), /ready answers 503 (load
//     balancers move), and a connector that dials it is closed with code
//     4 ("edge draining") before it registers;
//  2. when the fleet has another edge that takes visitors, keeps serving
//     visitors for Config.DrainDelay, while load balancers and resolvers
//     notice; a lone edge has nowhere to send them and skips the wait;
//  3. stops taking visitors: the public listeners close, and requests in
//     flight finish (http.Server.Shutdown);
//  4. moves its connectors: a connector that announced tunnel.FeatureFleet
//     gets a goaway, opens a connection to another edge, then unregisters
//     here (the edge closes that connection once its last request is done);
//     other connections get no new request and are closed with code 4 once
//     their last one is done;
//  5. returns once every tunnel connection is gone, or after
//     Config.DrainTimeout from step 3; Close then ends what is left.

// Defaults of Config.DrainDelay and Config.DrainTimeout.
const (
	DefaultDrainDelay   = 5 * time.Second
	DefaultDrainTimeout = 15 * time.Second
)

// drainState is the edge's drain.
type drainState struct {
	on        atomic.Bool   // draining: /ready 503, no registration
	once      sync.Once     // Drain runs once
	done      chan struct{} // closed when Drain has finished
	askedOnce sync.Once
	asked     chan struct{} // closed when a drain was requested through the API
}

func (d *drainState) init() {
	d.done = make(chan struct{})
	d.asked = make(chan struct{})
}

// Draining reports whether the edge drains.
func (s *Server) Draining() bool { return s.drain.on.Load() }

// DrainRequested is closed when an operator asked this edge to drain
// (`adit edge drain`, POST /v1/edges/{name}/drain): the caller then
// calls Drain and Close, and exits.
func (s *Server) DrainRequested() <-chan struct{} { return s.drain.asked }

// Drain takes the edge out of the fleet (see above) and returns when
// nothing is left on it, when Config.DrainTimeout has passed since it
// stopped taking visitors, or when ctx ends. Close must follow. Calls
// after the first wait for it.
func (s *Server) Drain(ctx context.Context) {
	s.drain.once.Do(func() {
		defer close(s.drain.done)
		s.drainOnce(ctx)
	})
	select {
	case <-s.drain.done:
	case <-ctx.Done():
	}
}

func (s *Server) drainOnce(ctx context.Context) {
	start := time.Now()
	s.drain.on.Store(true)
	s.reg.stop() // a registration under way is refused too (tunnelconn.go)
	others := s.fleetView.others(s.node)
	s.log.Info("draining: /ready answers 503, the registry says draining, no new connector registers", "other_edges", others)
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := s.SetHealth(hctx, control.EdgeHealthDraining); err != nil { // fleet.go
		s.log.Warn("draining: could not mark the registry record draining", "err", err)
	}
	cancel()

	if others > 0 {
		delay := s.cfg.DrainDelay
		if delay == 0 {
			delay = DefaultDrainDelay
		}
		s.log.Info("draining: serving visitors while load balancers and DNS move them", "for", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}

	timeout := s.cfg.DrainTimeout
	if timeout == 0 {
		timeout = DefaultDrainTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s.log.Info("draining: no new visitors; finishing the requests in flight")
	var public sync.WaitGroup
	if s.tcp != nil {
		public.Go(func() { s.tcp.drain(dctx) }) // tcp.go: the TCP port routes' listeners
	}
	if s.httpSrv != nil {
		if err := s.shutdownPublic(dctx); err != nil { // public.go
			s.log.Warn("draining: public listeners", "err", err)
		}
	}
	public.Wait()

	conns := s.reg.all()
	moved := 0
	for _, tc := range conns {
		if tc.fleet != nil && others > 0 {
			moved++
			s.spawn(func() {
				if err := tc.fleet.send(&tunnel.GoAway{Reason: "edge " + s.node + " draining"}); err != nil {
					s.closeAfterLast(tc)
				}
			})
			continue
		}
		s.closeAfterLast(tc)
	}
	s.log.Info("draining: connectors asked to move", "connections", len(conns), "told_to_move", moved)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.reg.count() > 0 {
		select {
		case <-dctx.Done():
			s.log.Warn("draining: time is up; closing what is left", "connections", s.reg.count())
			return
		case <-t.C:
		}
	}
	s.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
}

// closeAfterLast routes no new request to tc and closes it with code 4
// (shutdown: reconnect elsewhere) once its last request is done.
func (s *Server) closeAfterLast(tc *tunnelConn) {
	if tc.draining.Swap(true) {
		return // unregistered already: closeWhenDrained closes it
	}
	s.spawn(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for tc.inflight.Load() > 0 {
			select {
			case <-tc.conn.Done():
				return
			case <-t.C:
			}
		}
		tc.conn.Close(tunnel.CodeShutdown, "edge "+s.node+" draining")
	})
}

// watchDrainRequest deletes a drain request left from before this start,
// then watches for one until the server stops.
func (s *Server) watchDrainRequest(ctx context.Context, cli *clientv3.Client) error {
	key := store.EdgeDrainKey(s.node)
	resp, err := cli.Delete(ctx, key)
	if err != nil {
		return err
	}
	rev := resp.Header.Revision
	s.spawn(func() {
		for s.ctx.Err() == nil {
			wch := cli.Watch(clientv3.WithRequireLeader(s.ctx), key, clientv3.WithRev(rev+1))
			for wr := range wch {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypePut {
						s.log.Info("an operator asked this edge to drain")
						s.drain.askedOnce.Do(func() { close(s.drain.asked) })
						dctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
						cli.Delete(dctx, key)
						cancel()
					}
				}
				rev = wr.Header.Revision
			}
			select {
			case <-s.ctx.Done():
			case <-time.After(time.Second):
			}
		}
	})
	return nil
}
