package edge

import (
	"net"
	"sync"
)

// What a connection on the tunnel port may cost the edge before it has
// registered (proved it holds a tunnel's secret), and what a registered
// connector may send on its control stream. The transports bound the rest
// (limits.go: edgeQUIC, edgeWS): a connector may open only the control
// stream, and its unread bytes on it are capped.
const (
	// maxRegisteringPerAddr caps the connections from one IP address that
	// are past the transport handshake but not registered yet; past it a
	// new one is closed at once with code 4 (shutdown: edge busy). A
	// connector registers its 4 connections in milliseconds, so only a
	// crowd of connectors behind one NAT, all starting at once, comes near.
	maxRegisteringPerAddr = 32
	// maxControlFrame bounds a frame a connector sends on its control
	// stream, the register frame included (a RegisterRequest is well under
	// 1 KiB). Longer frames are a protocol error and are not read. A new
	// connector → edge control message must fit (docs/protocol.md).
	maxControlFrame = 64 << 10
	// maxControlUnread bounds the bytes a connector may have sent on its
	// control stream that the edge has not read yet (WebSocket transport;
	// QUIC's initial stream window, 512 KiB, does the same there): yamux's
	// initial stream window, 256 KiB, room for a few control frames.
	maxControlUnread = 4 * maxControlFrame
)

// registering counts the connections of each address that have not
// registered yet. The zero value is ready to use.
type registering struct {
	mu     sync.Mutex
	byAddr map[string]int
}

// begin takes a place for a connection from addr (host:port or host) and
// reports whether there was one; end gives it back.
func (r *registering) begin(addr net.Addr) (string, bool) {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byAddr[host] >= maxRegisteringPerAddr {
		return host, false
	}
	if r.byAddr == nil {
		r.byAddr = make(map[string]int)
	}
	r.byAddr[host]++
	return host, true
}

func (r *registering) end(host string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byAddr[host] <= 1 {
		delete(r.byAddr, host)
		return
	}
	r.byAddr[host]--
}
