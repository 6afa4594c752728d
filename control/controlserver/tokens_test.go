package controlserver

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
)

// TestAdminTokenLifecycle: two edges share one etcd. A replaced or deleted
// admin.token file revokes the edge's older token; a rotation through the
// API revokes every admin token on both edges at once, and a revoked token
// never comes back from an old file; revoke by ID.
func TestAdminTokenLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cli := newEtcd(t)
	edge1 := NewService(cli, control.EdgeInfo{Node: "edge-1"}, nil)
	edge2 := NewService(cli, control.EdgeInfo{Node: "edge-2"}, nil)
	dir1, dir2 := t.TempDir(), t.TempDir()
	file1, file2 := filepath.Join(dir1, "admin.token"), filepath.Join(dir2, "admin.token")
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	ensure := func(svc *Service, path string) {
		t.Helper()
		if _, err := svc.EnsureAdminToken(ctx, path); err != nil {
			t.Fatalf("EnsureAdminToken(%s): %v", path, err)
		}
	}
	works := func(what, token string, want bool) {
		t.Helper()
		for _, svc := range []*Service{edge1, edge2} {
			if got := svc.CheckToken(ctx, token); got != want {
				t.Errorf("%s: CheckToken on %s = %v, want %v", what, svc.info.Node, got, want)
			}
		}
	}

	ensure(edge1, file1)
	ensure(edge2, file2)
	first1, tok2 := read(file1), read(file2)
	works("edge-1's first token", first1, true)
	works("edge-2's token", tok2, true)

	// An operator replaces edge-1's file: its old token must stop working.
	replaced := NewToken()
	if err := os.WriteFile(file1, []byte(replaced+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ensure(edge1, file1)
	works("edge-1's replaced token", first1, false)
	works("edge-1's new token from the file", replaced, true)
	works("edge-2's token after edge-1 restarted", tok2, true)

	// Deleting the file makes a new token; the one it held stops working.
	os.Remove(file1)
	if created, err := edge1.EnsureAdminToken(ctx, file1); err != nil || !created {
		t.Fatalf("EnsureAdminToken (file deleted) = %v, %v; want true, nil", created, err)
	}
	second1 := read(file1)
	works("the token of the deleted file", replaced, false)
	works("edge-1's token made after the delete", second1, true)

	// Rotate through the API served by edge-2, logged in with edge-1's token.
	url, caPEM := serveAPI(t, edge2)
	c, err := control.NewClient(url, second1, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := c.RotateToken(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rot.Info.Name != "admin" || rot.Info.ID != control.TokenID(rot.Token) || len(rot.Revoked) != 2 {
		t.Errorf("rotation = %+v, want a new admin token that revoked 2 (both edges' files)", rot)
	}
	works("edge-1's token after a rotation", second1, false)
	works("edge-2's token after a rotation", tok2, false)
	works("the rotated token", rot.Token, true)
	if _, err := c.ListTokens(ctx, false); !errors.Is(err, control.ErrUnauthorized) {
		t.Errorf("API call with a rotated-away token: %v, want ErrUnauthorized", err)
	}

	// Restarting the edges with their old files revives nothing.
	ensure(edge1, file1)
	ensure(edge2, file2)
	works("edge-1's file token after a restart", second1, false)
	works("edge-2's file token after a restart", tok2, false)
	works("the rotated token after restarts", rot.Token, true)

	c.Token = rot.Token
	live, err := c.ListTokens(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].ID != rot.Info.ID {
		t.Errorf("live tokens = %+v, want the rotated one only", live)
	}
	all, err := c.ListTokens(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Errorf("all tokens = %d, want 5 (4 revoked)", len(all))
	}
	for _, tk := range all {
		if (tk.RevokedAt == nil) != (tk.ID == rot.Info.ID) {
			t.Errorf("token %+v: revoked = %v", tk, tk.RevokedAt != nil)
		}
	}

	// Revoke: a second token, by ID; never the caller's own.
	other, err := edge1.RotateToken(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	works("the ci token", other.Token, true)
	if err := c.RevokeToken(ctx, rot.Info.ID); !errors.Is(err, control.ErrConflict) {
		t.Errorf("revoking the caller's own token: %v, want ErrConflict", err)
	}
	if err := c.RevokeToken(ctx, other.Info.ID); err != nil {
		t.Fatal(err)
	}
	works("the revoked ci token", other.Token, false)
	if err := c.RevokeToken(ctx, other.Info.ID); err != nil {
		t.Errorf("revoking a revoked token: %v, want nil", err)
	}
	for _, tc := range []struct {
		id   string
		want error
	}{
		{"0123456789abcdef", control.ErrNotFound},
		{"nothex", control.ErrInvalid},
		{strings.ToUpper(other.Info.ID), control.ErrInvalid},
	} {
		if err := c.RevokeToken(ctx, tc.id); !errors.Is(err, tc.want) {
			t.Errorf("RevokeToken(%q) = %v, want %v", tc.id, err, tc.want)
		}
	}
	if _, err := c.RotateToken(ctx, "bad name"); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("RotateToken(bad name) = %v, want ErrInvalid", err)
	}
}

// serveAPI serves NewHandler(svc) over TLS on 127.0.0.1 and returns its
// URL and the CA that signed its certificate.
func serveAPI(t *testing.T, svc *Service) (string, []byte) {
	t.Helper()
	ca := newTestCA(t)
	srv := httptest.NewUnstartedServer(NewHandler(svc, nil))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf}, MinVersion: tls.VersionTLS13}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, ca.pem
}
