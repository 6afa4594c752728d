// Package edge is the adit edge server: the public HTTP listener, the tunnel
// listener connectors dial, the registry of their connections, the router
// from hostnames to tunnels, the proxy from public requests to tunnel
// streams, and the control API.
//
// A public request travels: http.Server (Config.HTTPAddr) → proxy.ServeHTTP
// (proxy.go: Host → tunnel via controlserver.State, in memory) →
// proxy.forward (the header rewritten for the origin) →
// tunnelTransport.roundTrip (failover.go: least-loaded connection from the
// registry, one stream per request) → the connector; the answer comes back
// through proxy.writeResponse. An upgrade answered 101 (WebSocket) is
// taken over there: the edge hijacks the client and pipes it to the stream
// (upgrade.go).
// Connections arrive on the tunnel listener and register in tunnelconn.go.
// TCP travels as TCP streams: `adit access` WebSocket upgrades (access.go)
// and the connections of public TCP port routes (tcp.go).
//
// Keeping requests alive when things break: failover.go (a request moves
// to another connection when that is safe), health.go (connections that go
// quiet are routed around; a draining connection is closed once its last
// request is done), limits.go (header, body and timeout limits; transport
// defaults), shutdown.go (Close), metrics.go (/metrics, /ready).
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/adit-dev/adit/access"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/edge/edgeview"
	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/edgedns"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/metrics"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/internal/ratelog"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/publictls"
	"github.com/adit-dev/adit/shield"
	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// Config configures an edge. The zero value (with a DataDir) is a working
// single-node edge on the default ports.
type Config struct {
	// DataDir holds the embedded etcd data, the edge CA and certificate, and
	// the admin API token. Required.
	DataDir string
	// HTTPAddr is the public HTTP listener. If empty, ":8080".
	HTTPAddr string
	// TunnelAddr is the UDP address connectors dial over QUIC. If empty, ":7844".
	TunnelAddr string
	// APIAddr is the HTTPS control API. If empty, "127.0.0.1:7845".
	APIAddr string
	// EtcdEndpoints, if set, is an external etcd cluster; otherwise an etcd
	// server is embedded in the edge, reachable only from this machine.
	EtcdEndpoints []string
	// Etcd secures EtcdEndpoints: CA, client certificate, user and
	// password; a plaintext endpoint off this machine is refused unless
	// Etcd.Insecure. The zero value verifies https with the system roots.
	Etcd store.Remote
	// TLSCertFile and TLSKeyFile, if set, replace the certificate the edge
	// issues itself from its own CA (for the tunnel and API listeners).
	TLSCertFile, TLSKeyFile string
	// PublicNames are DNS names or IPs by which connectors and API clients
	// reach this edge; they go into the edge certificate. The first one is
	// advertised to connectors. If empty, "localhost".
	PublicNames []string
	// AdvertiseAddr is the host:port written into credentials files for
	// connectors to dial, and into the fleet's registry. If empty, the
	// tunnel listener's bound port with the first of: the first public
	// name, the tunnel listener's host, the peer link's host (each if
	// given, and not a wildcard), else "localhost", which the registry
	// does not list (see fleet.go, tunnelAdvertise).
	AdvertiseAddr string
	// NodeName names this edge in connection records and its admin token.
	// If empty, the name kept in DataDir/node-name; on first start, the
	// host name with a short random suffix, written there.
	NodeName string
	// Logger receives the edge's logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Region labels the edge in the fleet's registry (--region), for
	// connectors and DNS to prefer the nearest edges. If empty, none.
	Region string
	// Version is the adit version the edge shows in the fleet's registry.
	// If empty, "devel".
	Version string
	// JoinURL, if set, is the API of an edge of a fleet (https://host:port)
	// this edge joins with JoinToken when its data directory holds no etcd
	// member yet (fleetjoin.go): it becomes a member of that fleet's etcd
	// cluster and takes the fleet's CA. Only with the embedded etcd.
	JoinURL string
	// JoinToken is a join token made on an edge of the fleet (`adit edge
	// join-token create`). Required with JoinURL.
	JoinToken string
	// EtcdPeerAddr is where the embedded etcd takes the other members'
	// peer traffic (mutual TLS, fleet CA). If empty, the API listener's
	// host; port 0 keeps the port it had last time (DataDir/etcd-peer-addr).
	EtcdPeerAddr string
	// LeaseTTL is how long the edge's registry record and connection
	// records outlive the edge's death (their etcd lease). If zero, 10s;
	// rounded up to whole seconds.
	LeaseTTL time.Duration
	// MaxRegistering bounds the connector registrations the edge works on
	// at once; past it a connector is told to come back a little later
	// (admission.go). If zero, DefaultMaxRegistering.
	MaxRegistering int
	// MaxRegisteringPerAddr bounds the connections from one client address
	// that are past the transport handshake and have not sent their
	// register frame yet: half of them register, the others are told to
	// come back a little later, and one past it is closed at once
	// (tunnellimits.go). If zero, DefaultMaxRegisteringPerAddr; negative:
	// no bound.
	MaxRegisteringPerAddr int
	// MaxHandshakes bounds the tunnel-port handshakes (QUIC and
	// WebSocket together) the edge works on at once; past it a connector
	// is refused before any TLS work and dials again a little later
	// (handshake.go). If zero, DefaultMaxHandshakes; negative: no bound.
	MaxHandshakes int
	// PeerAddr is the UDP address of the peer link, over which the edges
	// of a fleet forward a request to an edge that holds a connection of
	// its tunnel (peer.go). If empty, the tunnel address's host with port
	// DefaultPeerPort (7846) when the tunnel address has the standard port
	// 7844, else with a port the system picks (other edges read it from
	// the fleet record, so two edges on one machine need no ports chosen).
	// "off": no peer link; this edge neither forwards requests nor takes
	// forwarded ones.
	PeerAddr string
	// DrainDelay is how long a draining edge keeps serving visitors after
	// /ready turned 503, while load balancers and DNS move them, when the
	// fleet has another edge (drain.go). If zero, DefaultDrainDelay (5s).
	DrainDelay time.Duration
	// DrainTimeout bounds the rest of a drain: the requests in flight and
	// the connectors moving. If zero, DefaultDrainTimeout (15s).
	DrainTimeout time.Duration
	// QUIC tunes the tunnel transport. Zero fields take the edge's
	// defaults (limits.go): a keepalive every 1s and a 5s idle timeout, so a
	// dead connector is found within seconds, and at most 1 stream (the control stream) opened
	// by a connector; then tunnelquic's.
	QUIC tunnelquic.Config
	// WebSocket tunes the WebSocket transport, served on TCP at the same
	// port number as QUIC's UDP; the zero value is the default.
	WebSocket tunnelws.Config

	// HTTPSAddr, if set, is the public HTTPS listener: TLS over TCP
	// (HTTP/1.1 and HTTP/2) and HTTP/3 over UDP at the same port, with a
	// certificate for each routed hostname from ACME (package publictls)
	// or brought by an operator. If empty, there is none.
	HTTPSAddr string
	// ACME configures where HTTPSAddr's certificates come from
	// (publictls.Config; the edge fills in its ports and logger). The zero
	// value orders from Let's Encrypt.
	ACME publictls.Config
	// DisableHTTP3 turns HTTP/3 on HTTPSAddr off.
	DisableHTTP3 bool
	// DisableHTTPSRedirect keeps the HTTP listener serving hostnames that
	// have a certificate; otherwise it answers them 308 to https://.
	DisableHTTPSRedirect bool
	// ProxyProtocol: every TCP connection to the public listeners starts
	// with a PROXY protocol header (v1 or v2) naming the visitor; one
	// without it is closed. With TrustedProxies, only those peers may
	// connect.
	ProxyProtocol bool
	// TrustedProxies are load balancers in front of the edge: from them,
	// X-Forwarded-For is kept and extended, and the visitor is its
	// rightmost address that is not a trusted proxy. If empty, every
	// client's X-Forwarded-For is replaced.
	TrustedProxies []netip.Prefix

	// DNS, if DNS.Addr is set, makes the edge an authoritative DNS server
	// of DNS.Zones (package edgedns; --dns-addr, --dns-zone): routed names
	// answer with the fleet's live edges, and HTTPS orders certificates
	// for wildcard routes in those zones by ACME DNS-01. The edge fills in
	// its node name, logger and metrics. If DNS.Addr is empty, there is none.
	DNS edgedns.Config

	// MetricsAddr, if set, is the host:port of a plain-HTTP listener for
	// /metrics, /ready and /healthcheck (package metrics); port 0 picks one
	// (see Server.MetricsAddr). If empty, there is none.
	MetricsAddr string
	// MaxHeaderBytes bounds a public request's header (431 past it). If
	// zero, DefaultMaxHeaderBytes (1 MiB).
	MaxHeaderBytes int
	// MaxRequestBody bounds a public request's body (413 past it). If zero,
	// there is no limit.
	MaxRequestBody int64
	// ReadHeaderTimeout bounds how long a public client may take to send a
	// request header. If zero, DefaultReadHeaderTimeout (10s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a public keep-alive connection idle for this long.
	// If zero, DefaultIdleTimeout (2m).
	IdleTimeout time.Duration

	// Flood sets the per-address connection and request caps and the
	// global cap on requests in flight (package shield); the zero value
	// has its defaults.
	Flood shield.FloodConfig
	// RateLimitKeys bounds the clients the rate limits track at once. If
	// zero, 100,000.
	RateLimitKeys int
	// WAFLog, if set, is a file every WAF rule match is appended to, one
	// line each in ModSecurity's error-log shape (--waf-log).
	WAFLog string
	// LogRequests logs one line per public request routed to a tunnel, at
	// info level (requestlog.go). If false, none; `adit tail` works either
	// way.
	LogRequests bool
	// AdminSSO lets the people it names log in to the dashboard through an
	// Access identity provider (--admin-idp, --admin-emails,
	// --admin-groups; dashboard.go). The zero value: only API tokens.
	AdminSSO access.AdminConfig
}

// Server is a running edge.
type Server struct {
	cfg      Config
	log      *slog.Logger
	node     string
	names    []string // PublicNames, or "localhost"
	store    *store.Store
	svc      *controlserver.Service
	state    *controlserver.State
	presence *controlserver.Presence
	reg      *registry
	admit    *admission // admission.go
	bundle   *pki.Bundle
	tlsConf  *tls.Config   // the tunnel and API listeners' (never the public one's)
	layers   []layer.Layer // layers.go: step 5 of a public request
	access   *access.Layer // layers.go: the last of the layers; dashboard.go: admin SSO
	// connFilters judge public connections as they are accepted (layers.go,
	// step 1).
	connFilters []layer.ConnFilter
	// endpoints are API endpoints of the edge's other parts (layers.go),
	// served beside the control API's own.
	endpoints   []controlserver.Endpoint
	tcp         *tcpPorts      // tcp.go: listeners of the public TCP port routes
	peers       *peers         // peer.go: forwarding to the edges of the fleet; nil if off
	configs     *tunnelConfigs // tunnelconfig.go: each tunnel's newest remote configuration
	dashboard   http.Handler   // dashboard.go: served on the API listener beside /v1
	edgeView    *edgeview.View // the fleet's registry, watched once for every part that follows it
	fleetView   *fleetView     // fleetview.go: the registry as connectors are told it
	drain       drainState     // drain.go
	healthClock healthClock    // health.go: pauses seen by the watchdog
	etcdLink    etcdLink       // partition.go: cut off from etcd

	metrics    *edgeMetrics     // metrics.go
	reqLog     *requestLog      // requestlog.go: --log-requests and `adit tail`
	metricsSrv *metrics.Server  // nil unless Config.MetricsAddr
	rl         *ratelog.Limiter // for what peers can trigger at will
	newConns   newConns         // shutdown.go

	tunnelLn tunnel.Listener // QUIC, UDP
	wsLn     tunnel.Listener // WebSocket+yamux, TCP, same port number
	httpLn   net.Listener
	apiLn    net.Listener
	httpSrv  *http.Server
	apiSrv   *http.Server

	// public.go: HTTPS and HTTP/3, when Config.HTTPSAddr
	httpsLn  net.Listener
	h3Conn   net.PacketConn
	h3Tr     *quic.Transport     // on h3Conn, with the ConnFilters (layers.go)
	h3Ln     *quic.EarlyListener // on h3Tr
	h3TLS    *tls.Config
	httpsSrv *http.Server
	h3Srv    *http3.Server
	certs    *publictls.Manager

	dns *edgedns.Server // dns.go: when Config.DNS.Addr

	adminTokenFile     string
	createdToken       bool
	advertise          string
	registryTunnelAddr string // fleet.go: what the registry lists; "" if advertise is unusable elsewhere

	fleetMu     sync.Mutex
	fleet       fleetRecord   // fleet.go: the registry record's own state
	etcdPeerURL string        // fleetjoin.go: where the other members reach this one's etcd
	leaving     atomic.Bool   // fleetjoin.go: removing its own member, then closing
	left        chan struct{} // closed once it has left

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // every goroutine the server starts (spawn)
	spawnMu sync.Mutex
	stopped bool // under spawnMu: Close is waiting for wg; spawn nothing more

	errc     chan error // the first server that failed after start (Err)
	downMu   sync.Mutex
	down     map[string]error // servers that failed after start, for /ready
	closed   sync.Once
	closeErr error
	closing  atomic.Bool
}

// Start builds the edge, opens its listeners and starts serving, and
// returns once it is serving. Close stops it; Err reports a part that
// failed after Start.
//
// It runs in three steps, which every new listener joins: open (the
// edge's certificates, the store and the in-memory state fed by it, the
// control service, the request layers), listen (every socket, so a port
// in use fails Start before anything serves) and serve (one goroutine per
// listener and loop, each reporting its failure to Err).
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("edge: a data directory is required")
	}
	if err := checkFleetConfig(cfg); err != nil { // fleet.go
		return nil, err
	}
	if err := cfg.AdminSSO.Validate(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("edge: data directory: %w", err)
	}
	log := logs.Component(cfg.Logger, "edge")
	s := &Server{cfg: cfg, log: log, reg: newRegistry(), admit: newAdmission(cfg.MaxRegistering), rl: ratelog.NewLimiter(10 * time.Second),
		errc: make(chan error, 1), down: make(map[string]error), left: make(chan struct{})}
	s.reg.registering = newRegistering(cfg.MaxRegisteringPerAddr)
	s.metrics = newEdgeMetrics(s.reg)
	s.drain.init()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	s.serve()
	s.fleet = fleetRecord{started: time.Now().UTC().Round(0), health: control.EdgeHealthOK}
	if err := s.registerEdge(ctx); err != nil { // fleet.go
		return nil, err
	}
	log.Info("serving",
		"node", s.node,
		"http", s.httpLn.Addr().String(),
		"tunnel", s.tunnelLn.Addr().String()+"/udp",
		"tunnel_ws", s.wsLn.Addr().String()+"/tcp",
		"api", "https://"+s.apiLn.Addr().String(),
		"advertise", s.advertise,
		"etcd", s.store.Endpoints())
	return s, nil
}

// open builds what the listeners serve: the node's name and certificates,
// the store and the state watched from it, the control service with its
// admin token, and the request layers.
func (s *Server) open(ctx context.Context) error {
	cfg := s.cfg
	var err error
	if s.node, err = nodeName(cfg.DataDir, cfg.NodeName); err != nil { // nodename.go
		return err
	}
	s.names = cfg.PublicNames
	if len(s.names) == 0 {
		s.names = []string{"localhost"}
	}

	// The etcd peer listener, and the fleet's CA when joining one (fleetjoin.go).
	peerLn, peerURL, initialCluster, err := s.openMember(ctx)
	if err != nil {
		return err
	}
	closePeer := func() {
		if peerLn != nil {
			peerLn.Close()
		}
	}

	// TLS for the tunnel and API listeners.
	names := s.certNames(peerLn)
	bundle, _, err := pki.LoadOrCreate(filepath.Join(cfg.DataDir, "tls"), names)
	if err != nil {
		closePeer()
		return fmt.Errorf("edge: certificates: %w", err)
	}
	s.bundle = bundle
	var cert tls.Certificate
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		cert, err = pki.LoadFiles(cfg.TLSCertFile, cfg.TLSKeyFile)
	} else {
		cert, err = bundle.TLSCertificate()
		cert.Certificate = withCAChain(cert.Certificate, bundle.CACertPEM) // a joining edge finds the CA its token pins
	}
	if err != nil {
		closePeer()
		return fmt.Errorf("edge: certificate: %w", err)
	}
	s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	s.etcdPeerURL = peerURL
	member, err := s.memberConfig(peerLn, peerURL, initialCluster, names)
	if err != nil {
		closePeer()
		return err
	}

	// State.
	s.store, err = store.Open(ctx, store.Config{
		DataDir:   cfg.DataDir,
		Endpoints: cfg.EtcdEndpoints,
		Remote:    cfg.Etcd,
		Logger:    s.log,
		Member:    member, // closes its peer listener from here on
	})
	if err != nil {
		return err
	}
	s.endpoints = append(s.endpoints, s.fleetEndpoints()...)
	cli := s.store.Client()
	s.state, err = controlserver.NewState(s.ctx, cli, s.log)
	if err != nil {
		return fmt.Errorf("edge: loading state: %w", err)
	}
	s.state.OnEvent(s.onEvent)
	if err := s.watchConfigs(ctx, cli); err != nil { // tunnelconfig.go
		return fmt.Errorf("edge: loading tunnel configurations: %w", err)
	}
	s.presence, err = controlserver.NewPresence(s.ctx, cli, cfg.LeaseTTL, s.log)
	if err != nil {
		return fmt.Errorf("edge: connection records: %w", err)
	}
	// What a previous run left (a kill -9; a restarted etcd renews its
	// lease) goes before anyone registers: no record outlives its
	// connection.
	if n, err := s.presence.RemoveLeftovers(ctx, s.node); err != nil {
		return fmt.Errorf("edge: connection records: %w", err)
	} else if n > 0 {
		s.log.Info("deleted the connection records a previous run left", "records", n)
	}
	if s.edgeView, err = edgeview.New(s.ctx, cli, s.log); err != nil {
		return fmt.Errorf("edge: loading the fleet's registry: %w", err)
	}
	if err := s.openDNS(); err != nil { // dns.go
		return err
	}
	s.watchFleet()                                        // fleetview.go
	if err := s.watchDrainRequest(ctx, cli); err != nil { // drain.go
		return fmt.Errorf("edge: drain requests: %w", err)
	}
	s.layers, err = s.buildLayers(layer.Deps{Ctx: s.ctx, Etcd: cli, Logger: s.log, Metrics: s.metrics.registry})
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	return nil
}

// listen opens every listener. The control service is built here because
// the address it advertises to connectors needs the tunnel port bound.
func (s *Server) listen() error {
	cfg := s.cfg
	qc, err := s.tunnelQUIC() // limits.go
	if err != nil {
		return err
	}
	gate := newHandshakeGate(cfg.MaxHandshakes, s.metrics, s.rl.Logger(s.log)) // handshake.go
	s.tunnelLn, s.wsLn, err = listenTunnel(orDefault(cfg.TunnelAddr, ":7844"), s.tlsConf, qc, cfg.WebSocket, gate, s.log)
	if err != nil {
		return listenError("tunnel", orDefault(cfg.TunnelAddr, ":7844"), err)
	}
	if err := s.listenDNS(); err != nil { // dns.go: before the public listeners' certificates need it
		return err
	}
	if err := s.listenPublic(); err != nil { // public.go
		return err
	}
	apiLn, err := net.Listen("tcp", orDefault(cfg.APIAddr, "127.0.0.1:7845"))
	if err != nil {
		return listenError("api", orDefault(cfg.APIAddr, "127.0.0.1:7845"), fmt.Errorf("edge: api listener: %w", err))
	}
	s.apiLn = tls.NewListener(apiLn, s.tlsConf)
	if cfg.MetricsAddr != "" {
		s.metricsSrv, err = metrics.Listen(metrics.Config{
			Addr:     cfg.MetricsAddr,
			Gatherer: s.metrics.registry,
			Ready:    s.readiness,
			Logger:   s.log,
		})
		if err != nil {
			return listenError("metrics", cfg.MetricsAddr, fmt.Errorf("edge: %w", err))
		}
		s.log.Info("metrics listening", "addr", s.metricsSrv.Addr().String(), "paths", "/metrics /ready /healthcheck /debug/pprof/")
	}

	s.advertise = s.tunnelAdvertise() // fleet.go
	s.svc = controlserver.NewService(s.store.Client(), control.EdgeInfo{
		Node:        s.node,
		TunnelAddrs: []string{s.advertise},
		CAPEM:       string(s.bundle.CACertPEM),
	}, s.log)
	s.adminTokenFile = filepath.Join(cfg.DataDir, "admin.token")
	s.createdToken, err = s.svc.EnsureAdminToken(s.ctx, s.adminTokenFile)
	if err != nil {
		return fmt.Errorf("edge: admin token: %w", err)
	}
	s.openRequestLog()                        // requestlog.go
	if err := s.openDashboard(); err != nil { // dashboard.go
		return err
	}
	return s.listenPeer() // peer.go
}

// serve starts one goroutine per listener and loop.
func (s *Server) serve() {
	cfg := s.cfg
	p := newProxy(s.state, s.reg, s.metrics, s.rl.Logger(s.log), s.layers)
	p.trusted = cfg.TrustedProxies
	p.t.peers = s.peers                                 // peer.go: nil if off
	s.servePublic(s.metrics.instrument(s.limitBody(p))) // public.go
	s.apiSrv = &http.Server{
		Handler:           s.withJoin(s.apiHandler()), // dashboard.go: the /v1 API and the dashboard; fleetjoin.go: the join
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          s.httpErrorLog(),
	}
	s.apiSrv.RegisterOnShutdown(s.reqLog.close) // request streams end with the API server
	s.tcp = startTCPPorts(s.ctx, orDefault(cfg.HTTPAddr, ":8080"), s.state, p.t, s.log, s.rl.Logger(s.log))
	s.goServe("api", func() error { return s.apiSrv.Serve(s.apiLn) })
	s.serveDNS() // dns.go
	s.goServe("tunnel (quic)", func() error { return s.acceptTunnels(s.tunnelLn) })
	s.goServe("tunnel (websocket)", func() error { return s.acceptTunnels(s.wsLn) })
	s.spawn(s.watchHealth)
}

// httpErrorLog is the servers' log for what net/http reports (a client's
// TLS handshake that failed, a malformed request): debug level, as
// clients cause it at will.
func (s *Server) httpErrorLog() *log.Logger {
	return slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// goServe runs serve until the server closes. If it ends before, the
// edge reports it: an error on Err, the server named by /ready.
func (s *Server) goServe(name string, serve func() error) {
	s.spawn(func() {
		err := serve()
		if s.closing.Load() || errors.Is(err, http.ErrServerClosed) {
			return
		}
		if err == nil {
			err = errors.New("stopped")
		}
		s.fail(name, err)
	})
}

// fail records that the named part stopped serving.
func (s *Server) fail(name string, err error) {
	err = fmt.Errorf("edge: %s stopped: %w", name, err)
	s.log.Error("server stopped", "server", name, "err", err)
	s.downMu.Lock()
	s.down[name] = err
	s.downMu.Unlock()
	select {
	case s.errc <- err:
	default:
	}
}

// Err reports the first listener or server that failed after Start (as
// etcd's embed.Etcd.Err does): the edge then serves only in part and
// should be restarted. Nothing is sent when Close stops them.
func (s *Server) Err() <-chan error { return s.errc }

// spawn runs f on a goroutine that Close waits for. Once Close is
// waiting, spawn runs nothing.
func (s *Server) spawn(f func()) {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.stopped {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) acceptTunnels(ln tunnel.Listener) error {
	for {
		c, err := ln.Accept(s.ctx)
		if err != nil {
			return err
		}
		s.spawn(func() { s.serveTunnelConn(s.ctx, c) })
	}
}

// onEvent reacts to changes made elsewhere: a deleted tunnel or a removed
// connection record disconnects the matching connections.
func (s *Server) onEvent(ev controlserver.Event) {
	switch ev.Kind {
	case controlserver.TunnelDeleted:
		for _, tc := range s.reg.byTunnel(ev.TunnelID) {
			s.log.Info("tunnel deleted; disconnecting", "conn", tc.label())
			s.spawn(func() { s.disconnect(tc, tunnel.CodeTunnelDeleted, "tunnel "+ev.TunnelID+" was deleted") })
		}
	case controlserver.ConnectionRemoved:
		if tc := s.reg.get(ev.ConnID); tc != nil {
			s.log.Info("connection record removed; disconnecting", "conn", tc.label())
			s.spawn(func() { s.disconnect(tc, tunnel.CodeRemoved, "connection removed by an operator") })
		}
	}
}

// HTTPAddr is the bound public HTTP address.
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// TunnelAddr is the bound UDP tunnel address.
func (s *Server) TunnelAddr() net.Addr { return s.tunnelLn.Addr() }

// APIAddr is the bound control API address (HTTPS).
func (s *Server) APIAddr() net.Addr { return s.apiLn.Addr() }

// APIURL is the control API's base URL.
func (s *Server) APIURL() string {
	_, port, _ := net.SplitHostPort(s.apiLn.Addr().String())
	host, _, _ := net.SplitHostPort(s.apiLn.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port)
}

// Service is the control service, for in-process administration.
func (s *Server) Service() *controlserver.Service { return s.svc }

// CAFile is the path of the edge CA certificate (PEM).
func (s *Server) CAFile() string { return filepath.Join(s.cfg.DataDir, "tls", pki.CACertFile) }

// CAPEM is the edge CA certificate.
func (s *Server) CAPEM() []byte { return s.bundle.CACertPEM }

// AdminTokenFile is the path of the admin API token; CreatedAdminToken says
// whether this start created it.
func (s *Server) AdminTokenFile() string  { return s.adminTokenFile }
func (s *Server) CreatedAdminToken() bool { return s.createdToken }

// Connections is the number of registered tunnel connections.
func (s *Server) Connections() int { return s.reg.count() }

// Node is this edge's node name.
func (s *Server) Node() string { return s.node }

// LoginCommand is the exact `adit login` command for this edge.
func (s *Server) LoginCommand() string {
	return "adit login --api " + s.APIURL() + " --token-file " + strconv.Quote(s.adminTokenFile) + " --ca " + strconv.Quote(s.CAFile())
}

// Close shuts the edge down: it stops accepting, gives requests in flight a
// few seconds, closes tunnel connections (all at once) so connectors move
// on at once, waits for every goroutine it started, removes the
// connection records and stops the store. It returns what failed, joined.
func (s *Server) Close() error {
	s.closed.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	s.closing.Store(true)
	s.reg.stop() // no registration from here on (tunnelconn.go)
	if s.presence != nil {
		s.unregisterEdge() // fleet.go: other edges and DNS stop sending visitors first
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	if s.httpSrv != nil {
		errs = append(errs, s.shutdownPublic(ctx)) // public.go
	}
	if s.apiSrv != nil {
		if err := s.apiSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("edge: api server: %w", err))
		}
	}
	// Tell connectors first, so they move on at once: closing the
	// listener ends the connections without a word to the peer.
	s.closeTunnelConns(ctx) // shutdown.go
	errs = append(errs, s.closePeers())
	for _, ln := range []interface{ Close() error }{s.tunnelLn, s.wsLn, s.httpLn, s.httpsLn, s.h3Conn, s.apiLn} {
		if ln != nil {
			ln.Close() // already closed by their servers' Shutdown, or about to be
		}
	}
	errs = append(errs, s.closeDNS()) // dns.go: its servers end before wg.Wait
	s.cancel()
	if s.tcp != nil {
		s.tcp.close()
	}
	s.spawnMu.Lock()
	s.stopped = true
	s.spawnMu.Unlock()
	s.wg.Wait()
	errs = append(errs, closeLayers(s.layers))
	if s.certs != nil {
		errs = append(errs, s.certs.Close())
	}
	if s.presence != nil {
		errs = append(errs, s.presence.Close())
	}
	left := false
	if s.store != nil && s.leaving.Load() {
		err := s.removeSelf() // fleetjoin.go
		left = err == nil
		errs = append(errs, err)
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if left {
		// The member is gone from the cluster: its data cannot start it
		// again. Coming back is a new --join.
		errs = append(errs, os.RemoveAll(filepath.Join(s.cfg.DataDir, "etcd")))
	}
	if s.metricsSrv != nil {
		errs = append(errs, s.metricsSrv.Close())
	}
	return errors.Join(errs...)
}
