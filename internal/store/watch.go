package store

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatchPrefix keeps apply fed with every record under prefix: once with
// all of them before it returns, then after every change (apply gets the
// whole set, key → value, and must not keep the map). It watches until ctx
// ends, reloading after a broken watch (logged at warn level). done is
// closed when it stops.
func WatchPrefix(ctx context.Context, cli *clientv3.Client, prefix string, log *slog.Logger, apply func(map[string][]byte)) (done <-chan struct{}, err error) {
	recs, rev, err := loadPrefix(ctx, cli, prefix)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", prefix, err)
	}
	apply(recs)
	d := make(chan struct{})
	go func() {
		defer close(d)
		delay := time.Duration(0)
		for ctx.Err() == nil {
			err := watchFrom(ctx, cli, prefix, recs, &rev, apply)
			if ctx.Err() != nil {
				return
			}
			log.Warn("watch interrupted; reloading", "prefix", prefix, "err", err)
			delay = min(max(2*delay, 50*time.Millisecond), 5*time.Second)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if r, nrev, err := loadPrefix(ctx, cli, prefix); err == nil {
				recs, rev = r, nrev
				apply(maps.Clone(recs))
			}
		}
	}()
	return d, nil
}

func loadPrefix(ctx context.Context, cli *clientv3.Client, prefix string) (map[string][]byte, int64, error) {
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	recs := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		recs[string(kv.Key)] = kv.Value
	}
	return recs, resp.Header.Revision, nil
}

// watchFrom applies the changes after *rev to recs until the watch fails.
func watchFrom(ctx context.Context, cli *clientv3.Client, prefix string, recs map[string][]byte, rev *int64, apply func(map[string][]byte)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(*rev+1)) {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("history compacted up to revision %d", wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return err
		}
		if len(wr.Events) == 0 {
			continue
		}
		for _, ev := range wr.Events {
			switch ev.Type {
			case mvccpb.PUT:
				recs[string(ev.Kv.Key)] = ev.Kv.Value
			case mvccpb.DELETE:
				delete(recs, string(ev.Kv.Key))
			}
			*rev = max(*rev, ev.Kv.ModRevision)
		}
		apply(maps.Clone(recs))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("watch closed")
}
