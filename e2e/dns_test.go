package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/edgedns"
	"github.com/adit-dev/adit/internal/poll"
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
