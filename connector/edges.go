package connector

import (
	"cmp"
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/adit-dev/adit/tunnel"
)

// Edges.
//
// A connector knows edges from two places: Config.EdgeAddrs (the
// credentials file, or --edge; found again every FindEdgesEvery when
// Config.FindEdges is set, as `tunnel run --edge-zone` does through the
// fleet's SRV records), and the lists edges of a fleet send on the
// control stream (tunnel.EdgeList, protocol version 3). Once a list has
// arrived, it is the fleet: the HA connections go to listed edges, and the
// configured addresses are a fallback for when none of those can be
// reached (they may name a load balancer in front of the same edges).
//
// Where each HA slot goes (plan): over the edges of the connector's region
// (Config.Region) when that region has two or more; when it has one, all
// slots but one there and the last on another edge, so that losing one edge
// never loses the tunnel; with no region given, or no edge in it, over all
// edges. Slots are spread evenly; which edges get the odd ones depends on
// the connector's ID, so that many connectors spread over the fleet.
//
// Slots move (moveTarget), one at a time and make-before-break: the slot
// dials the new edge, and only once that connection is registered does it
// unregister the old one (which the edge closes once its last request is
// done). A slot moves when its edge drains (a goaway, or code 4 when the
// edge closed a connection; an edge a list marks draining gets no new
// connection, but keeps those it has until it says goaway, as it still
// serves visitors), when its edge is no longer listed, and when the plan
// gives its edge more slots
// than it holds while another edge has fewer (an edge joined, or came back
// after a restart).
//
// A slot whose connection failed (the edge died, or refused) marks the
// edge failed and dials another healthy edge at once; a failed edge is
// healthy again once a connection to it registers, or failRetry later
// (then a move tries it, keeping the connection it has meanwhile). When no
// edge is healthy, the slots retry the edges they were on as reconnect.go
// describes.

// failRetry is how long an edge a connection failed on is avoided.
const failRetry = 5 * time.Second

// drainForget is how long a connector keeps believing an edge drains when a
// list says otherwise (the lists of other edges may lag behind its goaway).
const drainForget = 10 * time.Second

// knownEdge is one edge a connector may dial.
type knownEdge struct {
	addr, name, region string
	configured         bool // in Config.EdgeAddrs
	listed             bool // in the newest list
	draining           bool
	drainingSince      time.Time
	drainLocal         bool      // draining was learnt from the edge itself (goaway, code 4), not from a list
	listOK             bool      // the newest list says it does not drain
	failedAt           time.Time // the last failure; zero once a connection registers
	registeredAt       time.Time // the last registration of a connection to it
	link               *edgeLink
}

// edgeSet is the edges a connector knows and where its HA slots are.
type edgeSet struct {
	region string
	rot    uint32 // this connector's rotation of the plan's odd slots

	mu      sync.Mutex
	edges   map[string]*knownEdge // by address
	listed  bool                  // a list has arrived
	slots   []string              // HA slot → the edge it is on or dialing; "" none
	moving  bool                  // a slot is moving (one at a time)
	changed chan struct{}         // closed and replaced when a slot may want to move or redial
	retry   chan struct{}         // closed and replaced when a failed edge may be tried again
	now     func() time.Time
}

func newEdgeSet(addrs []string, region, connectorID string, ha int) *edgeSet {
	h := fnv.New32a()
	h.Write([]byte(connectorID))
	s := &edgeSet{region: region, rot: h.Sum32(), edges: make(map[string]*knownEdge),
		slots: make([]string, ha), changed: make(chan struct{}), retry: make(chan struct{}), now: time.Now}
	for _, a := range addrs {
		s.edge(a).configured = true
	}
	return s
}

// edge returns the edge at addr, adding it if new; s.mu is held or s is
// not shared yet.
func (s *edgeSet) edge(addr string) *knownEdge {
	e := s.edges[addr]
	if e == nil {
		e = &knownEdge{addr: addr, link: &edgeLink{up: make(chan struct{}), conns: make(map[tunnel.Conn]time.Time)}}
		s.edges[addr] = e
	}
	return e
}

// link is the edgeLink of the edge at addr (reconnect.go).
func (s *edgeSet) link(addr string) *edgeLink {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.edge(addr).link
}

func (s *edgeSet) changedChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// retryChan is closed when a failed edge may be tried again: registered
// slots then check whether to move (a dial that fails costs them
// nothing); the others wait for their own timers.
func (s *edgeSet) retryChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retry
}

// broadcast wakes the slots; s.mu is held.
func (s *edgeSet) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// pool is where slots go: the listed edges once a list arrived, else the
// configured ones.
func (s *edgeSet) inPool(e *knownEdge) bool {
	if s.listed {
		return e.listed
	}
	return e.configured
}

func (s *edgeSet) healthy(e *knownEdge, now time.Time) bool {
	return !e.draining && (e.failedAt.IsZero() || now.Sub(e.failedAt) >= failRetry)
}

// tiers are the edges a slot may dial, best first: the healthy edges of
// the pool; else the healthy configured ones; else every edge that does
// not drain; else every edge. ok reports whether the first tier was used.
func (s *edgeSet) tier(now time.Time) (edges []*knownEdge, healthy bool) {
	pick := func(keep func(*knownEdge) bool) []*knownEdge {
		var out []*knownEdge
		for _, e := range s.edges {
			if keep(e) {
				out = append(out, e)
			}
		}
		slices.SortFunc(out, func(a, b *knownEdge) int {
			return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.addr, b.addr))
		})
		return out
	}
	if t := pick(func(e *knownEdge) bool { return s.inPool(e) && s.healthy(e, now) }); len(t) > 0 {
		return t, true
	}
	if t := pick(func(e *knownEdge) bool { return e.configured && s.healthy(e, now) }); len(t) > 0 {
		return t, true
	}
	if t := pick(func(e *knownEdge) bool { return (s.inPool(e) || e.configured) && !e.draining }); len(t) > 0 {
		return t, false
	}
	return pick(func(e *knownEdge) bool { return s.inPool(e) || e.configured }), false
}

// plan is how many slots each edge of tier should hold.
func (s *edgeSet) plan(tier []*knownEdge) map[string]int {
	n := len(s.slots)
	target := make(map[string]int, len(tier))
	if len(tier) == 0 {
		return target
	}
	var local, other []*knownEdge
	for _, e := range tier {
		if s.region != "" && e.region == s.region {
			local = append(local, e)
		} else {
			other = append(other, e)
		}
	}
	spread := func(edges []*knownEdge, n int) {
		for i := range edges {
			e := edges[(i+int(s.rot%uint32(len(edges))))%len(edges)]
			target[e.addr] = n / len(edges)
			if i < n%len(edges) {
				target[e.addr]++
			}
		}
	}
	switch {
	case len(local) == 0:
		spread(tier, n)
	case len(local) >= 2 || len(other) == 0 || n == 1:
		spread(local, n)
	default: // one edge in the region: all but one slot there
		target[local[0].addr] = n - 1
		spread(other, 1)
	}
	return target
}

// counts is how many slots are on (or dialing) each edge, leaving out
// slot skip (-1: none).
func (s *edgeSet) counts(skip int) map[string]int {
	c := make(map[string]int)
	for i, a := range s.slots {
		if i != skip && a != "" {
			c[s.canon(a)]++
		}
	}
	return c
}

// canon is the address a list gives the edge at addr: a configured
// address (a name, a load balancer's) whose connections registered with
// the node name of a listed edge is that edge, so its slots neither count
// twice nor move to the same edge under another name (which would replace
// their own connection there).
func (s *edgeSet) canon(addr string) string {
	e := s.edges[addr]
	if e == nil || e.listed || e.name == "" || !s.listed {
		return addr
	}
	for _, o := range s.edges {
		if o.listed && o.name == e.name {
			return o.addr
		}
	}
	return addr
}

// choose picks the edge slot dials next and records it as the slot's.
func (s *edgeSet) choose(slot int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tier, _ := s.tier(s.now())
	if len(tier) == 0 {
		return s.slots[slot] // nothing known: cannot happen with Config.EdgeAddrs set
	}
	target, count := s.plan(tier), s.counts(slot)
	best, bestGap := tier[0], -1<<30
	for _, e := range tier {
		if gap := target[e.addr] - count[e.addr]; gap > bestGap {
			best, bestGap = e, gap
		}
	}
	s.slots[slot] = best.addr
	return best.addr
}

// elsewhere reports whether a healthy edge other than addr is known: a
// slot that lost its connection to addr then redials at once.
func (s *edgeSet) elsewhere(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	tier, healthy := s.tier(s.now())
	if !healthy {
		return false
	}
	for _, e := range tier {
		if e.addr != addr {
			return true
		}
	}
	return false
}

// prober reports whether slot is the lowest slot on addr: the one that
// keeps retrying it often while it is down (reconnect.go).
func (s *edgeSet) prober(slot int, addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range s.slots {
		if a == addr {
			return i == slot
		}
	}
	return true
}

// moveTarget says whether the registered slot on edge cur should move, and
// where; if it returns true, the caller moves and then calls moved. Only
// one slot moves at a time.
func (s *edgeSet) moveTarget(slot int, cur string) (to, why string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.moving {
		return "", "", false
	}
	now := s.now()
	tier, healthy := s.tier(now)
	if !healthy {
		return "", "", false
	}
	cur = s.canon(cur)
	e := s.edges[cur]
	switch {
	case e == nil:
	case e.draining && e.drainLocal:
		why = "its edge drains"
	case !s.inPool(e) && !(e.configured && !s.listed):
		why = "its edge left the fleet"
	}
	// The slot's own edge counts as usable unless it told the slot to go
	// (a goaway) or left: an edge a list says drains keeps its connections
	// until it stops taking visitors, as its visitors need them; no new
	// connection goes there meanwhile.
	if why == "" && !slices.Contains(tier, e) {
		tier = append(tier, e)
	}
	target := s.plan(tier)
	count := s.counts(slot)
	if why == "" && count[cur]+1 <= target[cur] {
		return "", "", false // its edge is not over its share
	}
	best, bestGap := "", 0
	for _, t := range tier {
		if t.addr == cur || !s.healthy(t, now) {
			continue
		}
		if gap := target[t.addr] - count[t.addr]; gap > bestGap || (why != "" && best == "") {
			best, bestGap = t.addr, gap
		}
	}
	if best == "" {
		return "", "", false
	}
	if why == "" {
		why = "rebalancing over the fleet"
	}
	s.moving = true
	return best, why, true
}

// moved ends a move of slot; if ok, the slot is on to now.
func (s *edgeSet) moved(slot int, to string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.moving = false
	if ok {
		s.slots[slot] = to
	} else {
		s.markFailed(to)
	}
	s.broadcast()
}

// markFailed records a failure of the edge at addr, and wakes the slots
// when it is worth trying again; s.mu is held.
func (s *edgeSet) markFailed(addr string) {
	s.edge(addr).failedAt = s.now()
	time.AfterFunc(failRetry, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		close(s.retry)
		s.retry = make(chan struct{})
	})
}

// registered records that a connection to addr registered with node.
func (s *edgeSet) registered(addr, node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.edge(addr)
	e.failedAt = time.Time{}
	e.registeredAt = s.now()
	e.draining = false // a draining edge registers nothing
	if node != "" && e.name == "" {
		e.name = node
	}
	s.broadcast()
}

// failed records a connection to addr that failed or was refused.
func (s *edgeSet) failed(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markFailed(addr)
}

// setDraining records that the edge at addr says it drains (a goaway, or
// code 4); the slots on it move. A list saying otherwise is believed only
// drainForget later: the lists of other edges may lag behind. since is
// when the connection that says so registered (or, if it did not, was
// dialed): if another connection registered to addr after that, the
// edge has restarted since, and what its previous run said is old news
// (else every slot that registered on the new run would move again when
// a refusal from the old run arrives late).
func (s *edgeSet) setDraining(addr string, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.edge(addr)
	if !since.IsZero() && e.registeredAt.After(since) {
		return
	}
	if !e.draining || !e.drainLocal {
		e.draining, e.drainingSince, e.drainLocal = true, s.now(), true
		time.AfterFunc(drainForget, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if e.draining && e.drainLocal && e.listed && e.listOK && s.now().Sub(e.drainingSince) >= drainForget {
				e.draining = false
				s.broadcast()
			}
		})
	}
	s.broadcast()
}

// update takes a list from an edge; it reports whether the set of edges
// changed.
func (s *edgeSet) update(list []tunnel.FleetEdge) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	changed := !s.listed
	s.listed = true
	in := make(map[string]bool, len(list))
	for _, l := range list {
		in[l.Addr] = true
		e := s.edge(l.Addr)
		if !e.listed || e.name != l.Name || e.region != l.Region {
			changed = true
		}
		e.listed, e.name, e.region, e.listOK = true, l.Name, l.Region, !l.Draining
		switch {
		case l.Draining && !e.draining:
			e.draining, e.drainingSince, e.drainLocal = true, now, false
			changed = true
		case !l.Draining && e.draining && (!e.drainLocal || now.Sub(e.drainingSince) >= drainForget):
			e.draining = false
			changed = true
		}
	}
	for _, e := range s.edges {
		if e.listed && !in[e.addr] {
			e.listed = false
			e.draining = false // it left; if it comes back, it is new
			changed = true
		}
	}
	if changed {
		s.broadcast()
	}
	return changed
}

// setConfigured replaces the configured addresses (Config.FindEdges found
// them again); it reports whether they changed. An edge no longer
// configured and not listed loses its slots as one that left the fleet.
func (s *edgeSet) setConfigured(addrs []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := make(map[string]bool, len(addrs))
	changed := false
	for _, a := range addrs {
		in[a] = true
		if e := s.edge(a); !e.configured {
			e.configured, changed = true, true
		}
	}
	for _, e := range s.edges {
		if e.configured && !in[e.addr] {
			e.configured, changed = false, true
		}
	}
	if changed {
		s.broadcast()
	}
	return changed
}

// summary lists the edges of the pool, for logs: "name addr region
// (draining)".
func (s *edgeSet) summary() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.edges {
		if !s.inPool(e) {
			continue
		}
		d := e.addr
		if e.name != "" {
			d = e.name + " " + d
		}
		if e.region != "" {
			d += " region " + e.region
		}
		if e.draining {
			d += " (draining)"
		}
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// findEdges runs Config.FindEdges every FindEdgesEvery until ctx ends,
// and makes what it finds the configured addresses. A failure or an empty
// answer keeps those known (logged once until a lookup works again).
func (c *Connector) findEdges(ctx context.Context) {
	every := cmp.Or(c.cfg.FindEdgesEvery, DefaultFindEdgesEvery)
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		addrs, err := c.cfg.FindEdges(ctx)
		if err == nil && len(addrs) == 0 {
			err = errors.New("no edge found")
		}
		if err != nil {
			if ctx.Err() == nil && !failing {
				c.log.Warn("finding the edges again failed; keeping those known", "err", err)
			}
			failing = true
			continue
		}
		failing = false
		if c.edges.setConfigured(addrs) {
			c.log.Info("edges found again", "edges", addrs)
		}
	}
}

// Edges are the addresses of the edges this connector's HA connections are
// on or dialing, by HA slot.
func (c *Connector) Edges() []string {
	c.edges.mu.Lock()
	defer c.edges.mu.Unlock()
	return slices.Clone(c.edges.slots)
}
