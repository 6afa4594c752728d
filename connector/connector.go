// Package connector is the adit connector daemon: it dials out to the edge,
// keeps several registered connections open, and serves each request stream
// the edge sends by handing it to the origin its ingress rules choose.
//
// It is also a library. [Listen] runs a connector whose origin is the
// program itself: each HTTP request the tunnel receives is accepted as a
// net.Conn speaking HTTP/1.1 (serve it with http.Serve), each TCP stream on
// [Listener.TCP], with no daemon and no local port (listen.go says why a
// listener rather than a handler). [New] and [Connector.Run] run the
// daemon `adit tunnel run` is, with ingress rules.
//
// A request arrives as a stream in conn.go (serveConn → AcceptStream) and is
// served in stream.go (serveStream → ingress match → origin → response);
// an upgrade answered 101 is piped to the origin in upgrade.go; TCP streams in tcp.go (and socks.go for SOCKS5 rules). reconnect.go
// keeps the connections up (backoff, probing, noticing an edge restart);
// metrics.go serves /metrics and /ready.
package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/ratelog"
	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// Version is the connector software version sent at registration.
var Version = "dev"

// Config configures a connector. TunnelID, Secret, EdgeAddrs and Ingress are
// required.
type Config struct {
	// TunnelID and Secret identify and authenticate the tunnel.
	TunnelID string
	Secret   []byte
	// EdgeAddrs are the edge tunnel addresses (host:port) to dial. The HA
	// connections spread over them, and over the edges of the fleet once
	// an edge lists them (edges.go); then these are a fallback.
	EdgeAddrs []string
	// FindEdges, if set, finds the edges again while the connector runs,
	// every FindEdgesEvery: what it returns replaces EdgeAddrs (the pool
	// until an edge sends the fleet's list, a fallback after). An error or
	// an empty answer keeps the addresses known. `tunnel run --edge-zone`
	// looks up the fleet's SRV records with it.
	FindEdges func(ctx context.Context) ([]string, error)
	// FindEdgesEvery is how often FindEdges runs. If zero,
	// DefaultFindEdgesEvery (the fleet's SRV records' default TTL).
	FindEdgesEvery time.Duration
	// Region is the connector's region label: its connections prefer the
	// edges of the fleet with this region (edges.go). If empty, none is
	// preferred.
	Region string
	// EdgeCA is the PEM CA that verifies the edge. If empty, the system roots.
	EdgeCA []byte
	// ServerName overrides the TLS name checked on the edge certificate. If
	// empty, the host of the address dialled.
	ServerName string
	// Ingress chooses the origin for each request. With RemoteConfig it is
	// what serves until the edge's configuration arrives; if nil then,
	// every request gets a 503.
	Ingress *ingress.Ingress
	// RemoteConfig makes the connector take its ingress rules from the
	// tunnel's configuration held by the edge, at registration and on
	// every change (remote.go). Zero: the rules are Ingress (and
	// SetIngress).
	RemoteConfig bool
	// LocalConfig names the config file Ingress was read from, if any: the
	// connector then tells the edge it ignores the tunnel's remote
	// configuration, and logs so once. Empty: not said.
	LocalConfig string
	// HAConnections is how many connections to hold open. If zero,
	// DefaultHAConnections.
	HAConnections int
	// Protocol is the transport: "quic", "websocket", or "auto" (the default
	// when empty): QUIC, falling back to WebSocket over TCP when UDP is
	// blocked (see transport.go).
	Protocol string
	// QUICRetryInterval is how long "auto" keeps to WebSocket after QUIC
	// failed before it tries QUIC again. If zero, 5m.
	QUICRetryInterval time.Duration
	// WebSocket tunes the WebSocket transport (including its HTTPS_PROXY
	// handling); the zero value is the default.
	WebSocket tunnelws.Config
	// QUIC tunes the QUIC transport; the zero value is the default, except
	// that a zero HandshakeTimeout is 2s when dialing (see reconnect.go).
	QUIC tunnelquic.Config
	// BindAddr is the local IP address connections to the edge are dialed
	// from, over either transport (cloudflared's --edge-bind-address), for
	// a host with several. If nil, the system picks one by its routes.
	// QUIC.LocalAddr or WebSocket.LocalAddr, if set, win over it.
	BindAddr net.IP
	// RetryBase and RetryMax shape the exponential reconnect backoff used
	// after refusals, and by HA connections other than the first to each
	// edge address while the edge is unreachable: RetryBase doubling per
	// failed attempt, capped at RetryMax, with jitter. If zero, 1s and 30s.
	RetryBase, RetryMax time.Duration
	// ReconnectDelay is how often the first connection to each edge
	// address retries while the edge is unreachable (jittered ±50%), and
	// how soon any connection retries after losing a registered one. If
	// zero, 500ms. See reconnect.go.
	ReconnectDelay time.Duration
	// MetricsAddr, if set, is the host:port of a plain-HTTP listener for
	// /metrics, /ready and /healthcheck (package metrics), opened by Run;
	// port 0 picks one (see Connector.MetricsAddr). If empty, there is none.
	MetricsAddr string
	// GracePeriod is how long requests in flight may take to finish after
	// Run's context is cancelled. If zero, DefaultGracePeriod.
	GracePeriod time.Duration
	// LogRequests logs each request served at info level ("connector:
	// served", with its request ID). If false, at debug level.
	LogRequests bool
	// Logger receives the connector's logs. If nil, logs are discarded.
	Logger *slog.Logger
	// AccessHTTPClient fetches the edge's Access keys for rules with
	// originRequest.access (access.go). If nil, one with the system roots
	// and a 15s timeout.
	AccessHTTPClient *http.Client
}

// Defaults of Config, also those of `adit tunnel run`'s flags and of the
// config file's ha-connections and grace-period (as cloudflared's).
const (
	DefaultHAConnections = 4
	DefaultGracePeriod   = 30 * time.Second
	// DefaultFindEdgesEvery is how often Config.FindEdges runs.
	DefaultFindEdgesEvery = 30 * time.Second
)

// ErrAuth is wrapped by Run's error when the edge refuses the tunnel for
// good: wrong secret, unknown or deleted tunnel.
var ErrAuth = errors.New("authentication failed")

// Connector is a running (or runnable) connector.
type Connector struct {
	cfg     Config
	log     *slog.Logger
	id      string
	tlsConf *tls.Config
	router  atomic.Pointer[router]

	ready     chan struct{}
	readyOnce sync.Once
	live      atomic.Int32

	edges       *edgeSet       // edges.go: the edges known, and which slot is on which
	runs        sync.WaitGroup // serveConn goroutines (reconnect.go's startRun)
	transport   transportState // transport.go: "auto" fallback
	serveFn     func(ctx context.Context, index int, addr string, log *slog.Logger, at *attempt) error
	metrics     *connMetrics // metrics.go
	metricsAddr atomic.Pointer[net.Addr]
	rl          *ratelog.Limiter // for what a broken edge can trigger at will
	remote      remoteState      // remote.go
	localTCP    *connQueue       // listen.go: TCP streams go to Listener.TCP
}

// New checks cfg and prepares the origins of its ingress rules.
func New(cfg Config) (*Connector, error) {
	if _, err := uuid.Parse(cfg.TunnelID); err != nil {
		return nil, fmt.Errorf("connector: tunnel ID %q is not a UUID", cfg.TunnelID)
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("connector: no tunnel secret")
	}
	if len(cfg.EdgeAddrs) == 0 {
		return nil, errors.New("connector: no edge address to dial")
	}
	if cfg.Ingress == nil && cfg.RemoteConfig {
		ing, err := ingress.FromURL("http_status:503")
		if err != nil {
			return nil, err
		}
		cfg.Ingress = ing
	}
	if cfg.Ingress == nil {
		return nil, errors.New("connector: no ingress rules")
	}
	if err := validProtocol(cfg.Protocol); err != nil {
		return nil, err
	}
	if cfg.HAConnections <= 0 {
		cfg.HAConnections = DefaultHAConnections
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.ReconnectDelay <= 0 {
		cfg.ReconnectDelay = 500 * time.Millisecond
	}
	if cfg.QUIC.LocalAddr == nil {
		cfg.QUIC.LocalAddr = cfg.BindAddr
	}
	if cfg.WebSocket.LocalAddr == nil {
		cfg.WebSocket.LocalAddr = cfg.BindAddr
	}
	log := logs.Component(cfg.Logger, "connector")
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: cfg.ServerName}
	if len(cfg.EdgeCA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.EdgeCA) {
			return nil, errors.New("connector: the edge CA is not valid PEM")
		}
		tlsConf.RootCAs = pool
	}
	c := &Connector{
		cfg:     cfg,
		log:     log.With("tunnel", cfg.TunnelID),
		id:      uuid.NewString(),
		tlsConf: tlsConf,
		ready:   make(chan struct{}),
		rl:      ratelog.NewLimiter(10 * time.Second),
	}
	c.edges = newEdgeSet(cfg.EdgeAddrs, cfg.Region, c.id, cfg.HAConnections)
	c.serveFn = c.serveConn
	c.metrics = newConnMetrics(func() float64 { return float64(c.live.Load()) })
	c.registerRemoteMetrics() // remote.go
	r, err := newRouter(cfg.Ingress, log, cfg.AccessHTTPClient)
	if err != nil {
		return nil, err
	}
	c.router.Store(r)
	return c, nil
}

// SetIngress replaces the ingress rules. New requests use the new rules at
// once; requests in flight finish with the rules they started with. The old
// origins are released after grace (idle connections close; streams in
// flight keep theirs).
func (c *Connector) SetIngress(ing *ingress.Ingress) error {
	r, err := newRouter(ing, c.log, c.cfg.AccessHTTPClient)
	if err != nil {
		return err
	}
	old := c.router.Swap(r)
	if old != nil {
		time.AfterFunc(c.cfg.GracePeriod, old.close)
	}
	return nil
}

// ID is this connector process's ID, as the edge records it.
func (c *Connector) ID() string { return c.id }

// Ready is closed once the first connection is registered.
func (c *Connector) Ready() <-chan struct{} { return c.ready }

// Connections is the number of currently registered connections.
func (c *Connector) Connections() int { return int(c.live.Load()) }

// Run holds the HA connections until ctx is cancelled, then drains: it
// unregisters every connection, waits up to GracePeriod for requests in
// flight, and returns nil. It returns an error wrapping ErrAuth at once if
// the edge refuses the tunnel for good.
func (c *Connector) Run(ctx context.Context) error {
	defer func() { c.router.Load().close() }()
	closeMetrics, err := c.serveMetrics() // metrics.go
	if err != nil {
		return err
	}
	defer closeMetrics()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	if c.cfg.Protocol == "" || c.cfg.Protocol == ProtocolAuto {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.probeQUIC(runCtx)
		}()
	}
	if c.cfg.FindEdges != nil {
		wg.Go(func() { c.findEdges(runCtx) }) // edges.go
	}
	for i := range c.cfg.HAConnections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.superviseConn(runCtx, i); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	c.runs.Wait() // connections that moved away and still drain
	if err := context.Cause(runCtx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// edgeTLS is the TLS configuration for dialing the edge at addr.
func (c *Connector) edgeTLS(addr string) (*tls.Config, error) {
	tc := c.tlsConf.Clone()
	if tc.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("connector: edge address %q: %w", addr, err)
		}
		tc.ServerName = host
	}
	return tc, nil
}

func (c *Connector) dial(ctx context.Context, addr string) (tunnel.Conn, error) {
	tc, err := c.edgeTLS(addr)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return c.dialTransport(dctx, addr, tc)
}
