package edgedns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/net/netutil"

	"github.com/adit-dev/adit/edge/edgeview"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/store"
)

// Config configures a Server. Addr and Zones are required; every other
// zero value has a default.
type Config struct {
	// Addr is the host:port served over UDP and TCP (--dns-addr, e.g.
	// ":53"). Port 0 picks a free port, the same for both.
	Addr string
	// Zones are the zones the edges are authoritative for (--dns-zone),
	// e.g. "example.com"; each is delegated to the edges by NS records at
	// its parent naming LABEL.ns.ZONE with the edges' addresses as glue.
	Zones []string
	// Node is this edge's node name: the SOA's primary while the registry
	// lists no edge.
	Node string
	// ClientRegions says which regions are nearest to which client
	// subnets (--dns-client-region, --dns-client-regions-file): an A or
	// AAAA answer lists the nearest region's edges first. If empty, every
	// answer lists the edges in turn.
	ClientRegions []RegionRule
	// TTL is the TTL of what follows the fleet (A and AAAA of routed
	// names and of the edges, SRV, TXT): a dead edge leaves resolvers'
	// caches within the registry's lease TTL plus this. If zero, 30s.
	TTL time.Duration
	// NegativeTTL is how long resolvers may remember that a name does not
	// exist (the SOA's minimum): a route added is resolvable within it.
	// If zero, 30s.
	NegativeTTL time.Duration
	// ZoneTTL is the TTL of the SOA and NS records. If zero, 5 minutes.
	ZoneTTL time.Duration
	// RateLimit bounds the UDP answers per second to one client network
	// (a /24 or a /56), bursts of twice as many: past it a query is
	// dropped or, one in two, answered empty and truncated (so a real
	// resolver retries over TCP). If zero, 1000; if negative, none.
	RateLimit float64
	// MaxTCPConns bounds the TCP connections served at once; more wait in
	// the kernel's queue. If zero, 1024.
	MaxTCPConns int
	// MaxUDPQueries bounds the UDP queries being answered at once: the
	// DNS library starts a goroutine per packet with no bound of its own,
	// so past this many a query is dropped unanswered (a resolver retries)
	// before any work is done for it. If zero, 1024.
	MaxUDPQueries int
	// Edges is the fleet's registry, as the edge watches it (its
	// edgeview.View): what A, AAAA, NS and SRV answers are made of.
	// Required.
	Edges edgeview.Registry
	// Logger receives the server's logs. If nil, they are discarded.
	Logger *slog.Logger
	// Metrics, if set, registers adit_dns_* metrics.
	Metrics prometheus.Registerer
}

// Server is the DNS server of one edge. It answers from memory: the
// registry of edges, the TXT records and the routes are watched from etcd.
type Server struct {
	cfg     Config
	log     *slog.Logger
	routes  Routes
	names   *routeNames
	regions *regionMap
	zones   []string // canonical, longest first
	limiter *limiter
	udpBusy chan struct{} // a slot per UDP query being answered (MaxUDPQueries)
	metrics *metrics
	rr      atomic.Uint32 // rotates the order of equal edges

	edges atomic.Pointer[edgeSet]
	txt   atomic.Pointer[txtSet]

	provider *Provider

	udp    net.PacketConn
	tcp    net.Listener
	udpSrv *dns.Server
	tcpSrv *dns.Server

	ctx       context.Context
	cancel    context.CancelFunc
	done      <-chan struct{} // the TXT records' watch ended
	stopEdges func()          // ends the registry's subscription
	closed    sync.Once

	serveMu sync.Mutex
	stopped bool           // under serveMu: Close has begun; serve nothing more
	serving sync.WaitGroup // ServeUDP and ServeTCP calls, which Close waits for
}

// Defaults of the zero Config fields.
const (
	DefaultTTL           = 30 * time.Second
	DefaultNegativeTTL   = 30 * time.Second
	DefaultZoneTTL       = 5 * time.Minute
	DefaultRateLimit     = 1000
	DefaultMaxTCPConns   = 1024
	DefaultMaxUDPQueries = 1024
	// maxUDPSize is the largest UDP answer sent, whatever a client
	// offers: 1232 bytes fit any path's MTU (DNS Flag Day 2020).
	maxUDPSize = 1232
	// rateLimitKeys bounds the client networks the rate limit tracks.
	rateLimitKeys = 1 << 16
)

// New builds a Server: it checks cfg, loads the registry of edges and the
// TXT records from etcd and watches them until Close, and follows routes.
// Listen opens its sockets.
func New(ctx context.Context, cli *clientv3.Client, routes Routes, cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: logs.Component(cfg.Logger, "dns"), routes: routes, names: newRouteNames()}
	if cfg.Addr == "" {
		return nil, errors.New("edgedns: a listen address is required (--dns-addr)")
	}
	if cfg.Edges == nil {
		return nil, errors.New("edgedns: config: no Edges (the fleet's registry)")
	}
	if len(cfg.Zones) == 0 {
		return nil, errNoZones
	}
	for _, z := range cfg.Zones {
		zone := dns.CanonicalName(strings.TrimSpace(z))
		if _, ok := dns.IsDomainName(zone); !ok || zone == "." || strings.Contains(zone, "*") {
			return nil, fmt.Errorf("edgedns: --dns-zone %q is not a domain name", z)
		}
		if slices.Contains(s.zones, zone) {
			return nil, fmt.Errorf("edgedns: --dns-zone %q is given twice", z)
		}
		s.zones = append(s.zones, zone)
	}
	slices.SortFunc(s.zones, func(a, b string) int { return dns.CountLabel(b) - dns.CountLabel(a) })
	var err error
	if s.regions, err = newRegionMap(cfg.ClientRegions); err != nil {
		return nil, fmt.Errorf("edgedns: %w", err)
	}
	if cfg.TTL < 0 || cfg.NegativeTTL < 0 || cfg.ZoneTTL < 0 {
		return nil, errors.New("edgedns: a TTL is negative")
	}
	s.cfg.TTL = orDuration(cfg.TTL, DefaultTTL)
	s.cfg.NegativeTTL = orDuration(cfg.NegativeTTL, DefaultNegativeTTL)
	s.cfg.ZoneTTL = orDuration(cfg.ZoneTTL, DefaultZoneTTL)
	if cfg.RateLimit >= 0 {
		rate := cfg.RateLimit
		if rate == 0 {
			rate = DefaultRateLimit
		}
		s.limiter = newLimiter(rate, int(2*rate)+1, rateLimitKeys, 2)
	}
	if s.cfg.MaxTCPConns <= 0 {
		s.cfg.MaxTCPConns = DefaultMaxTCPConns
	}
	if s.cfg.MaxUDPQueries <= 0 {
		s.cfg.MaxUDPQueries = DefaultMaxUDPQueries
	}
	s.udpBusy = make(chan struct{}, s.cfg.MaxUDPQueries)
	s.metrics = newMetrics(cfg.Metrics)
	s.provider = &Provider{cli: cli, zones: s.zones}

	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	done, err := store.WatchPrefix(s.ctx, cli, store.DNSTXTPrefix, s.log, func(recs map[string][]byte) { s.txt.Store(parseTXT(recs, s.log)) })
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("edgedns: %w", err)
	}
	s.done = done
	s.stopEdges = cfg.Edges.Subscribe(func(edges edgeview.Edges) { s.edges.Store(parseEdges(edges, s.log)) })
	s.names.follow(routes)
	return s, nil
}

func orDuration(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// Listen opens the UDP socket and the TCP listener at the same port.
func (s *Server) Listen() error {
	host, port, err := net.SplitHostPort(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("edgedns: --dns-addr %q: %w", s.cfg.Addr, err)
	}
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("edgedns: dns listener (tcp): %w", err)
		}
		_, bound, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, bound))
		if err != nil {
			ln.Close()
			if port == "0" && attempt < 10 { // that UDP port was taken: pick another pair
				continue
			}
			return fmt.Errorf("edgedns: dns listener (udp): %w", err)
		}
		s.udp, s.tcp = pc, netutil.LimitListener(ln, s.cfg.MaxTCPConns)
		break
	}
	s.udpSrv = &dns.Server{PacketConn: s.udp, Handler: s, UDPSize: 4096, MsgAcceptFunc: acceptQuery}
	s.tcpSrv = &dns.Server{Listener: s.tcp, Handler: s, MsgAcceptFunc: acceptQuery,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		IdleTimeout: func() time.Duration { return 10 * time.Second }}
	return nil
}

// acceptQuery lets through what a resolver asks: one question, at most
// an OPT and a signature besides. Anything else costs one short error
// answer (FORMERR, or NOTIMP for another opcode), never a lookup;
// answers and unparseable headers get nothing.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// ServeUDP serves the UDP socket until Close.
func (s *Server) ServeUDP() error { return s.serve(s.udpSrv) }

// ServeTCP serves the TCP listener until Close.
func (s *Server) ServeTCP() error { return s.serve(s.tcpSrv) }

func (s *Server) serve(srv *dns.Server) error {
	s.serveMu.Lock()
	if s.stopped {
		s.serveMu.Unlock()
		return net.ErrClosed
	}
	s.serving.Add(1)
	s.serveMu.Unlock()
	defer s.serving.Done()
	return srv.ActivateAndServe()
}

// Addr is the bound address (UDP; TCP has the same port).
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Zones are the zones served, fully qualified and lower-case.
func (s *Server) Zones() []string { return slices.Clone(s.zones) }

// Serves says whether name lies in a zone this server answers for.
func (s *Server) Serves(name string) bool {
	_, ok := s.zoneOf(dns.CanonicalName(name))
	return ok
}

// zoneOf returns the most specific served zone holding name (canonical).
func (s *Server) zoneOf(name string) (string, bool) {
	for _, z := range s.zones {
		if name == z || strings.HasSuffix(name, "."+z) {
			return z, true
		}
	}
	return "", false
}

// Provider writes the TXT records this server and every other edge's
// answer (ACME DNS-01).
func (s *Server) Provider() *Provider { return s.provider }

// Solver is an ACME DNS-01 solver for names in the served zones: it
// writes the challenge's TXT record into etcd (Provider) and, before the
// CA is told to look, checks that this server answers it.
func (s *Server) Solver() *certmagic.DNS01Solver {
	return &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
		DNSProvider:        s.provider,
		TTL:                s.cfg.TTL,
		PropagationTimeout: 2 * time.Minute,
		Resolvers:          []string{s.selfAddr()},
	}}
}

// selfAddr is where this process reaches its own DNS server: the bound
// address, or loopback for an unspecified one.
func (s *Server) selfAddr() string {
	ap, err := netip.ParseAddrPort(s.udp.LocalAddr().String())
	if err != nil || !ap.Addr().IsUnspecified() {
		return s.udp.LocalAddr().String()
	}
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if host, _, _ := net.SplitHostPort(s.cfg.Addr); strings.Contains(host, ":") {
		lo = netip.IPv6Loopback()
	}
	return netip.AddrPortFrom(lo, ap.Port()).String()
}

// Close stops serving and watching, and returns once ServeUDP and
// ServeTCP have returned.
func (s *Server) Close() error {
	s.closed.Do(func() {
		s.serveMu.Lock()
		s.stopped = true
		s.serveMu.Unlock()
		for _, srv := range []*dns.Server{s.udpSrv, s.tcpSrv} {
			if srv != nil {
				srv.Shutdown() // fails harmlessly if it never started
			}
		}
		if s.udp != nil {
			s.udp.Close()
		}
		if s.tcp != nil {
			s.tcp.Close()
		}
		s.serving.Wait() // the closed sockets end them, started or not
		s.cancel()
		<-s.done
		s.stopEdges()
	})
	return nil
}
