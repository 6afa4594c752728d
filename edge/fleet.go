package edge

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// The edge's record in the fleet's registry: a control.EdgeNode at
// store.EdgeKey(node), under the edge's presence lease (the one its
// connections are held by), so it vanishes within Config.LeaseTTL of the
// edge's death, and is put again under a new lease if the old one is lost.
// It is put once the edge serves, again when its health changes, and
// deleted first thing on Close.

// fleetRecord is the edge's registry state beside its addresses.
type fleetRecord struct {
	started time.Time
	health  string // under Server.fleetMu
}

// edgeNode is the edge's registry record as it stands.
func (s *Server) edgeNode() control.EdgeNode {
	s.fleetMu.Lock()
	health := s.fleet.health
	s.fleetMu.Unlock()
	n := control.EdgeNode{
		Name:       s.node,
		Region:     s.cfg.Region,
		Version:    orDefault(s.cfg.Version, "devel"),
		Started:    s.fleet.started,
		HTTPAddr:   s.reachable(s.httpLn.Addr()),
		TunnelAddr: s.registryTunnelAddr,
		APIAddr:    s.reachable(s.apiLn.Addr()),
		PeerAddr:   s.PeerAddr(), // peer.go
		Health:     health,
	}
	n.PublicAddrs = []string{n.HTTPAddr}
	if s.httpsLn != nil {
		n.HTTPSAddr = s.reachable(s.httpsLn.Addr())
		n.PublicAddrs = append(n.PublicAddrs, n.HTTPSAddr)
	}
	return n
}

// tunnelAdvertise picks the tunnel address connectors are given: in
// credentials files and GET /v1/edge, and through the fleet's registry
// by every other edge (the list it sends connectors, DNS's SRV records).
// An address a connector elsewhere can dial is wanted, so the default
// (Config.AdvertiseAddr empty) is the tunnel listener's bound port with
// the first of: the first --public-name (what visitors reach the edge
// by), the tunnel listener's host, the peer link's host (when not
// wildcards). With none of them, "localhost": it serves connectors on
// this machine only, so the registry does not list it (other edges would
// send remote connectors to their own machine), and a warning says what
// to set. An address no connector can dial at all (no host, a wildcard
// host, port 0), even one given, is not listed either, with an error.
// It sets s.registryTunnelAddr, what the registry lists ("" for none).
func (s *Server) tunnelAdvertise() string {
	_, port, _ := net.SplitHostPort(s.tunnelLn.Addr().String())
	addr, listed, why := pickAdvertise(s.cfg, port)
	switch {
	case listed:
		s.registryTunnelAddr = addr
	case why == "":
		s.log.Warn("connectors are given localhost as this edge's tunnel address, which only works on this machine; "+
			"the fleet's registry does not list it: set --advertise HOST:PORT or --public-name", "advertise", addr)
	default:
		s.log.Error("the tunnel address to advertise cannot be dialed by any connector; the fleet's registry does not list it: set --advertise HOST:PORT",
			"advertise", addr, "why", why)
	}
	return addr
}

// pickAdvertise is tunnelAdvertise's choice for cfg and the tunnel
// listener's bound port: the address, whether the registry lists it, and
// why it is unusable ("" if it is, or if it is the localhost fallback).
func pickAdvertise(cfg Config, port string) (addr string, listed bool, why string) {
	addr = cfg.AdvertiseAddr
	if addr == "" {
		host := cmp.Or(firstOf(cfg.PublicNames), specificHost(cfg.TunnelAddr), specificHost(cfg.PeerAddr))
		if host == "" {
			return net.JoinHostPort("localhost", port), false, ""
		}
		addr = net.JoinHostPort(host, port)
	}
	if why := unusableAddr(addr); why != "" {
		return addr, false, why
	}
	return addr, true, ""
}

// unusableAddr says why a connector cannot dial addr, or "".
func unusableAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	switch p, perr := strconv.Atoi(port); {
	case err != nil:
		return err.Error()
	case host == "":
		return "no host"
	case net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified():
		return "a wildcard host (the edge listens on every address; say which one connectors reach)"
	case perr != nil || p <= 0 || p > 65535:
		return "no port"
	}
	return ""
}

// specificHost is the host of a listen address if it names one (not a
// wildcard, not empty), else "".
func specificHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return ""
	}
	return host
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// reachable is a bound address as other machines reach it: as bound if
// the listener has a host of its own, else the advertised host (Config.
// AdvertiseAddr's, or the first public name) with the bound port.
func (s *Server) reachable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return a.String()
	}
	advHost, _, err := net.SplitHostPort(orDefault(s.advertise, s.cfg.AdvertiseAddr))
	if err != nil || advHost == "" {
		advHost = s.names[0]
	}
	return net.JoinHostPort(advHost, port)
}

// registerEdge puts the edge's registry record as it stands.
func (s *Server) registerEdge(ctx context.Context) error {
	val, err := json.Marshal(s.edgeNode())
	if err != nil {
		return fmt.Errorf("edge: registry record: %w", err)
	}
	if err := s.presence.Put(ctx, store.EdgeKey(s.node), string(val)); err != nil {
		return fmt.Errorf("edge: registering in the fleet: %w", err)
	}
	return nil
}

// unregisterEdge withdraws the edge's registry record (Close), best effort:
// the lease's revocation withdraws it too.
func (s *Server) unregisterEdge() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.presence.Delete(ctx, store.EdgeKey(s.node)); err != nil {
		s.log.Debug("could not withdraw the registry record", "err", err)
	}
}

// SetHealth sets the health the edge's registry record shows:
// control.EdgeHealthOK, or control.EdgeHealthDraining once it drains, so
// other edges, DNS and connectors send it nothing new.
func (s *Server) SetHealth(ctx context.Context, health string) error {
	switch health {
	case control.EdgeHealthOK, control.EdgeHealthDraining:
	default:
		return fmt.Errorf("edge: health %q: want %q or %q", health, control.EdgeHealthOK, control.EdgeHealthDraining)
	}
	s.fleetMu.Lock()
	changed := s.fleet.health != health
	s.fleet.health = health
	s.fleetMu.Unlock()
	if !changed {
		return nil
	}
	s.log.Info("health changed in the fleet's registry", "health", health)
	return s.registerEdge(ctx)
}

// Health is the health the edge's registry record shows.
func (s *Server) Health() string {
	s.fleetMu.Lock()
	defer s.fleetMu.Unlock()
	return s.fleet.health
}

// regionRE is what a region label may be: what DNS labels and metric
// labels take without escaping.
var regionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// checkFleetConfig checks Config's fleet fields.
func checkFleetConfig(cfg Config) error {
	if cfg.Region != "" && !regionRE.MatchString(cfg.Region) {
		return fmt.Errorf("edge: region %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", cfg.Region)
	}
	if cfg.LeaseTTL < 0 {
		return fmt.Errorf("edge: lease TTL %v is negative", cfg.LeaseTTL)
	}
	return nil
}
