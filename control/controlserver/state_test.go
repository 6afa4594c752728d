package controlserver

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// eventLog collects State events for a test.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) has(want Event) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.events, want)
}

func newState(t *testing.T, cli *clientv3.Client) *State {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := NewState(ctx, cli, nil)
	if err != nil {
		cancel()
		t.Fatalf("NewState: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-s.Done()
	})
	return s
}

func TestStateLoadsAndWatches(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	ctx := t.Context()

	// Loaded at start.
	old, err := svc.CreateTunnel(ctx, "old", secret(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteDNS(ctx, old.ID, "old.example.com", false); err != nil {
		t.Fatal(err)
	}
	s := newState(t, cli)
	if id, ok := s.Route("old.example.com"); !ok || id != old.ID {
		t.Errorf("Route(old.example.com) right after NewState = %q, %v; want %s", id, ok, old.ID)
	}
	var events eventLog
	s.OnEvent(events.add)

	// Seen through the watch.
	tun, err := svc.CreateTunnel(ctx, "web", secret(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteDNS(ctx, tun.ID, "*.example.com", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the wildcard route", func() bool { id, _ := s.Route("new.example.com"); return id == tun.ID })
	got, ok := s.Tunnel(tun.ID)
	if !ok || got.Name != "web" || !control.VerifySecret(got, secret(2)) {
		t.Errorf("Tunnel(%s) = %+v, %v; want web with its secret hash", tun.ID, got, ok)
	}
	if _, ok := s.Tunnel("nope"); ok {
		t.Error("Tunnel(nope) found, want not found")
	}

	// Connections come and go; removals are events.
	p, err := NewPresence(ctx, cli, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	conn := control.Connection{ID: "c1", TunnelID: tun.ID, Index: 2, Protocol: "quic", Since: now()}
	if err := p.Add(ctx, conn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection", func() bool { return len(s.Connections(tun.ID)) == 1 })
	if c := s.Connections(tun.ID)[0]; c != conn {
		t.Errorf("Connections = %+v, want %+v", c, conn)
	}
	if err := svc.CleanupTunnel(ctx, tun.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection-removed event", func() bool {
		return events.has(Event{Kind: ConnectionRemoved, TunnelID: tun.ID, ConnID: "c1"})
	})
	if n := len(s.Connections(tun.ID)); n != 0 {
		t.Errorf("%d connections after cleanup, want 0", n)
	}

	// A route deleted is gone; a tunnel deleted is an event, and its routes go too.
	if err := svc.DeleteRoute(ctx, "old.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := svc.DeleteTunnel(ctx, tun.ID, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tunnel-deleted event", func() bool { return events.has(Event{Kind: TunnelDeleted, TunnelID: tun.ID}) })
	if id, ok := s.Route("new.example.com"); ok {
		t.Errorf("Route(new.example.com) after its tunnel was deleted = %q, want no route", id)
	}
	if id, ok := s.Route("old.example.com"); ok {
		t.Errorf("Route(old.example.com) after DeleteRoute = %q, want no route", id)
	}
	if got, ok := s.Tunnel(tun.ID); !ok || got.DeletedAt == nil {
		t.Errorf("Tunnel(deleted) = %+v, %v; want it with DeletedAt", got, ok)
	}
	// A vanished tunnel record is a deletion too.
	if _, err := cli.Delete(ctx, store.TunnelKey(old.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event for a vanished tunnel", func() bool { return events.has(Event{Kind: TunnelDeleted, TunnelID: old.ID}) })
	if _, ok := s.Tunnel(old.ID); ok {
		t.Error("Tunnel(vanished) found, want not found")
	}
}

// TestStateReloadsAfterCompaction starts the watch from a revision etcd has
// compacted away: State must load everything again and report what vanished.
func TestStateReloadsAfterCompaction(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	ctx := t.Context()
	tun, err := svc.CreateTunnel(ctx, "web", secret(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, store.ConnectionKey(tun.ID, "c1"), `{"id":"c1"}`); err != nil {
		t.Fatal(err)
	}

	// Load, but do not watch yet.
	s := &State{cli: cli, log: newTextLogger(testWriter{t}), done: make(chan struct{})}
	d, err := s.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.data = d
	var events eventLog
	s.OnEvent(events.add)

	// Meanwhile: the tunnel is deleted, a route appears, history is compacted.
	if err := svc.DeleteTunnel(ctx, tun.ID, true); err != nil {
		t.Fatal(err)
	}
	other, err := svc.CreateTunnel(ctx, "other", secret(2))
	if err != nil {
		t.Fatal(err)
	}
	r, err := svc.RouteDNS(ctx, other.ID, "app.example.com", false)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, store.RouteKey(r.Hostname))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}

	wctx, cancel := context.WithCancel(context.Background())
	go s.run(wctx)
	defer func() { cancel(); <-s.done }()

	waitFor(t, "the reload", func() bool { id, _ := s.Route("app.example.com"); return id == other.ID })
	waitFor(t, "events for what vanished", func() bool {
		return events.has(Event{Kind: TunnelDeleted, TunnelID: tun.ID}) &&
			events.has(Event{Kind: ConnectionRemoved, TunnelID: tun.ID, ConnID: "c1"})
	})
	// And it watches again from there.
	if _, err := svc.RouteDNS(ctx, other.ID, "later.example.com", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a route after the reload", func() bool { _, ok := s.Route("later.example.com"); return ok })
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// stateWith returns a State holding routes (hostname → tunnel ID), without etcd.
func stateWith(routes map[string]string) *State {
	s := &State{log: slog.New(slog.DiscardHandler), data: newStateData()}
	for host, id := range routes {
		s.put(&s.data, store.RouteKey(host), fmt.Appendf(nil, `{"hostname":%q,"tunnel_id":%q}`, host, id))
	}
	return s
}

func TestRouteMatching(t *testing.T) {
	s := stateWith(map[string]string{
		"example.com":       "apex",
		"app.example.com":   "app",
		"*.example.com":     "wild",
		"*.b.example.com":   "wild-b",
		"x.b.example.com":   "exact-under-wild",
		"*.other.test":      "other",
		"*.deep.other.test": "deep",
	})
	tests := []struct {
		host   string
		want   string
		wantOK bool
	}{
		{"app.example.com", "app", true},
		{"APP.Example.COM", "app", true},
		{"app.example.com:8443", "app", true},
		{"app.example.com.", "app", true},
		{"app.example.com.:443", "app", true},
		{"example.com", "apex", true},
		{"zzz.example.com", "wild", true},
		{"a.b.c.example.com", "wild", true},
		{"a.b.example.com", "wild-b", true},
		{"A.B.EXAMPLE.COM:80", "wild-b", true},
		{"x.b.example.com", "exact-under-wild", true},
		{"b.example.com", "wild", true},
		{"other.test", "", false}, // a wildcard does not match its apex
		{"a.other.test", "other", true},
		{"deep.other.test", "other", true},
		{"a.deep.other.test", "deep", true},
		{"example.org", "", false},
		{"com", "", false},
		{"", "", false},
		{":80", "", false},
		{".", "", false},
		{"[::1]:443", "", false},
		{"::1", "", false},
		{"xexample.com", "", false},
	}
	for _, tt := range tests {
		got, ok := s.Route(tt.host)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Route(%q) = %q, %v; want %q, %v", tt.host, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRouteZeroAllocs(t *testing.T) {
	s := stateWith(map[string]string{"*.example.com": "wild", "app.example.com": "app"})
	for _, host := range []string{"app.example.com", "A.B.Example.com:443", "nowhere.test"} {
		if n := testing.AllocsPerRun(100, func() { s.Route(host) }); n != 0 {
			t.Errorf("Route(%q) allocates %v times, want 0", host, n)
		}
	}
}

func TestDiffEvents(t *testing.T) {
	del := time.Now()
	old := newStateData()
	old.tunnels["live"] = control.Tunnel{ID: "live"}
	old.tunnels["gone"] = control.Tunnel{ID: "gone"}
	old.tunnels["deleting"] = control.Tunnel{ID: "deleting"}
	old.tunnels["was-deleted"] = control.Tunnel{ID: "was-deleted", DeletedAt: &del}
	old.conns["live"] = map[string]control.Connection{"c1": {}, "c2": {}}
	cur := newStateData()
	cur.tunnels["live"] = control.Tunnel{ID: "live"}
	cur.tunnels["deleting"] = control.Tunnel{ID: "deleting", DeletedAt: &del}
	cur.conns["live"] = map[string]control.Connection{"c2": {}}
	old.exact["kept.example.com"], cur.exact["kept.example.com"] = "live", "live"
	old.exact["moved.example.com"], cur.exact["moved.example.com"] = "live", "other"
	old.exact["removed.example.com"] = "live"
	cur.exact["added.example.com"] = "live"
	old.wild["old.example.com"] = "live"
	cur.wild["new.example.com"] = "live"

	got := diffEvents(old, cur)
	want := []Event{
		{Kind: TunnelDeleted, TunnelID: "deleting"},
		{Kind: TunnelDeleted, TunnelID: "gone"},
		{Kind: ConnectionRemoved, TunnelID: "live", ConnID: "c1"},
		{Kind: RouteAdded, TunnelID: "live", Host: "*.new.example.com"},
		{Kind: RouteAdded, TunnelID: "live", Host: "added.example.com"},
		{Kind: RouteAdded, TunnelID: "other", Host: "moved.example.com"},
		{Kind: RouteRemoved, Host: "*.old.example.com"},
		{Kind: RouteRemoved, Host: "removed.example.com"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("diffEvents = %+v, want %+v", got, want)
	}
}

func BenchmarkStateRoute(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		routes := make(map[string]string, n)
		for i := range n {
			if i%10 == 0 {
				routes[fmt.Sprintf("*.w%d.example.com", i)] = "t"
			} else {
				routes[fmt.Sprintf("host%d.example.com", i)] = "t"
			}
		}
		s := stateWith(routes)
		for _, c := range []struct{ name, host string }{
			{"exact", "host1.example.com"},
			{"exact-port-upper", "HOST1.Example.com:443"},
			{"wildcard", "a.b.w10.example.com"},
			{"miss", "a.b.c.nowhere.test"},
		} {
			b.Run(fmt.Sprintf("routes=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					s.Route(c.host)
				}
			})
		}
	}
}

// FuzzStateRoute: every hostname control.ValidateHostname accepts is found
// by Route, exactly or through its wildcard, whatever the case of the query.
func FuzzStateRoute(f *testing.F) {
	for _, s := range []string{
		"app.example.com", "*.example.com", "App.Example.COM.", "a..b", "-a.com", "10.0.0.1",
		"xn--bcher-kva.example", "*.*.com", "\u212a.com", strings.Repeat("a.", 130), "a.com:443", "*",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := control.ValidateHostname(in)
		if err != nil {
			return
		}
		s := stateWith(map[string]string{got: "t"})
		probe := got
		if base, ok := strings.CutPrefix(got, "*."); ok {
			probe = "x." + base
		}
		if len(probe) <= control.MaxHostnameLen {
			if id, ok := s.Route(strings.ToUpper(probe)); !ok || id != "t" {
				t.Errorf("route %q: Route(%q) = %q, %v; want t", got, strings.ToUpper(probe), id, ok)
			}
		}
	})
}

func TestEventKindString(t *testing.T) {
	for k, want := range map[EventKind]string{TunnelDeleted: "tunnel-deleted", ConnectionRemoved: "connection-removed", 9: "EventKind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("EventKind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

// TestWaitRevision: a write is visible in State once WaitRevision returns for
// the write's revision, and WaitRevision ends with ctx when the revision never
// comes.
func TestWaitRevision(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	s := newState(t, cli)
	ctx := t.Context()
	for i := range 20 {
		tun, err := svc.CreateTunnel(ctx, fmt.Sprintf("t%d", i), secret(byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Get(ctx, store.Prefix, clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WaitRevision(ctx, resp.Header.Revision); err != nil {
			t.Fatalf("WaitRevision(%d): %v", resp.Header.Revision, err)
		}
		if _, ok := s.Tunnel(tun.ID); !ok {
			t.Fatalf("tunnel %s not in State after WaitRevision", tun.ID)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.WaitRevision(short, s.Revision()+1000); err == nil {
		t.Error("WaitRevision for a revision that never comes returned nil")
	}
}
