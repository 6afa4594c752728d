package controlserver

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func countKeys(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func TestPresence(t *testing.T) {
	t.Parallel()
	cli := newEtcd(t)
	ctx := t.Context()
	p, err := NewPresence(ctx, cli, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	conns := []control.Connection{
		{ID: "c1", TunnelID: "t1", Index: 0, EdgeNode: "edge-1", Protocol: "quic", Since: now()},
		{ID: "c2", TunnelID: "t1", Index: 1, EdgeNode: "edge-1", Protocol: "websocket", Since: now()},
		{ID: "c3", TunnelID: "t2", Index: 0, EdgeNode: "edge-1", Protocol: "quic", Since: now()},
	}
	for _, c := range conns {
		if err := p.Add(ctx, c); err != nil {
			t.Fatalf("Add(%s): %v", c.ID, err)
		}
	}
	resp, err := cli.Get(ctx, store.ConnectionKey("t1", "c2"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("Get c2 = %v, %v; want one key", resp, err)
	}
	var got control.Connection
	if err := json.Unmarshal(resp.Kvs[0].Value, &got); err != nil || got != conns[1] {
		t.Errorf("stored c2 = %+v (%v), want %+v", got, err, conns[1])
	}
	if resp.Kvs[0].Lease == 0 {
		t.Error("c2 has no lease, want the presence lease")
	}

	if err := p.Remove(ctx, "t1", "c1"); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, cli, store.ConnectionsPrefix); n != 2 {
		t.Errorf("%d connection keys after Remove, want 2", n)
	}
	if err := p.Add(ctx, control.Connection{ID: "a/b", TunnelID: "t1"}); err == nil {
		t.Error("Add with a '/' in the ID succeeded, want an error")
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := countKeys(t, cli, store.ConnectionsPrefix); n != 0 {
		t.Errorf("%d connection keys after Close, want 0", n)
	}
	if err := p.Add(ctx, conns[0]); err == nil {
		t.Error("Add after Close succeeded, want an error")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPresenceNewLease revokes the lease behind the presence's back, as if it
// had expired: the entries must come back under a new lease.
func TestPresenceNewLease(t *testing.T) {
	t.Parallel()
	cli := newEtcd(t)
	ctx := t.Context()
	// A short TTL: the keepalive, sent every TTL/3, soon learns the lease is gone.
	p, err := NewPresence(ctx, cli, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, id := range []string{"c1", "c2"} {
		if err := p.Add(ctx, control.Connection{ID: id, TunnelID: "t1"}); err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock()
	first := p.lease
	p.mu.Unlock()
	if _, err := cli.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the entries under a new lease", func() bool {
		resp, err := cli.Get(ctx, store.ConnectionsPrefix, clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != 2 {
			return false
		}
		for _, kv := range resp.Kvs {
			if kv.Lease == 0 || clientv3.LeaseID(kv.Lease) == first {
				return false
			}
		}
		return true
	})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, cli, store.ConnectionsPrefix); n != 0 {
		t.Errorf("%d connection keys after Close, want 0", n)
	}
}

// TestPresenceConcurrent adds and removes many connections at once: the
// writer batches them, and every one lands exactly once.
func TestPresenceConcurrent(t *testing.T) {
	t.Parallel()
	cli := newEtcd(t)
	ctx := t.Context()
	p := newTestPresence(t, cli, 0)
	const n = 500
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := p.Add(ctx, control.Connection{ID: fmt.Sprintf("c%d", i), TunnelID: fmt.Sprintf("t%d", i%7)}); err != nil {
				t.Errorf("Add c%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if got := countKeys(t, cli, store.ConnectionsPrefix); got != n {
		t.Fatalf("%d connection keys after %d concurrent Adds, want %d", got, n, n)
	}
	for i := range n {
		if i%2 == 0 {
			wg.Go(func() {
				if err := p.Remove(ctx, fmt.Sprintf("t%d", i%7), fmt.Sprintf("c%d", i)); err != nil {
					t.Errorf("Remove c%d: %v", i, err)
				}
			})
		}
	}
	wg.Wait()
	if got := countKeys(t, cli, store.ConnectionsPrefix); got != n/2 {
		t.Errorf("%d connection keys after removing half, want %d", got, n/2)
	}
}

// TestPresenceUpdate: an Update changes a published record, and one that
// comes after Remove does not bring the record back.
func TestPresenceUpdate(t *testing.T) {
	t.Parallel()
	cli := newEtcd(t)
	ctx := t.Context()
	p := newTestPresence(t, cli, 0)
	c := control.Connection{ID: "c1", TunnelID: "t1"}
	if err := p.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.ConfigVersion = 3
	if err := p.Update(ctx, c); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, store.ConnectionKey("t1", "c1"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("Get = %v, %v; want one key", resp, err)
	}
	var got control.Connection
	if err := json.Unmarshal(resp.Kvs[0].Value, &got); err != nil || got.ConfigVersion != 3 {
		t.Errorf("after Update: %+v (%v), want config version 3", got, err)
	}
	if err := p.Remove(ctx, "t1", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Update(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, cli, store.ConnectionsPrefix); n != 0 {
		t.Errorf("%d connection keys after Remove then Update, want 0", n)
	}
}

// TestPresenceOrphans: a key whose write failed is deleted by the writer.
func TestPresenceOrphans(t *testing.T) {
	t.Parallel()
	cli := newEtcd(t)
	ctx := t.Context()
	p := newTestPresence(t, cli, 0)
	key := store.ConnectionKey("t1", "lost")
	if _, err := cli.Put(ctx, key, "{}"); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.orphans[key] = struct{}{} // as commit does when a transaction fails
	p.mu.Unlock()
	if err := p.Add(ctx, control.Connection{ID: "c1", TunnelID: "t1"}); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, cli, key); n != 0 {
		t.Errorf("the orphan is still there after the next write")
	}
	p.mu.Lock()
	left := len(p.orphans)
	p.mu.Unlock()
	if left != 0 {
		t.Errorf("%d orphans left, want 0", left)
	}
}

// TestPresenceRemoveLeftovers: records of the same node under another
// lease (a previous run) are deleted; this run's and other nodes' stay.
func TestPresenceRemoveLeftovers(t *testing.T) {
	t.Parallel()
	cli := newEtcd(t)
	ctx := t.Context()
	before, err := NewPresence(ctx, cli, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestPresence(t, cli, time.Minute)
	for i := range 120 { // more than one transaction
		if err := before.Add(ctx, control.Connection{ID: fmt.Sprintf("old%d", i), TunnelID: "t1", EdgeNode: "edge-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Add(ctx, control.Connection{ID: "elsewhere", TunnelID: "t1", EdgeNode: "edge-2"}); err != nil {
		t.Fatal(err)
	}
	// A kill -9: the first run's lease stays alive for its TTL.
	before.cancel()
	<-before.done
	<-before.wdone

	p := newTestPresence(t, cli, 0)
	if err := p.Add(ctx, control.Connection{ID: "new", TunnelID: "t1", EdgeNode: "edge-1"}); err != nil {
		t.Fatal(err)
	}
	n, err := p.RemoveLeftovers(ctx, "edge-1")
	if err != nil || n != 120 {
		t.Fatalf("RemoveLeftovers = %d, %v; want 120, nil", n, err)
	}
	for key, want := range map[string]int64{
		store.ConnectionKey("t1", "old0"):      0,
		store.ConnectionKey("t1", "new"):       1,
		store.ConnectionKey("t1", "elsewhere"): 1,
	} {
		if got := countKeys(t, cli, key); got != want {
			t.Errorf("%s: %d keys, want %d", key, got, want)
		}
	}
}

// newTestPresence is a Presence closed when the test ends.
func newTestPresence(t *testing.T, cli *clientv3.Client, ttl time.Duration) *Presence {
	t.Helper()
	p, err := NewPresence(t.Context(), cli, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
