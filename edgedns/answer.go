package edgedns

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/edgedns/edgesrv"
)

// ServeDNS answers one query (dns.Handler). Over UDP it first takes a
// slot of MaxUDPQueries, dropping the query when none is free, then a
// token of the client network's rate limit.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	transport := "tcp"
	client := addrOf(w.RemoteAddr())
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		transport = "udp"
		select {
		case s.udpBusy <- struct{}{}:
			defer func() { <-s.udpBusy }()
		default:
			s.metrics.busy.Inc()
			return
		}
		if ok, slip := s.limiter.allow(client); !ok {
			s.metrics.limited.Inc()
			if slip {
				m := new(dns.Msg)
				m.SetReply(req)
				m.Truncated = true
				w.WriteMsg(m)
			}
			return
		}
	}
	resp := s.answer(req, client)
	size := dns.MaxMsgSize
	if transport == "udp" {
		size = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
	}
	resp.Truncate(size)
	s.metrics.answered(resp.Rcode, transport)
	w.WriteMsg(resp)
}

func addrOf(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// Fixed SOA timers: no secondary server transfers the zone (every edge
// answers from etcd), so they matter little.
const (
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 7 * 24 * 3600
)

// query is one question being answered.
type query struct {
	s       *Server
	name    string // canonical: lower-case, fully qualified
	qname   string // as asked: the owner name of the answers
	zone    string
	qtype   uint16
	edges   *edgeSet
	regions []string // nearest first, from the client's subnet
	ordered bool     // the answer's order depended on regions
}

// answer builds the answer to req from memory.
func (s *Server) answer(req *dns.Msg, client netip.Addr) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Compress = true
	var ropt *dns.OPT
	var ecs *dns.EDNS0_SUBNET
	if opt := req.IsEdns0(); opt != nil {
		ropt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		ropt.SetUDPSize(maxUDPSize)
		defer func() { m.Extra = append(m.Extra, ropt) }()
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				ecs = e
			}
		}
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	switch q.Qtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
		m.Rcode = dns.RcodeFormatError
		return m
	case dns.TypeMAILA, dns.TypeMAILB:
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	name := dns.CanonicalName(q.Name)
	zone, ok := s.zoneOf(name)
	if !ok || q.Qclass != dns.ClassINET || q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused // not ours; and no zone transfers
		return m
	}
	subnet, ok := clientSubnet(ecs, client)
	if !ok {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	rule, found := s.regions.lookup(subnet)
	m.Authoritative = true
	qy := &query{s: s, name: name, qname: q.Name, zone: zone, qtype: q.Qtype, edges: s.edges.Load(), regions: rule.Regions}
	ans, extra, exists := qy.records()
	switch {
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{qy.soa(min(s.cfg.ZoneTTL, s.cfg.NegativeTTL))}
	case len(ans) == 0:
		m.Ns = []dns.RR{qy.soa(min(s.cfg.ZoneTTL, s.cfg.NegativeTTL))} // the name has no records of that type
	default:
		m.Answer, m.Extra = ans, extra
	}
	if ecs != nil && ropt != nil {
		// Echo the subnet, scoped as narrowly as the answer depended on it.
		scope := uint8(0)
		switch {
		case !qy.ordered || s.regions.empty():
		case found:
			scope = uint8(rule.Prefix.Bits())
		default:
			scope = ecs.SourceNetmask
		}
		ropt.Option = append(ropt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: ecs.Family,
			SourceNetmask: ecs.SourceNetmask, SourceScope: scope, Address: ecs.Address})
	}
	return m
}

// clientSubnet is the subnet an answer is ordered for: the EDNS Client
// Subnet a resolver sent, else the resolver's own address. An ECS option
// of prefix 0 asks that no address be used. ok is false for an option
// RFC 7871 calls malformed.
func clientSubnet(e *dns.EDNS0_SUBNET, client netip.Addr) (netip.Prefix, bool) {
	if e == nil {
		if !client.IsValid() {
			return netip.Prefix{}, true
		}
		return netip.PrefixFrom(client, client.BitLen()), true
	}
	if e.SourceScope != 0 {
		return netip.Prefix{}, false
	}
	var a netip.Addr
	switch e.Family {
	case 0:
		return netip.Prefix{}, e.SourceNetmask == 0
	case 1:
		ip := e.Address.To4()
		if ip == nil || e.SourceNetmask > 32 {
			return netip.Prefix{}, false
		}
		a = netip.AddrFrom4([4]byte(ip))
	case 2:
		ip := e.Address.To16()
		if ip == nil || e.SourceNetmask > 128 {
			return netip.Prefix{}, false
		}
		a = netip.AddrFrom16([16]byte(ip))
	default:
		return netip.Prefix{}, false
	}
	if e.SourceNetmask == 0 {
		return netip.Prefix{}, true
	}
	return netip.PrefixFrom(a, int(e.SourceNetmask)).Masked(), true
}

func ttlOf(d time.Duration) uint32 { return uint32(d / time.Second) }

func (q *query) hdr(name string, rrtype uint16, ttl time.Duration) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttlOf(ttl)}
}

// records finds what the name holds: the answer to the question's type,
// additional records, and whether the name exists at all.
func (q *query) records() (ans, extra []dns.RR, exists bool) {
	ttl := q.s.cfg.TTL
	switch {
	case q.name == q.zone:
		exists = true
		switch q.qtype {
		case dns.TypeSOA:
			ans = append(ans, q.soa(q.s.cfg.ZoneTTL))
		case dns.TypeNS:
			ans, extra = q.ns()
		}
	case q.name == edgesrv.Name(edgesrv.UDP, q.zone) || q.name == edgesrv.Name(edgesrv.TCP, q.zone):
		exists = true
		if q.qtype == dns.TypeSRV {
			ans, extra = q.srv()
		}
	}
	if es := q.edgesAt("ns"); es != nil {
		exists = true
		for _, e := range es {
			ans = q.addrs(ans, q.qname, e.public, ttl)
		}
	} else if es := q.edgesAt("tunnel"); es != nil {
		exists = true
		for _, e := range es {
			ans = q.addrs(ans, q.qname, e.tunnelIPs, ttl)
		}
	} else {
		txt := q.s.txt.Load()
		if recs := txt.byName[q.name]; len(recs) > 0 {
			exists = true
			if q.qtype == dns.TypeTXT {
				for _, r := range recs {
					rttl := ttl
					if r.TTL > 0 {
						rttl = time.Duration(r.TTL) * time.Second
					}
					ans = append(ans, &dns.TXT{Hdr: q.hdr(q.qname, dns.TypeTXT, rttl), Txt: splitTXT(r.Text)})
				}
			}
		}
		if _, ok := q.s.routes.Route(q.name); ok {
			exists = true
			for _, e := range q.visitorEdges() {
				ans = q.addrs(ans, q.qname, e.public, ttl)
			}
		}
		if !exists {
			exists = q.s.names.hasBelow(q.name) || txt.above[q.name] || q.staticBelow()
		}
	}
	if q.qtype == dns.TypeANY && exists {
		// RFC 8482: one small record rather than everything, so ANY is
		// no amplifier.
		return []dns.RR{&dns.HINFO{Hdr: q.hdr(q.qname, dns.TypeHINFO, ttl), Cpu: "RFC8482"}}, nil, true
	}
	return ans, extra, exists
}

// addrs appends the A or AAAA records (as the question asks) of ips.
func (q *query) addrs(rrs []dns.RR, owner string, ips []netip.Addr, ttl time.Duration) []dns.RR {
	for _, ip := range ips {
		switch {
		case ip.Is4() && (q.qtype == dns.TypeA || q.qtype == 0):
			rrs = append(rrs, &dns.A{Hdr: q.hdr(owner, dns.TypeA, ttl), A: ip.AsSlice()})
		case ip.Is6() && (q.qtype == dns.TypeAAAA || q.qtype == 0):
			rrs = append(rrs, &dns.AAAA{Hdr: q.hdr(owner, dns.TypeAAAA, ttl), AAAA: ip.AsSlice()})
		}
	}
	return rrs
}

// glue appends both address types of ips (qtype 0 in addrs).
func (q *query) glue(rrs []dns.RR, owner string, ips []netip.Addr) []dns.RR {
	t := q.qtype
	q.qtype = 0
	rrs = q.addrs(rrs, owner, ips, q.s.cfg.TTL)
	q.qtype = t
	return rrs
}

// edgesAt returns the edges named by q.name = LABEL.kind.ZONE, or nil.
func (q *query) edgesAt(kind string) []*edge {
	label, ok := strings.CutSuffix(q.name, "."+kind+"."+q.zone)
	if !ok || strings.Contains(label, ".") {
		return nil
	}
	return q.edges.byLabel[label]
}

// staticBelow says whether a name this server makes up lies below q.name:
// ns.ZONE, tunnel.ZONE, _udp.ZONE and _tcp.ZONE are empty non-terminals.
func (q *query) staticBelow() bool {
	switch q.name {
	case "_udp." + q.zone, "_tcp." + q.zone:
		return true
	case "ns." + q.zone, "tunnel." + q.zone:
		return len(q.edges.all) > 0
	}
	return false
}

// visitorEdges are the edges a routed name answers with: those taking
// visitors, nearest region first, equals in turn. If every edge is
// draining, all of them: a single edge restarting should not vanish.
func (q *query) visitorEdges() []*edge {
	es := q.edges.healthy
	if len(es) == 0 {
		es = q.edges.all
	}
	return q.order(es)
}

// order rotates es (so equal edges share visitors) and sorts it by the
// rank of its region among q.regions, stably.
func (q *query) order(es []*edge) []*edge {
	if len(es) == 0 {
		return nil
	}
	out := make([]*edge, 0, len(es))
	k := int(q.s.rr.Add(1)) % len(es)
	out = append(append(out, es[k:]...), es[:k]...)
	q.ordered = true // even unmatched: another subnet might match a rule
	if len(q.regions) > 0 {
		slices.SortStableFunc(out, func(a, b *edge) int { return cmp.Compare(q.rank(a), q.rank(b)) })
	}
	return out
}

func (q *query) rank(e *edge) int {
	if i := slices.Index(q.regions, e.region); i >= 0 {
		return i
	}
	return len(q.regions)
}

func (q *query) ns() (ans, extra []dns.RR) {
	for _, label := range q.edges.nsLabels {
		n := label + ".ns." + q.zone
		ans = append(ans, &dns.NS{Hdr: q.hdr(q.qname, dns.TypeNS, q.s.cfg.ZoneTTL), Ns: n})
		extra = q.glue(extra, n, q.edges.nsAddrs[label])
	}
	if len(ans) == 0 {
		ans = append(ans, &dns.NS{Hdr: q.hdr(q.qname, dns.TypeNS, q.s.cfg.ZoneTTL), Ns: q.primary()})
	}
	return ans, extra
}

// primary is the SOA's MNAME: the first name server (every live edge
// with an address, draining ones too: they answer DNS until they leave),
// or this edge's name while the registry lists none.
func (q *query) primary() string {
	if len(q.edges.nsLabels) > 0 {
		return q.edges.nsLabels[0] + ".ns." + q.zone
	}
	return edgeLabel(cmp.Or(q.s.cfg.Node, "edge")) + ".ns." + q.zone
}

func (q *query) soa(ttl time.Duration) dns.RR {
	return &dns.SOA{
		Hdr:     q.hdr(q.zone, dns.TypeSOA, ttl),
		Ns:      q.primary(),
		Mbox:    "hostmaster." + q.zone,
		Serial:  uint32(q.s.routes.Revision()),
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  ttlOf(q.s.cfg.NegativeTTL),
	}
}

// srv answers _adit-tunnel._udp|_tcp.ZONE: each edge taking connectors,
// its tunnel port, nearest region first (priority 10, then 20, 30, ...).
func (q *query) srv() (ans, extra []dns.RR) {
	for _, e := range q.visitorEdges() {
		if e.tunnelPort == 0 {
			continue
		}
		target := e.tunnelHost
		if target == "" {
			if len(e.tunnelIPs) == 0 {
				continue
			}
			target = e.label + ".tunnel." + q.zone
			extra = q.glue(extra, target, e.tunnelIPs)
		}
		prio := uint16(10)
		if len(q.regions) > 0 {
			prio = uint16(10 * (1 + q.rank(e)))
		}
		ans = append(ans, &dns.SRV{Hdr: q.hdr(q.qname, dns.TypeSRV, q.s.cfg.TTL), Priority: prio, Weight: 10, Port: e.tunnelPort, Target: target})
	}
	return ans, extra
}

// splitTXT cuts a text into the 255-byte strings a TXT record holds.
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
