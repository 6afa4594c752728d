package shield

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/store"
)

// IPRules is the layer of per-hostname IP rules (control.IPRule), and the
// ConnFilter that refuses the AllHosts deny rules' addresses at the
// connection, before a byte is read.
type IPRules struct {
	log     *slog.Logger
	idx     atomic.Pointer[ipIndex]
	done    <-chan struct{}
	cancel  func()
	denied  prometheus.Counter // a request refused by a hostname's rule
	connDen prometheus.Counter // a connection refused by a "*" rule
}

var (
	_ layer.Layer      = (*IPRules)(nil)
	_ layer.ConnFilter = (*IPRules)(nil)
)

// NewIPRules loads the IP rules and watches them.
func NewIPRules(deps layer.Deps) (*IPRules, error) {
	d, err := newDecisions(deps.Metrics, "iprules", "Requests and connections the IP rules refused, by reason (request, connection).")
	if err != nil {
		return nil, err
	}
	l := &IPRules{log: logs.Component(deps.Logger, "shield").With("layer", "ip-rules"), denied: d.counter("request"), connDen: d.counter("connection")}
	ctx, cancel := contextFrom(deps.Ctx)
	l.cancel = cancel
	l.done, err = watchPrefix(ctx, deps.Etcd, store.IPRulesPrefix, l.log, l.apply)
	if err != nil {
		cancel()
		return nil, err
	}
	return l, nil
}

// Name implements layer.Layer.
func (l *IPRules) Name() string { return "ip-rules" }

// Close implements layer.Layer.
func (l *IPRules) Close() error {
	l.cancel()
	<-l.done
	return nil
}

func (l *IPRules) apply(recs map[string][]byte) {
	var rules []control.IPRule
	for k, v := range recs {
		var r control.IPRule
		if err := json.Unmarshal(v, &r); err != nil || r.Validate() != nil {
			l.log.Warn("skipping an unreadable ip rule", "key", k)
			continue
		}
		rules = append(rules, r)
	}
	l.idx.Store(buildIPIndex(rules))
}

// Allow implements layer.ConnFilter: the AllHosts deny rules.
func (l *IPRules) Allow(ip netip.Addr) (func(), bool) {
	idx := l.idx.Load()
	if idx == nil || idx.all == nil {
		return nil, true
	}
	if a, ok := idx.all.decide(ip); ok && a == control.IPDeny {
		l.connDen.Inc()
		return nil, false
	}
	return nil, true
}

// Wrap implements layer.Layer.
func (l *IPRules) Wrap(next layer.Handler) layer.Handler {
	return layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {
		idx := l.idx.Load()
		if idx != nil && !idx.empty() {
			if a, ok := idx.decide(req.Host, req.ClientIP); ok && a == control.IPDeny {
				l.denied.Inc()
				layer.Refuse(w, r, req, http.StatusForbidden, "Forbidden",
					"Your address may not reach "+req.Host+": an IP rule denies it.")
				return
			}
		}
		next.ServeRouted(w, r, req)
	})
}

// ipIndex is the IP rules in memory, immutable once built.
type ipIndex struct {
	hosts map[string]*prefixSet // exact hostnames
	wild  map[string]*prefixSet // "*.example.com" under "example.com"
	all   *prefixSet            // AllHosts; nil if none
}

func (x *ipIndex) empty() bool { return len(x.hosts) == 0 && len(x.wild) == 0 && x.all == nil }

// decide returns the action of the rule that decides for ip at host: the
// host's own rules, then its wildcard's, then AllHosts'.
func (x *ipIndex) decide(host string, ip netip.Addr) (string, bool) {
	if s := x.hosts[host]; s != nil {
		if a, ok := s.decide(ip); ok {
			return a, true
		}
	}
	if len(x.wild) > 0 {
		if i := strings.IndexByte(host, '.'); i >= 0 {
			if s := x.wild[host[i+1:]]; s != nil {
				if a, ok := s.decide(ip); ok {
					return a, true
				}
			}
		}
	}
	if x.all != nil {
		return x.all.decide(ip)
	}
	return "", false
}

func buildIPIndex(rules []control.IPRule) *ipIndex {
	x := &ipIndex{hosts: map[string]*prefixSet{}, wild: map[string]*prefixSet{}}
	setFor := func(m map[string]*prefixSet, k string) *prefixSet {
		s := m[k]
		if s == nil {
			s = newPrefixSet()
			m[k] = s
		}
		return s
	}
	for _, r := range rules {
		p, err := control.ParseCIDR(r.CIDR)
		if err != nil {
			continue
		}
		switch {
		case r.Hostname == control.AllHosts:
			if x.all == nil {
				x.all = newPrefixSet()
			}
			x.all.add(p, r.Action)
		case strings.HasPrefix(r.Hostname, "*."):
			setFor(x.wild, r.Hostname[2:]).add(p, r.Action)
		default:
			setFor(x.hosts, r.Hostname).add(p, r.Action)
		}
	}
	return x
}

// prefixSet answers which rule's prefix is the longest that holds an
// address: one map lookup per distinct prefix length, longest first.
type prefixSet struct {
	byPrefix map[netip.Prefix]string // → action; allow wins a tie
	bits4    []int                   // the IPv4 prefix lengths in use, longest first
	bits6    []int
}

func newPrefixSet() *prefixSet { return &prefixSet{byPrefix: map[netip.Prefix]string{}} }

func (s *prefixSet) add(p netip.Prefix, action string) {
	if old, ok := s.byPrefix[p]; ok && old == control.IPAllow {
		action = old
	}
	s.byPrefix[p] = action
	bits := &s.bits6
	if p.Addr().Is4() {
		bits = &s.bits4
	}
	if !slices.Contains(*bits, p.Bits()) {
		*bits = append(*bits, p.Bits())
		slices.SortFunc(*bits, func(a, b int) int { return b - a })
	}
}

func (s *prefixSet) decide(ip netip.Addr) (string, bool) {
	ip = ip.Unmap()
	bits := s.bits6
	if ip.Is4() {
		bits = s.bits4
	}
	for _, b := range bits {
		p, err := ip.Prefix(b)
		if err != nil {
			continue
		}
		if a, ok := s.byPrefix[p]; ok {
			return a, true
		}
	}
	return "", false
}
