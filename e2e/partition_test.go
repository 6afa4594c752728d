package e2e

import (
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"

	"github.com/adit-dev/adit/control"
)

// etcdFault is a proxy between one edge and the fleet's etcd (etcd's own
// fault-injection proxy) that the test cuts and heals: cut, no byte goes
// through either way, as in a network partition; healed, what was held
// goes on (TCP retransmits what a partition dropped; the proxy holds it
// instead, so no connection sees a gap in its stream).
type etcdFault struct {
	proxy.Server
	endpoint string // what the edge is given: unix://SOCKET
}

func newEtcdFault(t *testing.T, etcd string) *etcdFault {
	t.Helper()
	to, err := url.Parse(etcd)
	if err != nil || to.Scheme != "unix" {
		t.Fatalf("the fleet's etcd %q: want a unix socket", etcd)
	}
	sock := filepath.Join(t.TempDir(), "etcd-proxy.sock")
	p := proxy.NewServer(proxy.ServerConfig{
		Logger: zap.NewNop(),
		From:   url.URL{Scheme: "unix", Host: sock},
		To:     url.URL{Scheme: "unix", Host: to.Path},
	})
	select {
	case <-p.Ready():
	case err := <-p.Error():
		t.Fatalf("etcd proxy: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return &etcdFault{Server: p, endpoint: "unix://" + sock}
}

func (f *etcdFault) cut() {
	f.PauseTx()
	f.PauseRx()
}

func (f *etcdFault) heal() {
	f.UnpauseTx()
	f.UnpauseRx()
}

var (
	reCutOff    = regexp.MustCompile(`cut off from etcd`)
	reReachable = regexp.MustCompile(`etcd reachable again`)
)

// TestFleetPartition: three edges on one etcd, the third reaching it
// through a proxy the test cuts: a network partition between that edge
// and etcd alone (visitors and connectors still reach it). Under load
// entering at every edge, the cut-off edge says so in its log and /ready
// (503, so the load balancer moves its visitors); its lease expires, so
// the registry and the other edges' DNS answers drop it and they stop
// forwarding to it; the connectors move their connections to the others
// and the tunnel keeps working. A route deleted meanwhile is never served
// by it once it is ready again; healed, it registers again and takes
// connectors and visitors.
func TestFleetPartition(t *testing.T) {
	start := time.Now()
	var fault *etcdFault
	f := newSpreadFleetWith(t, 3, func(f *spreadFleet, e *spreadEdge) {
		e.extras = []string{"--dns-addr", e.ip + ":0", "--dns-zone", "fleet.test"}
		if e.name == "edge-3" {
			fault = newEtcdFault(t, f.etcd)
			e.etcd = fault.endpoint
		}
	})
	cutEdge := f.edges[2]
	tun := createRelTunnel(t, &relEdge{proc: f.edges[0].proc, login: f.edges[0].login}, "part", "part.fleet.test")
	mustAdit(t, tun.env, "tunnel", "route", "dns", "part", "gone.fleet.test")
	origin := relOrigin(t)
	startFleetReplica(t, tun, origin, 4)
	startFleetReplica(t, tun, origin, 4)
	f.waitSpread(8, 2, 0, 1, 2)
	ask := func(server, name string) []string {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, server)
		if err != nil {
			return []string{err.Error()}
		}
		var out []string
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				out = append(out, a.A.String())
			}
		}
		slices.Sort(out)
		return out
	}
	all := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	waitFor(t, "part.fleet.test to answer every edge", func() bool {
		return slices.Equal(ask(f.edges[0].dnsAddr, "part.fleet.test."), all)
	})
	if status, body := getVia(cutEdge.httpAddr, "gone.fleet.test"); status != 200 {
		t.Fatalf("gone.fleet.test via edge 3 before the cut: %d %q", status, body)
	}
	l := startFleetLoad(t, f, tun.host, 2)
	l.waitRequests(t, 100)

	// The cut.
	from := time.Now()
	fault.cut()
	seen := l.detected(t, 2, from)
	t.Logf("the load balancer took edge 3 out %v after the cut", seen.Sub(from).Round(time.Millisecond))
	cutEdge.waitMatch(t, reCutOff)
	if rd, err := cutEdge.ready(2 * time.Second); err == nil || !strings.Contains(rd.Reason, "etcd") {
		t.Errorf("edge 3's /ready while cut off: %+v, %v; want 503 naming etcd", rd, err)
	}
	waitFor(t, "edge-3 to leave the registry", func() bool {
		var names []string
		for _, n := range listJSON[control.EdgeNode](t, &fleetEdge{env: tun.env}, "edge", "list") {
			names = append(names, n.Name)
		}
		return slices.Equal(names, []string{"edge-1", "edge-2"})
	})
	t.Logf("edge-3 left the registry %v after the cut (lease TTL 3s)", time.Since(from).Round(time.Millisecond))
	waitFor(t, "the other edges' DNS to drop edge 3", func() bool {
		return slices.Equal(ask(f.edges[0].dnsAddr, "part.fleet.test."), all[:2]) &&
			slices.Equal(ask(f.edges[1].dnsAddr, "part.fleet.test."), all[:2])
	})
	f.waitSpread(8, 2, 0, 1)
	t.Logf("the connectors left edge 3 %v after the cut", time.Since(from).Round(time.Millisecond))
	mustAdit(t, tun.env, "tunnel", "route", "delete", "gone.fleet.test")
	l.waitRequests(t, 200)

	// Healed: it says so, registers again, and once ready serves no route
	// deleted meanwhile.
	healed := time.Now()
	fault.heal()
	cutEdge.waitMatch(t, reReachable)
	waitFor(t, "edge-3 back in the registry", func() bool {
		var names []string
		for _, n := range listJSON[control.EdgeNode](t, &fleetEdge{env: tun.env}, "edge", "list") {
			names = append(names, n.Name)
		}
		return slices.Equal(names, []string{"edge-1", "edge-2", "edge-3"})
	})
	t.Logf("edge-3 registered again %v after the heal", time.Since(healed).Round(time.Millisecond))
	waitFor(t, "edge 3 ready", func() bool {
		rd, err := cutEdge.ready(2 * time.Second)
		return err == nil && rd.Status == 200
	})
	if status, body := getVia(cutEdge.httpAddr, "gone.fleet.test"); status != 404 {
		t.Errorf("gone.fleet.test, deleted during the partition, via edge 3 once ready: %d %q; want 404", status, body)
	}
	l.waitUsable(t, 2)
	f.waitSpread(8, 2, 0, 1, 2)
	waitFor(t, "part.fleet.test to answer every edge again", func() bool {
		return slices.Equal(ask(f.edges[0].dnsAddr, "part.fleet.test."), all)
	})
	t.Logf("edge 3 took connectors and visitors again %v after the heal", time.Since(healed).Round(time.Millisecond))
	l.waitRequests(t, 100)
	rs := l.finish()
	checkFleetLoad(t, rs, []edgeWindow{{window{"etcd cut from edge 3", from, seen, true}, 2}})
	if cutEdge.proc.cmd.ProcessState != nil {
		t.Errorf("edge 3 exited: %v", cutEdge.proc.cmd.ProcessState)
	}
	t.Logf("partition test took %v", time.Since(start).Round(time.Millisecond))
}
