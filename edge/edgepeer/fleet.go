package edgepeer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"time"

	"github.com/adit-dev/adit/edge/edgeview"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
)

// apply makes edges the fleet as this edge knows it: it starts dialing the
// peers after this edge in name order that publish a peer address, and
// stops redialing those that left or moved. A link to an edge that left
// stays up until that edge closes it (requests forwarded to it finish
// while it shuts down) but takes no new request (Rank).
func (l *Links) apply(edges edgeview.Edges) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.edges = edges
	for node, d := range l.dialers {
		if e, ok := edges[node]; !ok || e.PeerAddr != d.addr {
			d.cancel()
			delete(l.dialers, node)
		}
	}
	for node, e := range edges {
		if node <= l.cfg.Node || e.PeerAddr == "" {
			continue // it dials this edge, or has no peer link
		}
		if _, ok := l.dialers[node]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(l.ctx)
		d := &dialer{node: node, addr: e.PeerAddr, cancel: cancel}
		l.dialers[node] = d
		l.wg.Go(func() { l.dial(ctx, d) })
	}
}

// dialer is the loop keeping a link to one peer this edge dials.
type dialer struct {
	node, addr string
	cancel     context.CancelFunc
}

// dial connects to d's peer and serves the link, again and again with a
// backoff, until ctx ends (the peer left, moved, or this edge closes). A
// link up when ctx ends is served until it ends.
func (l *Links) dial(ctx context.Context, d *dialer) {
	conf := l.client.Clone()
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		node, err := l.verify(cs, x509.ExtKeyUsageServerAuth)
		if err != nil {
			return err
		}
		if node != d.node {
			return fmt.Errorf("edgepeer: %s answered with the peer certificate of edge %q, not %q", d.addr, node, d.node)
		}
		return nil
	}
	backoff := minBackoff
	failing := false
	for ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		c, err := tunnelquic.Dial(dctx, d.addr, conf, l.cfg.QUIC)
		cancel()
		if err == nil {
			failing = false
			backoff = minBackoff
			start := time.Now()
			l.serveLink(d.node, c, "dialed")
			if time.Since(start) > maxBackoff {
				continue // it ran a good while: redial at once
			}
		} else if ctx.Err() == nil && !failing {
			failing = true // logged once per outage
			l.log.Warn("cannot reach peer; retrying", "peer", d.node, "addr", d.addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// pkiNode decodes the node name of a peer URI's opaque part.
func pkiNode(opaque string) (string, error) {
	n, err := url.PathUnescape(opaque)
	if err != nil || n == "" {
		return "", fmt.Errorf("edgepeer: malformed peer URI %q", opaque)
	}
	return n, nil
}
