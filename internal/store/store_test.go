package store

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func openT(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()

	s := openT(t, Config{DataDir: dir})
	if !s.Embedded() {
		t.Fatal("Embedded() = false, want true")
	}
	if got := s.Endpoints(); len(got) != 1 || !strings.HasPrefix(got[0], "unix://") {
		t.Errorf("Endpoints() = %q, want one unix:// socket", got)
	}
	if _, err := s.Client().Put(ctx, TunnelKey("t1"), "v1"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openT(t, Config{DataDir: dir})
	defer s.Close()
	resp, err := s.Client().Get(ctx, TunnelKey("t1"))
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Errorf("after restart got %v, want one key with value v1", resp.Kvs)
	}
}

func TestSeveralAtOnce(t *testing.T) {
	a := openT(t, Config{DataDir: t.TempDir()})
	defer a.Close()
	b := openT(t, Config{DataDir: t.TempDir()})
	defer b.Close()

	ctx := t.Context()
	if _, err := a.Client().Put(ctx, RouteKey("a.example.com"), "a"); err != nil {
		t.Fatal(err)
	}
	resp, err := b.Client().Get(ctx, RouteKey("a.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Errorf("store b sees store a's key: got %d keys, want 0", len(resp.Kvs))
	}
}

func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	a := openT(t, Config{DataDir: dir})
	defer a.Close()
	_, err := Open(t.Context(), Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open on one data dir: got %v, want an in-use error", err)
	}
	// The first store still works.
	if _, err := a.Client().Put(t.Context(), "/adit/x", "y"); err != nil {
		t.Errorf("first store after refused second Open: %v", err)
	}
}

func TestLongDataDirFallsBackToLoopback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 40))
	s := openT(t, Config{DataDir: dir})
	defer s.Close()
	got := s.Endpoints()
	if len(got) != 1 || !strings.HasPrefix(got[0], "http://127.0.0.1:") || strings.HasSuffix(got[0], ":0") {
		t.Fatalf("Endpoints() = %q, want http://127.0.0.1:<chosen port>", got)
	}
	if _, err := s.Client().Put(t.Context(), "/adit/x", "y"); err != nil {
		t.Errorf("Put: %v", err)
	}
}

func TestExternalEndpoints(t *testing.T) {
	emb := openT(t, Config{DataDir: t.TempDir()})
	defer emb.Close()
	ext := openT(t, Config{Endpoints: emb.Endpoints()})
	defer ext.Close()
	if ext.Embedded() {
		t.Error("Embedded() = true with Endpoints, want false")
	}
	if _, err := ext.Client().Put(t.Context(), "/adit/x", "y"); err != nil {
		t.Fatal(err)
	}
	resp, err := emb.Client().Get(t.Context(), "/adit/x")
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("embedded store does not see the external client's write: %v %v", resp, err)
	}
}

func TestUnreachable(t *testing.T) {
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	_, err = Open(t.Context(), Config{Endpoints: []string{"http://" + addr}, DialTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("Open of a dead endpoint succeeded")
	}
	want := "store: etcd at http://" + addr + " unreachable: "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want prefix %q", err, want)
	}
}

func TestNoDataDir(t *testing.T) {
	_, err := Open(context.Background(), Config{})
	if err == nil || !strings.Contains(err.Error(), "no data dir") {
		t.Errorf("Open(Config{}) = %v, want a no-data-dir error", err)
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"tunnel", TunnelKey("id1"), "/adit/tunnels/id1"},
		{"name", TunnelNameKey("web"), "/adit/tunnel-names/web"},
		{"route", RouteKey("*.example.com"), "/adit/routes/*.example.com"},
		{"token", TokenKey("abcd"), "/adit/tokens/abcd"},
		{"connection", ConnectionKey("t", "c"), "/adit/connections/t/c"},
		{"tunnel connections", TunnelConnectionsPrefix("t"), "/adit/connections/t/"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}
