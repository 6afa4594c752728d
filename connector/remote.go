package connector

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/tunnel"
)

// Remote configuration (Config.RemoteConfig): the edge sends the tunnel's
// configuration on every connection's control stream, at registration and
// on each new version (tunnel.ConfigUpdate). The first connection to get a
// version applies it the way a reload of a config file does (SetIngress:
// new requests take the new rules, requests in flight finish on the old
// ones); every connection answers with the version in effect
// (tunnel.ConfigResult), so the edge can show it. A version that cannot be
// applied here (it does not parse with this connector's rules, or names a
// unix socket that does not exist) is reported with the reason, and the
// previous version stays in effect.
//
// A connector with a local config file (Config.LocalConfig) announces the
// feature too, so the edge tells it that the tunnel has a remote
// configuration; it logs once that it ignores it and answers Local.

// remoteState is the remote configuration in effect.
type remoteState struct {
	mu      sync.Mutex
	version int64  // applied; 0: none yet
	failed  int64  // the newest version that could not be applied
	err     string // why
	warned  bool   // the local-config warning was logged

	failures prometheus.Counter
}

// maxConfigResultError bounds the reason sent to the edge, well within its
// control frame limit.
const maxConfigResultError = 2000

// readControl reads the edge's control messages after registration until
// the stream ends, answering each configuration and taking the fleet's
// edges and goaways (edges.go).
func (c *Connector) readControl(ctrl *control, addr string, log *slog.Logger) {
	for {
		t, p, err := tunnel.ReadFrame(ctrl.r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				log.Debug("control stream ended", "err", err)
			}
			return
		}
		switch t {
		case tunnel.FrameEdges, tunnel.FrameGoAway:
			c.fleetFrame(t, p, addr, log) // fleet.go
			continue
		case tunnel.FrameConfig:
		default:
			continue // disconnect and frames of later versions: nothing to do here
		}
		var m tunnel.ConfigUpdate
		if err := tunnel.DecodeMessage(p, &m); err != nil {
			log.Warn("bad config frame from the edge", "err", err)
			continue
		}
		res := c.configUpdate(&m, log)
		if err := ctrl.write(&res); err != nil {
			return
		}
	}
}

// configUpdate applies m if it is newer than what runs and answers with the
// version in effect.
func (c *Connector) configUpdate(m *tunnel.ConfigUpdate, log *slog.Logger) tunnel.ConfigResult {
	st := &c.remote
	st.mu.Lock()
	defer st.mu.Unlock()
	if !c.cfg.RemoteConfig {
		if !st.warned {
			st.warned = true
			c.log.Warn("the tunnel has a remote configuration on the edge; ignoring it: this connector runs from its local config",
				"remote_version", m.Version, "config", c.cfg.LocalConfig)
		}
		return tunnel.ConfigResult{Local: true}
	}
	if m.Version > st.version && m.Version != st.failed {
		ing, err := parseRemoteConfig(m.Document)
		if err == nil {
			err = c.SetIngress(ing)
		}
		if err != nil {
			st.failed, st.err = m.Version, err.Error()
			st.failures.Inc()
			if len(st.err) > maxConfigResultError {
				st.err = st.err[:maxConfigResultError]
			}
			c.log.Error("configuration not applied; keeping the one in effect", "version", m.Version, "in_effect", st.version, "err", err)
		} else {
			st.version = m.Version
			if st.failed < st.version {
				st.failed, st.err = 0, ""
			}
			c.log.Info("configuration applied", "version", m.Version, "rules", len(ing.Rules))
		}
	}
	return tunnel.ConfigResult{Version: st.version, FailedVersion: st.failed, Error: st.err}
}

// ConfigVersion is the version of the remote configuration in effect; 0 if
// none (or Config.RemoteConfig is off).
func (c *Connector) ConfigVersion() int64 {
	c.remote.mu.Lock()
	defer c.remote.mu.Unlock()
	return c.remote.version
}

// parseRemoteConfig validates a configuration document as a config file
// is, and checks that its unix sockets exist: unlike a local file, which
// may be written before its origin starts, a remote version is refused
// here and reported, so the edge shows what this machine lacks.
func parseRemoteConfig(doc []byte) (*ingress.Ingress, error) {
	cfg, err := ingress.Parse(doc)
	if err != nil {
		return nil, err
	}
	ing, err := ingress.New(cfg)
	if err != nil {
		return nil, err
	}
	for i, r := range ing.Rules {
		if r.Service.Kind != ingress.KindUnix && r.Service.Kind != ingress.KindUnixTLS {
			continue
		}
		if fi, err := os.Stat(r.Service.SocketPath); err != nil {
			return nil, fmt.Errorf("rule %d: service %q: %w", i+1, r.Service.String(), err)
		} else if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("rule %d: service %q: %s is not a unix socket", i+1, r.Service.String(), r.Service.SocketPath)
		}
	}
	return ing, nil
}

// registerRemoteMetrics adds the remote configuration's metrics to the
// connector's registry (see metrics.go):
//
//	adit_connector_config_version            the remote configuration version in effect (0: none)
//	adit_connector_config_failures_total     versions the connector could not apply
func (c *Connector) registerRemoteMetrics() {
	c.remote.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "adit_connector_config_failures_total",
		Help: "Versions of the tunnel's remote configuration this connector could not apply.",
	})
	c.metrics.registry.MustRegister(c.remote.failures, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "adit_connector_config_version",
		Help: "The version of the tunnel's remote configuration in effect; 0 if none.",
	}, func() float64 { return float64(c.ConfigVersion()) }))
}

// features are what registerConn announces.
func (c *Connector) features() []string {
	f := []string{tunnel.FeatureFleet} // edges.go
	if c.cfg.RemoteConfig || c.cfg.LocalConfig != "" {
		f = append(f, tunnel.FeatureRemoteConfig)
	}
	return f
}

// write sends m on the control stream; writes from the reader and the
// drain do not interleave.
func (ctrl *control) write(m tunnel.Message) error {
	ctrl.wmu.Lock()
	defer ctrl.wmu.Unlock()
	return tunnel.WriteMessage(ctrl.s, m)
}
