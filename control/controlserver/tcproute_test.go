package controlserver

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testTCPRoutes exercises the TCP route calls of an API implementation.
func testTCPRoutes(t *testing.T, api control.API, cli *clientv3.Client) {
	ctx := t.Context()
	web, err := api.CreateTunnel(ctx, "web", secret(1))
	if err != nil {
		t.Fatal(err)
	}
	db, err := api.CreateTunnel(ctx, "db", secret(2))
	if err != nil {
		t.Fatal(err)
	}

	r, err := api.RouteTCP(ctx, "web", 2222, "SSH.Example.com", false)
	if err != nil {
		t.Fatalf("RouteTCP: %v", err)
	}
	if r.Port != 2222 || r.TunnelID != web.ID || r.Hostname != "ssh.example.com" || r.CreatedAt.IsZero() {
		t.Errorf("RouteTCP = %+v, want port 2222 to %s with hostname ssh.example.com", r, web.ID)
	}
	again, err := api.RouteTCP(ctx, web.ID, 2222, "ssh.example.com", false)
	if err != nil || !again.CreatedAt.Equal(r.CreatedAt) {
		t.Errorf("routing again = %+v, %v; want the existing route %+v", again, err, r)
	}
	if _, err := api.RouteTCP(ctx, db.ID, 5432, "", false); err != nil {
		t.Fatalf("RouteTCP without hostname: %v", err)
	}

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name     string
			tunnel   string
			port     int
			hostname string
			want     error
		}{
			{"another tunnel", db.ID, 2222, "ssh.example.com", control.ErrConflict},
			{"another hostname", web.ID, 2222, "other.example.com", control.ErrConflict},
			{"port zero", web.ID, 0, "", control.ErrInvalid},
			{"port too big", web.ID, 65536, "", control.ErrInvalid},
			{"negative port", web.ID, -1, "", control.ErrInvalid},
			{"wildcard", web.ID, 2223, "*.example.com", control.ErrInvalid},
			{"bad hostname", web.ID, 2223, "a b", control.ErrInvalid},
			{"unknown tunnel", "nope", 2223, "", control.ErrNotFound},
		}
		for _, tt := range tests {
			_, err := api.RouteTCP(ctx, tt.tunnel, tt.port, tt.hostname, false)
			wantErr(t, tt.name, err, tt.want)
		}
		wantErr(t, "delete port 0", api.DeleteTCPRoute(ctx, 0), control.ErrInvalid)
		wantErr(t, "delete unrouted port", api.DeleteTCPRoute(ctx, 9), control.ErrNotFound)
	})

	t.Run("list", func(t *testing.T) {
		got, err := api.ListTCPRoutes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ports []int
		for _, r := range got {
			ports = append(ports, r.Port)
		}
		if want := []int{2222, 5432}; !slices.Equal(ports, want) {
			t.Errorf("ListTCPRoutes ports = %v, want %v", ports, want)
		}
	})

	t.Run("overwrite", func(t *testing.T) {
		moved, err := api.RouteTCP(ctx, db.ID, 2222, "", true)
		if err != nil {
			t.Fatalf("RouteTCP overwrite: %v", err)
		}
		if moved.TunnelID != db.ID || moved.Hostname != "" {
			t.Errorf("overwritten route = %+v, want port 2222 to %s without hostname", moved, db.ID)
		}
	})

	t.Run("delete tunnel removes its routes", func(t *testing.T) {
		if err := api.DeleteTunnel(ctx, db.ID, false); err != nil {
			t.Fatal(err)
		}
		got, err := api.ListTCPRoutes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("after deleting the tunnel, tcp routes = %+v, want none", got)
		}
		_, err = api.RouteTCP(ctx, db.ID, 2222, "", false)
		wantErr(t, "route to a deleted tunnel", err, control.ErrNotFound)
	})

	t.Run("a route left to a deleted tunnel is replaced", func(t *testing.T) {
		orphan, _ := json.Marshal(control.TCPRoute{Port: 3333, TunnelID: db.ID, CreatedAt: now()})
		if _, err := cli.Put(ctx, store.TCPRouteKey(3333), string(orphan)); err != nil {
			t.Fatal(err)
		}
		r, err := api.RouteTCP(ctx, web.ID, 3333, "", false)
		if err != nil || r.TunnelID != web.ID {
			t.Errorf("RouteTCP over an orphan = %+v, %v; want it routed to %s", r, err, web.ID)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := api.DeleteTCPRoute(ctx, 3333); err != nil {
			t.Fatal(err)
		}
		wantErr(t, "delete twice", api.DeleteTCPRoute(ctx, 3333), control.ErrNotFound)
	})
}

func TestTCPRoutesService(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	testTCPRoutes(t, svc, cli)
}

func TestTCPRoutesClient(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	srv, ca, token := startAPI(t, svc)
	c, err := control.NewClient(srv.URL, token, ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	testTCPRoutes(t, c, cli)
}

// TestTCPRouteHandlerPorts checks the {port} path parameter.
func TestTCPRouteHandlerPorts(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	srv, ca, token := startAPI(t, svc)
	c, err := control.NewClient(srv.URL, token, ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range []string{"abc", "0", "65536", "022", "-1", "1e3"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, srv.URL+"/v1/tcp-routes/"+seg, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.HTTPClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("DELETE /v1/tcp-routes/%s: got status %d, want 400", seg, resp.StatusCode)
		}
	}
}

func TestStateTCPRoutes(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	ctx := t.Context()
	web, err := svc.CreateTunnel(ctx, "web", secret(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteTCP(ctx, web.ID, 2222, "ssh.example.com", false); err != nil {
		t.Fatal(err)
	}
	s := newState(t, cli)
	var events eventLog
	s.OnEvent(events.add)

	if r, ok := s.TCPRoute(2222); !ok || r.TunnelID != web.ID || r.Hostname != "ssh.example.com" {
		t.Errorf("loaded TCPRoute(2222) = %+v, %v; want the route to %s", r, ok, web.ID)
	}
	if _, err := svc.RouteTCP(ctx, web.ID, 80, "", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new route", func() bool { _, ok := s.TCPRoute(80); return ok })
	if !events.has(Event{Kind: TCPRoutesChanged, TunnelID: web.ID}) {
		t.Errorf("events = %+v, want a tcp-routes-changed event for %s", events.events, web.ID)
	}
	got := s.TCPRoutes()
	if len(got) != 2 || got[0].Port != 80 || got[1].Port != 2222 {
		t.Errorf("TCPRoutes = %+v, want ports 80 and 2222 in order", got)
	}
	if err := svc.DeleteTCPRoute(ctx, 2222); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the route to go", func() bool { _, ok := s.TCPRoute(2222); return !ok })

	// An unreadable record is skipped, not fatal.
	if _, err := cli.Put(ctx, store.TCPRoutesPrefix+"notaport", "{}"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, store.TCPRouteKey(81), "not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteTCP(ctx, web.ID, 82, "", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a route after bad records", func() bool { _, ok := s.TCPRoute(82); return ok })
	if _, ok := s.TCPRoute(81); ok {
		t.Error("an unreadable tcp route record was loaded")
	}
}

func TestDiffEventsTCPRoutes(t *testing.T) {
	at := time.Now()
	tests := []struct {
		name     string
		old, cur map[int]control.TCPRoute
		want     bool
	}{
		{"same", map[int]control.TCPRoute{22: {Port: 22, TunnelID: "a", CreatedAt: at}}, map[int]control.TCPRoute{22: {Port: 22, TunnelID: "a", CreatedAt: at}}, false},
		{"added", nil, map[int]control.TCPRoute{22: {Port: 22, TunnelID: "a"}}, true},
		{"removed", map[int]control.TCPRoute{22: {Port: 22, TunnelID: "a"}}, nil, true},
		{"moved", map[int]control.TCPRoute{22: {Port: 22, TunnelID: "a"}}, map[int]control.TCPRoute{22: {Port: 22, TunnelID: "b"}}, true},
		{"new hostname", map[int]control.TCPRoute{22: {Port: 22, TunnelID: "a"}}, map[int]control.TCPRoute{22: {Port: 22, TunnelID: "a", Hostname: "h.example"}}, true},
	}
	for _, tt := range tests {
		old, cur := newStateData(), newStateData()
		for k, v := range tt.old {
			old.tcp[k] = v
		}
		for k, v := range tt.cur {
			cur.tcp[k] = v
		}
		got := slices.Contains(diffEvents(old, cur), Event{Kind: TCPRoutesChanged})
		if got != tt.want {
			t.Errorf("%s: tcp-routes-changed event = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTCPRouteKeyPort(t *testing.T) {
	tests := []struct {
		key  string
		port int
		ok   bool
	}{
		{store.TCPRouteKey(22), 22, true},
		{store.TCPRouteKey(65535), 65535, true},
		{store.TCPRoutesPrefix + "0", 0, false},
		{store.TCPRoutesPrefix + "65536", 0, false},
		{store.TCPRoutesPrefix + "022", 0, false},
		{store.TCPRoutesPrefix + "+22", 0, false},
		{store.TCPRoutesPrefix, 0, false},
		{store.RouteKey("22"), 0, false},
	}
	for _, tt := range tests {
		port, ok := tcpRouteKeyPort(tt.key)
		if port != tt.port || ok != tt.ok {
			t.Errorf("tcpRouteKeyPort(%q) = %d, %v; want %d, %v", tt.key, port, ok, tt.port, tt.ok)
		}
	}
}

// FuzzTCPRouteKeyPort checks that every key accepted is the key of its port.
func FuzzTCPRouteKeyPort(f *testing.F) {
	for _, s := range []string{"22", "65535", "0", "022", "-1", "9999999999999999999999", ""} {
		f.Add(store.TCPRoutesPrefix + s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		port, ok := tcpRouteKeyPort(key)
		if !ok {
			return
		}
		if port < 1 || port > 65535 {
			t.Fatalf("tcpRouteKeyPort(%q) accepted port %d", key, port)
		}
		if got := store.TCPRouteKey(port); got != key {
			t.Fatalf("tcpRouteKeyPort(%q) = %d, whose key is %q", key, port, got)
		}
	})
}

// FuzzValidateTCPHostname checks that accepted hostnames are canonical:
// validating the result again gives it back, and it is never a wildcard.
