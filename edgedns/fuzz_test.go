package edgedns

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/edge/edgeview"
)

// staticRoutes is a fixed route table, for tests that need no etcd.
type staticRoutes map[string]bool

func (r staticRoutes) Route(host string) (string, bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if r[host] {
		return "t", true
	}
	for i, c := range host {
		if c == '.' && r["*."+host[i+1:]] {
			return "t", true
		}
	}
	return "", false
}
func (r staticRoutes) ExactRoutes() []string {
	var out []string
	for h := range r {
		if !strings.HasPrefix(h, "*.") {
			out = append(out, h)
		}
	}
	return out
}
func (r staticRoutes) WildcardRoutes() []string {
	var out []string
	for h := range r {
		if strings.HasPrefix(h, "*.") {
			out = append(out, h)
		}
	}
	return out
}
func (staticRoutes) OnEvent(func(controlserver.Event)) {}
func (staticRoutes) Revision() int64                   { return 42 }

// memServer is a Server answering from fixed records, without sockets.
func memServer(t testing.TB) *Server {
	rules := []RegionRule{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Regions: []string{"eu"}}}
	regions, err := newRegionMap(rules)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{TTL: DefaultTTL, NegativeTTL: DefaultNegativeTTL, ZoneTTL: DefaultZoneTTL},
		routes: staticRoutes{"app.example.com": true, "*.dev.example.com": true}, names: newRouteNames(),
		regions: regions, zones: []string{"example.com."}, metrics: newMetrics(nil)}
	s.names.follow(s.routes)
	s.edges.Store(parseEdges(edgeview.Edges{
		"e1": {Name: "e1", Region: "eu", Health: "ok", PublicAddrs: []string{"192.0.2.1:443", "[2001:db8::1]:443"}, TunnelAddr: "192.0.2.1:7844"},
		"e2": {Name: "e2", Region: "us", Health: "ok", PublicAddrs: []string{"198.51.100.1:443"}, TunnelAddr: "[2001:db8::2]:7844"},
	}, slog.New(slog.DiscardHandler)))
	s.txt.Store(parseTXT(map[string][]byte{
		"/adit/dns/txt/_acme-challenge.example.com/x": []byte(`{"name":"_acme-challenge.example.com.","text":"` + strings.Repeat("t", 600) + `"}`),
	}, slog.New(slog.DiscardHandler)))
	return s
}

// FuzzAnswer: whatever a query holds, if it parses (as the server's
// acceptQuery lets it through), the answer packs, fits the UDP size it
// is truncated to, and echoes the query's ID and question.
func FuzzAnswer(f *testing.F) {
	s := memServer(f)
	seed := func(name string, qtype uint16, mod func(*dns.Msg)) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if mod != nil {
			mod(m)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed("app.example.com.", dns.TypeA, nil)
	seed("x.dev.example.com.", dns.TypeAAAA, withECS("10.1.0.0/16"))
	seed("example.com.", dns.TypeNS, func(m *dns.Msg) { m.SetEdns0(4096, true) })
	seed("_acme-challenge.example.com.", dns.TypeTXT, nil)
	seed("_adit-tunnel._udp.example.com.", dns.TypeSRV, withECS("2001:db8::/32"))
	seed("other.org.", dns.TypeANY, nil)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req dns.Msg
		if err := req.Unpack(b); err != nil {
			return
		}
		var dh dns.Header
		dh.Bits = uint16(b[2])<<8 | uint16(b[3])
		dh.Qdcount, dh.Ancount, dh.Nscount, dh.Arcount = uint16(len(req.Question)), uint16(len(req.Answer)), uint16(len(req.Ns)), uint16(len(req.Extra))
		if acceptQuery(dh) != dns.MsgAccept {
			return
		}
		resp := s.answer(&req, netip.MustParseAddr("10.9.9.9"))
		resp.Truncate(dns.MinMsgSize)
		out, err := resp.Pack()
		if err != nil {
			t.Fatalf("the answer does not pack: %v\n%v", err, resp)
		}
		if len(out) > dns.MinMsgSize && len(resp.Question) == 1 && len(resp.Question[0].Name) < 256 {
			t.Fatalf("answer of %d bytes truncated to %d", len(out), dns.MinMsgSize)
		}
		if resp.Id != req.Id || len(resp.Question) != len(req.Question) || !resp.Response {
			t.Fatalf("answer %v to query %v: ID, question or QR wrong", resp, &req)
		}
	})
}
