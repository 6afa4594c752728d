package controlserver

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/store"
	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Service implements API over etcd. Uniqueness (tunnel names, routes) is
// enforced with transactions, so two concurrent writers cannot both win.
type Service struct {
	cli  *clientv3.Client
	info control.EdgeInfo
	log  *slog.Logger
	// adminAllows says who may hold an admin SSO session (SetAdminSSO);
	// nil: no one.
	adminAllows func(idp, email string, groups []string) bool
}

var _ control.API = (*Service)(nil)

// NewService returns a Service storing its records through cli. info is what
// EdgeInfo reports. A nil logger discards.
func NewService(cli *clientv3.Client, info control.EdgeInfo, logger *slog.Logger) *Service {
	logger = logs.Component(logger, "control")
	return &Service{cli: cli, info: info, log: logger}
}

// maxTxnAttempts bounds the read-check-write retries of one call when other
// writers keep changing what it read.
const maxTxnAttempts = 16

// tunnelRecord is a tunnel as stored in etcd: Tunnel with its secret hash.
type tunnelRecord struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	SecretHash []byte     `json:"secret_hash"`
	CreatedAt  time.Time  `json:"created_at"`
	DeletedAt  *time.Time `json:"deleted_at,omitempty"`
}

func (r tunnelRecord) tunnel() control.Tunnel {
	return control.Tunnel{ID: r.ID, Name: r.Name, SecretHash: r.SecretHash, CreatedAt: r.CreatedAt, DeletedAt: r.DeletedAt}
}

// now is the time records are stamped with: UTC, without a monotonic reading,
// so it survives a JSON round trip unchanged.
func now() time.Time { return time.Now().UTC().Round(0) }

// etcdError wraps a failed etcd call; the API reports it as an internal error.
func etcdError(op string, err error) error {
	return fmt.Errorf("control: %s: etcd: %w", op, err)
}

// CreateTunnel creates a tunnel named name with the given secret (>= 32 bytes).
// ErrConflict if a live tunnel has that name.
func (s *Service) CreateTunnel(ctx context.Context, name string, secret []byte) (control.Tunnel, error) {
	if err := control.ValidateName(name); err != nil {
		return control.Tunnel{}, err
	}
	if len(secret) < control.MinSecretLen {
		return control.Tunnel{}, control.Errorf(control.ErrInvalid, "tunnel secret is %d bytes, it must be at least %d", len(secret), control.MinSecretLen)
	}
	rec := tunnelRecord{ID: uuid.NewString(), Name: name, SecretHash: control.HashSecret(secret), CreatedAt: now()}
	val, err := json.Marshal(rec)
	if err != nil {
		return control.Tunnel{}, fmt.Errorf("control: create tunnel: %w", err)
	}
	nameKey := store.TunnelNameKey(name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(nameKey), "=", 0)).
		Then(clientv3.OpPut(nameKey, rec.ID), clientv3.OpPut(store.TunnelKey(rec.ID), string(val))).
		Else(clientv3.OpGet(nameKey)).
		Commit()
	if err != nil {
		return control.Tunnel{}, etcdError("create tunnel", err)
	}
	if !resp.Succeeded {
		other := ""
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			other = " (" + string(kvs[0].Value) + ")"
		}
		return control.Tunnel{}, control.Errorf(control.ErrConflict, "a tunnel named %q already exists%s", name, other)
	}
	s.log.Info("tunnel created", "tunnel", rec.ID, "name", name)
	return rec.tunnel(), nil
}

// ListTunnels lists tunnels, oldest first, with their live connections.
func (s *Service) ListTunnels(ctx context.Context, opts control.ListOptions) ([]control.Tunnel, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(store.TunnelsPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(store.ConnectionsPrefix, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, etcdError("list tunnels", err)
	}
	conns := make(map[string][]control.Connection)
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		var c control.Connection
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			s.log.Warn("skipping an unreadable connection record", "key", string(kv.Key), "err", err)
			continue
		}
		conns[c.TunnelID] = append(conns[c.TunnelID], c)
	}
	tunnels := []control.Tunnel{}
	for _, kv := range resp.Responses[0].GetResponseRange().GetKvs() {
		var rec tunnelRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			s.log.Warn("skipping an unreadable tunnel record", "key", string(kv.Key), "err", err)
			continue
		}
		if rec.DeletedAt != nil && !opts.IncludeDeleted || opts.Name != "" && rec.Name != opts.Name {
			continue
		}
		t := rec.tunnel()
		t.Connections = sortConnections(conns[t.ID])
		tunnels = append(tunnels, t)
	}
	slices.SortFunc(tunnels, func(a, b control.Tunnel) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return tunnels, nil
}

func sortConnections(cs []control.Connection) []control.Connection {
	slices.SortFunc(cs, func(a, b control.Connection) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), a.Since.Compare(b.Since), cmp.Compare(a.ID, b.ID))
	})
	return cs
}

// GetTunnel finds a tunnel by ID (deleted ones too), or else a live tunnel by
// name, with its live connections.
func (s *Service) GetTunnel(ctx context.Context, idOrName string) (control.Tunnel, error) {
	rec, _, err := s.resolve(ctx, idOrName)
	if err != nil {
		return control.Tunnel{}, err
	}
	conns, err := s.connections(ctx, rec.ID)
	if err != nil {
		return control.Tunnel{}, err
	}
	t := rec.tunnel()
	t.Connections = conns
	return t, nil
}

// resolve finds a tunnel record by ID or live name, and its ModRevision.
func (s *Service) resolve(ctx context.Context, idOrName string) (tunnelRecord, int64, error) {
	if idOrName == "" {
		return tunnelRecord{}, 0, control.Errorf(control.ErrInvalid, "no tunnel ID or name given")
	}
	id, isID := control.ParseID(idOrName)
	if !isID {
		resp, err := s.cli.Get(ctx, store.TunnelNameKey(idOrName))
		if err != nil {
			return tunnelRecord{}, 0, etcdError("find tunnel", err)
		}
		if len(resp.Kvs) == 0 {
			return tunnelRecord{}, 0, control.Errorf(control.ErrNotFound, "no tunnel named %q", idOrName)
		}
		id = string(resp.Kvs[0].Value)
	}
	resp, err := s.cli.Get(ctx, store.TunnelKey(id))
	if err != nil {
		return tunnelRecord{}, 0, etcdError("find tunnel", err)
	}
	if len(resp.Kvs) == 0 {
		if isID {
			return tunnelRecord{}, 0, control.Errorf(control.ErrNotFound, "no tunnel with ID %s", id)
		}
		// The name was freed between the two reads.
		return tunnelRecord{}, 0, control.Errorf(control.ErrNotFound, "no tunnel named %q", idOrName)
	}
	var rec tunnelRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return tunnelRecord{}, 0, fmt.Errorf("control: tunnel %s: unreadable record: %w", id, err)
	}
	return rec, resp.Kvs[0].ModRevision, nil
}

// connections returns the live connections of a tunnel.
func (s *Service) connections(ctx context.Context, tunnelID string) ([]control.Connection, error) {
	resp, err := s.cli.Get(ctx, store.TunnelConnectionsPrefix(tunnelID), clientv3.WithPrefix())
	if err != nil {
		return nil, etcdError("list connections", err)
	}
	conns := make([]control.Connection, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var c control.Connection
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			s.log.Warn("skipping an unreadable connection record", "key", string(kv.Key), "err", err)
			continue
		}
		conns = append(conns, c)
	}
	return sortConnections(conns), nil
}

// ListConnections returns the live connections of a tunnel (by ID or live name).
func (s *Service) ListConnections(ctx context.Context, tunnelID string) ([]control.Connection, error) {
	rec, _, err := s.resolve(ctx, tunnelID)
	if err != nil {
		return nil, err
	}
	return s.connections(ctx, rec.ID)
}

// DeleteTunnel soft-deletes a tunnel (by ID or live name): its record keeps
// DeletedAt, its name is freed and its routes are removed, in one transaction.
// If it has live connections, it fails with ErrTunnelConnected unless force,
// which also removes the connection records so edges drop them.
func (s *Service) DeleteTunnel(ctx context.Context, id string, force bool) error {
	for range maxTxnAttempts {
		rec, rev, err := s.resolve(ctx, id)
		if err != nil {
			return err
		}
		if rec.DeletedAt != nil {
			return control.Errorf(control.ErrNotFound, "tunnel %s (%s) is already deleted", rec.ID, rec.Name)
		}
		tunnelKey, nameKey, connPrefix := store.TunnelKey(rec.ID), store.TunnelNameKey(rec.Name), store.TunnelConnectionsPrefix(rec.ID)
		read, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(connPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()),
			clientv3.OpGet(store.RoutesPrefix, clientv3.WithPrefix()),
			clientv3.OpGet(nameKey),
		).Commit()
		if err != nil {
			return etcdError("delete tunnel", err)
		}
		readRev := read.Header.Revision
		if n := read.Responses[0].GetResponseRange().GetCount(); n > 0 && !force {
			return control.Errorf(control.ErrTunnelConnected, "tunnel %s (%s) has %d live connection(s); stop its connectors, or force the delete", rec.ID, rec.Name, n)
		}

		deleted := now()
		rec.DeletedAt = &deleted
		val, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("control: delete tunnel: %w", err)
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(tunnelKey), "=", rev),
			// No route appeared or changed since the read (one could point here).
			clientv3.Compare(clientv3.ModRevision(store.RoutesPrefix), "<", readRev+1).WithPrefix(),
		}
		ops := []clientv3.Op{clientv3.OpPut(tunnelKey, string(val))}
		if force {
			ops = append(ops, clientv3.OpDelete(connPrefix, clientv3.WithPrefix()))
		} else {
			// Still no connection.
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(connPrefix), "<", readRev+1).WithPrefix())
		}
		if kvs := read.Responses[2].GetResponseRange().GetKvs(); len(kvs) > 0 && string(kvs[0].Value) == rec.ID {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(nameKey), "=", kvs[0].ModRevision))
			ops = append(ops, clientv3.OpDelete(nameKey))
		}
		var routes []string
		for _, kv := range read.Responses[1].GetResponseRange().GetKvs() {
			var r control.Route
			if err := json.Unmarshal(kv.Value, &r); err == nil && r.TunnelID == rec.ID {
				routes = append(routes, r.Hostname)
				ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			}
		}
		ops = append(ops, deleteConfigOps(rec.ID)...) // tunnelconfig.go
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return etcdError("delete tunnel", err)
		}
		if resp.Succeeded {
			s.log.Info("tunnel deleted", "tunnel", rec.ID, "name", rec.Name, "force", force, "routes_removed", routes)
			s.deleteTunnelTCPRoutes(ctx, rec.ID)
			return nil
		}
	}
	return fmt.Errorf("control: delete tunnel %s: it kept changing under %d attempts; try again", id, maxTxnAttempts)
}

// CleanupTunnel removes the connection records of a tunnel (by ID or live
// name); the edges holding them then close them.
func (s *Service) CleanupTunnel(ctx context.Context, id string) error {
	rec, _, err := s.resolve(ctx, id)
	if err != nil {
		return err
	}
	resp, err := s.cli.Delete(ctx, store.TunnelConnectionsPrefix(rec.ID), clientv3.WithPrefix())
	if err != nil {
		return etcdError("cleanup tunnel", err)
	}
	s.log.Info("tunnel connections cleaned up", "tunnel", rec.ID, "connections", resp.Deleted)
	return nil
}

// RouteDNS routes hostname to a live tunnel (by ID or name). Routing a hostname
// to the tunnel it already goes to returns the existing route. If it goes to
// another tunnel: ErrConflict, unless overwrite.
func (s *Service) RouteDNS(ctx context.Context, tunnelID, hostname string, overwrite bool) (control.Route, error) {
	host, err := control.ValidateHostname(hostname)
	if err != nil {
		return control.Route{}, err
	}
	key := store.RouteKey(host)
	for range maxTxnAttempts {
		rec, rev, err := s.resolve(ctx, tunnelID)
		if err != nil {
			return control.Route{}, err
		}
		if rec.DeletedAt != nil {
			return control.Route{}, control.Errorf(control.ErrNotFound, "tunnel %s (%s) is deleted", rec.ID, rec.Name)
		}
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return control.Route{}, etcdError("route", err)
		}
		var routeRev int64
		if len(resp.Kvs) > 0 {
			var old control.Route
			if err := json.Unmarshal(resp.Kvs[0].Value, &old); err == nil {
				if old.TunnelID == rec.ID {
					return old, nil
				}
				if !overwrite {
					return control.Route{}, control.Errorf(control.ErrConflict, "%s is already routed to tunnel %s; overwrite to move it", host, old.TunnelID)
				}
			}
			routeRev = resp.Kvs[0].ModRevision
		}
		r := control.Route{Hostname: host, TunnelID: rec.ID, CreatedAt: now()}
		val, err := json.Marshal(r)
		if err != nil {
			return control.Route{}, fmt.Errorf("control: route: %w", err)
		}
		// The tunnel was not deleted and nobody else routed host meanwhile.
		txn, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(store.TunnelKey(rec.ID)), "=", rev),
			clientv3.Compare(clientv3.ModRevision(key), "=", routeRev),
		).Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return control.Route{}, etcdError("route", err)
		}
		if txn.Succeeded {
			s.log.Info("route set", "hostname", host, "tunnel", rec.ID)
			return r, nil
		}
	}
	return control.Route{}, fmt.Errorf("control: route %s: it kept changing under %d attempts; try again", host, maxTxnAttempts)
}

// ListRoutes lists every route, by hostname.
func (s *Service) ListRoutes(ctx context.Context) ([]control.Route, error) {
	resp, err := s.cli.Get(ctx, store.RoutesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdError("list routes", err)
	}
	routes := make([]control.Route, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r control.Route
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			s.log.Warn("skipping an unreadable route record", "key", string(kv.Key), "err", err)
			continue
		}
		routes = append(routes, r)
	}
	slices.SortFunc(routes, func(a, b control.Route) int { return cmp.Compare(a.Hostname, b.Hostname) })
	return routes, nil
}

// DeleteRoute removes the route for hostname; ErrNotFound if there is none.
func (s *Service) DeleteRoute(ctx context.Context, hostname string) error {
	host, err := control.ValidateHostname(hostname)
	if err != nil {
		return err
	}
	resp, err := s.cli.Delete(ctx, store.RouteKey(host))
	if err != nil {
		return etcdError("delete route", err)
	}
	if resp.Deleted == 0 {
		return control.Errorf(control.ErrNotFound, "no route for %s", host)
	}
	s.log.Info("route deleted", "hostname", host)
	return nil
}
