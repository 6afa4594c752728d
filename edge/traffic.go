package edge

import (
	"cmp"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
)

// Per-hostname traffic over the last hour, for the dashboard's graphs
// (GET /v1/traffic, GET /v1/traffic/{hostname}): for each route hostname
// ("*.example.com" counts every name its wildcard serves, so visitors
// cannot make the edge track names of their own), a ring of 60 one-minute
// slots holding requests, statuses by class and by error code, a latency
// histogram and body bytes. Recording a request costs a route match
// (allocation-free), a map lookup and a short lock of that hostname's ring.

const (
	// trafficMinutes is the span kept: one slot per minute.
	trafficMinutes = 60
	// maxTrafficHosts bounds the hostnames tracked at once (a ring is
	// about 27 KB); past it a new hostname is counted only once one idle
	// for an hour makes room.
	maxTrafficHosts = 1000
	// maxErrorCodes bounds the distinct error statuses kept per minute.
	maxErrorCodes = 8
)

// latencyBounds are the histogram's upper bounds in milliseconds: 25%
// apart from 0.1 ms to 60 s, then the rest.
var latencyBounds = func() []float64 {
	var b []float64
	for v := 0.1; v < 60000; v *= 1.25 {
		b = append(b, v)
	}
	return append(b, 60000, math.Inf(1))
}()

// trafficMinute is one slot of a ring.
type trafficMinute struct {
	minute   int64 // Unix time / 60 of the slot's minute; a slot of an older minute is stale
	requests uint64
	classes  [6]uint64 // by status / 100; 0 for anything outside 100-599
	codes    [maxErrorCodes]struct {
		code uint16
		n    uint64
	}
	otherErrors uint64
	latency     []uint32 // len(latencyBounds); allocated with the slot's first request
	bytesIn     uint64
	bytesOut    uint64
}

// hostTraffic is one hostname's ring.
type hostTraffic struct {
	mu   sync.Mutex
	ring [trafficMinutes]trafficMinute
	last int64 // the newest minute recorded
}

// traffic holds every tracked hostname's ring.
type traffic struct {
	node  string
	state *controlserver.State // a concrete type: an interface call would move record's buffer to the heap
	now   func() time.Time     // time.Now; tests set it

	mu    sync.RWMutex
	exact map[string]*hostTraffic // route hostname → ring
	wild  map[string]*hostTraffic // "example.com" for "*.example.com" → ring
}

func newTraffic(node string, state *controlserver.State) *traffic {
	return &traffic{node: node, state: state, now: time.Now, exact: map[string]*hostTraffic{}, wild: map[string]*hostTraffic{}}
}

// record counts one answered request for the route serving host.
func (t *traffic) record(host string, status int, took time.Duration, in, out int64) {
	if t == nil {
		return
	}
	var buf [control.MaxHostnameLen]byte
	name, wildcard, ok := t.state.MatchRoute(host, &buf)
	if !ok {
		return
	}
	if ht := t.host(name, wildcard); ht != nil {
		ht.add(t.now().Unix()/60, status, took, in, out)
	}
}

// host returns the ring of a route, making it if there is room.
func (t *traffic) host(name []byte, wildcard bool) *hostTraffic {
	m := t.exact
	if wildcard {
		m = t.wild
	}
	t.mu.RLock()
	ht := m[string(name)]
	t.mu.RUnlock()
	if ht != nil {
		return ht
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ht = m[string(name)]; ht != nil {
		return ht
	}
	if len(t.exact)+len(t.wild) >= maxTrafficHosts && !t.evictIdle() {
		return nil
	}
	ht = &hostTraffic{}
	m[string(name)] = ht
	return ht
}

// evictIdle drops the rings with no request in the last hour; t.mu is
// held. It reports whether there is room now.
func (t *traffic) evictIdle() bool {
	cutoff := t.now().Unix()/60 - trafficMinutes
	for _, m := range []map[string]*hostTraffic{t.exact, t.wild} {
		for k, ht := range m {
			ht.mu.Lock()
			idle := ht.last <= cutoff
			ht.mu.Unlock()
			if idle {
				delete(m, k)
			}
		}
	}
	return len(t.exact)+len(t.wild) < maxTrafficHosts
}

func (h *hostTraffic) add(minute int64, status int, took time.Duration, in, out int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.ring[minute%trafficMinutes]
	if s.minute != minute {
		lat := s.latency
		*s = trafficMinute{minute: minute, latency: lat}
		if lat == nil {
			s.latency = make([]uint32, len(latencyBounds))
		} else {
			clear(lat)
		}
	}
	if minute > h.last {
		h.last = minute
	}
	s.requests++
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	s.classes[class]++
	if status >= 400 {
		s.countError(status)
	}
	ms := float64(took) / float64(time.Millisecond)
	s.latency[sort.SearchFloat64s(latencyBounds, ms)]++
	s.bytesIn += uint64(max(in, 0))
	s.bytesOut += uint64(max(out, 0))
}

func (s *trafficMinute) countError(status int) {
	for i := range s.codes {
		c := &s.codes[i]
		if c.code == uint16(status) {
			c.n++
			return
		}
		if c.code == 0 {
			c.code, c.n = uint16(status), 1
			return
		}
	}
	s.otherErrors++
}

// series returns the ring as the API shows it: 60 minutes ending with now's.
func (h *hostTraffic) series(now int64) []control.TrafficMinute {
	out := make([]control.TrafficMinute, trafficMinutes)
	if h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
	}
	for i := range out {
		minute := now - trafficMinutes + 1 + int64(i)
		m := control.TrafficMinute{Time: time.Unix(minute*60, 0).UTC()}
		if h != nil {
			if s := &h.ring[minute%trafficMinutes]; s.minute == minute && s.requests > 0 {
				s.fill(&m)
			}
		}
		out[i] = m
	}
	return out
}

func (s *trafficMinute) fill(m *control.TrafficMinute) {
	m.Requests, m.BytesIn, m.BytesOut = s.requests, s.bytesIn, s.bytesOut
	for class, n := range s.classes {
		if n > 0 && class > 0 {
			if m.Status == nil {
				m.Status = map[string]uint64{}
			}
			m.Status[strconv.Itoa(class)+"xx"] = n
		}
	}
	for _, c := range s.codes {
		if c.n > 0 {
			if m.Errors == nil {
				m.Errors = map[string]uint64{}
			}
			m.Errors[strconv.Itoa(int(c.code))] = c.n
		}
	}
	if s.otherErrors > 0 {
		if m.Errors == nil {
			m.Errors = map[string]uint64{}
		}
		m.Errors["other"] = s.otherErrors
	}
	m.P50MS = percentile(s.latency, s.requests, 0.50)
	m.P90MS = percentile(s.latency, s.requests, 0.90)
	m.P99MS = percentile(s.latency, s.requests, 0.99)
}

// percentile estimates the q-quantile of a histogram of n values over
// latencyBounds, interpolating within the bucket it falls in.
func percentile(hist []uint32, n uint64, q float64) float64 {
	if n == 0 || len(hist) != len(latencyBounds) {
		return 0
	}
	rank := q * float64(n)
	var seen float64
	for i, c := range hist {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo := 0.0
			if i > 0 {
				lo = latencyBounds[i-1]
			}
			hi := latencyBounds[i]
			if math.IsInf(hi, 1) {
				return lo
			}
			v := lo + (hi-lo)*(rank-seen)/float64(c)
			return math.Round(v*1000) / 1000
		}
		seen += float64(c)
	}
	return latencyBounds[len(latencyBounds)-2]
}

// lookup returns the ring of a route hostname as the API names it
// ("*.example.com" for a wildcard route), or nil.
func (t *traffic) lookup(hostname string) *hostTraffic {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if base, ok := cutWildcard(hostname); ok {
		return t.wild[base]
	}
	return t.exact[hostname]
}

func cutWildcard(h string) (string, bool) {
	if len(h) > 2 && h[:2] == "*." {
		return h[2:], true
	}
	return "", false
}

// summary totals every ring over the last hour, busiest first.
func (t *traffic) summary() control.TrafficSummary {
	now := t.now().Unix() / 60
	out := control.TrafficSummary{EdgeNode: t.node, Minutes: trafficMinutes, Hosts: []control.HostTrafficSums{}}
	t.mu.RLock()
	type named struct {
		name string
		ht   *hostTraffic
	}
	var all []named
	for k, ht := range t.exact {
		all = append(all, named{k, ht})
	}
	for k, ht := range t.wild {
		all = append(all, named{"*." + k, ht})
	}
	t.mu.RUnlock()
	for _, n := range all {
		sums := control.HostTrafficSums{Hostname: n.name}
		n.ht.mu.Lock()
		for i := range n.ht.ring {
			s := &n.ht.ring[i]
			if s.minute <= now-trafficMinutes || s.minute > now {
				continue
			}
			sums.Requests += s.requests
			sums.Errors += s.classes[4] + s.classes[5]
			sums.BytesIn += s.bytesIn
			sums.BytesOut += s.bytesOut
		}
		n.ht.mu.Unlock()
		if sums.Requests > 0 {
			out.Hosts = append(out.Hosts, sums)
		}
	}
	slices.SortFunc(out.Hosts, func(a, b control.HostTrafficSums) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Hostname, b.Hostname))
	})
	return out
}

// endpoints are GET /v1/traffic and GET /v1/traffic/{hostname}
// (docs/openapi.yaml).
func (t *traffic) endpoints() []controlserver.Endpoint {
	return []controlserver.Endpoint{
		{Pattern: "GET /v1/traffic", Handle: func(w http.ResponseWriter, r *http.Request) error {
			controlserver.WriteJSON(w, http.StatusOK, t.summary())
			return nil
		}},
		{Pattern: "GET /v1/traffic/{hostname}", Handle: func(w http.ResponseWriter, r *http.Request) error {
			raw := r.PathValue("hostname")
			host, err := control.ValidateHostname(raw)
			if err != nil {
				return err
			}
			controlserver.WriteJSON(w, http.StatusOK, control.HostTraffic{
				Hostname: host, EdgeNode: t.node, Minutes: t.lookup(host).series(t.now().Unix() / 60),
			})
			return nil
		}},
	}
}
