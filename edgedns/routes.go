package edgedns

import (
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/control/controlserver"
)

// Routes is what DNS needs of the routing state: *controlserver.State.
type Routes interface {
	// Route says whether a hostname is routed, exactly or by a wildcard.
	Route(host string) (tunnelID string, ok bool)
	// ExactRoutes and WildcardRoutes list the routed hostnames.
	ExactRoutes() []string
	WildcardRoutes() []string
	// OnEvent registers for RouteAdded and RouteRemoved.
	OnEvent(fn func(controlserver.Event))
	// Revision is the etcd revision the state reflects (the SOA serial).
	Revision() int64
}

// routeNames knows which names lie above a routed hostname, so that such
// a name (say "dev.example.com." for the route "app.dev.example.com") is
// answered as existing with no records rather than NXDOMAIN: a resolver
// that minimises its questions (RFC 9156) would otherwise take every name
// below it for nonexistent (RFC 8020). Route itself answers for the
// routed names.
type routeNames struct {
	mu     sync.RWMutex
	routes map[string]bool // the routes: "app.example.com", "*.example.com"
	above  map[string]int  // fully-qualified name → routes below it
}

func newRouteNames() *routeNames {
	return &routeNames{routes: make(map[string]bool), above: make(map[string]int)}
}

// follow loads the routes of r and keeps up with their changes.
func (n *routeNames) follow(r Routes) {
	n.mu.Lock()
	defer n.mu.Unlock()
	// Registered first and applied under the lock, so no change is lost
	// between the listing and the first event; events are idempotent.
	r.OnEvent(func(ev controlserver.Event) {
		switch ev.Kind {
		case controlserver.RouteAdded:
			n.mu.Lock()
			n.add(ev.Host)
			n.mu.Unlock()
		case controlserver.RouteRemoved:
			n.mu.Lock()
			n.remove(ev.Host)
			n.mu.Unlock()
		}
	})
	for _, h := range r.ExactRoutes() {
		n.add(h)
	}
	for _, h := range r.WildcardRoutes() {
		n.add(h)
	}
}

func (n *routeNames) add(host string) {
	host = strings.ToLower(host)
	if n.routes[host] {
		return
	}
	n.routes[host] = true
	forAbove(host, func(name string) { n.above[name]++ })
}

func (n *routeNames) remove(host string) {
	host = strings.ToLower(host)
	if !n.routes[host] {
		return
	}
	delete(n.routes, host)
	forAbove(host, func(name string) {
		if n.above[name]--; n.above[name] <= 0 {
			delete(n.above, name)
		}
	})
}

// forAbove calls fn with every fully-qualified name strictly above host
// (a wildcard's base included: "*.dev.example.com" has "dev.example.com.").
func forAbove(host string, fn func(string)) {
	host = dns.Fqdn(host)
	for i, c := range host {
		if c == '.' && i+1 < len(host) {
			fn(host[i+1:])
		}
	}
}

// hasBelow says whether a routed hostname lies below name (fully
// qualified, lower-case).
func (n *routeNames) hasBelow(name string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.above[name] > 0
}
