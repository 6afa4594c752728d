package edge

import (
	"net"
	"sync"
	"time"
)

// DefaultMaxRegisteringPerAddr is Config.MaxRegisteringPerAddr's default.
// A connector registers its 4 connections in milliseconds, so only a
// crowd of connectors behind one NAT, all starting at once, comes near.
const DefaultMaxRegisteringPerAddr = 32

// What a connection on the tunnel port may cost the edge before it has
// registered (proved it holds a tunnel's secret), and what a registered
// connector may send on its control stream. The transports bound the rest
// (limits.go: edgeQUIC, edgeWS): a connector may open only the control
// stream, and its unread bytes on it are capped.
const (
	// busyAnswerWait bounds how long a connection told to come back later
	// (registering, placeBusy) holds its place: the time to open the
	// control stream, and then to read the answer and hang up.
	busyAnswerWait = 2 * time.Second
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

// registering counts the connections of each address that are past the
// transport handshake but not registered yet, and bounds them
// (Config.MaxRegisteringPerAddr): an address costs the edge at most max
// of them, whatever it sends. Half of the places are for registrations
// (until the register frame is read: a connector's take a round trip);
// the other half for telling the connections past those to come back
// later (a RegisterResponse with retry_after_ms, as admission.go's
// refusals, which a connector takes for a busy edge, not a draining or
// failed one). A connection that finds even those taken is closed at once
// with code 0, which a connector also takes for an edge that is fine, and
// retries with jitter (connector package: reconnect.go).
type registering struct {
	max    int // places per address; negative: no bound
	mu     sync.Mutex
	byAddr map[string]int
}

// place is what begin gives a connection.
type place int

const (
	placeRegister place = iota // register it
	placeBusy                  // tell it to come back later
	placeNone                  // close it at once
)

func newRegistering(max int) registering {
	if max == 0 {
		max = DefaultMaxRegisteringPerAddr
	}
	return registering{max: max, byAddr: make(map[string]int)}
}

// begin takes a place for a connection from addr (host:port or host):
// unless it returns placeNone, end must give it back.
func (r *registering) begin(addr net.Addr) (string, place) {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.byAddr[host]
	p := placeRegister
	switch {
	case r.max < 0:
	case n >= r.max:
		return host, placeNone
	case n >= r.max-r.max/2:
		p = placeBusy
	}
	r.byAddr[host]++
	return host, p
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
