package controlserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/tunnel"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A tunnel's remote configuration: versioned documents in etcd (see
// internal/store/configkeys.go), validated here exactly as `adit tunnel ingress
// validate` validates a file, pushed to connectors by the edge
// (edge/tunnelconfig.go).

// ConfigRecord is one stored version of a tunnel's configuration.
type ConfigRecord struct {
	TunnelID  string    `json:"tunnel_id"`
	Version   int64     `json:"version"`
	YAML      string    `json:"yaml"`
	Change    string    `json:"change"`
	Rules     int       `json:"rules"`
	CreatedAt time.Time `json:"created_at"`
}

// remoteKeys are the top-level keys a remote configuration may have: the
// rules and their options. The others configure the connector process and
// are set where it runs.
var remoteKeys = []string{"ingress", "originRequest", "warp-routing"}

// ParseTunnelConfig validates a remote configuration document (YAML, or
// JSON, which is YAML too) with the errors and line numbers of `tunnel
// ingress validate` (ingress.Parse, then ingress.New), and then refuses what
// only a local file may hold: connector settings (protocol, metrics, ...)
// and warp-routing's enabled. Its errors are ErrInvalid.
func ParseTunnelConfig(doc []byte) (*ingress.Config, error) {
	if len(doc) > tunnel.MaxConfigDocument {
		return nil, control.Errorf(control.ErrInvalid, "the configuration is %d bytes, the limit is %d", len(doc), tunnel.MaxConfigDocument)
	}
	invalid := func(err error) error { return &kindMsg{kind: control.ErrInvalid, msg: err.Error()} }
	cfg, err := ingress.Parse(doc)
	if err != nil {
		return nil, invalid(err)
	}
	if _, err := ingress.New(cfg); err != nil {
		return nil, invalid(err)
	}
	var root yaml.Node
	if yaml.Unmarshal(doc, &root) == nil && len(root.Content) > 0 && root.Content[0].Kind == yaml.MappingNode {
		m := root.Content[0].Content
		for i := 0; i+1 < len(m); i += 2 {
			if k := m[i].Value; !slices.Contains(remoteKeys, k) {
				return nil, invalid(fmt.Errorf("ingress: %s: set where the connector runs, not in the tunnel's remote configuration (which holds %s) (line %d)",
					k, strings.Join(remoteKeys, ", "), m[i].Line))
			}
		}
	}
	if cfg.WarpRouting.Enabled {
		return nil, invalid(errors.New("ingress: warp-routing: enabled: not implemented: adit does not route private networks (WARP)"))
	}
	return cfg, nil
}

// kindMsg is an error of a sentinel kind whose message is shown as is
// (control.Errorf would prefix "control: ", which the validator's messages
// do not carry).
type kindMsg struct {
	kind error
	msg  string
}

func (e *kindMsg) Error() string { return e.msg }
func (e *kindMsg) Unwrap() error { return e.kind }

// SetTunnelConfig validates and stores a new version of a tunnel's (by ID or
// name) configuration: req.YAML as given, or req.Config (Cloudflare's JSON
// shape) as YAML.
func (s *Service) SetTunnelConfig(ctx context.Context, tunnelRef string, req control.TunnelConfigRequest) (control.TunnelConfig, error) {
	var doc []byte
	switch {
	case req.YAML != "" && len(req.Config) > 0:
		return control.TunnelConfig{}, control.Errorf(control.ErrInvalid, "give the configuration as yaml or as config, not both")
	case req.YAML != "":
		doc = []byte(req.YAML)
	case len(req.Config) > 0 && string(req.Config) != "null":
		doc = req.Config
	default:
		return control.TunnelConfig{}, control.Errorf(control.ErrInvalid, "no configuration: give yaml (a config.yml) or config (its JSON form)")
	}
	cfg, err := ParseTunnelConfig(doc)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	if req.YAML == "" { // stored as YAML, like every version
		if doc, err = yaml.Marshal(cfg); err != nil {
			return control.TunnelConfig{}, fmt.Errorf("control: set configuration: %w", err)
		}
	}
	return s.storeConfig(ctx, tunnelRef, "set", func(*ConfigRecord) ([]byte, error) { return doc, nil })
}

// storeConfig stores the document build returns (given the newest version,
// or nil) as the tunnel's next version, retrying when another writer got
// there first.
func (s *Service) storeConfig(ctx context.Context, tunnelRef, change string, build func(cur *ConfigRecord) ([]byte, error)) (control.TunnelConfig, error) {
	for range maxTxnAttempts {
		rec, rev, err := s.resolve(ctx, tunnelRef)
		if err != nil {
			return control.TunnelConfig{}, err
		}
		if rec.DeletedAt != nil {
			return control.TunnelConfig{}, control.Errorf(control.ErrNotFound, "tunnel %s (%s) is deleted", rec.ID, rec.Name)
		}
		cur, curRev, err := s.latestConfig(ctx, rec.ID)
		if err != nil {
			return control.TunnelConfig{}, err
		}
		doc, err := build(cur)
		if err != nil {
			return control.TunnelConfig{}, err
		}
		cfg, err := ParseTunnelConfig(doc)
		if err != nil {
			return control.TunnelConfig{}, err
		}
		next := ConfigRecord{TunnelID: rec.ID, Version: 1, YAML: string(doc), Change: change, Rules: len(cfg.Ingress), CreatedAt: now()}
		if cur != nil {
			next.Version = cur.Version + 1
		}
		val, err := json.Marshal(next)
		if err != nil {
			return control.TunnelConfig{}, fmt.Errorf("control: store configuration: %w", err)
		}
		latest := store.TunnelConfigLatestKey(rec.ID)
		ops := []clientv3.Op{clientv3.OpPut(latest, string(val)), clientv3.OpPut(store.TunnelConfigVersionKey(rec.ID, next.Version), string(val))}
		if keep := next.Version - control.MaxConfigHistory; keep > 0 {
			ops = append(ops, clientv3.OpDelete(store.TunnelConfigVersionKey(rec.ID, 0),
				clientv3.WithRange(store.TunnelConfigVersionKey(rec.ID, keep+1))))
		}
		txn, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(store.TunnelKey(rec.ID)), "=", rev),
			clientv3.Compare(clientv3.ModRevision(latest), "=", curRev),
		).Then(ops...).Commit()
		if err != nil {
			return control.TunnelConfig{}, etcdError("store configuration", err)
		}
		if txn.Succeeded {
			s.log.Info("tunnel configuration stored", "tunnel", rec.ID, "version", next.Version, "change", change)
			return next.api(true), nil
		}
	}
	return control.TunnelConfig{}, fmt.Errorf("control: tunnel %s: its configuration kept changing under %d attempts; try again", tunnelRef, maxTxnAttempts)
}

// latestConfig returns the newest configuration of a tunnel and the
// revision of its key; nil, 0 if it has none.
func (s *Service) latestConfig(ctx context.Context, tunnelID string) (*ConfigRecord, int64, error) {
	resp, err := s.cli.Get(ctx, store.TunnelConfigLatestKey(tunnelID))
	if err != nil {
		return nil, 0, etcdError("read configuration", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	var r ConfigRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return nil, 0, fmt.Errorf("control: tunnel %s: unreadable configuration record: %w", tunnelID, err)
	}
	return &r, resp.Kvs[0].ModRevision, nil
}

// GetTunnelConfig returns a version of a tunnel's configuration, the newest
// if version is 0.
func (s *Service) GetTunnelConfig(ctx context.Context, tunnelRef string, version int64) (control.TunnelConfig, error) {
	rec, _, err := s.resolve(ctx, tunnelRef)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	if version == 0 {
		cur, _, err := s.latestConfig(ctx, rec.ID)
		if err != nil {
			return control.TunnelConfig{}, err
		}
		if cur == nil {
			return control.TunnelConfig{}, control.Errorf(control.ErrNotFound, "tunnel %s has no remote configuration; set one with `adit tunnel ingress set` or `adit tunnel publish`", rec.Name)
		}
		return cur.api(true), nil
	}
	resp, err := s.cli.Get(ctx, store.TunnelConfigVersionKey(rec.ID, version))
	if err != nil {
		return control.TunnelConfig{}, etcdError("read configuration", err)
	}
	if len(resp.Kvs) == 0 {
		return control.TunnelConfig{}, control.Errorf(control.ErrNotFound, "tunnel %s has no configuration version %d (the newest %d versions are kept)", rec.Name, version, control.MaxConfigHistory)
	}
	var r ConfigRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return control.TunnelConfig{}, fmt.Errorf("control: tunnel %s: unreadable configuration record: %w", rec.ID, err)
	}
	return r.api(true), nil
}

// TunnelConfigHistory lists the kept versions of a tunnel's configuration,
// newest first, without their content.
func (s *Service) TunnelConfigHistory(ctx context.Context, tunnelRef string) ([]control.TunnelConfig, error) {
	rec, _, err := s.resolve(ctx, tunnelRef)
	if err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, store.TunnelConfigHistoryKeys(rec.ID), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		return nil, etcdError("read configuration history", err)
	}
	out := make([]control.TunnelConfig, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r ConfigRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			s.log.Warn("skipping an unreadable configuration record", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, r.api(false))
	}
	return out, nil
}

// RollbackTunnelConfig stores the content of an earlier version as the
// newest version.
func (s *Service) RollbackTunnelConfig(ctx context.Context, tunnelRef string, version int64) (control.TunnelConfig, error) {
	if version < 1 {
		return control.TunnelConfig{}, control.Errorf(control.ErrInvalid, "version %d: versions count from 1", version)
	}
	old, err := s.GetTunnelConfig(ctx, tunnelRef, version)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	return s.storeConfig(ctx, tunnelRef, fmt.Sprintf("rollback to %d", version), func(*ConfigRecord) ([]byte, error) {
		return []byte(old.YAML), nil
	})
}

// Publish routes req.Hostname to the tunnel and adds a rule for it in front
// of the catch-all (replacing a rule with the same hostname and path), as a
// new version. A tunnel without a configuration gets one ending in
// http_status:404.
func (s *Service) Publish(ctx context.Context, tunnelRef string, req control.PublishRequest) (control.TunnelConfig, error) {
	host, err := control.ValidateHostname(req.Hostname)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	if req.Service == "" {
		return control.TunnelConfig{}, control.Errorf(control.ErrInvalid, "publish %s: no service given (like http://localhost:8000)", host)
	}
	rule := ingress.RuleConfig{Hostname: host, Path: req.Path, Service: req.Service}
	build := func(cur *ConfigRecord) ([]byte, error) {
		cfg, err := currentConfig(cur)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(cfg.Ingress, func(r ingress.RuleConfig) bool {
			return strings.EqualFold(r.Hostname, host) && r.Path == req.Path
		})
		switch {
		case i >= 0:
			rule.OriginRequest = cfg.Ingress[i].OriginRequest
			cfg.Ingress[i] = rule
		case len(cfg.Ingress) == 0:
			cfg.Ingress = []ingress.RuleConfig{rule, {Service: "http_status:404"}}
		default:
			cfg.Ingress = slices.Insert(cfg.Ingress, len(cfg.Ingress)-1, rule)
		}
		return yaml.Marshal(cfg)
	}
	// Validate before routing, so a bad service routes nothing.
	rec, _, err := s.resolve(ctx, tunnelRef)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	cur, _, err := s.latestConfig(ctx, rec.ID)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	doc, err := build(cur)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	if _, err := ParseTunnelConfig(doc); err != nil {
		return control.TunnelConfig{}, err
	}
	if _, err := s.RouteDNS(ctx, rec.ID, host, false); err != nil {
		return control.TunnelConfig{}, err
	}
	return s.storeConfig(ctx, rec.ID, "publish "+host, build)
}

// Unpublish removes the rules for hostname from the tunnel's configuration
// (a new version) and its route, if the route is to this tunnel.
func (s *Service) Unpublish(ctx context.Context, tunnelRef, hostname string) (control.TunnelConfig, error) {
	host, err := control.ValidateHostname(hostname)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	rec, _, err := s.resolve(ctx, tunnelRef)
	if err != nil {
		return control.TunnelConfig{}, err
	}
	tc, err := s.storeConfig(ctx, rec.ID, "unpublish "+host, func(cur *ConfigRecord) ([]byte, error) {
		cfg, err := currentConfig(cur)
		if err != nil {
			return nil, err
		}
		n := len(cfg.Ingress)
		cfg.Ingress = slices.DeleteFunc(cfg.Ingress, func(r ingress.RuleConfig) bool { return strings.EqualFold(r.Hostname, host) })
		if len(cfg.Ingress) == n {
			return nil, control.Errorf(control.ErrNotFound, "%s is not published on tunnel %s", host, rec.Name)
		}
		return yaml.Marshal(cfg)
	})
	if err != nil {
		return control.TunnelConfig{}, err
	}
	resp, err := s.cli.Get(ctx, store.RouteKey(host))
	if err != nil {
		return tc, etcdError("read route", err)
	}
	if len(resp.Kvs) > 0 {
		var r control.Route
		if json.Unmarshal(resp.Kvs[0].Value, &r) == nil && r.TunnelID == rec.ID {
			if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(store.RouteKey(host)), "=", resp.Kvs[0].ModRevision)).
				Then(clientv3.OpDelete(store.RouteKey(host))).Commit(); err != nil {
				return tc, etcdError("delete route", err)
			}
			s.log.Info("route deleted", "hostname", host)
		}
	}
	return tc, nil
}

// deleteConfigOps delete every version of a tunnel's configuration, as
// deleting the tunnel does.
func deleteConfigOps(tunnelID string) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpDelete(store.TunnelConfigLatestKey(tunnelID)),
		clientv3.OpDelete(store.TunnelConfigHistoryKeys(tunnelID), clientv3.WithPrefix()),
	}
}

// currentConfig parses the newest stored version; an empty Config if none.
func currentConfig(cur *ConfigRecord) (*ingress.Config, error) {
	if cur == nil {
		return &ingress.Config{}, nil
	}
	cfg, err := ingress.Parse([]byte(cur.YAML))
	if err != nil {
		return nil, fmt.Errorf("control: the stored version %d no longer parses: %w", cur.Version, err)
	}
	return cfg, nil
}

// api returns r as the API shows it, with its content if full.
func (r ConfigRecord) api(full bool) control.TunnelConfig {
	tc := control.TunnelConfig{TunnelID: r.TunnelID, Version: r.Version, Source: "adit", Change: r.Change, Rules: r.Rules, CreatedAt: r.CreatedAt}
	if full {
		tc.YAML = r.YAML
		tc.Config = configJSON([]byte(r.YAML))
	}
	return tc
}

// configJSON converts a YAML document to JSON (anchors and merge keys
// resolved); "{}" if it cannot.
func configJSON(doc []byte) json.RawMessage {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil || v == nil {
		return json.RawMessage("{}")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("{}")
	}
	return b
}
