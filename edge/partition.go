package edge

import (
	"context"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/internal/store"
)

// An edge cut off from etcd (a network partition between it and the
// store; visitors and connectors may still reach it) cannot keep its
// lease: when the lease expires, its registry record and its connections'
// records go, so the other edges stop forwarding to it, DNS stops
// answering with it and connectors are told to leave it. The edge finds
// out itself from the lease's keepalives (controlserver.Presence.Heard):
// once etcd has not answered two of them (two thirds of the lease TTL),
// the edge is cut off:
//
//   - it logs so, once; /ready answers 503 naming the cause, so load
//     balancers move its visitors to edges the fleet still knows;
//   - new connector connections are closed at once (code 4: the connector
//     tries another edge), since the edge could not record them;
//   - what it already serves it keeps serving from memory (routes,
//     tunnels, its connections), since nothing better is at hand there.
//
// When etcd answers again, the lease is either still alive (a short cut)
// or granted again with every record put back (Presence), and the edge
// logs so; /ready stays 503 until the edge's state has caught up with
// etcd's current revision, so a route deleted meanwhile is never served
// once the edge is ready again.

// etcdLink is the edge's view of its link to etcd; only the watchdog
// writes it, /ready and registrations read it.
type etcdLink struct {
	cut atomic.Bool
	// Heals counts the cuts that ended; caughtUp is the last of them the
	// state has caught up after.
	heals, caughtUp atomic.Int64
	since           time.Time // when etcd was last heard before the cut (watchdog only)
}

// cutAfter is how long etcd may leave the lease's keepalives unanswered
// before the edge counts itself cut off: two keepalives (a third of the
// TTL each), at least 1.5s.
func (s *Server) cutAfter() time.Duration {
	return max(2*s.presence.TTL()/3, 1500*time.Millisecond)
}

// checkEtcd is the watchdog's look at the link to etcd (health.go). A
// pause of the whole edge (SIGSTOP) is not a cut: silence counts from
// the resume at the earliest.
func (s *Server) checkEtcd(now time.Time) {
	if s.presence == nil {
		return
	}
	heard := s.presence.Heard()
	if r := s.healthClock.resumedAt.Load(); r != 0 && time.Unix(0, r).After(heard) {
		heard = time.Unix(0, r)
	}
	silent := now.Sub(heard)
	l := &s.etcdLink
	switch {
	case !l.cut.Load() && silent > s.cutAfter():
		l.since = heard
		l.cut.Store(true)
		s.log.Warn("cut off from etcd: no answer to the lease's keepalives; /ready answers 503 and new connectors are refused; "+
			"the fleet drops this edge when its lease expires, until etcd answers again",
			"silent_for", silent.Round(time.Millisecond), "lease_ttl", s.presence.TTL())
	case l.cut.Load() && silent < s.cutAfter():
		l.cut.Store(false)
		heal := l.heals.Add(1)
		s.log.Info("etcd reachable again: the edge's records are put back under its lease; catching up with the changes made meanwhile",
			"cut_for", now.Sub(l.since).Round(time.Millisecond))
		s.spawn(func() { s.catchUp(s.store.Client(), heal) })
	}
}

// catchUp waits until the edge's state reflects etcd's current revision,
// then lets /ready answer 200 again (unless cut off anew meanwhile).
func (s *Server) catchUp(cli *clientv3.Client, heal int64) {
	start := time.Now()
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		resp, err := cli.Get(ctx, store.Prefix, clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err == nil {
			err = s.state.WaitRevision(ctx, resp.Header.Revision)
		}
		cancel()
		if err == nil {
			s.etcdLink.caughtUp.Store(heal)
			s.log.Info("caught up with etcd after the cut; ready", "took", time.Since(start).Round(time.Millisecond))
			return
		}
		if s.etcdLink.cut.Load() {
			return // cut again: the next heal catches up
		}
	}
}

// etcdUnready says why /ready should answer 503 for the link to etcd,
// or "".
func (s *Server) etcdUnready() string {
	switch {
	case s.etcdLink.cut.Load():
		return "edge cut off from etcd: its lease keepalives go unanswered"
	case s.etcdLink.caughtUp.Load() < s.etcdLink.heals.Load():
		return "edge catching up with etcd after being cut off"
	}
	return ""
}
