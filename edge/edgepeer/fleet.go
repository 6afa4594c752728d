package edgepeer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
)

// watchEdges loads the fleet's edge records, then follows them on a
// goroutine until Close, reloading after a broken watch.
func (l *Links) watchEdges(ctx context.Context) error {
	rev, err := l.loadEdges(ctx)
	if err != nil {
		return fmt.Errorf("edgepeer: loading the fleet's edges: %w", err)
	}
	l.wg.Go(func() {
		delay := time.Duration(0)
		for l.ctx.Err() == nil {
			err := l.followEdges(rev)
			if l.ctx.Err() != nil {
				return
			}
			l.log.Warn("watch of the fleet's edges interrupted; reloading", "err", err)
			delay = min(max(2*delay, 50*time.Millisecond), maxBackoff)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(delay):
			}
			if r, err := l.loadEdges(l.ctx); err == nil {
				rev = r
			}
		}
	})
	return nil
}

// loadEdges reads every record and applies them; it returns the revision
// read.
func (l *Links) loadEdges(ctx context.Context) (int64, error) {
	resp, err := l.cfg.Etcd.Get(ctx, store.EdgesPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	edges := make(map[string]control.EdgeNode, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if e, ok := l.decodeEdge(kv.Key, kv.Value); ok {
			edges[e.Name] = e
		}
	}
	l.apply(edges)
	return resp.Header.Revision, nil
}

// followEdges applies the changes after rev until the watch fails.
func (l *Links) followEdges(rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(l.ctx))
	defer cancel()
	for wr := range l.cfg.Etcd.Watch(wctx, store.EdgesPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("history compacted up to revision %d", wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return err
		}
		l.mu.Lock()
		edges := make(map[string]control.EdgeNode, len(l.edges)+1)
		for k, v := range l.edges {
			edges[k] = v
		}
		l.mu.Unlock()
		for _, ev := range wr.Events {
			node := strings.TrimPrefix(string(ev.Kv.Key), store.EdgesPrefix)
			switch ev.Type {
			case mvccpb.PUT:
				if e, ok := l.decodeEdge(ev.Kv.Key, ev.Kv.Value); ok {
					edges[e.Name] = e
				} else {
					delete(edges, node)
				}
			case mvccpb.DELETE:
				delete(edges, node)
			}
		}
		l.apply(edges)
	}
	if err := l.ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}

// decodeEdge reads one record; a record that does not parse, or whose name
// is not its key's, is skipped (and logged).
func (l *Links) decodeEdge(key, val []byte) (control.EdgeNode, bool) {
	var e control.EdgeNode
	node := strings.TrimPrefix(string(key), store.EdgesPrefix)
	if err := json.Unmarshal(val, &e); err != nil || e.Name != node {
		l.log.Warn("skipping a malformed edge record", "key", string(key), "err", err)
		return control.EdgeNode{}, false
	}
	return e, true
}

// apply makes edges the fleet as this edge knows it: it starts dialing the
// peers after this edge in name order that publish a peer address, and
// stops redialing those that left or moved. A link to an edge that left
// stays up until that edge closes it (requests forwarded to it finish
// while it shuts down) but takes no new request (Rank).
func (l *Links) apply(edges map[string]control.EdgeNode) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.edges = edges
	for node, d := range l.dialers {
		if e, ok := edges[node]; !ok || e.PeerAddr != d.addr {
			d.cancel()
			delete(l.dialers, node)
		}
	}
	for node, e := range edges {
		if node <= l.cfg.Node || e.PeerAddr == "" {
			continue // it dials this edge, or has no peer link
		}
		if _, ok := l.dialers[node]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(l.ctx)
		d := &dialer{node: node, addr: e.PeerAddr, cancel: cancel}
		l.dialers[node] = d
		l.wg.Go(func() { l.dial(ctx, d) })
	}
}

// dialer is the loop keeping a link to one peer this edge dials.
type dialer struct {
	node, addr string
	cancel     context.CancelFunc
}

// dial connects to d's peer and serves the link, again and again with a
// backoff, until ctx ends (the peer left, moved, or this edge closes). A
// link up when ctx ends is served until it ends.
func (l *Links) dial(ctx context.Context, d *dialer) {
	conf := l.client.Clone()
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		node, err := l.verify(cs, x509.ExtKeyUsageServerAuth)
		if err != nil {
			return err
		}
		if node != d.node {
			return fmt.Errorf("edgepeer: %s answered with the peer certificate of edge %q, not %q", d.addr, node, d.node)
		}
		return nil
	}
	backoff := minBackoff
	failing := false
	for ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		c, err := tunnelquic.Dial(dctx, d.addr, conf, l.cfg.QUIC)
		cancel()
		if err == nil {
			failing = false
			backoff = minBackoff
			start := time.Now()
			l.serveLink(d.node, c, "dialed")
			if time.Since(start) > maxBackoff {
				continue // it ran a good while: redial at once
			}
		} else if ctx.Err() == nil && !failing {
			failing = true // logged once per outage
			l.log.Warn("cannot reach peer; retrying", "peer", d.node, "addr", d.addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// pkiNode decodes the node name of a peer URI's opaque part.
func pkiNode(opaque string) (string, error) {
	n, err := url.PathUnescape(opaque)
	if err != nil || n == "" {
		return "", fmt.Errorf("edgepeer: malformed peer URI %q", opaque)
	}
	return n, nil
}
