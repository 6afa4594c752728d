package controlserver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testAPI runs the API behaviour shared by Service and Client.
func testAPI(t *testing.T, api control.API, cli *clientv3.Client) {
	ctx := t.Context()

	web, err := api.CreateTunnel(ctx, "web", secret(1))
	if err != nil {
		t.Fatalf("CreateTunnel: %v", err)
	}
	if _, ok := control.ParseID(web.ID); !ok || web.Name != "web" || web.CreatedAt.IsZero() || web.DeletedAt != nil {
		t.Errorf("CreateTunnel returned %+v, want a fresh tunnel named web with a UUID", web)
	}

	t.Run("create errors", func(t *testing.T) {
		_, err := api.CreateTunnel(ctx, "web", secret(2))
		wantErr(t, "duplicate name", err, control.ErrConflict)
		_, err = api.CreateTunnel(ctx, "bad name", secret(2))
		wantErr(t, "name with a space", err, control.ErrInvalid)
		_, err = api.CreateTunnel(ctx, "short", make([]byte, 31))
		wantErr(t, "31-byte secret", err, control.ErrInvalid)
		_, err = api.CreateTunnel(ctx, web.ID, secret(2))
		wantErr(t, "name shaped like a UUID", err, control.ErrInvalid)
	})

	t.Run("get", func(t *testing.T) {
		for _, key := range []string{web.ID, strings.ToUpper(web.ID), "web"} {
			got, err := api.GetTunnel(ctx, key)
			if err != nil {
				t.Fatalf("GetTunnel(%q): %v", key, err)
			}
			if got.ID != web.ID || got.Name != "web" || !got.CreatedAt.Equal(web.CreatedAt) {
				t.Errorf("GetTunnel(%q) = %+v, want %+v", key, got, web)
			}
		}
		_, err := api.GetTunnel(ctx, "nope")
		wantErr(t, "unknown name", err, control.ErrNotFound)
		_, err = api.GetTunnel(ctx, "00000000-0000-4000-8000-000000000000")
		wantErr(t, "unknown ID", err, control.ErrNotFound)
		_, err = api.GetTunnel(ctx, "")
		wantErr(t, "empty", err, control.ErrInvalid)
	})

	t.Run("routes", func(t *testing.T) {
		r, err := api.RouteDNS(ctx, web.ID, "App.Example.COM", false)
		if err != nil {
			t.Fatalf("RouteDNS: %v", err)
		}
		if r.Hostname != "app.example.com" || r.TunnelID != web.ID {
			t.Errorf("RouteDNS = %+v, want app.example.com -> %s", r, web.ID)
		}
		again, err := api.RouteDNS(ctx, "web", "app.example.com", false)
		if err != nil || !again.CreatedAt.Equal(r.CreatedAt) {
			t.Errorf("routing again to the same tunnel: got %+v, %v; want the existing route", again, err)
		}
		if _, err := api.RouteDNS(ctx, web.ID, "*.example.com", false); err != nil {
			t.Errorf("RouteDNS wildcard: %v", err)
		}
		_, err = api.RouteDNS(ctx, web.ID, "bad_host.example.com", false)
		wantErr(t, "invalid hostname", err, control.ErrInvalid)
		_, err = api.RouteDNS(ctx, "nope", "x.example.com", false)
		wantErr(t, "unknown tunnel", err, control.ErrNotFound)

		api2, err := api.CreateTunnel(ctx, "api", secret(3))
		if err != nil {
			t.Fatal(err)
		}
		_, err = api.RouteDNS(ctx, api2.ID, "app.example.com", false)
		wantErr(t, "route taken by another tunnel", err, control.ErrConflict)
		if err != nil && !strings.Contains(err.Error(), "already routed to tunnel "+web.ID) {
			t.Errorf("conflict message = %q, want it to name tunnel %s", err, web.ID)
		}
		moved, err := api.RouteDNS(ctx, api2.ID, "app.example.com", true)
		if err != nil || moved.TunnelID != api2.ID {
			t.Errorf("overwrite: got %+v, %v; want app.example.com -> %s", moved, err, api2.ID)
		}

		routes, err := api.ListRoutes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range routes {
			got = append(got, r.Hostname+"->"+r.TunnelID)
		}
		want := []string{"*.example.com->" + web.ID, "app.example.com->" + api2.ID}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("ListRoutes = %q, want %q", got, want)
		}

		wantErr(t, "DeleteRoute", api.DeleteRoute(ctx, "APP.example.com"), nil)
		wantErr(t, "DeleteRoute again", api.DeleteRoute(ctx, "app.example.com"), control.ErrNotFound)
		wantErr(t, "DeleteRoute invalid", api.DeleteRoute(ctx, "-x.example.com"), control.ErrInvalid)
	})

	t.Run("delete", func(t *testing.T) {
		// A live connection blocks a plain delete.
		connKey := store.ConnectionKey(web.ID, "c1")
		if _, err := cli.Put(ctx, connKey, `{"id":"c1","tunnel_id":"`+web.ID+`","index":0,"protocol":"quic"}`); err != nil {
			t.Fatal(err)
		}
		got, err := api.GetTunnel(ctx, "web")
		if err != nil || len(got.Connections) != 1 || got.Connections[0].ID != "c1" {
			t.Errorf("GetTunnel with a connection: got %+v, %v; want connection c1", got.Connections, err)
		}
		list, err := api.ListTunnels(ctx, control.ListOptions{Name: "web"})
		if err != nil || len(list) != 1 || len(list[0].Connections) != 1 {
			t.Errorf("ListTunnels(name=web) = %+v, %v; want web with one connection", list, err)
		}
		err = api.DeleteTunnel(ctx, "web", false)
		wantErr(t, "delete a connected tunnel", err, control.ErrTunnelConnected)

		wantErr(t, "cleanup", api.CleanupTunnel(ctx, web.ID), nil)
		if resp, _ := cli.Get(ctx, connKey); resp == nil || len(resp.Kvs) != 0 {
			t.Errorf("connection record still there after CleanupTunnel")
		}
		wantErr(t, "cleanup unknown", api.CleanupTunnel(ctx, "nope"), control.ErrNotFound)

		wantErr(t, "delete", api.DeleteTunnel(ctx, web.ID, false), nil)
		wantErr(t, "delete again", api.DeleteTunnel(ctx, web.ID, false), control.ErrNotFound)
		wantErr(t, "delete unknown", api.DeleteTunnel(ctx, "nope", true), control.ErrNotFound)

		_, err = api.GetTunnel(ctx, "web")
		wantErr(t, "get a deleted tunnel by name", err, control.ErrNotFound)
		gone, err := api.GetTunnel(ctx, web.ID)
		if err != nil || gone.DeletedAt == nil {
			t.Errorf("get a deleted tunnel by ID: got %+v, %v; want it with DeletedAt", gone, err)
		}
		_, err = api.RouteDNS(ctx, web.ID, "late.example.com", false)
		wantErr(t, "route to a deleted tunnel", err, control.ErrNotFound)

		// Its routes went with it; the other tunnel's stayed.
		routes, err := api.ListRoutes(ctx)
		if err != nil || len(routes) != 0 {
			t.Errorf("routes after delete = %+v, %v; want none (the wildcard pointed to web)", routes, err)
		}

		live, err := api.ListTunnels(ctx, control.ListOptions{})
		if err != nil || len(live) != 1 || live[0].Name != "api" {
			t.Errorf("ListTunnels = %+v, %v; want only api", live, err)
		}
		all, err := api.ListTunnels(ctx, control.ListOptions{IncludeDeleted: true})
		if err != nil || len(all) != 2 || all[0].ID != web.ID || all[0].DeletedAt == nil {
			t.Errorf("ListTunnels(include deleted) = %+v, %v; want web (deleted) then api", all, err)
		}

		// The name is free again.
		again, err := api.CreateTunnel(ctx, "web", secret(4))
		if err != nil || again.ID == web.ID {
			t.Errorf("re-create web: got %+v, %v; want a new tunnel", again, err)
		}
	})

	t.Run("edge info", func(t *testing.T) {
		info, err := api.EdgeInfo(ctx)
		if err != nil || info.Node != "edge-1" || len(info.TunnelAddrs) != 1 || info.CAPEM != "-----CA-----" {
			t.Errorf("EdgeInfo = %+v, %v", info, err)
		}
	})
}

func TestService(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	testAPI(t, svc, cli)
}

func TestServiceSecretHash(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	tun, err := svc.CreateTunnel(t.Context(), "x", secret(7))
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.GetTunnel(t.Context(), tun.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !control.VerifySecret(got, secret(7)) {
		t.Error("VerifySecret(stored tunnel, its secret) = false, want true")
	}
	if control.VerifySecret(got, secret(8)) {
		t.Error("VerifySecret(stored tunnel, another secret) = true, want false")
	}
	if control.VerifySecret(control.Tunnel{}, secret(7)) {
		t.Error("VerifySecret(tunnel without hash) = true, want false")
	}
}

func TestForceDelete(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	ctx := t.Context()
	tun, err := svc.CreateTunnel(ctx, "web", secret(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteDNS(ctx, tun.ID, "a.example.com", false); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		if _, err := cli.Put(ctx, store.ConnectionKey(tun.ID, id), `{"id":"`+id+`"}`); err != nil {
			t.Fatal(err)
		}
	}
	conns, err := svc.ListConnections(ctx, "web")
	if err != nil || len(conns) != 2 {
		t.Fatalf("ListConnections = %v, %v; want 2", conns, err)
	}
	err = svc.DeleteTunnel(ctx, "web", false)
	wantErr(t, "delete without force", err, control.ErrTunnelConnected)
	if err != nil && !strings.Contains(err.Error(), "2 live connection") {
		t.Errorf("message = %q, want it to count 2 live connections", err)
	}
	wantErr(t, "delete with force", svc.DeleteTunnel(ctx, "web", true), nil)
	for _, prefix := range []string{store.TunnelConnectionsPrefix(tun.ID), store.RoutesPrefix, store.TunnelNamesPrefix} {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != 0 {
			t.Errorf("%s after a forced delete: %d keys (%v), want 0", prefix, resp.Count, err)
		}
	}
}

func TestConcurrentCreateOneWins(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = svc.CreateTunnel(t.Context(), "same", secret(byte(i)))
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, control.ErrConflict):
			t.Errorf("a losing create failed with %v, want ErrConflict", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d concurrent creates of one name won, want exactly 1", wins, n)
	}
	all, err := svc.ListTunnels(t.Context(), control.ListOptions{IncludeDeleted: true})
	if err != nil || len(all) != 1 {
		t.Errorf("tunnels stored = %d (%v), want 1", len(all), err)
	}
}

func TestConcurrentRouteOneWins(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	const n = 8
	ids := make([]string, n)
	for i := range n {
		tun, err := svc.CreateTunnel(t.Context(), "t"+string(rune('a'+i)), secret(byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = tun.ID
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = svc.RouteDNS(t.Context(), ids[i], "race.example.com", false)
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, control.ErrConflict):
			t.Errorf("a losing route failed with %v, want ErrConflict", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d concurrent routes of one hostname won, want exactly 1", wins, n)
	}
}

func TestEnsureAdminToken(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "admin.token")

	created, err := svc.EnsureAdminToken(ctx, path)
	if err != nil || !created {
		t.Fatalf("EnsureAdminToken (no file) = %v, %v; want true, nil", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	token := strings.TrimSpace(string(data))
	if !strings.HasPrefix(token, TokenPrefix) || len(token) != len(TokenPrefix)+43 {
		t.Errorf("token = %q, want adit_ and 43 base64url characters", token)
	}
	if !svc.CheckToken(ctx, token) {
		t.Error("CheckToken(new admin token) = false, want true")
	}
	for _, bad := range []string{"", "adit_wrong", token + "x", strings.Repeat("a", 1000)} {
		if svc.CheckToken(ctx, bad) {
			t.Errorf("CheckToken(%q) = true, want false", bad)
		}
	}
	// Only the hash is stored.
	resp, err := cli.Get(ctx, store.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key)+string(kv.Value), token) {
			t.Errorf("etcd key %s holds the token in clear", kv.Key)
		}
	}

	created, err = svc.EnsureAdminToken(ctx, path)
	if err != nil || created {
		t.Errorf("EnsureAdminToken (file exists) = %v, %v; want false, nil", created, err)
	}

	// A token file written by hand is registered.
	own := filepath.Join(t.TempDir(), "own.token")
	if err := os.WriteFile(own, []byte("  my-own-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if created, err := svc.EnsureAdminToken(ctx, own); err != nil || created {
		t.Errorf("EnsureAdminToken (own file) = %v, %v; want false, nil", created, err)
	}
	if !svc.CheckToken(ctx, "my-own-token") {
		t.Error("CheckToken(hand-written token) = false, want true")
	}

	empty := filepath.Join(t.TempDir(), "empty.token")
	os.WriteFile(empty, nil, 0o600)
	if _, err := svc.EnsureAdminToken(ctx, empty); err == nil {
		t.Error("EnsureAdminToken (empty file) succeeded, want an error")
	}
}

func TestCreatedAtSurvivesJSON(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	tun, err := svc.CreateTunnel(t.Context(), "x", secret(1))
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.GetTunnel(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedAt != tun.CreatedAt || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt after a round trip = %v, want %v (UTC, identical)", got.CreatedAt, tun.CreatedAt)
	}
}
