package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/edgedns"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/internal/store"
)

// TestDNSWildcardCertificate: an edge that serves DNS for its zone gets a
// wildcard route an ACME certificate by DNS-01 (real Pebble asking the
// edge's DNS server for the challenge's TXT record), serves it for a name
// under the wildcard, and the TXT record is gone once the order is done.
func TestDNSWildcardCertificate(t *testing.T) {
	pb := newPebbleServer(t)
	srv := startHTTPSEdge(t, pb, 0, func(c *edge.Config) {
		c.DNS = edgedns.Config{Addr: "127.0.0.1:0", Zones: []string{"example.test"}}
	})
	origin := headerOrigin(t)
	tun := createTunnel(t, srv, "web", "*.example.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL))

	// The route alone starts the order.
	client := tlsClient(pb.IssuedRoots, srv.HTTPSAddr().String())
	resp := waitHTTPS(t, client, "https://app.example.test/x")
	var got echoed
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("answer = %d, want 200", resp.StatusCode)
	}
	if names := resp.TLS.PeerCertificates[0].DNSNames; !slices.Equal(names, []string{"*.example.test"}) {
		t.Errorf("certificate for %v, want *.example.test", names)
	}
	// Another name under the wildcard: the same certificate, no new order.
	orders := pb.orders.Load()
	conn, err := tls.Dial("tcp", srv.HTTPSAddr().String(), &tls.Config{ServerName: "other.example.test", RootCAs: pb.IssuedRoots})
	if err != nil {
		t.Fatalf("a second name under the wildcard: %v", err)
	}
	conn.Close()
	if n := pb.orders.Load(); n != orders || n != 1 {
		t.Errorf("Pebble saw %d orders, want 1", n)
	}
	// Two labels below the wildcard: routed, but no certificate covers it.
	if _, err := tls.Dial("tcp", srv.HTTPSAddr().String(), &tls.Config{ServerName: "a.b.example.test", RootCAs: pb.IssuedRoots}); err == nil {
		t.Error("a.b.example.test got a certificate from *.example.test")
	}

	// The challenge's TXT record was cleaned up: no edge answers it (the
	// name stays: the wildcard route covers it).
	poll.Until(t, "the challenge's TXT record to go", func() bool {
		q := new(dns.Msg)
		q.SetQuestion("_acme-challenge.example.test.", dns.TypeTXT)
		ans, _, err := new(dns.Client).Exchange(q, srv.DNSAddr().String())
		return err == nil && ans.Rcode == dns.RcodeSuccess && len(ans.Answer) == 0
	})
}

var reDNSAddr = regexp.MustCompile(`DNS\s+(\S+) \(udp and tcp\)`)

// TestDNSEdgeKilled: two `adit edge` processes on one etcd, the first
// serving DNS for the zone; a routed name answers both; the second is
// killed with SIGKILL and leaves the A, NS and SRV answers once its
// registry record expires with its lease (2s here).
func TestDNSEdgeKilled(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	caPEM, caKey, err := pki.NewCA("adit fleet test CA")
	if err != nil {
		t.Fatal(err)
	}
	const leaseTTL = 2 * time.Second
	start := func(name, host string, extra ...string) *proc {
		args := append([]string{"edge", "--data-dir", fleetDataDir(t, caPEM, caKey), "--node-name", name,
			"--etcd-endpoints", st.Endpoints()[0], "--lease-ttl", leaseTTL.String(), "--public-name", host,
			"--http-addr", host + ":0", "--tunnel-addr", host + ":0", "--api-addr", host + ":0"}, extra...)
		return startAdit(t, nil, args...)
	}
	a := start("edge-a", "127.0.0.2", "--dns-addr", "127.0.0.2:0", "--dns-zone", "example.test")
	server := a.waitMatch(t, reDNSAddr)[1]
	b := start("edge-b", "127.0.0.3")
	b.waitMatch(t, reHTTPAddr)

	ctx := context.Background()
	svc := controlserver.NewService(st.Client(), control.EdgeInfo{}, nil)
	tun, err := svc.CreateTunnel(ctx, "web", make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteDNS(ctx, tun.ID, "app.example.test", false); err != nil {
		t.Fatal(err)
	}
	ask := func(name string, qtype uint16) []string {
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, server)
		if err != nil {
			t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
		}
		var out []string
		for _, rr := range resp.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				out = append(out, rr.A.String())
			case *dns.NS:
				out = append(out, rr.Ns)
			case *dns.SRV:
				out = append(out, rr.Target)
			}
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, "app.example.test to answer both edges", func() bool {
		return slices.Equal(ask("app.example.test.", dns.TypeA), []string{"127.0.0.2", "127.0.0.3"})
	})
	if got := ask("example.test.", dns.TypeNS); !slices.Equal(got, []string{"edge-a.ns.example.test.", "edge-b.ns.example.test."}) {
		t.Errorf("NS: %v", got)
	}
	if got := ask("_adit-tunnel._udp.example.test.", dns.TypeSRV); !slices.Equal(got, []string{"edge-a.tunnel.example.test.", "edge-b.tunnel.example.test."}) {
		t.Errorf("SRV: %v", got)
	}

	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, "the killed edge to leave every answer", func() bool {
		return slices.Equal(ask("app.example.test.", dns.TypeA), []string{"127.0.0.2"}) &&
			len(ask("example.test.", dns.TypeNS)) == 1 && len(ask("_adit-tunnel._udp.example.test.", dns.TypeSRV)) == 1
	})
	gone := time.Since(killed)
	t.Logf("the killed edge left the DNS answers %s after SIGKILL (lease TTL %s)", gone.Round(100*time.Millisecond), leaseTTL)
	if gone > leaseTTL+5*time.Second {
		t.Errorf("the killed edge left the answers %s after SIGKILL: want within its lease TTL (%s) and a little", gone, leaseTTL)
	}
}
