package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"

	"github.com/adit-dev/adit/carrier"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/edge/edgepeer"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/tunnel"
)

// Forwarding between the edges of a fleet (docs/protocol.md, "Peer
// link"). A request whose tunnel has no connection on this edge that can
// take it goes to an edge that holds one, over the peer link (package
// edgepeer), as step 6's last resort (layers.go): tunnelTransport.
// openStreamSkip (failover.go) asks peers.pick once the registry has no
// connection left to try. To the request path a peer edge is one more
// connection of the tunnel (a tunnelConn whose conn is a peerConn), so
// HTTP, upgrades, `adit access` and public TCP ports are forwarded alike,
// and failover moves a request that may be sent again on to the next edge
// when one refuses or fails before answering.
//
// The entry edge (this one, for its visitors) has run every layer: the
// request carries its ID, the visitor's address and every header the
// layers set (Access's assertion) in the request frame, and the holding
// edge runs none of them again. The holding edge (servePeer) sends a
// forwarded request only down its own connections, never to another
// peer: one hop at most, so no loop.

// DefaultPeerPort is the UDP port of the peer link when Config.PeerAddr
// is empty.
const DefaultPeerPort = 7846

// peerHeaderTimeout bounds how long a peer may take to send a forwarded
// stream's first two frames.
const peerHeaderTimeout = 10 * time.Second

// peers picks the edge a request is forwarded to.
type peers struct {
	links *edgepeer.Links
	state *controlserver.State
	node  string // this edge

	forwarded *prometheus.CounterVec // by peer node
	received  *prometheus.CounterVec // by result
}

// registerMetrics registers the peer link's metrics.
func (p *peers) registerMetrics(reg prometheus.Registerer) {
	p.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adit_edge_peer_forwarded_total",
		Help: "Requests this edge sent to a peer edge that holds their tunnel, by peer.",
	}, []string{"peer"})
	p.received = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adit_edge_peer_received_total",
		Help: "Requests peer edges forwarded to this edge, by result: served (sent down a connection), refused (no connection or route here), bad (broke the protocol).",
	}, []string{"result"})
	links := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "adit_edge_peer_links",
		Help: "Live peer links to other edges of the fleet.",
	}, func() float64 { return float64(len(p.links.Links())) })
	reg.MustRegister(p.forwarded, p.received, links)
}

// pick returns, as a tunnelConn counting one stream in flight, the best
// peer edge holding a connection of the tunnel (edgepeer.Links.Rank:
// region, then round trip), skipping the edges of the peer connections in
// skip; nil if there is none.
func (p *peers) pick(tunnelID string, skip []*tunnelConn) *tunnelConn {
	var nodes []string
	for _, c := range p.state.Connections(tunnelID) {
		if c.EdgeNode != p.node && !slices.Contains(nodes, c.EdgeNode) &&
			!slices.ContainsFunc(skip, func(tc *tunnelConn) bool { return tc.info.EdgeNode == c.EdgeNode }) {
			nodes = append(nodes, c.EdgeNode)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	ranked := p.links.Rank(nodes)
	if len(ranked) == 0 {
		return nil
	}
	tc := &tunnelConn{
		conn: &peerConn{p: p, node: ranked[0], tunnelID: tunnelID},
		info: control.Connection{TunnelID: tunnelID, EdgeNode: ranked[0], Protocol: "peer"},
	}
	tc.inflight.Add(1)
	return tc
}

// peerConn is a tunnel's way through one peer edge: each stream it opens
// is a new stream on the link to that edge, announced by a peer_forward
// frame.
type peerConn struct {
	p              *peers
	node, tunnelID string
}

func (c *peerConn) OpenStream(ctx context.Context) (tunnel.Stream, error) {
	s, err := c.p.links.Open(ctx, c.node)
	if err != nil {
		return nil, err
	}
	if err := tunnel.WriteMessage(s, &tunnel.PeerForward{TunnelID: c.tunnelID, EntryNode: c.p.node}); err != nil {
		s.Close()
		return nil, fmt.Errorf("edge: forwarding to edge %s: %w", c.node, err)
	}
	c.p.forwarded.WithLabelValues(c.node).Inc()
	return &peerStream{Stream: s, node: c.node}, nil
}

func (c *peerConn) AcceptStream(context.Context) (tunnel.Stream, error) {
	return nil, errors.ErrUnsupported
}
func (c *peerConn) Close(tunnel.ErrorCode, string) error { return nil } // the link is edgepeer's
func (c *peerConn) Done() <-chan struct{}                { return nil }
func (c *peerConn) Err() error                           { return nil }
func (c *peerConn) LocalAddr() net.Addr                  { return peerAddr(c.p.node) }
func (c *peerConn) RemoteAddr() net.Addr                 { return peerAddr(c.node) }
func (c *peerConn) Protocol() string                     { return "peer" }
func (c *peerConn) PacketsReceived() uint64              { return 0 }

// peerAddr names an edge where a net.Addr is wanted.
type peerAddr string

func (a peerAddr) Network() string { return "peer" }
func (a peerAddr) String() string  { return string(a) }

// peerStream is a forwarded request's stream: its first read takes the
// holding edge's peer_reply, then the connector's answer follows as from
// a connector.
type peerStream struct {
	tunnel.Stream
	node    string
	r       *bufio.Reader // holds bytes read past the reply; nil once empty
	replied bool
}

func (s *peerStream) Read(p []byte) (int, error) {
	if !s.replied {
		s.r = bufio.NewReaderSize(s.Stream, 512)
		var m tunnel.PeerReply
		if err := tunnel.ReadMessageLimit(s.r, &m, tunnel.MaxPeerForward); err != nil {
			return 0, fmt.Errorf("edge: peer edge %s: %w", s.node, err)
		}
		if m.Error != "" {
			return 0, &peerRefusedError{node: s.node, reason: m.Error}
		}
		s.replied = true
	}
	if s.r != nil {
		if s.r.Buffered() > 0 {
			return s.r.Read(p)
		}
		s.r = nil
	}
	return s.Stream.Read(p)
}

// peerRefusedError is a holding edge's refusal: it had no connection for
// the tunnel after all (its connector left meanwhile). Nothing reached a
// connector, so it counts as the tunnel being offline there.
type peerRefusedError struct{ node, reason string }

func (e *peerRefusedError) Error() string {
	return fmt.Sprintf("edge: peer edge %s refused the request: %s", e.node, e.reason)
}
func (e *peerRefusedError) Unwrap() error { return errTunnelOffline }

// listenPeer opens the peer link (Config.PeerAddr) and starts following
// the fleet's edges.
func (s *Server) listenPeer() error {
	addr := s.cfg.PeerAddr
	if addr == "off" {
		return nil
	}
	if addr == "" {
		host, port, _ := net.SplitHostPort(orDefault(s.cfg.TunnelAddr, ":7844"))
		addr = net.JoinHostPort(host, "0")
		if port == "7844" {
			addr = net.JoinHostPort(host, strconv.Itoa(DefaultPeerPort))
		}
	}
	cert, err := pki.LoadOrCreatePeer(filepath.Join(s.cfg.DataDir, "tls"), s.node)
	if err != nil {
		return fmt.Errorf("edge: peer link: %w", err)
	}
	links, err := edgepeer.Start(s.ctx, edgepeer.Config{
		Node:   s.node,
		Addr:   addr,
		Cert:   cert,
		Roots:  s.bundle.CAPool(),
		Edges:  s.edgeView,
		Serve:  s.servePeer,
		Logger: s.log,
	})
	if err != nil {
		return listenError("peer", addr, err)
	}
	s.peers = &peers{links: links, state: s.state, node: s.node}
	s.peers.registerMetrics(s.metrics.registry)
	return nil
}

// PeerAddr is the address other edges reach this edge's peer link at, as
// its fleet record publishes it: the bound address if it has a host of its
// own, else the advertised tunnel host with the bound port. Empty if the
// peer link is off.
func (s *Server) PeerAddr() string {
	if s.peers == nil {
		return ""
	}
	return s.reachable(s.peers.links.Addr()) // fleet.go
}

// PeerLinks lists this edge's live peer links, by node.
func (s *Server) PeerLinks() []edgepeer.LinkInfo {
	if s.peers == nil {
		return nil
	}
	return s.peers.links.Links()
}

// closePeers closes the peer links.
func (s *Server) closePeers() error {
	if s.peers == nil {
		return nil
	}
	return s.peers.links.Close()
}

// servePeer serves one stream a peer edge opened: a forwarded request. It
// goes down one of this edge's own connections of the tunnel, never to
// another peer; then the stream and the connector's are piped as they are.
func (s *Server) servePeer(ctx context.Context, from *edgepeer.Peer, ps tunnel.Stream) {
	log := s.rl.Logger(s.log).With("peer", from.Node)
	release, err := from.Admit(ctx)
	if err != nil {
		ps.Close()
		return
	}
	timer := time.AfterFunc(peerHeaderTimeout, func() { ps.Close() })
	br := bufio.NewReaderSize(ps, 4<<10)
	fwd, rh, err := readForward(br, from.Node)
	release()
	if !timer.Stop() && err == nil {
		err = errors.New("peer_forward and request frames took too long")
	}
	if err != nil {
		s.peers.received.WithLabelValues("bad").Inc()
		log.Warn("bad forwarded stream from a peer edge", "err", err)
		ps.Close()
		return
	}
	log = log.With("request_id", rh.RequestID, "tunnel", fwd.TunnelID)
	refuse := func(reason string) {
		s.peers.received.WithLabelValues("refused").Inc()
		log.Info("forwarded request refused", "reason", reason)
		tunnel.WriteMessage(ps, &tunnel.PeerReply{Error: reason})
		ps.CloseWrite()
		ps.Close()
	}
	if !s.routedTo(fwd.TunnelID, &rh) {
		refuse(fmt.Sprintf("hostname %q is not routed to tunnel %s on edge %s", rh.Host, fwd.TunnelID, s.node))
		return
	}
	local := &tunnelTransport{reg: s.reg, m: s.metrics} // no peers: one hop at most
	tc, cs, err := local.openStream(ctx, fwd.TunnelID)
	if err != nil {
		refuse(fmt.Sprintf("edge %s has no live connection for tunnel %s", s.node, fwd.TunnelID))
		return
	}
	defer tc.inflight.Add(-1)
	s.peers.received.WithLabelValues("served").Inc()
	b, err := tunnel.AppendMessage(nil, &rh)
	if err == nil {
		_, err = cs.Write(b)
	}
	if err == nil {
		err = tunnel.WriteMessage(ps, &tunnel.PeerReply{})
	}
	if err != nil {
		log.Debug("forwarded request broke off before its pipe", "err", err)
		cs.Close()
		ps.Close()
		return
	}
	if err := carrier.Pipe(&bufferedStream{Stream: ps, r: br}, cs); err != nil {
		log.Debug("forwarded request broke off", "err", err)
	}
}

// routedTo reports whether this edge routes rh's hostname to tunnelID too:
// a route for HTTP and upgrades; a route or a TCP port route for TCP.
func (s *Server) routedTo(tunnelID string, rh *tunnel.RequestHeader) bool {
	if id, ok := s.state.Route(rh.Host); ok && id == tunnelID {
		return true
	}
	if rh.Type != tunnel.StreamTCP {
		return false
	}
	return slices.ContainsFunc(s.state.TCPRoutes(), func(r control.TCPRoute) bool {
		return r.TunnelID == tunnelID && r.Hostname == rh.Host
	})
}

// readForward reads a forwarded stream's first two frames, from the link
// of the edge named from, and checks every field.
func readForward(br *bufio.Reader, from string) (tunnel.PeerForward, tunnel.RequestHeader, error) {
	var fwd tunnel.PeerForward
	var rh tunnel.RequestHeader
	if err := tunnel.ReadMessageLimit(br, &fwd, tunnel.MaxPeerForward); err != nil {
		return fwd, rh, fmt.Errorf("peer_forward: %w", err)
	}
	if id, err := uuid.Parse(fwd.TunnelID); err != nil || id.String() != fwd.TunnelID {
		return fwd, rh, fmt.Errorf("peer_forward: tunnel_id %.64q is not a UUID", fwd.TunnelID)
	}
	if fwd.EntryNode != from {
		return fwd, rh, fmt.Errorf("peer_forward: entry_node %.140q is not the link's edge %q", fwd.EntryNode, from)
	}
	if err := tunnel.ReadMessage(br, &rh); err != nil {
		return fwd, rh, fmt.Errorf("request: %w", err)
	}
	if err := checkForwarded(&rh); err != nil {
		return fwd, rh, fmt.Errorf("request: %w", err)
	}
	return fwd, rh, nil
}

// checkForwarded checks a forwarded request header as this edge would
// have built it: a known stream type; a method, a path and a host for
// HTTP; header names and values HTTP allows; a request ID; the visitor's
// ip:port (or ip, when a trusted proxy named it).
func checkForwarded(rh *tunnel.RequestHeader) error {
	switch rh.Type {
	case tunnel.StreamHTTP, tunnel.StreamWebSocket:
		if !httpguts.ValidHeaderFieldName(rh.Method) {
			return fmt.Errorf("method %.64q is not a token", rh.Method)
		}
		if rh.Path == "" || (rh.Path[0] != '/' && rh.Path != "*") || !printable(rh.Path) {
			return fmt.Errorf("path %.64q is not an origin-form request target", rh.Path)
		}
		if rh.Host == "" || !httpguts.ValidHostHeader(rh.Host) {
			return fmt.Errorf("host %.300q is not a host", rh.Host)
		}
	case tunnel.StreamTCP:
		if rh.Method != "" || rh.Path != "" {
			return errors.New("a tcp stream has a method or path")
		}
		if !httpguts.ValidHostHeader(rh.Host) {
			return fmt.Errorf("host %.300q is not a host", rh.Host)
		}
	default:
		return fmt.Errorf("stream type %d is not http, websocket or tcp", uint32(rh.Type))
	}
	for k, vv := range rh.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("header name %.64q is not a token", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("header %s: value is not a field value", k)
			}
		}
	}
	for _, k := range rh.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("trailer name %.64q is not a token", k)
		}
	}
	if rh.RequestID == "" || len(rh.RequestID) > 64 || !printable(rh.RequestID) {
		return fmt.Errorf("request_id %.64q: want 1-64 printable characters", rh.RequestID)
	}
	if _, err := netip.ParseAddrPort(rh.ClientAddr); err != nil {
		if _, err := netip.ParseAddr(rh.ClientAddr); err != nil {
			return fmt.Errorf("client_addr %.64q is not ip:port or ip", rh.ClientAddr)
		}
	}
	if rh.ContentLength < -1 {
		return fmt.Errorf("content_length %d is negative", rh.ContentLength)
	}
	return nil
}

// printable reports whether s is visible ASCII without spaces.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
