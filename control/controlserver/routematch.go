package controlserver

import "github.com/adit-dev/adit/control"

// MatchRoute finds the route that serves host (the one Route picks) and
// returns its hostname in lookup form (lower-case), written into buf; for
// a wildcard route without its "*." (wildcard is then true). It allocates
// nothing: it is for the request path (the edge's per-hostname traffic
// counts).
func (s *State) MatchRoute(host string, buf *[control.MaxHostnameLen]byte) (name []byte, wildcard, ok bool) {
	key, ok := hostKey(buf, host)
	if !ok {
		return nil, false, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.data.exact[string(key)]; ok {
		return key, false, true
	}
	for i, c := range key {
		if c == '.' {
			if _, ok := s.data.wild[string(key[i+1:])]; ok {
				return key[i+1:], true, true
			}
		}
	}
	return nil, false, false
}
