package controlserver

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Put publishes key = val under the presence's lease, beside the
// connections: it vanishes with the lease and is put again under a new
// one, as they are. The edge keeps its registry record (store.EdgeKey)
// this way.
func (p *Presence) Put(ctx context.Context, key, val string) error {
	if err := p.enqueue(&presenceOp{key: key, val: val}); err != nil {
		return fmt.Errorf("control: presence: put %s: %w", key, err)
	}
	return nil
}

// Delete withdraws what Put published.
func (p *Presence) Delete(ctx context.Context, key string) error {
	if err := p.enqueue(&presenceOp{key: key, del: true}); err != nil {
		return fmt.Errorf("control: presence: delete %s: %w", key, err)
	}
	return nil
}

// DecodeEdge decodes a registry record (store.EdgesPrefix) and checks it
// names the node its key does; ok is false for anything else, which
// readers skip.
func DecodeEdge(key, val []byte) (e control.EdgeNode, ok bool) {
	name, found := strings.CutPrefix(string(key), store.EdgesPrefix)
	if !found || json.Unmarshal(val, &e) != nil || e.Name != name || name == "" {
		return control.EdgeNode{}, false
	}
	return e, true
}

// ListEdges implements control.API: the live edges' records, by name.
func (s *Service) ListEdges(ctx context.Context) ([]control.EdgeNode, error) {
	resp, err := s.cli.Get(ctx, store.EdgesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdError("list edges", err)
	}
	edges := make([]control.EdgeNode, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		e, ok := DecodeEdge(kv.Key, kv.Value)
		if !ok {
			s.log.Warn("skipping a malformed edge record", "key", string(kv.Key))
			continue
		}
		edges = append(edges, e)
	}
	slices.SortFunc(edges, func(a, b control.EdgeNode) int { return cmp.Compare(a.Name, b.Name) })
	return edges, nil
}

// EdgeInfo implements control.API: the info NewService was given, with the
// tunnel addresses of every other live edge that takes connectors (health
// ok) after this edge's own, so connectors learn the fleet.
func (s *Service) EdgeInfo(ctx context.Context) (control.EdgeInfo, error) {
	info := s.info
	info.TunnelAddrs = slices.Clone(info.TunnelAddrs)
	edges, err := s.ListEdges(ctx)
	if err != nil {
		return control.EdgeInfo{}, err
	}
	for _, e := range edges {
		if e.Name == info.Node || e.Health != control.EdgeHealthOK || e.TunnelAddr == "" || slices.Contains(info.TunnelAddrs, e.TunnelAddr) {
			continue
		}
		info.TunnelAddrs = append(info.TunnelAddrs, e.TunnelAddr)
	}
	return info, nil
}
