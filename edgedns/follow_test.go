package edgedns

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edgedns/edgesrv"
	"github.com/adit-dev/adit/internal/poll"
)

// A route makes a name resolve; deleting it removes the name.
func TestRoutesFollowed(t *testing.T) {
	f := newFixture(t, nil)
	threeEdges(t, f)
	if got := f.ask(t, "udp", "new.example.com.", dns.TypeA, nil); got.Rcode != dns.RcodeNameError {
		t.Fatalf("before the route: %s, want NXDOMAIN", dns.RcodeToString[got.Rcode])
	}
	f.route(t, "new.example.com")
	if got := addrsOf(f.ask(t, "udp", "new.example.com.", dns.TypeA, nil)); len(got) != 2 {
		t.Fatalf("routed: %v, want the two healthy edges", got)
	}
	if err := f.svc.DeleteRoute(context.Background(), "new.example.com"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted route to answer NXDOMAIN", func() bool {
		return f.ask(t, "udp", "new.example.com.", dns.TypeA, nil).Rcode == dns.RcodeNameError
	})
	// The name above it went with it.
	f.route(t, "a.b.example.com")
	if got := f.ask(t, "udp", "b.example.com.", dns.TypeA, nil).Rcode; got != dns.RcodeSuccess {
		t.Fatalf("above a route: %s, want NOERROR", dns.RcodeToString[got])
	}
	if err := f.svc.DeleteRoute(context.Background(), "a.b.example.com"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the name above a deleted route to go", func() bool {
		return f.ask(t, "udp", "b.example.com.", dns.TypeA, nil).Rcode == dns.RcodeNameError
	})
}

// An edge whose registry record expires with its lease leaves every
// answer as soon as the record goes, so resolvers drop it within the TTL.
func TestDeadEdgeLeaves(t *testing.T) {
	f := newFixture(t, nil)
	f.putEdge(t, control.EdgeNode{Name: "stays", Health: control.EdgeHealthOK, PublicAddrs: []string{"192.0.2.1:80"}, TunnelAddr: "192.0.2.1:7844"}, 0)
	const leaseTTL = 2
	f.putEdge(t, control.EdgeNode{Name: "dies", Health: control.EdgeHealthOK, PublicAddrs: []string{"192.0.2.2:80"}, TunnelAddr: "192.0.2.2:7844"}, leaseTTL)
	f.route(t, "app.example.com")
	resp := f.ask(t, "udp", "app.example.com.", dns.TypeA, nil)
	if got := addrsOf(resp); len(got) != 2 {
		t.Fatalf("both edges live: %v", got)
	}
	ttl := time.Duration(resp.Answer[0].Header().Ttl) * time.Second
	// Nothing keeps the lease alive: the edge is dead from now on.
	died := time.Now()
	var a, ns, srv []string
	if !poll.Within(30*time.Second, func() bool {
		a = addrsOf(f.ask(t, "udp", "app.example.com.", dns.TypeA, nil))
		ns = rrData(f.ask(t, "udp", "example.com.", dns.TypeNS, nil).Answer)
		srv = rrData(f.ask(t, "udp", edgesrv.Name(edgesrv.UDP, "example.com"), dns.TypeSRV, nil).Answer)
		return slices.Equal(a, []string{"192.0.2.1"}) && len(ns) == 1 && len(srv) == 1
	}) {
		t.Fatalf("after %v the dead edge is still answered: A %v, NS %v, SRV %v", time.Since(died), a, ns, srv)
	}
	gone := time.Since(died)
	t.Logf("the dead edge left the answers %v after its last keepalive (lease TTL %ds; answer TTL %v)", gone.Round(time.Millisecond), leaseTTL, ttl)
	if ttl > 30*time.Second {
		t.Errorf("A TTL %v: a dead edge would stay in caches too long", ttl)
	}
}

// With EDNS Client Subnet, the nearest region's edges come first, and the
// answer is scoped to the rule's prefix.
func TestClientSubnetOrder(t *testing.T) {
	rules := []RegionRule{
		mustRule(t, "10.0.0.0/8=us,eu"),
		mustRule(t, "10.1.0.0/16=eu"),
		mustRule(t, "2001:db8:1::/48=eu"),
	}
	f := newFixture(t, func(c *Config) { c.ClientRegions = rules })
	for i := range 3 {
		f.putEdge(t, control.EdgeNode{Name: fmt.Sprintf("eu-%d", i), Region: "eu", Health: control.EdgeHealthOK,
			PublicAddrs: []string{fmt.Sprintf("192.0.2.%d:443", i+1)}, TunnelAddr: fmt.Sprintf("192.0.2.%d:7844", i+1)}, 0)
		f.putEdge(t, control.EdgeNode{Name: fmt.Sprintf("us-%d", i), Region: "us", Health: control.EdgeHealthOK,
			PublicAddrs: []string{fmt.Sprintf("198.51.100.%d:443", i+1)}, TunnelAddr: fmt.Sprintf("198.51.100.%d:7844", i+1)}, 0)
	}
	f.route(t, "app.example.com")
	region := func(ip string) string {
		if strings.HasPrefix(ip, "192.0.2.") {
			return "eu"
		}
		return "us"
	}
	tests := []struct {
		subnet    string
		wantFirst string
		wantScope uint8
	}{
		{"10.1.2.0/24", "eu", 16},
		{"10.2.0.0/24", "us", 8},
		{"10.0.0.0/7", "", 7}, // wider than every rule: no region known
		{"192.0.2.0/24", "", 24},
		{"2001:db8:1:2::/56", "eu", 48},
	}
	for _, tt := range tests {
		t.Run(tt.subnet, func(t *testing.T) {
			seenFirst := map[string]bool{}
			for range 6 {
				resp := f.ask(t, "udp", "app.example.com.", dns.TypeA, withECS(tt.subnet))
				got := addrsOf(resp)
				if len(got) != 6 {
					t.Fatalf("answer %v, want all six edges", got)
				}
				if tt.wantFirst != "" {
					for i, ip := range got {
						if near := i < 3; (region(ip) == tt.wantFirst) != near {
							t.Fatalf("answer %v: want the %s edges first", got, tt.wantFirst)
						}
					}
				}
				seenFirst[got[0]] = true
				ecs := ecsOf(resp)
				if ecs == nil || ecs.SourceScope != tt.wantScope {
					t.Fatalf("ECS in the answer %v, want scope %d", ecs, tt.wantScope)
				}
			}
			if len(seenFirst) < 3 {
				t.Errorf("the first address was always one of %v: equal edges should take turns", seenFirst)
			}
		})
	}
	// The SRV records give the nearer region the lower priority.
	resp := f.ask(t, "udp", edgesrv.Name(edgesrv.UDP, "example.com"), dns.TypeSRV, withECS("10.1.0.0/24"))
	for _, rr := range resp.Answer {
		srv := rr.(*dns.SRV)
		want := uint16(20)
		if srv.Target[:3] == "eu-" {
			want = 10
		}
		if srv.Priority != want {
			t.Errorf("SRV %v: priority %d, want %d", srv, srv.Priority, want)
		}
	}
}

func mustRule(t *testing.T, s string) RegionRule {
	t.Helper()
	r, err := ParseRegionRule(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ecsOf(m *dns.Msg) *dns.EDNS0_SUBNET {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				return e
			}
		}
	}
	return nil
}

// Connectors find the edges' tunnel addresses through the SRV records,
// with the standard library's resolver.
func TestEdgeSRVLookup(t *testing.T) {
	f := newFixture(t, nil)
	threeEdges(t, f)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, f.addr)
	}}
	got, err := edgesrv.Lookup(context.Background(), r, edgesrv.UDP, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{"edge-1.tunnel.example.com:7844", "edge-2.tunnels.example.net:7844"}
	if !slices.Equal(got, want) {
		t.Errorf("Lookup = %v, want %v", got, want)
	}
	addrs, err := r.LookupHost(context.Background(), "edge-1.tunnel.example.com")
	if err != nil || !slices.Equal(addrs, []string{"192.0.2.1"}) {
		t.Errorf("the SRV target resolves to %v (%v), want the edge's tunnel address", addrs, err)
	}
	if _, err := edgesrv.Lookup(context.Background(), r, edgesrv.UDP, "elsewhere.org"); err == nil {
		t.Error("a zone the edges do not serve: no error")
	}
}
