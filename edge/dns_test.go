package edge

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edgedns"
	"github.com/adit-dev/adit/edgedns/edgesrv"
	"github.com/adit-dev/adit/internal/poll"
)

// TestDNS: an edge with --dns-addr answers for its zone with the fleet's
// live edges: A for routed names (nearest region first by EDNS Client
// Subnet), NS with glue, SOA, SRV with the tunnel addresses; a draining
// edge leaves the A answers, a closed one every answer; a deleted route
// is NXDOMAIN.
func TestDNS(t *testing.T) {
	ctx := context.Background()
	a, err := Start(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0",
		APIAddr: "127.0.0.1:0", NodeName: "edge-a", Region: "eu",
		DNS: edgedns.Config{Addr: "127.0.0.1:0", Zones: []string{"example.com"},
			ClientRegions: []edgedns.RegionRule{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Regions: []string{"us"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.2:0", TunnelAddr: "127.0.0.2:0",
		APIAddr: "127.0.0.2:0", NodeName: "edge-b", Region: "us", EtcdEndpoints: a.store.Endpoints(), PublicNames: []string{"127.0.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	svc := a.Service()
	tun, err := svc.CreateTunnel(ctx, "web", make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteDNS(ctx, tun.ID, "app.example.com", false); err != nil {
		t.Fatal(err)
	}
	server := a.DNSAddr().String()
	ask := func(name string, qtype uint16, ecs string) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		if ecs != "" {
			p := netip.MustParsePrefix(ecs)
			q.SetEdns0(1232, false)
			opt := q.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
		}
		resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, server)
		if err != nil {
			t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
		}
		return resp
	}
	addrs := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			if a, ok := rr.(*dns.A); ok {
				out = append(out, a.A.String())
			}
		}
		return out
	}
	sorted := func(s []string) []string { return slices.Sorted(slices.Values(s)) }

	poll.Until(t, "app.example.com to answer both edges", func() bool {
		return slices.Equal(sorted(addrs(ask("app.example.com.", dns.TypeA, "").Answer)), []string{"127.0.0.1", "127.0.0.2"})
	})
	if got := addrs(ask("app.example.com.", dns.TypeA, "10.1.0.0/16").Answer); got[0] != "127.0.0.2" {
		t.Errorf("from a client in the us region: %v, want edge-b (127.0.0.2) first", got)
	}
	ns := ask("example.com.", dns.TypeNS, "")
	if len(ns.Answer) != 2 || !slices.Equal(sorted(addrs(ns.Extra)), []string{"127.0.0.1", "127.0.0.2"}) {
		t.Errorf("NS: %v with glue %v, want both edges", ns.Answer, ns.Extra)
	}
	if soa := ask("example.com.", dns.TypeSOA, ""); len(soa.Answer) != 1 || soa.Answer[0].(*dns.SOA).Ns != "edge-a.ns.example.com." {
		t.Errorf("SOA: %v", soa.Answer)
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
	tunnels, err := edgesrv.Lookup(ctx, r, edgesrv.UDP, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	// edge-a advertises its tunnel listener's address, edge-b its public name.
	want := []string{"edge-a.tunnel.example.com:" + port(a.TunnelAddr().String()), "edge-b.tunnel.example.com:" + port(b.TunnelAddr().String())}
	if !slices.Equal(sorted(tunnels), want) {
		t.Errorf("SRV: %v, want %v", sorted(tunnels), want)
	}

	if err := b.SetHealth(ctx, control.EdgeHealthDraining); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the draining edge to leave the A answers", func() bool {
		return slices.Equal(addrs(ask("app.example.com.", dns.TypeA, "").Answer), []string{"127.0.0.1"})
	})
	b.Close()
	poll.Until(t, "the closed edge to leave the NS answers", func() bool { return len(ask("example.com.", dns.TypeNS, "").Answer) == 1 })

	if err := svc.DeleteRoute(ctx, "app.example.com"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the deleted route to be NXDOMAIN", func() bool {
		return ask("app.example.com.", dns.TypeA, "").Rcode == dns.RcodeNameError
	})
}
