// Package edgeview is the fleet's registry of live edges (store.EdgesPrefix:
// a control.EdgeNode per edge, under that edge's lease) as one edge sees
// it: watched from etcd once, and handed to every part of the edge that
// follows it. The edge owns a View and passes it, as a Registry, to the
// connectors' list (edge/fleetview.go), the peer links (edge/edgepeer) and
// DNS (edgedns), so that the registry costs one watch per edge and every
// part sees the same changes in the same order.
package edgeview

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/store"
)

// Edges is the registry at one moment: every live edge's record, by node
// name. A set handed out is never changed afterwards; it may be kept.
type Edges map[string]control.EdgeNode

// Registry is what the parts of an edge take to follow the fleet's
// registry: a *View, or Fixed in tests.
type Registry interface {
	// Subscribe calls fn with the registry as it stands, before it
	// returns, then with the whole registry after every change, until
	// stop is called. Calls to fn never overlap and come in the order of
	// the changes; fn must return quickly and must not call Subscribe or
	// stop. stop waits for a call of fn under way.
	Subscribe(fn func(Edges)) (stop func())
}

// maxRecord bounds the size of a record the view takes; larger ones are
// skipped (a record is a few hundred bytes).
const maxRecord = 16 << 10

// View watches the registry and fans it out to subscribers. Its zero
// value is not usable; use New.
type View struct {
	log *slog.Logger

	deliver sync.Mutex // held while subscribers are called, so calls are ordered
	mu      sync.Mutex // guards what follows
	edges   Edges
	bad     map[string]string // malformed records logged, key → value: logged once each
	subs    map[*func(Edges)]struct{}
	done    <-chan struct{}
}

// New loads the registry from cli and watches it until ctx ends
// (reloading after a broken watch). A nil logger discards.
func New(ctx context.Context, cli *clientv3.Client, logger *slog.Logger) (*View, error) {
	v := &View{log: logs.Component(logger, "fleet"), subs: make(map[*func(Edges)]struct{})}
	done, err := store.WatchPrefix(ctx, cli, store.EdgesPrefix, v.log, v.apply)
	if err != nil {
		return nil, fmt.Errorf("edgeview: %w", err)
	}
	v.done = done
	return v, nil
}

// Done is closed once the watch has stopped (New's ctx ended).
func (v *View) Done() <-chan struct{} { return v.done }

// Edges is the registry as it stands.
func (v *View) Edges() Edges {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.edges
}

// Subscribe implements Registry.
func (v *View) Subscribe(fn func(Edges)) (stop func()) {
	v.deliver.Lock()
	defer v.deliver.Unlock()
	fn(v.Edges())
	key := &fn
	v.mu.Lock()
	v.subs[key] = struct{}{}
	v.mu.Unlock()
	return func() {
		v.deliver.Lock()
		defer v.deliver.Unlock()
		v.mu.Lock()
		delete(v.subs, key)
		v.mu.Unlock()
	}
}

// apply decodes the records (store.WatchPrefix) and hands them out.
func (v *View) apply(recs map[string][]byte) {
	v.deliver.Lock()
	defer v.deliver.Unlock()
	v.mu.Lock()
	edges := make(Edges, len(recs))
	bad := make(map[string]string)
	for key, val := range recs {
		e, ok := controlserver.DecodeEdge([]byte(key), val)
		if !ok || len(val) > maxRecord {
			if v.bad[key] != string(val) {
				v.log.Warn("skipping a malformed edge record", "key", key, "bytes", len(val))
			}
			bad[key] = string(val)
			continue
		}
		edges[e.Name] = e
	}
	v.edges, v.bad = edges, bad
	subs := make([]func(Edges), 0, len(v.subs))
	for fn := range v.subs {
		subs = append(subs, *fn)
	}
	v.mu.Unlock()
	for _, fn := range subs {
		fn(edges)
	}
}

// Fixed is a Registry that never changes, for tests.
type Fixed Edges

// Subscribe implements Registry.
func (f Fixed) Subscribe(fn func(Edges)) (stop func()) {
	fn(maps.Clone(Edges(f)))
	return func() {}
}
