package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// routedState is a real route table over an embedded etcd, with each of
// hosts routed ("*.example.org" too).
func routedState(tb testing.TB, hosts ...string) *controlserver.State {
	tb.Helper()
	st, err := store.Open(context.Background(), store.Config{DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(func() {
		cancel()
		st.Close()
	})
	state, err := controlserver.NewState(ctx, st.Client(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	svc := controlserver.NewService(st.Client(), control.EdgeInfo{}, nil)
	tun, err := svc.CreateTunnel(ctx, "t", make([]byte, 32))
	if err != nil {
		tb.Fatal(err)
	}
	ops := make([]clientv3.Op, 0, len(hosts))
	for _, h := range hosts {
		v, _ := json.Marshal(control.Route{Hostname: h, TunnelID: tun.ID})
		ops = append(ops, clientv3.OpPut(store.RouteKey(h), string(v)))
	}
	for len(ops) > 0 { // etcd takes at most 128 operations per transaction
		n := min(len(ops), 100)
		if _, err := st.Client().Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			tb.Fatal(err)
		}
		ops = ops[n:]
	}
	waitForState(ctx, st.Client(), state)
	return state
}

func TestPercentile(t *testing.T) {
	idx := func(ms float64) int {
		for i, b := range latencyBounds {
			if ms <= b {
				return i
			}
		}
		return len(latencyBounds) - 1
	}
	for _, tc := range []struct {
		name      string
		values    map[float64]uint32 // ms → count
		q         float64
		low, high float64
	}{
		{"empty", nil, 0.5, 0, 0},
		// The histogram's buckets are 25% wide: an estimate is within 25% of the value.
		{"one value", map[float64]uint32{10: 1}, 0.5, 8, 12.5},
		{"median of a spread", map[float64]uint32{1: 50, 100: 50}, 0.5, 0.8, 1.25},
		{"p90 of a spread", map[float64]uint32{1: 50, 100: 50}, 0.9, 80, 125},
		{"p99 with a slow tail", map[float64]uint32{2: 98, 5000: 2}, 0.99, 4000, 6250},
		{"past the last bound", map[float64]uint32{1e6: 3}, 0.5, 60000, 60000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hist := make([]uint32, len(latencyBounds))
			var n uint64
			for ms, c := range tc.values {
				hist[idx(ms)] += c
				n += uint64(c)
			}
			if got := percentile(hist, n, tc.q); got < tc.low || got > tc.high {
				t.Errorf("percentile %v = %v, want in [%v, %v]", tc.q, got, tc.low, tc.high)
			}
		})
	}
}

// TestTrafficRing: counts land in their minute, old minutes fall out of
// the hour, wildcard routes count under their pattern, unrouted hosts are
// not counted, error codes are bounded.
func TestTrafficRing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 30, 0, time.UTC)
	tr := newTraffic("n1", routedState(t, "app.example.com", "*.example.org"))
	tr.now = func() time.Time { return now }

	tr.record("APP.example.com:8080", 200, 3*time.Millisecond, 10, 100)
	tr.record("app.example.com", 404, 5*time.Millisecond, 0, 20)
	tr.record("a.example.org", 502, 200*time.Millisecond, 0, 5)
	tr.record("b.example.org", 200, time.Millisecond, 1, 1)
	tr.record("unrouted.example.net", 200, time.Millisecond, 1, 1)

	s := tr.lookup("app.example.com").series(now.Unix() / 60)
	if len(s) != trafficMinutes {
		t.Fatalf("%d minutes, want %d", len(s), trafficMinutes)
	}
	last := s[len(s)-1]
	if last.Time != now.Truncate(time.Minute) || last.Requests != 2 || last.Status["2xx"] != 1 || last.Status["4xx"] != 1 ||
		last.Errors["404"] != 1 || last.BytesIn != 10 || last.BytesOut != 120 {
		t.Errorf("this minute: %+v", last)
	}
	if last.P50MS < 2 || last.P50MS > 5.1 || last.P99MS < last.P50MS {
		t.Errorf("latency p50 %v p99 %v, want between 2 and 5 ms", last.P50MS, last.P99MS)
	}
	if w := tr.lookup("*.example.org").series(now.Unix() / 60); w[59].Requests != 2 || w[59].Errors["502"] != 1 {
		t.Errorf("wildcard route: %+v", w[59])
	}
	if tr.lookup("unrouted.example.net") != nil || len(tr.exact)+len(tr.wild) != 2 {
		t.Errorf("tracked %d exact, %d wildcard hostnames; want the two routes only", len(tr.exact), len(tr.wild))
	}

	// Ten minutes on: the old counts sit ten slots back.
	now = now.Add(10 * time.Minute)
	tr.record("app.example.com", 200, time.Millisecond, 0, 0)
	s = tr.lookup("app.example.com").series(now.Unix() / 60)
	if s[59].Requests != 1 || s[49].Requests != 2 {
		t.Errorf("after 10 minutes: now %d, 10 minutes ago %d; want 1 and 2", s[59].Requests, s[49].Requests)
	}
	sum := tr.summary()
	if len(sum.Hosts) != 2 || sum.Hosts[0].Hostname != "app.example.com" || sum.Hosts[0].Requests != 3 || sum.Hosts[0].Errors != 1 ||
		sum.Hosts[1].Hostname != "*.example.org" || sum.Minutes != 60 || sum.EdgeNode != "n1" {
		t.Errorf("summary %+v", sum)
	}

	// An hour and more on: everything has fallen out, and the slot of the
	// same minute an hour later starts from zero.
	now = now.Add(time.Hour)
	tr.record("app.example.com", 500, time.Millisecond, 0, 0)
	s = tr.lookup("app.example.com").series(now.Unix() / 60)
	var total uint64
	for _, m := range s {
		total += m.Requests
	}
	if total != 1 || s[59].Errors["500"] != 1 || s[59].Status["2xx"] != 0 {
		t.Errorf("an hour later: %d requests in the hour, this minute %+v; want only the new one", total, s[59])
	}
	if sum := tr.summary(); len(sum.Hosts) != 1 {
		t.Errorf("an hour later the summary lists %+v, want only the host with requests", sum.Hosts)
	}

	// Error codes: 8 distinct per minute, then "other".
	for code := 400; code < 420; code++ {
		tr.record("app.example.com", code, time.Millisecond, 0, 0)
	}
	m := tr.lookup("app.example.com").series(now.Unix() / 60)[59]
	if len(m.Errors) != maxErrorCodes+1 || m.Errors["other"] != 20-(maxErrorCodes-1) {
		t.Errorf("errors %v, want %d codes and the rest as other", m.Errors, maxErrorCodes)
	}
}

// TestTrafficHostsBounded: no more than maxTrafficHosts rings; an idle
// one makes room.
func TestTrafficHostsBounded(t *testing.T) {
	now := time.Unix(1e9, 0)
	var hosts []string
	for i := range maxTrafficHosts + 10 {
		hosts = append(hosts, fmt.Sprintf("h%d.example.com", i))
	}
	tr := newTraffic("n", routedState(t, hosts...))
	tr.now = func() time.Time { return now }
	for i := range maxTrafficHosts + 10 {
		tr.record(fmt.Sprintf("h%d.example.com", i), 200, 0, 0, 0)
	}
	if n := len(tr.exact); n != maxTrafficHosts {
		t.Fatalf("%d rings, want %d", n, maxTrafficHosts)
	}
	now = now.Add(2 * time.Hour)
	tr.record("h1005.example.com", 200, 0, 0, 0)
	if tr.lookup("h1005.example.com") == nil || len(tr.exact) != 1 {
		t.Errorf("after an idle hour: %d rings, new host tracked %v; want the idle ones gone", len(tr.exact), tr.lookup("h1005.example.com") != nil)
	}
}

// TestTrafficEndpoint: a real edge counts the public requests of a routed
// hostname (here answered 502: its tunnel has no connector) and serves
// them at GET /v1/traffic/{hostname}.
func TestTrafficEndpoint(t *testing.T) {
	s := startTestEdge(t)
	defer s.Close()
	ctx := context.Background()
	tun, err := s.Service().CreateTunnel(ctx, "t", make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service().RouteDNS(ctx, tun.ID, "app.example.com", false); err != nil {
		t.Fatal(err)
	}
	s.Sync(ctx)
	for range 3 {
		req, _ := http.NewRequest("POST", "http://"+s.HTTPAddr().String()+"/x", strings.NewReader("12345"))
		req.Host = "app.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	tok, err := os.ReadFile(s.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.NewClient(s.APIURL(), strings.TrimSpace(string(tok)), s.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	ht, err := c.HostTraffic(ctx, "App.Example.com")
	if err != nil {
		t.Fatal(err)
	}
	last := ht.Minutes[len(ht.Minutes)-1]
	if ht.Hostname != "app.example.com" || ht.EdgeNode != s.Node() || last.Requests != 3 || last.Errors["502"] != 3 {
		t.Errorf("traffic %s on %s: this minute %+v; want 3 requests answered 502", ht.Hostname, ht.EdgeNode, last)
	}
	sum, err := c.Traffic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Hosts) != 1 || sum.Hosts[0].Requests != 3 {
		t.Errorf("summary %+v", sum)
	}
	_, err = c.HostTraffic(ctx, "not_a_host!")
	if err == nil || !strings.Contains(err.Error(), "hostname") {
		t.Errorf("a bad hostname: %v, want an error naming it", err)
	}
}

// TestTrafficDocumented: docs/openapi.yaml describes the edge's own
// endpoints: traffic, the request log, the fleet's (fleetjoin.go).
func TestTrafficDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eps := append(newTraffic("n", nil).endpoints(), newRequestLog("n", fixedRouter("t"), nil).endpoint(nil))
	eps = append(eps, (&Server{}).fleetEndpoints()...)
	eps = append(eps, controlserver.Endpoint{Pattern: "POST /v1/fleet/join"}) // withJoin
	problems, err := controlserver.CheckDocumented(data, "edge", eps)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// BenchmarkTrafficRecord: the request path's cost of the traffic counts,
// with the edge's real route table.
func BenchmarkTrafficRecord(b *testing.B) {
	tr := newTraffic("n", routedState(b, "app.example.com", "*.example.org"))
	for _, host := range []string{"app.example.com", "a.example.org"} {
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tr.record(host, 200, 3*time.Millisecond, 100, 1000)
			}
			if tr.summary().Hosts[0].Requests == 0 {
				b.Fatal("nothing counted")
			}
		})
	}
}
