package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/credentials"
)

// TestAdminToken: rotate (to a file and to stdout) revokes the old admin
// token at once and keeps cert.json working; list marks the token in use;
// revoke refuses the caller's own token.
func TestAdminToken(t *testing.T) {
	e := newTestEdge(t)
	e.ok("login", "--api", e.api, "--token-file", e.tokenFile, "--ca", e.caFile)
	b, _ := os.ReadFile(e.tokenFile)
	first := strings.TrimSpace(string(b))

	out := e.ok("admin", "token", "list")
	if !strings.Contains(out, control.TokenID(first)+" *") || !strings.Contains(out, "edge edge-a") {
		t.Errorf("token list = %q, want the edge's admin token marked as in use", out)
	}

	newFile := filepath.Join(t.TempDir(), "new.token")
	_, errOut, code := e.run("admin", "token", "rotate", "--write", newFile)
	if code != 0 {
		t.Fatalf("rotate --write: exit %d: %s", code, errOut)
	}
	fi, err := os.Stat(newFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("--write file: %v, mode %v; want 0600", err, fi)
	}
	b, _ = os.ReadFile(newFile)
	second := strings.TrimSpace(string(b))
	if !strings.Contains(errOut, "Revoked token "+control.TokenID(first)) || !strings.Contains(errOut, "Updated ") {
		t.Errorf("rotate stderr = %q, want the revoked token and the cert.json update", errOut)
	}
	if e.svc.CheckToken(t.Context(), first) || !e.svc.CheckToken(t.Context(), second) {
		t.Error("after rotate: the old token still works or the new one does not")
	}
	e.fails("refused the token", "login", "--api", e.api, "--token-file", e.tokenFile, "--ca", e.caFile)
	l, err := credentials.LoadLogin(e.home)
	if err != nil || l.Token != second {
		t.Errorf("cert.json token after rotate: %v, want the new token", err)
	}
	e.ok("tunnel", "list") // with cert.json's updated token

	third := strings.TrimSpace(e.ok("admin", "token", "rotate"))
	if !strings.HasPrefix(third, "adit_") || !e.svc.CheckToken(t.Context(), third) || e.svc.CheckToken(t.Context(), second) {
		t.Errorf("rotate to stdout printed %q; want a working token that replaced the last one", third)
	}

	ciFile := filepath.Join(t.TempDir(), "ci.token")
	e.ok("admin", "token", "rotate", "--name", "ci", "--write", ciFile)
	b, _ = os.ReadFile(ciFile)
	ci := strings.TrimSpace(string(b))

	var all []control.APIToken
	if err := json.Unmarshal([]byte(e.ok("admin", "token", "list", "--show-revoked", "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Errorf("tokens with revoked = %d, want 4", len(all))
	}
	e.fails("rotate it instead", "admin", "token", "revoke", control.TokenID(third))
	if out := e.ok("admin", "token", "revoke", control.TokenID(ci)); !strings.Contains(out, "Revoked token "+control.TokenID(ci)) {
		t.Errorf("revoke printed %q", out)
	}
	if e.svc.CheckToken(t.Context(), ci) {
		t.Error("a revoked token still works")
	}
	e.fails("no token with ID 0123456789abcdef", "admin", "token", "revoke", "0123456789abcdef")
	e.fails("want at least one token ID", "admin", "token", "revoke")
}
