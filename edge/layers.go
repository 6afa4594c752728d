package edge

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/access"
	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/shield"
)

// The steps of a public request, in the order they run (DESIGN.md, "The
// edge's layers for a public request"); each names where it lives.
//
//  1. Listener (listen.go, public.go): TCP or QUIC (HTTP/3); the PROXY
//     protocol header when Config.ProxyProtocol; the ConnFilters (global
//     deny rules, per-address caps) before any byte is parsed: on TCP
//     when a connection is accepted (filterConns), on QUIC when a
//     connection attempt arrives, before its handshake (quicTransport).
//  2. TLS with SNI (package publictls): the certificate of a routed
//     hostname; a name with no route gets no handshake.
//  3. HTTP parsing with limits (limits.go); ACME HTTP-01 challenges and the
//     redirect to HTTPS on the plain listener (public.go).
//  4. Router (proxy.go, ServeHTTP): Host → tunnel, in memory. Unknown → 404.
//  5. The Layers, in the order buildLayers lists them: per-hostname IP rules
//     → flood caps on requests in flight → rate limits → WAF request phase
//     → Access → rate limits by Access email (which need Access's answer).
//  6. Proxy (proxy.go, serveRouted): a stream on one of the tunnel's
//     connections (failover.go); if this edge holds none that can take it,
//     forward: a stream over the peer link to an edge of the fleet that
//     does (peer.go), which runs none of these steps again.
//  7. The answer back (proxy.go, writeResponse): hop-by-hop and
//     connector-forged fields removed.

// buildLayers builds the chain of step 5, in order. Each layer watches its
// own records in etcd (deps.Etcd) and answers from memory; a layer that
// has API endpoints (its rules' administration) adds them to s.endpoints.
func (s *Server) buildLayers(deps layer.Deps) (_ []layer.Layer, err error) {
	var layers []layer.Layer
	defer func() {
		if err != nil {
			closeLayers(layers)
		}
	}()
	// The shield (package shield): IP rules, flood limits, rate limits, WAF.
	ipRules, err := shield.NewIPRules(deps)
	if err != nil {
		return nil, err
	}
	layers = append(layers, ipRules)
	flood, err := shield.NewFlood(deps, s.cfg.Flood)
	if err != nil {
		return nil, err
	}
	layers = append(layers, flood)
	s.connFilters = append(s.connFilters, ipRules, flood)
	rateLimits, err := shield.NewRateLimits(deps, shield.RateLimitConfig{MaxKeys: s.cfg.RateLimitKeys})
	if err != nil {
		return nil, err
	}
	layers = append(layers, rateLimits)
	waf, err := shield.NewWAF(deps, shield.WAFConfig{LogFile: s.cfg.WAFLog})
	if err != nil {
		return nil, err
	}
	layers = append(layers, waf)
	s.endpoints = append(s.endpoints, shield.Endpoints(deps.Etcd, waf)...)

	acc, err := access.New(deps, access.Config{}) // last: who may reach the hostname
	if err != nil {
		return nil, err
	}
	layers = append(layers, acc)
	s.access = acc
	s.endpoints = append(s.endpoints, acc.Endpoints()...)

	layers = append(layers, rateLimits.AfterAccess()) // the limits by Access email
	return layers, nil
}

// filterConns applies the ConnFilters to a public listener.
func (s *Server) filterConns(ln net.Listener) net.Listener {
	if len(s.connFilters) == 0 {
		return ln
	}
	return &filteredListener{Listener: ln, filters: s.connFilters}
}

// chain wraps last in layers, the first layer outermost.
func chain(layers []layer.Layer, last layer.Handler) layer.Handler {
	h := last
	for i := len(layers) - 1; i >= 0; i-- {
		h = layers[i].Wrap(h)
	}
	return h
}

// closeLayers closes every layer, returning their errors joined.
func closeLayers(layers []layer.Layer) error {
	var errs []error
	for _, l := range layers {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// filteredListener applies the ConnFilters to every connection it accepts
// (step 1): a refused one is closed before a byte of it is read.
type filteredListener struct {
	net.Listener
	filters []layer.ConnFilter
}

func (l *filteredListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if fc, ok := l.filter(c); ok {
			return fc, nil
		}
	}
}

func (l *filteredListener) filter(c net.Conn) (net.Conn, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return c, true
	}
	dones, ok := allowConn(l.filters, ap.Addr().Unmap())
	if !ok {
		c.Close()
		return nil, false
	}
	if len(dones) == 0 {
		return c, true
	}
	return &filteredConn{Conn: c, dones: dones}, true
}

// allowConn runs the ConnFilters for a connection from ip. When one
// refuses it, ok is false (and the others' counts are undone); otherwise
// dones are to be called once the connection ends.
func allowConn(filters []layer.ConnFilter, ip netip.Addr) (dones []func(), ok bool) {
	for _, f := range filters {
		done, ok := f.Allow(ip)
		if !ok {
			for _, d := range dones {
				d()
			}
			return nil, false
		}
		if done != nil {
			dones = append(dones, done)
		}
	}
	return dones, true
}

// errConnRefused is what a QUIC connection attempt the ConnFilters refuse
// gets: quic-go answers it CONNECTION_REFUSED.
var errConnRefused = errors.New("connection refused by the edge's connection filters")

// quicTransport is the HTTP/3 listener's step 1 (public.go listens with
// it): each QUIC connection attempt goes through the ConnFilters before
// its handshake, as a TCP connection does when accepted. A refused one is
// answered CONNECTION_REFUSED; an accepted one counts until it ends. A
// peer in Config.TrustedProxies is a proxy, not a visitor: it is left to
// the request layers, which see the visitor's address.
//
// UDP source addresses can be forged, and a forged attempt would count
// against the caps of the address it names. So an attempt from an
// address the filters call crowded (a connectionCrowder past half of a
// cap) must first prove it owns its address (a QUIC Retry, one more round
// trip); forged ones then never reach the filters.
func (s *Server) quicTransport(conn net.PacketConn) *quic.Transport {
	filtered := func(ip netip.Addr) bool {
		return ip.IsValid() && len(s.connFilters) > 0 && !inPrefixes(s.cfg.TrustedProxies, ip)
	}
	return &quic.Transport{
		Conn: conn,
		VerifySourceAddress: func(a net.Addr) bool {
			ip := addrIP(a)
			if !filtered(ip) {
				return false
			}
			for _, f := range s.connFilters {
				if c, ok := f.(connectionCrowder); ok && c.Crowded(ip) {
					return true
				}
			}
			return false
		},
		ConnContext: func(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
			ip := addrIP(ci.RemoteAddr)
			if !filtered(ip) {
				return ctx, nil
			}
			dones, ok := allowConn(s.connFilters, ip)
			if !ok {
				return ctx, errConnRefused
			}
			if len(dones) > 0 {
				// The context ends with the connection, or its failed handshake.
				context.AfterFunc(ctx, func() {
					for _, d := range dones {
						d()
					}
				})
			}
			return ctx, nil
		},
	}
}

// connectionCrowder is a ConnFilter that can tell when an address is near
// its caps (shield.Flood): its QUIC attempts must then prove their source
// address before they count.
type connectionCrowder interface {
	Crowded(ip netip.Addr) bool
}

// filteredConn calls its filters' done functions once, when closed.
type filteredConn struct {
	net.Conn
	dones []func()
	once  sync.Once
}

// CloseWrite half-closes the connection (an upgraded one, upgrade.go),
// as the connection it wraps would.
func (c *filteredConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *filteredConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		for _, d := range c.dones {
			d()
		}
	})
	return err
}
