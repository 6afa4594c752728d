package edgedns

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/edge/edgeview"
	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/internal/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newEtcd starts an embedded etcd for one test and returns its client.
func newEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	s, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
	})
	return s.Client()
}

// fixture is a DNS server on loopback over a real etcd, with the control
// service that routes names.
type fixture struct {
	cli    *clientv3.Client
	state  *controlserver.State
	svc    *controlserver.Service
	srv    *Server
	addr   string
	tunnel control.Tunnel
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	cli := newEtcd(t)
	ctx, cancel := context.WithCancel(context.Background())
	state, err := controlserver.NewState(ctx, cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-state.Done() })
	f := &fixture{cli: cli, state: state, svc: controlserver.NewService(cli, control.EdgeInfo{Node: "edge-1"}, nil)}
	f.tunnel, err = f.svc.CreateTunnel(ctx, "web", make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	edges, err := edgeview.New(ctx, cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-edges.Done() })
	cfg := Config{Addr: "127.0.0.1:0", Zones: []string{"Example.com."}, Node: "edge-1", Edges: edges}
	if mod != nil {
		mod(&cfg)
	}
	f.srv, err = New(ctx, cli, state, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go f.srv.ServeUDP()
	go f.srv.ServeTCP()
	t.Cleanup(func() { f.srv.Close() })
	f.addr = f.srv.Addr().String()
	return f
}

// route routes host to the fixture's tunnel and waits until DNS sees it.
func (f *fixture) route(t *testing.T, host string) {
	t.Helper()
	if _, err := f.svc.RouteDNS(context.Background(), f.tunnel.ID, host, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "route "+host, func() bool {
		_, ok := f.state.Route(host)
		f.srv.names.mu.RLock()
		defer f.srv.names.mu.RUnlock()
		return ok && f.srv.names.routes[host] // the event handler runs after State has it
	})
}

// putEdge registers an edge as fleet's writer would, under a lease of ttl
// seconds (0: no lease), and returns the lease.
func (f *fixture) putEdge(t *testing.T, n control.EdgeNode, ttl int64) clientv3.LeaseID {
	t.Helper()
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var opts []clientv3.OpOption
	var lease clientv3.LeaseID
	if ttl > 0 {
		l, err := f.cli.Grant(context.Background(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		lease = l.ID
		opts = append(opts, clientv3.WithLease(lease))
	}
	if _, err := f.cli.Put(context.Background(), store.EdgeKey(n.Name), string(b), opts...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge "+n.Name+" in memory", func() bool {
		for _, e := range f.srv.edges.Load().all {
			if e.name == n.Name && e.healthy == (n.Health == control.EdgeHealthOK) && e.region == n.Region {
				return true
			}
		}
		return false
	})
	return lease
}

// ask sends one question over net ("udp" or "tcp"), with mod applied to
// the query, and returns the answer.
func (f *fixture) ask(t *testing.T, network, name string, qtype uint16, mod func(*dns.Msg)) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = false
	if mod != nil {
		mod(q)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 4096}
	resp, _, err := c.Exchange(q, f.addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

// withECS adds an EDNS Client Subnet option for prefix.
func withECS(prefix string) func(*dns.Msg) {
	return func(m *dns.Msg) {
		p := netip.MustParsePrefix(prefix)
		family := uint16(1)
		if p.Addr().Is6() {
			family = 2
		}
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family,
			SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())})
		m.Extra = append(m.Extra, o)
	}
}

// addrsOf lists the A and AAAA records of an answer, in order.
func addrsOf(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

var waitFor = poll.Until
