// Package connector is the adit connector daemon: it dials out to the edge,
// keeps several registered connections open, and serves each request stream
// the edge sends by handing it to the origin its ingress rules choose.
//
// It is also a library: a Go program can expose itself by running a
// Connector with ingress rules pointing at its own listener.
//
// A request arrives as a stream in conn.go (serveConn → AcceptStream) and is
// served in stream.go (serveStream → ingress match → origin → response).
package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
)

// Version is the connector software version sent at registration.
var Version = "dev"

// Config configures a connector. TunnelID, Secret, EdgeAddrs and Ingress are
// required.
type Config struct {
	// TunnelID and Secret identify and authenticate the tunnel.
	TunnelID string
	Secret   []byte
	// EdgeAddrs are the edge tunnel addresses (host:port) to dial. HA
	// connection i dials EdgeAddrs[i % len(EdgeAddrs)].
	EdgeAddrs []string
	// EdgeCA is the PEM CA that verifies the edge. If empty, the system roots.
	EdgeCA []byte
	// ServerName overrides the TLS name checked on the edge certificate. If
	// empty, the host of the address dialled.
	ServerName string
	// Ingress chooses the origin for each request.
	Ingress *ingress.Ingress
	// HAConnections is how many connections to hold open. If zero, 4.
	HAConnections int
	// Protocol is the transport: "quic" (the default when empty).
	Protocol string
	// QUIC tunes the QUIC transport; the zero value is the default.
	QUIC tunnelquic.Config
	// RetryBase and RetryMax shape the reconnect backoff: RetryBase doubling
	// per failed attempt, capped at RetryMax, with jitter. If zero, 1s and 30s.
	RetryBase, RetryMax time.Duration
	// GracePeriod is how long requests in flight may take to finish after
	// Run's context is cancelled. If zero, 30s.
	GracePeriod time.Duration
	// Logger receives the connector's logs. If nil, logs are discarded.
	Logger *slog.Logger
}

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
	if cfg.Ingress == nil {
		return nil, errors.New("connector: no ingress rules")
	}
	switch cfg.Protocol {
	case "", "quic":
	default:
		return nil, fmt.Errorf("connector: protocol %q is not supported (use quic)", cfg.Protocol)
	}
	if cfg.HAConnections <= 0 {
		cfg.HAConnections = 4
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
	}
	r, err := newRouter(cfg.Ingress, log)
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
	r, err := newRouter(ing, c.log)
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
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
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
	if err := context.Cause(runCtx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// superviseConn keeps HA connection index up: it reconnects with
// exponential backoff and jitter until ctx ends. It returns a non-nil error
// only for a permanent refusal.
func (c *Connector) superviseConn(ctx context.Context, index int) error {
	addr := c.cfg.EdgeAddrs[index%len(c.cfg.EdgeAddrs)]
	log := c.log.With("conn_index", index, "edge", addr)
	attempt := 0
	for {
		start := time.Now()
		err := c.serveConn(ctx, index, addr, log)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrAuth) {
			log.Error("connector: edge refused the tunnel", "err", err)
			return err
		}
		// A connection that was up for a while starts the backoff over.
		if time.Since(start) > 2*c.cfg.RetryMax {
			attempt = 0
		}
		delay := backoff(c.cfg.RetryBase, c.cfg.RetryMax, attempt)
		attempt++
		log.Warn("connector: connection lost; reconnecting", "err", err, "retry_in", delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is base·2^attempt capped at limit, with the upper half jittered so
// that many connectors restarting together spread out.
func backoff(base, limit time.Duration, attempt int) time.Duration {
	d := base
	for range attempt {
		d *= 2
		if d >= limit {
			d = limit
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

func (c *Connector) dial(ctx context.Context, addr string) (tunnel.Conn, error) {
	tc := c.tlsConf.Clone()
	if tc.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("connector: edge address %q: %w", addr, err)
		}
		tc.ServerName = host
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return tunnelquic.Dial(dctx, addr, tc, c.cfg.QUIC)
}
