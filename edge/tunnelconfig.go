package edge

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/tunnel"
)

// Remote configuration: the newest configuration version of every tunnel
// (stored by controlserver's SetTunnelConfig, Publish, ...) is watched into
// memory and pushed on the control stream of every connection whose
// connector announced tunnel.FeatureRemoteConfig: right after it registers,
// and again on each new version. What the connector answers (the version it
// runs, or why it could not apply one) goes into the connection's presence
// record, which `tunnel info` shows.

// configDoc is a tunnel's newest configuration.
type configDoc struct {
	version int64
	yaml    []byte
}

// tunnelConfigs holds the newest configuration of every tunnel that has one.
type tunnelConfigs struct {
	mu     sync.RWMutex
	latest map[string]configDoc // tunnel ID → newest
}

func (c *tunnelConfigs) get(tunnelID string) (configDoc, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, ok := c.latest[tunnelID]
	return d, ok
}

// put records d unless a newer version is known; it reports whether it did.
func (c *tunnelConfigs) put(tunnelID string, d configDoc) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.latest[tunnelID]; ok && old.version >= d.version {
		return false
	}
	c.latest[tunnelID] = d
	return true
}

func (c *tunnelConfigs) drop(tunnelID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.latest, tunnelID)
}

// decodeConfigRecord reads a latest-configuration record.
func decodeConfigRecord(val []byte) (string, configDoc, bool) {
	var r controlserver.ConfigRecord
	if err := json.Unmarshal(val, &r); err != nil || r.TunnelID == "" || r.Version < 1 {
		return "", configDoc{}, false
	}
	return r.TunnelID, configDoc{version: r.Version, yaml: []byte(r.YAML)}, true
}

// watchConfigs loads every tunnel's newest configuration and starts the
// goroutine that keeps them current and pushes new versions to connectors.
func (s *Server) watchConfigs(ctx context.Context, cli *clientv3.Client) error {
	s.configs = &tunnelConfigs{latest: make(map[string]configDoc)}
	rev, err := s.loadConfigs(ctx, cli)
	if err != nil {
		return err
	}
	s.spawn(func() {
		for s.ctx.Err() == nil {
			rev = s.followConfigs(cli, rev)
			select {
			case <-s.ctx.Done():
			case <-time.After(time.Second):
				if r, err := s.loadConfigs(s.ctx, cli); err == nil {
					rev = r
				}
			}
		}
	})
	return nil
}

// loadConfigs reads every newest configuration and pushes those that are
// new to this edge; it returns the revision read.
func (s *Server) loadConfigs(ctx context.Context, cli *clientv3.Client) (int64, error) {
	resp, err := cli.Get(ctx, store.TunnelConfigLatestPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	for _, kv := range resp.Kvs {
		s.configChanged(kv.Value)
	}
	return resp.Header.Revision, nil
}

// followConfigs watches the newest configurations from rev on, until the
// watch fails or the server stops; it returns the last revision seen.
func (s *Server) followConfigs(cli *clientv3.Client, rev int64) int64 {
	wch := cli.Watch(clientv3.WithRequireLeader(s.ctx), store.TunnelConfigLatestPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			s.log.Warn("configuration watch failed; reloading", "err", err)
			return rev
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				s.configs.drop(strings.TrimPrefix(string(ev.Kv.Key), store.TunnelConfigLatestPrefix))
				continue
			}
			s.configChanged(ev.Kv.Value)
		}
		rev = wr.Header.Revision
	}
	return rev
}

// configChanged records a newest-configuration record and pushes it to the
// tunnel's connections on this edge.
func (s *Server) configChanged(val []byte) {
	id, doc, ok := decodeConfigRecord(val)
	if !ok {
		s.log.Warn("skipping an unreadable configuration record")
		return
	}
	if !s.configs.put(id, doc) {
		return
	}
	for _, tc := range s.reg.byTunnel(id) {
		if tc.remote != nil {
			s.spawn(func() { s.pushConfig(tc, doc) })
		}
	}
}

// pushConfig sends doc to tc's connector unless it has it already.
func (s *Server) pushConfig(tc *tunnelConn, doc configDoc) {
	if err := tc.remote.send(doc); err != nil {
		s.rl.Logger(s.log).Info("sending the configuration failed", "tunnel", tc.info.TunnelID, "conn", tc.info.ID, "version", doc.version, "err", err)
	}
}

// remoteConn is the remote-configuration side of a connection whose
// connector announced tunnel.FeatureRemoteConfig.
type remoteConn struct {
	mu      sync.Mutex // held while writing to ctrl; register holds it until the answer is sent
	ctrl    io.Writer
	sent    int64 // newest version sent
	pending int   // ConfigUpdates sent and not answered yet
	last    tunnel.ConfigResult
}

// send writes doc as a ConfigUpdate unless a version as new was sent.
func (rc *remoteConn) send(doc configDoc) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if doc.version <= rc.sent {
		return nil
	}
	if err := tunnel.WriteMessage(rc.ctrl, &tunnel.ConfigUpdate{Version: doc.version, Document: doc.yaml}); err != nil {
		return err
	}
	rc.sent = doc.version
	rc.pending++
	return nil
}

// answered takes m as the answer to a ConfigUpdate. It reports whether one
// was waiting for an answer (a connector may not send results unasked: each
// would cost an etcd write) and whether m differs from the last answer.
func (rc *remoteConn) answered(m *tunnel.ConfigResult) (expected, changed bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.pending == 0 {
		return false, false
	}
	rc.pending--
	changed = *m != rc.last
	rc.last = *m
	return true, changed
}

// configResult records what a connector reported about its configuration
// in the connection's presence record, when it changed. It returns false
// for an answer nothing asked for: the caller closes the connection.
func (s *Server) configResult(tc *tunnelConn, m *tunnel.ConfigResult, log *slog.Logger) bool {
	if len(m.Error) > maxConfigError {
		m.Error = m.Error[:maxConfigError] + "…"
	}
	expected, changed := tc.remote.answered(m)
	if !changed {
		return expected
	}
	info := tc.info
	info.ConfigVersion, info.ConfigFailedVersion, info.ConfigError, info.ConfigLocal = m.Version, m.FailedVersion, m.Error, m.Local
	if m.Error != "" {
		log.Warn("connector could not apply the configuration", "version", m.FailedVersion, "runs", m.Version, "err", m.Error)
	}
	if s.reg.get(tc.info.ID) != tc {
		return true // gone; its record with it
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	if err := s.presence.Update(ctx, info); err != nil { // nothing if it is gone meanwhile
		s.rl.Logger(log).Warn("recording the connector's configuration version", "err", err)
	}
	return true
}

// maxConfigError bounds the apply error kept in a connection record.
const maxConfigError = 2048
