package edgedns

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/control"
)

// threeEdges registers two healthy edges in two regions and a draining one.
func threeEdges(t *testing.T, f *fixture) {
	t.Helper()
	f.putEdge(t, control.EdgeNode{Name: "edge-1", Region: "eu", Health: control.EdgeHealthOK,
		PublicAddrs: []string{"192.0.2.1:443", "[2001:db8::1]:443"}, TunnelAddr: "192.0.2.1:7844"}, 0)
	f.putEdge(t, control.EdgeNode{Name: "edge-2", Region: "us", Health: control.EdgeHealthOK,
		PublicAddrs: []string{"198.51.100.2:443"}, TunnelAddr: "edge-2.tunnels.example.net:7844"}, 0)
	f.putEdge(t, control.EdgeNode{Name: "Edge 3.local", Region: "us", Health: control.EdgeHealthDraining,
		PublicAddrs: []string{"203.0.113.3:443"}, TunnelAddr: "203.0.113.3:7844"}, 0)
}

func TestAnswers(t *testing.T) {
	f := newFixture(t, nil)
	threeEdges(t, f)
	f.route(t, "app.example.com")
	f.route(t, "*.dev.example.com")
	f.route(t, "deep.a.b.example.com")
	f.route(t, "app.elsewhere.org") // routed, but in no served zone
	if _, err := f.srv.Provider().AppendRecords(context.Background(), "example.com.", txtRecs("_acme-challenge.dev", "token-1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the TXT record", func() bool { return len(f.srv.txt.Load().byName) == 1 })
	edge3 := edgeLabel("Edge 3.local")

	type want struct {
		rcode int
		ans   []string // each answer record's type and data, sorted
		extra []string
		ns    string // the type of the authority section's record, if any
	}
	tests := []struct {
		name  string
		qtype uint16
		want  want
	}{
		{"app.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, ans: []string{"A 192.0.2.1", "A 198.51.100.2"}}},
		{"APP.Example.COM.", dns.TypeAAAA, want{rcode: dns.RcodeSuccess, ans: []string{"AAAA 2001:db8::1"}}},
		{"x.y.dev.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, ans: []string{"A 192.0.2.1", "A 198.51.100.2"}}},
		{"app.example.com.", dns.TypeMX, want{rcode: dns.RcodeSuccess, ns: "SOA"}},
		{"dev.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, ns: "SOA"}},          // above a wildcard
		{"b.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, ns: "SOA"}},            // above a route
		{"nothing.example.com.", dns.TypeA, want{rcode: dns.RcodeNameError, ns: "SOA"}},    // not routed
		{"c.deep.a.b.example.com.", dns.TypeA, want{rcode: dns.RcodeNameError, ns: "SOA"}}, // below an exact route
		{"app.elsewhere.org.", dns.TypeA, want{rcode: dns.RcodeRefused}},                   // not our zone
		{"example.com.", dns.TypeSOA, want{rcode: dns.RcodeSuccess, ans: []string{"SOA " + "edge-1.ns.example.com. hostmaster.example.com."}}},
		{"example.com.", dns.TypeNS, want{rcode: dns.RcodeSuccess,
			ans:   []string{"NS edge-1.ns.example.com.", "NS edge-2.ns.example.com.", "NS " + edge3 + ".ns.example.com."},
			extra: []string{"A 192.0.2.1", "A 198.51.100.2", "A 203.0.113.3", "AAAA 2001:db8::1"}}},
		{"edge-1.ns.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, ans: []string{"A 192.0.2.1"}}},
		{edge3 + ".ns.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, ans: []string{"A 203.0.113.3"}}}, // draining, still a name server
		{"nobody.ns.example.com.", dns.TypeA, want{rcode: dns.RcodeNameError, ns: "SOA"}},
		{"ns.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, ns: "SOA"}},
		{"_adit-tunnel._udp.example.com.", dns.TypeSRV, want{rcode: dns.RcodeSuccess,
			ans:   []string{"SRV 10 10 7844 edge-1.tunnel.example.com.", "SRV 10 10 7844 edge-2.tunnels.example.net."},
			extra: []string{"A 192.0.2.1"}}},
		{"_adit-tunnel._tcp.example.com.", dns.TypeSRV, want{rcode: dns.RcodeSuccess,
			ans:   []string{"SRV 10 10 7844 edge-1.tunnel.example.com.", "SRV 10 10 7844 edge-2.tunnels.example.net."},
			extra: []string{"A 192.0.2.1"}}},
		{"_udp.example.com.", dns.TypeSRV, want{rcode: dns.RcodeSuccess, ns: "SOA"}},
		{"edge-1.tunnel.example.com.", dns.TypeA, want{rcode: dns.RcodeSuccess, ans: []string{"A 192.0.2.1"}}},
		{"_acme-challenge.dev.example.com.", dns.TypeTXT, want{rcode: dns.RcodeSuccess, ans: []string{"TXT \"token-1\""}}},
		{"app.example.com.", dns.TypeANY, want{rcode: dns.RcodeSuccess, ans: []string{"HINFO \"RFC8482\" \"\""}}},
		{"nothing.example.com.", dns.TypeANY, want{rcode: dns.RcodeNameError, ns: "SOA"}},
		{"example.com.", dns.TypeAXFR, want{rcode: dns.RcodeRefused}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name+"/"+dns.TypeToString[tt.qtype], func(t *testing.T) {
				resp := f.ask(t, network, tt.name, tt.qtype, nil)
				if resp.Rcode != tt.want.rcode {
					t.Fatalf("rcode %s, want %s\n%v", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.want.rcode], resp)
				}
				if got := rrData(resp.Answer); !slices.Equal(got, tt.want.ans) {
					t.Errorf("answer %q, want %q", got, tt.want.ans)
				}
				if got := rrData(resp.Extra); !slices.Equal(got, tt.want.extra) {
					t.Errorf("additional %q, want %q", got, tt.want.extra)
				}
				var ns string
				if len(resp.Ns) == 1 {
					ns = dns.TypeToString[resp.Ns[0].Header().Rrtype]
				}
				if ns != tt.want.ns || len(resp.Ns) > 1 {
					t.Errorf("authority %v, want one %q", resp.Ns, tt.want.ns)
				}
				if aa := tt.want.rcode != dns.RcodeRefused; resp.Authoritative != aa {
					t.Errorf("AA %v, want %v", resp.Authoritative, aa)
				}
				for _, rr := range resp.Answer {
					if rr.Header().Name != tt.name && tt.qtype != dns.TypeSOA {
						t.Errorf("answer owner %q, want the question's %q", rr.Header().Name, tt.name)
					}
				}
			})
		}
	}
}

// rrData is each record's type and data (no owner, class or TTL), sorted;
// an SOA only up to its mailbox.
func rrData(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		s := strings.TrimPrefix(rr.String(), rr.Header().String())
		s = dns.TypeToString[rr.Header().Rrtype] + " " + s
		if soa, ok := rr.(*dns.SOA); ok {
			s = "SOA " + soa.Ns + " " + soa.Mbox
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func TestTTLs(t *testing.T) {
	f := newFixture(t, nil)
	threeEdges(t, f)
	f.route(t, "app.example.com")
	for _, tt := range []struct {
		name  string
		qtype uint16
		sect  func(*dns.Msg) []dns.RR
		ttl   uint32
	}{
		{"app.example.com.", dns.TypeA, func(m *dns.Msg) []dns.RR { return m.Answer }, 30},
		{"_adit-tunnel._udp.example.com.", dns.TypeSRV, func(m *dns.Msg) []dns.RR { return m.Answer }, 30},
		{"example.com.", dns.TypeNS, func(m *dns.Msg) []dns.RR { return m.Answer }, 300},
		{"example.com.", dns.TypeSOA, func(m *dns.Msg) []dns.RR { return m.Answer }, 300},
		{"nothing.example.com.", dns.TypeA, func(m *dns.Msg) []dns.RR { return m.Ns }, 30}, // negative
	} {
		resp := f.ask(t, "udp", tt.name, tt.qtype, nil)
		rrs := tt.sect(resp)
		if len(rrs) == 0 {
			t.Fatalf("%s %s: no records: %v", tt.name, dns.TypeToString[tt.qtype], resp)
		}
		for _, rr := range rrs {
			if rr.Header().Ttl != tt.ttl {
				t.Errorf("%s %s: TTL %d, want %d", tt.name, dns.TypeToString[tt.qtype], rr.Header().Ttl, tt.ttl)
			}
		}
	}
	soa := f.ask(t, "udp", "example.com.", dns.TypeSOA, nil).Answer[0].(*dns.SOA)
	if soa.Minttl != 30 || soa.Serial == 0 {
		t.Errorf("SOA minimum %d, serial %d; want 30 and the etcd revision", soa.Minttl, soa.Serial)
	}
}
