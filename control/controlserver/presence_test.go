package controlserver

import (
	"context"
	"encoding/json"
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
