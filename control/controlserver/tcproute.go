package controlserver

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RouteTCP makes every edge listen on port and carry its connections to a
// live tunnel (by ID or name), with hostname as the host the connector's
// ingress rules see. Routing a port the same way again returns the existing
// route. If the port is routed differently (another tunnel or hostname):
// ErrConflict, unless overwrite. A route left pointing at a deleted tunnel
// is replaced without overwrite.
func (s *Service) RouteTCP(ctx context.Context, tunnelID string, port int, hostname string, overwrite bool) (control.TCPRoute, error) {
	if err := control.ValidatePort(port); err != nil {
		return control.TCPRoute{}, err
	}
	host, err := control.ValidateTCPHostname(hostname)
	if err != nil {
		return control.TCPRoute{}, err
	}
	key := store.TCPRouteKey(port)
	for range maxTxnAttempts {
		rec, rev, err := s.resolve(ctx, tunnelID)
		if err != nil {
			return control.TCPRoute{}, err
		}
		if rec.DeletedAt != nil {
			return control.TCPRoute{}, control.Errorf(control.ErrNotFound, "tunnel %s (%s) is deleted", rec.ID, rec.Name)
		}
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return control.TCPRoute{}, etcdError("route tcp", err)
		}
		var routeRev int64
		if len(resp.Kvs) > 0 {
			routeRev = resp.Kvs[0].ModRevision
			var old control.TCPRoute
			if err := json.Unmarshal(resp.Kvs[0].Value, &old); err == nil {
				if old.TunnelID == rec.ID && old.Hostname == host {
					return old, nil
				}
				if !overwrite && s.liveTunnel(ctx, old.TunnelID) {
					if old.TunnelID != rec.ID {
						return control.TCPRoute{}, control.Errorf(control.ErrConflict, "port %d is already routed to tunnel %s; overwrite to move it", port, old.TunnelID)
					}
					return control.TCPRoute{}, control.Errorf(control.ErrConflict, "port %d is already routed to this tunnel with hostname %q; overwrite to change it", port, old.Hostname)
				}
			}
		}
		r := control.TCPRoute{Port: port, TunnelID: rec.ID, Hostname: host, CreatedAt: now()}
		val, err := json.Marshal(r)
		if err != nil {
			return control.TCPRoute{}, fmt.Errorf("control: route tcp: %w", err)
		}
		// The tunnel was not deleted and nobody else routed the port meanwhile.
		txn, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(store.TunnelKey(rec.ID)), "=", rev),
			clientv3.Compare(clientv3.ModRevision(key), "=", routeRev),
		).Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return control.TCPRoute{}, etcdError("route tcp", err)
		}
		if txn.Succeeded {
			s.log.Info("tcp route set", "port", port, "tunnel", rec.ID, "hostname", host)
			return r, nil
		}
	}
	return control.TCPRoute{}, fmt.Errorf("control: route tcp port %d: it kept changing under %d attempts; try again", port, maxTxnAttempts)
}

// liveTunnel reports whether the tunnel with that ID exists and is not
// deleted. When etcd cannot say, it answers true: the caller then refuses
// rather than overwrites.
func (s *Service) liveTunnel(ctx context.Context, id string) bool {
	resp, err := s.cli.Get(ctx, store.TunnelKey(id))
	if err != nil {
		return true
	}
	if len(resp.Kvs) == 0 {
		return false
	}
	var rec tunnelRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return true
	}
	return rec.DeletedAt == nil
}

// ListTCPRoutes lists every public TCP port route, by port.
func (s *Service) ListTCPRoutes(ctx context.Context) ([]control.TCPRoute, error) {
	resp, err := s.cli.Get(ctx, store.TCPRoutesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdError("list tcp routes", err)
	}
	routes := make([]control.TCPRoute, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r, ok := s.decodeTCPRoute(string(kv.Key), kv.Value)
		if !ok {
			continue
		}
		routes = append(routes, r)
	}
	sortTCPRoutes(routes)
	return routes, nil
}

func sortTCPRoutes(routes []control.TCPRoute) {
	slices.SortFunc(routes, func(a, b control.TCPRoute) int { return cmp.Compare(a.Port, b.Port) })
}

// decodeTCPRoute reads a TCP route record; the port comes from the key.
func (s *Service) decodeTCPRoute(key string, val []byte) (control.TCPRoute, bool) {
	return decodeTCPRoute(key, val, func(err error) {
		s.log.Warn("skipping an unreadable tcp route record", "key", key, "err", err)
	})
}

func decodeTCPRoute(key string, val []byte, warn func(error)) (control.TCPRoute, bool) {
	port, ok := tcpRouteKeyPort(key)
	if !ok {
		warn(fmt.Errorf("key does not end in a port"))
		return control.TCPRoute{}, false
	}
	var r control.TCPRoute
	if err := json.Unmarshal(val, &r); err != nil {
		warn(err)
		return control.TCPRoute{}, false
	}
	r.Port = port
	return r, true
}

// tcpRouteKeyPort returns the port of a TCP route key.
func tcpRouteKeyPort(key string) (int, bool) {
	s, ok := strings.CutPrefix(key, store.TCPRoutesPrefix)
	if !ok {
		return 0, false
	}
	port, err := strconv.Atoi(s)
	if err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != s {
		return 0, false
	}
	return port, true
}

// DeleteTCPRoute removes the route of a public TCP port; the edges close
// their listener on it. ErrNotFound if there is none.
func (s *Service) DeleteTCPRoute(ctx context.Context, port int) error {
	if err := control.ValidatePort(port); err != nil {
		return err
	}
	resp, err := s.cli.Delete(ctx, store.TCPRouteKey(port))
	if err != nil {
		return etcdError("delete tcp route", err)
	}
	if resp.Deleted == 0 {
		return control.Errorf(control.ErrNotFound, "no tcp route for port %d", port)
	}
	s.log.Info("tcp route deleted", "port", port)
	return nil
}

// deleteTunnelTCPRoutes removes the TCP routes of a tunnel that was just
// deleted. RouteTCP cannot add one after the deletion (its transaction
// checks the tunnel record did not change), so nothing is left behind; if
// this fails, the routes stay, edges ignore them and RouteTCP replaces them.
func (s *Service) deleteTunnelTCPRoutes(ctx context.Context, tunnelID string) {
	resp, err := s.cli.Get(ctx, store.TCPRoutesPrefix, clientv3.WithPrefix())
	if err != nil {
		s.log.Warn("tcp routes of a deleted tunnel not removed", "tunnel", tunnelID, "err", err)
		return
	}
	var ports []int
	for _, kv := range resp.Kvs {
		r, ok := s.decodeTCPRoute(string(kv.Key), kv.Value)
		if !ok || r.TunnelID != tunnelID {
			continue
		}
		key := string(kv.Key)
		// Only if it still points at this tunnel.
		_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			s.log.Warn("tcp route of a deleted tunnel not removed", "tunnel", tunnelID, "port", r.Port, "err", err)
			continue
		}
		ports = append(ports, r.Port)
	}
	if len(ports) > 0 {
		s.log.Info("tcp routes of a deleted tunnel removed", "tunnel", tunnelID, "ports", ports)
	}
}
