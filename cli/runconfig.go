package cli

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/logs"
)

// A config.yml's top level, as `tunnel run --config` takes it.
//
// Every top-level key cloudflared reads is handled one of three ways, listed
// in runKeys: used (a flag's value when the flag is not given on the command
// line; the command line wins), accepted as a no-op where that is what it
// means for adit (no-autoupdate: adit never updates itself), or refused by
// name with the reason when adit does not implement it, so that a config
// never asks for something that silently does not happen.

// runKey is what `tunnel run` does with one top-level key.
type runKey struct {
	// flag is the run flag the key sets when the command line does not
	// (a persistent flag for loglevel). Empty: not a flag.
	flag string
	// use applies the key's value; nil for keys read elsewhere or no-ops.
	use func(s *runSettings, cfg *ingress.Config) error
	// refuse returns why the key's value cannot be honoured, or "".
	refuse func(cfg *ingress.Config) string
	// note is logged at start when the key is set: why it changes nothing.
	note string
}

// runKeys covers every yaml key of ingress.Config (a test checks that).
var runKeys = map[string]runKey{
	// Read by runTunnel and loadRunCredentials, or the ingress rules.
	"tunnel": {}, "credentials-file": {}, "ingress": {}, "originRequest": {}, "url": {}, "hello-world": {},

	"protocol": {flag: "protocol", use: func(s *runSettings, cfg *ingress.Config) error {
		switch cfg.Protocol {
		case "http2": // cloudflared's TCP transport; adit's is WebSocket
			s.f.protocol = connector.ProtocolWebSocket
			s.notes = append(s.notes, "config: protocol http2 is cloudflared's TCP transport; adit uses its own, websocket")
		default:
			s.f.protocol = cfg.Protocol
		}
		return nil
	}},
	"ha-connections": {flag: "ha-connections", use: func(s *runSettings, cfg *ingress.Config) error {
		s.f.haConnections = cfg.HAConnections
		return nil
	}},
	"grace-period": {flag: "grace-period", use: func(s *runSettings, cfg *ingress.Config) error {
		s.f.gracePeriod = time.Duration(cfg.GracePeriod)
		return nil
	}},
	"metrics": {flag: "metrics", use: func(s *runSettings, cfg *ingress.Config) error {
		s.f.metricsAddr = cfg.Metrics
		return nil
	}},
	"loglevel": {flag: "loglevel", use: func(s *runSettings, cfg *ingress.Config) error {
		s.g.LogLevel = cfg.LogLevel
		if cfg.LogLevel == "fatal" { // adit has no level above error
			s.g.LogLevel = "error"
		}
		return nil
	}},
	"logfile": {flag: "logfile", use: func(s *runSettings, cfg *ingress.Config) error {
		s.f.logFile = cfg.LogFile
		return nil
	}},
	"region": {flag: "region", use: func(s *runSettings, cfg *ingress.Config) error {
		s.f.region = cfg.Region
		return nil
	}},
	"pidfile": {flag: "pidfile", use: func(s *runSettings, cfg *ingress.Config) error {
		s.f.pidFile = cfg.PIDFile
		return nil
	}},

	"no-autoupdate":   {note: "config: no-autoupdate changes nothing: adit never updates itself"},
	"autoupdate-freq": {note: "config: autoupdate-freq changes nothing: adit never updates itself"},
	"origincert": {note: "config: origincert is not used: adit runs a tunnel from its credentials file or token, " +
		"and keeps its API login in $ADIT_HOME/cert.json (adit login)"},

	"edge-ip-version": {refuse: func(cfg *ingress.Config) string {
		if cfg.EdgeIPVersion == "4" || cfg.EdgeIPVersion == "6" {
			return "not implemented: adit dials each edge address as the system resolves it; " +
				"name an IPv" + cfg.EdgeIPVersion + " address with --edge, or set auto"
		}
		return ""
	}},
	"edge-bind-address": {refuse: func(cfg *ingress.Config) string {
		return "not implemented: the system picks the local address to dial the edge from"
	}},
	"retries": {refuse: func(cfg *ingress.Config) string {
		return "not implemented: adit retries a lost edge connection until it is stopped " +
			"(backing off from 1s to 30s; a refused secret or deleted tunnel ends it at once)"
	}},
	"post-quantum": {refuse: func(cfg *ingress.Config) string {
		if cfg.PostQuantum {
			return "not implemented: a post-quantum-only handshake; adit's TLS already offers " +
				"the hybrid X25519MLKEM768 key exchange first"
		}
		return ""
	}},
	"tag": {refuse: func(cfg *ingress.Config) string {
		return "not implemented: connectors report no tags to the edge"
	}},
	"transport-loglevel": {refuse: func(cfg *ingress.Config) string {
		return "not implemented: the transports log at loglevel"
	}},
	"log-directory": {refuse: func(cfg *ingress.Config) string {
		return "not implemented: name a file with logfile instead"
	}},
	"warp-routing": {refuse: func(cfg *ingress.Config) string {
		if cfg.WarpRouting.Enabled {
			return "not implemented: adit does not route private networks (WARP); " +
				"reach TCP services with bastion, socks-proxy or tcp:// rules instead, and set enabled: false"
		}
		return ""
	}},
}

// runSettings is what applyRunConfig changes.
type runSettings struct {
	g     *Env
	f     *runFlags
	notes []string // logged once the logger is set up
}

// applyRunConfig refuses the top-level keys of cfg (read from path) that adit
// does not implement and sets, from the others, every run flag the command
// line did not set (f.set reports which it did).
func applyRunConfig(g *Env, f *runFlags, path string, cfg *ingress.Config) (notes []string, err error) {
	s := &runSettings{g: g, f: f}
	v, t := reflect.ValueOf(cfg).Elem(), reflect.TypeFor[ingress.Config]()
	for i := range t.NumField() {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if v.Field(i).IsZero() {
			continue
		}
		k, ok := runKeys[key]
		switch {
		case !ok:
			return nil, fmt.Errorf("tunnel run: %s: %s: not implemented by adit", path, key)
		case k.refuse != nil:
			if why := k.refuse(cfg); why != "" {
				return nil, fmt.Errorf("tunnel run: %s: %s: %s", path, key, why)
			}
		case k.use != nil:
			if f.set == nil || !f.set(k.flag) {
				if err := k.use(s, cfg); err != nil {
					return nil, err
				}
			}
		case k.note != "":
			s.notes = append(s.notes, k.note)
		}
	}
	return s.notes, nil
}

// openLogFile sends the logs to path as well as to stderr, as cloudflared's
// logfile does; the file is created 0600 and appended to.
func openLogFile(g *Env, path string) (io.Closer, error) {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tunnel run: logfile: %w", err)
	}
	g.Stderr = io.MultiWriter(g.Stderr, fh)
	return fh, nil
}

// writePIDFile writes the process ID to path once the connector has its
// first connection, as cloudflared does. It returns at once (a write error
// is logged); stop removes the file if it was written.
func writePIDFile(g *Env, path string, c *connector.Connector) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	wrote := false
	go func() {
		defer close(finished)
		select {
		case <-c.Ready():
		case <-done:
			return
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			logs.Component(g.Logger(), "connector").Error("pidfile not written", "err", err)
			return
		}
		wrote = true
	}()
	return func() {
		close(done)
		<-finished
		if wrote {
			os.Remove(path)
		}
	}
}
