package edge

import (
	"fmt"
	"net"

	"github.com/adit-dev/adit/edgedns"
	"github.com/adit-dev/adit/publictls"
)

// The edge's DNS server (package edgedns), when Config.DNS.Addr is set:
// authoritative for Config.DNS.Zones, answering routed names with the live
// edges of the fleet's registry, and the TXT records of ACME DNS-01
// challenges, which let HTTPS order certificates for wildcard routes in
// those zones (public.go). It joins Start's three steps: openDNS builds it
// (its watches loaded), listenDNS opens its UDP and TCP sockets (before
// the public listeners, whose certificate manager uses it), serveDNS
// serves them.

// openDNS builds the DNS server from the state and the store.
func (s *Server) openDNS() error {
	if s.cfg.DNS.Addr == "" {
		return nil
	}
	cfg := s.cfg.DNS
	cfg.Node = s.node
	cfg.Logger = s.log
	cfg.Metrics = s.metrics.registry
	cfg.Edges = s.edgeView
	var err error
	s.dns, err = edgedns.New(s.ctx, s.store.Client(), s.state, cfg)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	return nil
}

// listenDNS opens the DNS server's sockets.
func (s *Server) listenDNS() error {
	if s.dns == nil {
		return nil
	}
	if err := s.dns.Listen(); err != nil {
		return listenError("dns", s.cfg.DNS.Addr, fmt.Errorf("edge: %w", err))
	}
	s.log.Info("dns listening", "addr", s.dns.Addr().String(), "zones", s.dns.Zones())
	return nil
}

// serveDNS serves the DNS server's sockets until Close.
func (s *Server) serveDNS() {
	if s.dns == nil {
		return
	}
	s.goServe("dns (udp)", s.dns.ServeUDP)
	s.goServe("dns (tcp)", s.dns.ServeTCP)
}

// closeDNS stops the DNS server.
func (s *Server) closeDNS() error {
	if s.dns == nil {
		return nil
	}
	return s.dns.Close()
}

// dns01 is how HTTPS proves names in the DNS server's zones to the CA
// (ACME DNS-01, for wildcard routes), or nil without a DNS server.
func (s *Server) dns01() *publictls.DNS01 {
	if s.dns == nil {
		return nil
	}
	return &publictls.DNS01{Solver: s.dns.Solver(), Serves: s.dns.Serves}
}

// DNSAddr is the bound DNS address (UDP and TCP), or nil without one.
func (s *Server) DNSAddr() net.Addr {
	if s.dns == nil {
		return nil
	}
	return s.dns.Addr()
}
