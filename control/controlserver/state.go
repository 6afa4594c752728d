package controlserver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/store"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EventKind says what happened in an Event.
type EventKind int

const (
	// TunnelDeleted: the tunnel's DeletedAt became set, or its record vanished.
	TunnelDeleted EventKind = iota + 1
	// ConnectionRemoved: a connection record was deleted; the edge holding
	// that connection should close it.
	ConnectionRemoved
	// TCPRoutesChanged: a public TCP port route was added, changed or
	// removed (TunnelID is its tunnel when known); see State.TCPRoutes.
	TCPRoutesChanged
	// RouteAdded: a hostname route was added or moved to another tunnel
	// (Host, TunnelID).
	RouteAdded
	// RouteRemoved: a hostname route was deleted (Host).
	RouteRemoved
)

func (k EventKind) String() string {
	switch k {
	case TunnelDeleted:
		return "tunnel-deleted"
	case ConnectionRemoved:
		return "connection-removed"
	case TCPRoutesChanged:
		return "tcp-routes-changed"
	case RouteAdded:
		return "route-added"
	case RouteRemoved:
		return "route-removed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a change the edge acts on. ConnID is set for ConnectionRemoved,
// Host for RouteAdded and RouteRemoved.
type Event struct {
	Kind     EventKind
	TunnelID string
	ConnID   string
	Host     string
}

// State is the edge's in-memory copy of tunnels, routes and connections, kept
// current by an etcd watch. Its lookups never touch etcd. It is safe for
// concurrent use.
type State struct {
	cli *clientv3.Client
	log *slog.Logger

	mu       sync.RWMutex
	data     stateData
	advanced chan struct{} // closed (and replaced) whenever data.rev grows; nil until needed; see WaitRevision

	hmu      sync.Mutex
	handlers []func(Event)

	done chan struct{}
}

// stateData is what State holds, as loaded or updated.
type stateData struct {
	rev     int64                                    // etcd revision it reflects
	tunnels map[string]control.Tunnel                // by ID; deleted ones keep DeletedAt
	exact   map[string]string                        // "app.example.com" → tunnel ID
	wild    map[string]string                        // "example.com" (for "*.example.com") → tunnel ID
	conns   map[string]map[string]control.Connection // tunnel ID → connection ID → connection
	tcp     map[int]control.TCPRoute                 // public TCP port → route
}

func newStateData() stateData {
	return stateData{
		tunnels: make(map[string]control.Tunnel),
		exact:   make(map[string]string),
		wild:    make(map[string]string),
		conns:   make(map[string]map[string]control.Connection),
		tcp:     make(map[int]control.TCPRoute),
	}
}

// NewState loads tunnels, routes and connections from etcd and returns once
// they are loaded. It then keeps them current with a watch until ctx is done
// (see Done). A nil logger discards.
func NewState(ctx context.Context, cli *clientv3.Client, logger *slog.Logger) (*State, error) {
	logger = logs.Component(logger, "state")
	s := &State{cli: cli, log: logger, done: make(chan struct{})}
	d, err := s.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("control: state: %w", err)
	}
	s.data = d
	go s.run(ctx)
	return s, nil
}

// Done is closed once the watch has stopped, after ctx is done.
func (s *State) Done() <-chan struct{} { return s.done }

// OnEvent registers fn to be called for every Event. Callbacks run one at a
// time on the watch goroutine, after the change is visible in State: they
// must not block for long.
func (s *State) OnEvent(fn func(Event)) {
	s.hmu.Lock()
	s.handlers = append(s.handlers, fn)
	s.hmu.Unlock()
}

func (s *State) emit(events []Event) {
	if len(events) == 0 {
		return
	}
	s.hmu.Lock()
	handlers := slices.Clone(s.handlers)
	s.hmu.Unlock()
	for _, e := range events {
		for _, fn := range handlers {
			fn(e)
		}
	}
}

// Route returns the tunnel serving host, which may carry a ":port" and a
// trailing dot and is matched without regard to case: an exact route first,
// else the most specific wildcard ("*.b.example.com" before "*.example.com"
// for "a.b.example.com"). A wildcard does not match its bare apex.
func (s *State) Route(host string) (tunnelID string, ok bool) {
	var buf [control.MaxHostnameLen]byte
	key, ok := hostKey(&buf, host)
	if !ok {
		return "", false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if id, ok := s.data.exact[string(key)]; ok {
		return id, true
	}
	for i, c := range key {
		if c == '.' {
			if id, ok := s.data.wild[string(key[i+1:])]; ok {
				return id, true
			}
		}
	}
	return "", false
}

// hostKey writes the lookup form of a Host header into buf: without port or
// trailing dot, lower-case. ok is false for what no route can match.
func hostKey(buf *[control.MaxHostnameLen]byte, host string) (key []byte, ok bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if strings.IndexByte(host[:i], ':') >= 0 || strings.IndexByte(host, '[') >= 0 {
			return nil, false // an IPv6 literal
		}
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > len(buf) {
		return nil, false
	}
	n := copy(buf[:], host)
	for i := range n {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	return buf[:n], true
}

// Tunnel returns the tunnel with that ID, with its SecretHash; a deleted one
// has DeletedAt set (or is not found, if its record is gone).
func (s *State) Tunnel(id string) (control.Tunnel, bool) {
	s.mu.RLock()
	t, ok := s.data.tunnels[id]
	s.mu.RUnlock()
	t.SecretHash = slices.Clone(t.SecretHash)
	return t, ok
}

// Connections returns the live connections of a tunnel, on any edge, by index.
func (s *State) Connections(tunnelID string) []control.Connection {
	s.mu.RLock()
	m := s.data.conns[tunnelID]
	cs := make([]control.Connection, 0, len(m))
	for _, c := range m {
		cs = append(cs, c)
	}
	s.mu.RUnlock()
	return sortConnections(cs)
}

// WaitRevision waits until State reflects etcd revision rev or later, or ctx
// ends (its error is returned then).
func (s *State) WaitRevision(ctx context.Context, rev int64) error {
	for {
		s.mu.Lock()
		if s.advanced == nil {
			s.advanced = make(chan struct{})
		}
		cur, ch := s.data.rev, s.advanced
		s.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// setRevLocked records that State now reflects rev (if newer) and wakes
// WaitRevision. s.mu must be held for writing.
func (s *State) setRevLocked(rev int64) {
	if rev <= s.data.rev {
		return
	}
	s.data.rev = rev
	if s.advanced != nil {
		close(s.advanced)
	}
	s.advanced = make(chan struct{})
}

// Revision is the etcd revision State reflects.
func (s *State) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.data.rev
}

// load reads everything at one revision.
func (s *State) load(ctx context.Context) (stateData, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(store.TunnelsPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(store.RoutesPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(store.ConnectionsPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(store.TCPRoutesPrefix, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return stateData{}, fmt.Errorf("load: etcd: %w", err)
	}
	d := newStateData()
	d.rev = resp.Header.Revision
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().GetKvs() {
			s.put(&d, string(kv.Key), kv.Value)
		}
	}
	return d, nil
}

// put applies one key's new value to d and returns the event it causes, if any.
func (s *State) put(d *stateData, key string, val []byte) (Event, bool) {
	switch {
	case strings.HasPrefix(key, store.TunnelsPrefix):
		var rec tunnelRecord
		if err := json.Unmarshal(val, &rec); err != nil {
			s.log.Warn("skipping an unreadable tunnel record", "key", key, "err", err)
			return Event{}, false
		}
		id := strings.TrimPrefix(key, store.TunnelsPrefix)
		rec.ID = id // the key is what deletes will name
		old, existed := d.tunnels[id]
		d.tunnels[id] = rec.tunnel()
		if rec.DeletedAt != nil && (!existed || old.DeletedAt == nil) {
			return Event{Kind: TunnelDeleted, TunnelID: id}, true
		}
	case strings.HasPrefix(key, store.RoutesPrefix):
		var r control.Route
		if err := json.Unmarshal(val, &r); err != nil {
			s.log.Warn("skipping an unreadable route record", "key", key, "err", err)
			return Event{}, false
		}
		host := strings.TrimPrefix(key, store.RoutesPrefix)
		if base, ok := strings.CutPrefix(host, "*."); ok {
			d.wild[base] = r.TunnelID
		} else {
			d.exact[host] = r.TunnelID
		}
		return Event{Kind: RouteAdded, TunnelID: r.TunnelID, Host: host}, true
	case strings.HasPrefix(key, store.ConnectionsPrefix):
		var c control.Connection
		if err := json.Unmarshal(val, &c); err != nil {
			s.log.Warn("skipping an unreadable connection record", "key", key, "err", err)
			return Event{}, false
		}
		tunnelID, connID, ok := connectionKeyIDs(key)
		if !ok {
			return Event{}, false
		}
		c.TunnelID, c.ID = tunnelID, connID // the key is what deletes will name
		m := d.conns[tunnelID]
		if m == nil {
			m = make(map[string]control.Connection)
			d.conns[tunnelID] = m
		}
		m[connID] = c
	case isTCPRouteKey(key):
		return s.putTCPRoute(d, key, val)
	}
	return Event{}, false
}

// del applies the deletion of one key to d and returns the event it causes, if any.
func (s *State) del(d *stateData, key string) (Event, bool) {
	switch {
	case strings.HasPrefix(key, store.TunnelsPrefix):
		id := strings.TrimPrefix(key, store.TunnelsPrefix)
		old, existed := d.tunnels[id]
		delete(d.tunnels, id)
		if existed && old.DeletedAt == nil {
			return Event{Kind: TunnelDeleted, TunnelID: id}, true
		}
	case strings.HasPrefix(key, store.RoutesPrefix):
		host := strings.TrimPrefix(key, store.RoutesPrefix)
		if base, ok := strings.CutPrefix(host, "*."); ok {
			delete(d.wild, base)
		} else {
			delete(d.exact, host)
		}
		return Event{Kind: RouteRemoved, Host: host}, true
	case strings.HasPrefix(key, store.ConnectionsPrefix):
		tunnelID, connID, ok := connectionKeyIDs(key)
		if !ok {
			return Event{}, false
		}
		if m := d.conns[tunnelID]; m != nil {
			delete(m, connID)
			if len(m) == 0 {
				delete(d.conns, tunnelID)
			}
		}
		return Event{Kind: ConnectionRemoved, TunnelID: tunnelID, ConnID: connID}, true
	case isTCPRouteKey(key):
		return s.delTCPRoute(d, key)
	}
	return Event{}, false
}

// connectionKeyIDs splits a connection key into its tunnel and connection IDs.
func connectionKeyIDs(key string) (tunnelID, connID string, ok bool) {
	tunnelID, connID, ok = strings.Cut(strings.TrimPrefix(key, store.ConnectionsPrefix), "/")
	return tunnelID, connID, ok && tunnelID != "" && connID != ""
}

// run keeps the state current until ctx is done: it watches from the loaded
// revision, and on compaction or any watch failure loads everything again
// (reporting what vanished meanwhile as events) and watches from there. A
// streak of failures is logged once, and retried with growing delays.
func (s *State) run(ctx context.Context) {
	defer close(s.done)
	var delay time.Duration
	for {
		start := time.Now()
		err := s.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			delay = 0 // it had been working: a new streak
		}
		if delay == 0 {
			s.log.Warn("watch interrupted; reloading", "err", err)
		}
		if !sleepCtx(ctx, delay) {
			return
		}
		delay = min(max(2*delay, 50*time.Millisecond), 5*time.Second)
		if !s.reload(ctx) {
			return
		}
	}
}

// sleepCtx waits for d or ctx, and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// watch applies watch events until the watch fails; it returns why.
func (s *State) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, store.Prefix, clientv3.WithPrefix(), clientv3.WithRev(s.Revision()+1))
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("history compacted up to revision %d", wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return err
		}
		if wr.IsProgressNotify() {
			// Every event up to the header's revision has been delivered.
			s.mu.Lock()
			s.setRevLocked(wr.Header.Revision)
			s.mu.Unlock()
			continue
		}
		if len(wr.Events) == 0 {
			continue
		}
		var events []Event
		var rev int64
		s.mu.Lock()
		for _, ev := range wr.Events {
			var e Event
			var ok bool
			switch ev.Type {
			case mvccpb.PUT:
				e, ok = s.put(&s.data, string(ev.Kv.Key), ev.Kv.Value)
			case mvccpb.DELETE:
				e, ok = s.del(&s.data, string(ev.Kv.Key))
			}
			if ok {
				events = append(events, e)
			}
			rev = max(rev, ev.Kv.ModRevision)
		}
		s.setRevLocked(rev)
		s.mu.Unlock()
		s.emit(events)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}

// reload loads everything again, retrying with backoff, swaps it in and
// emits events for what was deleted meanwhile. It returns false if ctx ended.
func (s *State) reload(ctx context.Context) bool {
	delay := 50 * time.Millisecond
	for {
		d, err := s.load(ctx)
		if err == nil {
			s.mu.Lock()
			events := diffEvents(s.data, d)
			rev := d.rev
			d.rev = s.data.rev
			s.data = d
			s.setRevLocked(rev)
			s.mu.Unlock()
			s.log.Info("reloaded", "revision", d.rev)
			s.emit(events)
			return true
		}
		if !sleepCtx(ctx, delay) {
			return false
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// routeEvents reports the routes added, moved and removed between two
// route maps (host → tunnel ID); prefix makes a map's key a hostname.
func routeEvents(old, cur map[string]string, prefix string) []Event {
	var events []Event
	for host, id := range cur {
		if oid, ok := old[host]; !ok || oid != id {
			events = append(events, Event{Kind: RouteAdded, TunnelID: id, Host: prefix + host})
		}
	}
	for host := range old {
		if _, ok := cur[host]; !ok {
			events = append(events, Event{Kind: RouteRemoved, Host: prefix + host})
		}
	}
	return events
}

// diffEvents reports the tunnels deleted, the connections removed and the
// routes changed between old and cur.
func diffEvents(old, cur stateData) []Event {
	var events []Event
	for id, t := range old.tunnels {
		if nt, ok := cur.tunnels[id]; t.DeletedAt == nil && (!ok || nt.DeletedAt != nil) {
			events = append(events, Event{Kind: TunnelDeleted, TunnelID: id})
		}
	}
	for tid, m := range old.conns {
		for cid := range m {
			if _, ok := cur.conns[tid][cid]; !ok {
				events = append(events, Event{Kind: ConnectionRemoved, TunnelID: tid, ConnID: cid})
			}
		}
	}
	events = append(events, tcpRoutesEvent(old, cur)...)
	events = append(events, routeEvents(old.exact, cur.exact, "")...)
	events = append(events, routeEvents(old.wild, cur.wild, "*.")...)
	slices.SortFunc(events, func(a, b Event) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.TunnelID, b.TunnelID), cmp.Compare(a.ConnID, b.ConnID), cmp.Compare(a.Host, b.Host))
	})
	return events
}
