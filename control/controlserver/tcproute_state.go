package controlserver

import (
	"maps"
	"slices"
	"strings"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// TCPRoutes returns every public TCP port route, by port.
func (s *State) TCPRoutes() []control.TCPRoute {
	s.mu.RLock()
	routes := slices.Collect(maps.Values(s.data.tcp))
	s.mu.RUnlock()
	sortTCPRoutes(routes)
	return routes
}

// TCPRoute returns the route of a public TCP port.
func (s *State) TCPRoute(port int) (control.TCPRoute, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.data.tcp[port]
	return r, ok
}

// isTCPRouteKey reports whether key is under the TCP routes prefix.
func isTCPRouteKey(key string) bool { return strings.HasPrefix(key, store.TCPRoutesPrefix) }

// putTCPRoute applies a TCP route record to d.
func (s *State) putTCPRoute(d *stateData, key string, val []byte) (Event, bool) {
	r, ok := decodeTCPRoute(key, val, func(err error) {
		s.log.Warn("skipping an unreadable tcp route record", "key", key, "err", err)
	})
	if !ok {
		return Event{}, false
	}
	d.tcp[r.Port] = r
	return Event{Kind: TCPRoutesChanged, TunnelID: r.TunnelID}, true
}

// delTCPRoute applies the deletion of a TCP route record to d.
func (s *State) delTCPRoute(d *stateData, key string) (Event, bool) {
	port, ok := tcpRouteKeyPort(key)
	if !ok {
		return Event{}, false
	}
	old, existed := d.tcp[port]
	delete(d.tcp, port)
	return Event{Kind: TCPRoutesChanged, TunnelID: old.TunnelID}, existed
}

// tcpRoutesEvent reports a TCPRoutesChanged event if the TCP routes differ
// between old and cur.
func tcpRoutesEvent(old, cur stateData) []Event {
	if maps.EqualFunc(old.tcp, cur.tcp, func(a, b control.TCPRoute) bool {
		return a.TunnelID == b.TunnelID && a.Hostname == b.Hostname && a.CreatedAt.Equal(b.CreatedAt)
	}) {
		return nil
	}
	return []Event{{Kind: TCPRoutesChanged}}
}
