// Package edgepeer keeps the peer links between the edges of a fleet: one
// QUIC connection per pair of edges (the tunnel's transport, package
// tunnelquic), authenticated both ways by the fleet's CA with the edges'
// peer certificates (internal/pki: a certificate names the edge by a URI
// adit-edge:NODE; a connector's or any other certificate is refused), over
// which an edge forwards a request to an edge that holds a connection of
// its tunnel (docs/protocol.md, "Peer link").
//
// Links follows the fleet's edge records (control.EdgeNode under
// /adit/edges/, watched into memory) to learn where its peers listen
// (PeerAddr), their region and health. Of each pair, the edge whose node
// name sorts first dials and redials; the other accepts, and both open
// streams on the one connection. Rank orders the edges that hold a tunnel
// for a forward: this edge's region first, then the lowest round trip
// QUIC measures on the link.
//
// What a stream carries is the edge's business (edge/peer.go): Links hands
// every stream a peer opens to Config.Serve, with the Peer it came from.
// Every peer is hostile until its certificate says otherwise, and bounded
// after: at most MaxStreams streams at once, at most MaxHeaderReads of them
// reading their first frames (Peer.Admit).
package edgepeer

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/edgeview"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
)

// Config configures the peer links of one edge.
type Config struct {
	// Node is this edge's node name. Required.
	Node string
	// Addr is the UDP address the link listener binds (host:port; port 0
	// picks one). Required.
	Addr string
	// Cert is this edge's peer certificate (pki.LoadOrCreatePeer). Required.
	Cert tls.Certificate
	// Roots holds the fleet's CA, which signs every edge's peer
	// certificate. Required.
	Roots *x509.CertPool
	// Edges is the fleet's registry, as the edge watches it (its
	// edgeview.View): the peers to dial, their regions. Required.
	Edges edgeview.Registry
	// Serve handles one stream a peer opened, on a goroutine of its own; it
	// must close s. Required.
	Serve func(ctx context.Context, from *Peer, s tunnel.Stream)
	// MaxStreams bounds the streams one peer may have open at once on its
	// link. If zero, 4096.
	MaxStreams int64
	// MaxHeaderReads bounds the streams of one peer that are reading their
	// first frames at once (Peer.Admit), so that what a peer makes this
	// edge allocate before a request is on its way stays bounded. If zero,
	// 32.
	MaxHeaderReads int
	// QUIC tunes the links' transport. Zero fields take: a keepalive every
	// second and a 5s idle timeout (a dead peer is found in seconds),
	// MaxStreams incoming streams; then tunnelquic's defaults.
	QUIC tunnelquic.Config
	// Logger receives the links' logs. If nil, they are discarded.
	Logger *slog.Logger
}

func (c *Config) check() error {
	switch {
	case c.Node == "":
		return errors.New("edgepeer: config: Node is empty")
	case c.Addr == "":
		return errors.New("edgepeer: config: Addr is empty")
	case len(c.Cert.Certificate) == 0:
		return errors.New("edgepeer: config: no Cert")
	case c.Roots == nil:
		return errors.New("edgepeer: config: no Roots")
	case c.Edges == nil:
		return errors.New("edgepeer: config: no Edges")
	case c.Serve == nil:
		return errors.New("edgepeer: config: no Serve")
	case c.MaxStreams < 0 || c.MaxHeaderReads < 0:
		return errors.New("edgepeer: config: negative limit")
	}
	return nil
}

// Timing of the links.
const (
	dialTimeout = 5 * time.Second
	minBackoff  = 250 * time.Millisecond
	maxBackoff  = 5 * time.Second
	// A link that has received nothing for suspectAfter (two keepalives
	// and a margin) is quiet: Rank leaves it out until it is heard from
	// again, so that requests do not wait on an edge that died for the
	// idle timeout to end its link.
	suspectAfter = 2500 * time.Millisecond
	watchTick    = 250 * time.Millisecond
)

// Peer is one edge at the other end of a link.
type Peer struct {
	// Node is the peer's node name, from its certificate.
	Node    string
	headers chan struct{}
}

// Admit waits for one of the peer's MaxHeaderReads slots for reading a
// stream's first frames; the caller calls release once they are read (or
// it gave up). It fails when ctx ends first.
func (p *Peer) Admit(ctx context.Context) (release func(), err error) {
	select {
	case p.headers <- struct{}{}:
		return func() { <-p.headers }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// link is the one live connection to a peer.
type link struct {
	peer *Peer
	conn tunnel.Conn

	// The watchdog's (watch): the packet count it last saw and when it
	// changed; quiet is set once it stood still for suspectAfter.
	lastPackets uint64
	lastHeard   time.Time
	quiet       atomic.Bool
}

func (l *link) rtt() time.Duration {
	if r, ok := l.conn.(interface{ RTT() time.Duration }); ok {
		return r.RTT()
	}
	return 0
}

// Links is a running set of peer links. Its methods are safe for
// concurrent use.
type Links struct {
	cfg    Config
	log    *slog.Logger
	ln     tunnel.Listener
	client *tls.Config // for dialing; VerifyConnection is set per peer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   func() // ends the registry's subscription

	mu      sync.Mutex
	edges   map[string]control.EdgeNode // the fleet's records, by node
	links   map[string]*link            // node → its live link
	dialers map[string]*dialer          // node → the loop dialing it (the nodes after this one)
	closed  bool
}

// Start opens the link listener, loads the fleet's edge records and starts
// following them: it dials the peers it should dial and accepts the
// others. Close stops it.
func Start(ctx context.Context, cfg Config) (*Links, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 4096
	}
	if cfg.MaxHeaderReads == 0 {
		cfg.MaxHeaderReads = 32
	}
	q := &cfg.QUIC
	if q.KeepAlivePeriod == 0 {
		q.KeepAlivePeriod = time.Second
	}
	if q.MaxIdleTimeout == 0 {
		q.MaxIdleTimeout = 5 * time.Second
	}
	if q.MaxIncomingStreams == 0 {
		q.MaxIncomingStreams = cfg.MaxStreams
	}
	log := logs.Component(cfg.Logger, "peer")
	if q.Logger == nil {
		q.Logger = log
	}
	l := &Links{
		cfg:     cfg,
		log:     log,
		edges:   make(map[string]control.EdgeNode),
		links:   make(map[string]*link),
		dialers: make(map[string]*dialer),
	}
	server := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cfg.Cert},
		ClientAuth:   tls.RequireAnyClientCert, // verified below, as a peer certificate
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := l.verify(cs, x509.ExtKeyUsageClientAuth)
			return err
		},
	}
	var err error
	l.ln, err = tunnelquic.Listen(cfg.Addr, server, cfg.QUIC)
	if err != nil {
		return nil, fmt.Errorf("edgepeer: %w", err)
	}
	l.client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cfg.Cert},
		// The listener is identified by its peer certificate's URI, not
		// by a host name: verify runs in VerifyConnection instead.
		InsecureSkipVerify: true,
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.stop = cfg.Edges.Subscribe(l.apply) // fleet.go
	l.wg.Go(l.accept)
	l.wg.Go(l.watch)
	return l, nil
}

// watch marks the links that went quiet, and those heard from again.
func (l *Links) watch() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case now := <-t.C:
			l.mu.Lock()
			links := make([]*link, 0, len(l.links))
			for _, lk := range l.links {
				links = append(links, lk)
			}
			l.mu.Unlock()
			for _, lk := range links {
				n := lk.conn.PacketsReceived()
				if lk.lastHeard.IsZero() || n != lk.lastPackets {
					lk.lastPackets, lk.lastHeard = n, now
					if lk.quiet.Swap(false) {
						l.log.Info("peer link heard from again", "peer", lk.peer.Node)
					}
				} else if now.Sub(lk.lastHeard) >= suspectAfter && !lk.quiet.Swap(true) {
					l.log.Warn("peer link quiet; forwarding around it", "peer", lk.peer.Node, "quiet_for", now.Sub(lk.lastHeard).Round(time.Millisecond))
				}
			}
		}
	}
}

// Addr is the bound UDP address of the link listener.
func (l *Links) Addr() net.Addr { return l.ln.Addr() }

// verify checks the other side's certificate as a peer certificate of the
// fleet, for usage, and returns the node it names, which must not be this
// edge.
func (l *Links) verify(cs tls.ConnectionState, usage x509.ExtKeyUsage) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("edgepeer: no certificate: only edges of the fleet may connect")
	}
	node, err := pki.VerifyPeer(cs.PeerCertificates[0], cs.PeerCertificates[1:], l.cfg.Roots, usage)
	if err != nil {
		return "", fmt.Errorf("edgepeer: %w", err)
	}
	if node == l.cfg.Node {
		return "", fmt.Errorf("edgepeer: the peer certificate names this edge (%q)", node)
	}
	return node, nil
}

// accept takes the links the peers that sort before this edge dial.
func (l *Links) accept() {
	for {
		c, err := l.ln.Accept(l.ctx)
		if err != nil {
			return
		}
		node, err := peerNode(c)
		if err != nil {
			c.Close(tunnel.CodeProtocol, "no peer certificate")
			continue
		}
		l.mu.Lock()
		_, known := l.edges[node]
		l.mu.Unlock()
		if !known {
			// A certificate of the fleet, but no live edge record: an edge
			// that left (its certificate outlives it), or one whose record
			// this edge has not seen yet (it dials again).
			l.log.Info("peer link refused: no live edge record for the node", "peer", node, "remote", c.RemoteAddr().String())
			c.Close(tunnel.CodeUnauthorized, "no live edge record for "+node)
			continue
		}
		l.wg.Go(func() { l.serveLink(node, c, "accepted") })
	}
}

// peerNode reads the node name from a connection's verified peer
// certificate.
func peerNode(c tunnel.Conn) (string, error) {
	t, ok := c.(interface{ TLS() tls.ConnectionState })
	if !ok {
		return "", errors.New("edgepeer: transport without TLS state")
	}
	cs := t.TLS()
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("edgepeer: no peer certificate")
	}
	// Verified in the handshake; only read here.
	for _, u := range cs.PeerCertificates[0].URIs {
		if u.Scheme == pki.PeerURIScheme {
			return pkiNode(u.Opaque)
		}
	}
	return "", errors.New("edgepeer: no peer URI")
}

// serveLink makes c the live link to node (replacing an older one) and
// serves the streams the peer opens until c ends.
func (l *Links) serveLink(node string, c tunnel.Conn, how string) {
	lk := &link{peer: &Peer{Node: node, headers: make(chan struct{}, l.cfg.MaxHeaderReads)}, conn: c}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close(tunnel.CodeShutdown, "edge shutting down")
		return
	}
	old := l.links[node]
	l.links[node] = lk
	l.mu.Unlock()
	if old != nil {
		old.conn.Close(tunnel.CodeNormal, "replaced by a new link")
	}
	l.log.Info("peer link up", "peer", node, "remote", c.RemoteAddr().String(), "how", how)
	for {
		s, err := c.AcceptStream(l.ctx)
		if err != nil {
			break
		}
		l.wg.Go(func() { l.cfg.Serve(l.ctx, lk.peer, s) })
	}
	if l.ctx.Err() != nil {
		c.Close(tunnel.CodeShutdown, "edge shutting down")
	} else {
		c.Close(tunnel.CodeNormal, "")
	}
	l.mu.Lock()
	if l.links[node] == lk {
		delete(l.links, node)
	}
	l.mu.Unlock()
	l.log.Info("peer link down", "peer", node, "reason", c.Err())
}

// Open opens a stream to node on its link.
func (l *Links) Open(ctx context.Context, node string) (tunnel.Stream, error) {
	l.mu.Lock()
	lk := l.links[node]
	l.mu.Unlock()
	if lk == nil {
		return nil, fmt.Errorf("edgepeer: no link to edge %s", node)
	}
	return lk.conn.OpenStream(ctx)
}

// Rank returns the nodes among candidates that a request can be forwarded
// to now (a live link that is not quiet, a live edge record that is not
// draining), best first:
// this edge's region, then the lowest round trip, then by name.
func (l *Links) Rank(candidates []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	region := l.edges[l.cfg.Node].Region
	type ranked struct {
		node string
		away bool // another region
		rtt  time.Duration
	}
	var rs []ranked
	for _, n := range candidates {
		lk, e := l.links[n], l.edges[n]
		if lk == nil || lk.quiet.Load() || n == l.cfg.Node || e.Name == "" || e.Health == control.EdgeHealthDraining || slices.ContainsFunc(rs, func(r ranked) bool { return r.node == n }) {
			continue
		}
		rs = append(rs, ranked{node: n, away: region == "" || e.Region != region, rtt: lk.rtt()})
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		if a.away != b.away {
			if a.away {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.rtt, b.rtt), cmp.Compare(a.node, b.node))
	})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.node
	}
	return out
}

// LinkInfo describes one live link, for metrics and tests.
type LinkInfo struct {
	Node string
	RTT  time.Duration
}

// Links returns the live links, by node name.
func (l *Links) Links() []LinkInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LinkInfo, 0, len(l.links))
	for n, lk := range l.links {
		out = append(out, LinkInfo{Node: n, RTT: lk.rtt()})
	}
	slices.SortFunc(out, func(a, b LinkInfo) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// Close closes every link and the listener and waits for the streams
// being served to end.
func (l *Links) Close() error {
	l.stop() // outside l.mu: it waits for an apply under way
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for _, d := range l.dialers {
		d.cancel()
	}
	links := make([]*link, 0, len(l.links))
	for _, lk := range l.links {
		links = append(links, lk)
	}
	l.mu.Unlock()
	l.cancel()
	err := l.ln.Close()
	for _, lk := range links {
		lk.conn.Close(tunnel.CodeShutdown, "edge shutting down")
	}
	l.wg.Wait()
	return err
}
