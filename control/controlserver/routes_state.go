package controlserver

import (
	"slices"

	"github.com/adit-dev/adit/control"
)

// HasExactRoute says whether host (a Host header: port, trailing dot and
// case do not matter) has a route of its own, not through a wildcard.
func (s *State) HasExactRoute(host string) bool {
	var buf [control.MaxHostnameLen]byte
	key, ok := hostKey(&buf, host)
	if !ok {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok = s.data.exact[string(key)]
	return ok
}

// ExactRoutes lists the hostnames routed by name (not by a wildcard),
// sorted.
func (s *State) ExactRoutes() []string {
	s.mu.RLock()
	hosts := make([]string, 0, len(s.data.exact))
	for h := range s.data.exact {
		hosts = append(hosts, h)
	}
	s.mu.RUnlock()
	slices.Sort(hosts)
	return hosts
}

// WildcardRoutes lists the hostnames routed by a wildcard, as
// "*.example.com", sorted.
func (s *State) WildcardRoutes() []string {
	s.mu.RLock()
	hosts := make([]string, 0, len(s.data.wild))
	for base := range s.data.wild {
		hosts = append(hosts, "*."+base)
	}
	s.mu.RUnlock()
	slices.Sort(hosts)
	return hosts
}
