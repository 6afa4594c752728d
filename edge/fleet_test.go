package edge

import (
	"context"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
)

// TestFleetRegistry: an edge registers itself in the fleet's registry with
// its addresses, region and health; a second edge on the same etcd shows
// up there and in EdgeInfo's tunnel addresses, leaves them when it drains
// and when it closes.
func TestFleetRegistry(t *testing.T) {
	ctx := context.Background()
	a, err := Start(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0",
		APIAddr: "127.0.0.1:0", NodeName: "edge-a", Region: "eu-west", Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	edges, err := a.Service().ListEdges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) != 1 {
		t.Fatalf("ListEdges: got %+v, want edge-a alone", edges)
	}
	e := edges[0]
	want := control.EdgeNode{Name: "edge-a", Region: "eu-west", Version: "v1.2.3", Started: e.Started,
		PublicAddrs: []string{a.HTTPAddr().String()}, HTTPAddr: a.HTTPAddr().String(),
		TunnelAddr: a.TunnelAddr().String(), APIAddr: a.APIAddr().String(), PeerAddr: a.PeerAddr(), Health: control.EdgeHealthOK}
	if e.Started.IsZero() || !reflect.DeepEqual(e, want) {
		t.Errorf("record: got %+v, want %+v", e, want)
	}

	b, err := Start(ctx, Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0",
		APIAddr: "127.0.0.1:0", NodeName: "edge-b", EtcdEndpoints: a.store.Endpoints(), AdvertiseAddr: "localhost:" + port(a.TunnelAddr().String())})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	names := func() []string {
		edges, err := a.Service().ListEdges(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ns []string
		for _, e := range edges {
			ns = append(ns, e.Name+"="+e.Health)
		}
		return ns
	}
	if got := names(); !slices.Equal(got, []string{"edge-a=ok", "edge-b=ok"}) {
		t.Errorf("edges: got %v", got)
	}
	info, err := a.Service().EdgeInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{a.advertise, b.advertise}; !slices.Equal(info.TunnelAddrs, want) {
		t.Errorf("EdgeInfo.TunnelAddrs: got %v, want %v", info.TunnelAddrs, want)
	}

	if err := b.SetHealth(ctx, control.EdgeHealthDraining); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"edge-a=ok", "edge-b=draining"}) {
		t.Errorf("after SetHealth: got %v", got)
	}
	if info, _ := a.Service().EdgeInfo(ctx); len(info.TunnelAddrs) != 1 {
		t.Errorf("EdgeInfo lists a draining edge: %v", info.TunnelAddrs)
	}
	if err := b.SetHealth(ctx, "sick"); err == nil || !strings.Contains(err.Error(), `health "sick"`) {
		t.Errorf("SetHealth(sick): got %v, want an error naming it", err)
	}
	b.Close()
	poll.Until(t, "edge-b leaves the registry", func() bool { return slices.Equal(names(), []string{"edge-a=ok"}) })
}

// TestFleetConfigChecked: a bad region or lease TTL fails Start naming it.
func TestFleetConfigChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"space in region", Config{Region: "eu west"}, `region "eu west"`},
		{"long region", Config{Region: strings.Repeat("a", 64)}, "region"},
		{"negative ttl", Config{LeaseTTL: -1}, "lease TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.DataDir = t.TempDir()
			_, err := Start(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func port(hostport string) string {
	_, p, _ := strings.Cut(hostport, ":")
	return p
}

// TestEtcdPeerPortKept: an edge's etcd peer listener keeps its port across
// restarts (other members dial it); a lone member whose port was taken
// meanwhile takes another.
func TestEtcdPeerPortKept(t *testing.T) {
	dir := t.TempDir()
	start := func() *Server {
		t.Helper()
		s, err := Start(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	first := s.EtcdPeerURL()
	if !strings.HasPrefix(first, "https://127.0.0.1:") || strings.HasSuffix(first, ":0") {
		t.Fatalf("EtcdPeerURL: %q", first)
	}
	s.Close()
	s = start()
	if got := s.EtcdPeerURL(); got != first {
		t.Errorf("after a restart: %q, want %q", got, first)
	}
	s.Close()
	ln, err := net.Listen("tcp", strings.TrimPrefix(first, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s = start()
	defer s.Close()
	if got := s.EtcdPeerURL(); got == first {
		t.Errorf("port taken: still %q", got)
	}
	ms, err := s.store.Members(context.Background())
	if err != nil || len(ms) != 1 || ms[0].PeerURLs[0] != s.EtcdPeerURL() {
		t.Errorf("members: %+v, %v; want the new peer URL", ms, err)
	}
}

// TestPickAdvertise: the tunnel address connectors are given, and whether
// the fleet's registry lists it.
func TestPickAdvertise(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		want   string
		listed bool
		why    string
	}{
		{"given", Config{AdvertiseAddr: "edge1.example.com:443", PublicNames: []string{"x"}}, "edge1.example.com:443", true, ""},
		{"public name first", Config{PublicNames: []string{"edge1.example.com", "b"}, TunnelAddr: "10.0.0.1:7844"}, "edge1.example.com:7844", true, ""},
		{"tunnel listener's host", Config{TunnelAddr: "10.0.0.1:7844", PeerAddr: "10.0.0.2:7846"}, "10.0.0.1:7844", true, ""},
		{"IPv6 tunnel host", Config{TunnelAddr: "[2001:db8::1]:0"}, "[2001:db8::1]:7844", true, ""},
		{"peer link's host", Config{TunnelAddr: ":7844", PeerAddr: "10.0.0.2:7846"}, "10.0.0.2:7844", true, ""},
		{"wildcards: localhost, not listed", Config{TunnelAddr: "0.0.0.0:7844", PeerAddr: "[::]:7846"}, "localhost:7844", false, ""},
		{"defaults: localhost, not listed", Config{}, "localhost:7844", false, ""},
		{"given wildcard", Config{AdvertiseAddr: "0.0.0.0:7844"}, "0.0.0.0:7844", false, "a wildcard host"},
		{"given without host", Config{AdvertiseAddr: ":7844"}, ":7844", false, "no host"},
		{"given port 0", Config{AdvertiseAddr: "edge1.example.com:0"}, "edge1.example.com:0", false, "no port"},
		{"given without port", Config{AdvertiseAddr: "edge1.example.com"}, "edge1.example.com", false, "missing port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, listed, why := pickAdvertise(tc.cfg, "7844")
			if got != tc.want || listed != tc.listed || !strings.Contains(why, tc.why) || (tc.why == "") != (why == "") {
				t.Errorf("got %q listed=%v why=%q; want %q listed=%v why~%q", got, listed, why, tc.want, tc.listed, tc.why)
			}
		})
	}
}
