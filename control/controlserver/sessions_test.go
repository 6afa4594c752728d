package controlserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// TestSessions: a session is made from a working token only, stands in for
// it on the API with the CSRF header (and only with it), stores nothing
// but hashes, ends at logout, and ends when its token is rotated away.
func TestSessions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, cli := newService(t)
	token := NewToken()
	if err := svc.registerToken(ctx, token, control.DefaultTokenName); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(svc, nil))
	t.Cleanup(srv.Close)

	if _, _, err := svc.CreateSession(ctx, "adit_nope"); !strings.Contains(errString(err), "not a valid API token") {
		t.Errorf("CreateSession(bad token) = %v, want unauthorized", err)
	}
	wantErr(t, "CreateSession(bad token)", func() error { _, _, err := svc.CreateSession(ctx, ""); return err }(), control.ErrUnauthorized)

	value, expires, err := svc.CreateSession(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if !validSessionValue(value) || expires.Sub(now()) < SessionTTL-timeSlack || expires.Sub(now()) > SessionTTL {
		t.Errorf("session %q expires %v; want a session value that lasts %v", value, expires, SessionTTL)
	}
	id, ok := svc.CheckSession(ctx, value)
	if !ok || id != control.TokenID(token) {
		t.Errorf("CheckSession = %q, %v; want the token's ID %s", id, ok, control.TokenID(token))
	}

	// etcd holds hashes only.
	resp, err := cli.Get(ctx, store.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key)+string(kv.Value), value) || strings.Contains(string(kv.Key)+string(kv.Value), token) {
			t.Errorf("etcd key %s holds the session value or the token in clear", kv.Key)
		}
	}

	call := func(method, path string, header map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body control.ErrorBody
		json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body.Error
	}
	cookie := SessionCookie + "=" + value
	for _, tc := range []struct {
		name    string
		header  map[string]string
		want    int
		wantMsg string
	}{
		{"bearer", map[string]string{"Authorization": "Bearer " + token}, 200, ""},
		{"cookie with the CSRF header", map[string]string{"Cookie": cookie, CSRFHeader: "1"}, 200, ""},
		{"cookie without the CSRF header", map[string]string{"Cookie": cookie}, 401, CSRFHeader},
		{"another cookie", map[string]string{"Cookie": SessionCookie + "=adits_" + strings.Repeat("A", 43), CSRFHeader: "1"}, 401, "session has ended"},
		{"a malformed cookie", map[string]string{"Cookie": SessionCookie + "=" + token, CSRFHeader: "1"}, 401, "session has ended"},
		{"nothing", nil, 401, "missing or invalid API token"},
	} {
		code, msg := call("GET", "/v1/routes", tc.header)
		if code != tc.want || !strings.Contains(msg, tc.wantMsg) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, msg, tc.want, tc.wantMsg)
		}
	}

	// The session cannot revoke its own token (nobody locks themselves out).
	if code, msg := call("DELETE", "/v1/tokens/"+control.TokenID(token), map[string]string{"Cookie": cookie, CSRFHeader: "1"}); code != 409 {
		t.Errorf("revoking the session's own token: %d %q, want 409", code, msg)
	}

	// Logout ends it.
	if err := svc.DeleteSession(ctx, value); err != nil {
		t.Fatal(err)
	}
	if _, ok := svc.CheckSession(ctx, value); ok {
		t.Error("the session works after DeleteSession")
	}

	// A rotation revokes the token and so its sessions.
	value2, _, err := svc.CreateSession(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RotateToken(ctx, control.DefaultTokenName); err != nil {
		t.Fatal(err)
	}
	if _, ok := svc.CheckSession(ctx, value2); ok {
		t.Error("a session of a rotated-away token still works")
	}
	if code, _ := call("GET", "/v1/routes", map[string]string{"Cookie": SessionCookie + "=" + value2, CSRFHeader: "1"}); code != 401 {
		t.Errorf("the API took a session of a revoked token: %d", code)
	}
}

const timeSlack = 5e9 // 5s: how long the test may take between CreateSession and its check

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestSSOSessions: a session for a person who logged in through the
// administrators' identity provider is made only for someone the setting
// allows, works on the API like a token's, and ends as soon as the setting
// no longer allows them.
func TestSSOSessions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, _ := newService(t)
	srv := httptest.NewServer(NewHandler(svc, nil))
	t.Cleanup(srv.Close)

	if _, _, err := svc.CreateSSOSession(ctx, "corp", "ann@example.com", nil); !strings.Contains(errString(err), "may not administer") {
		t.Errorf("CreateSSOSession without a setting = %v, want unauthorized", err)
	}
	allowed := "ann@example.com"
	svc.SetAdminSSO(func(idp, email string, _ []string) bool { return idp == "corp" && email == allowed })
	wantErr(t, "CreateSSOSession(bob)", func() error { _, _, err := svc.CreateSSOSession(ctx, "corp", "bob@example.com", nil); return err }(), control.ErrUnauthorized)
	value, _, err := svc.CreateSSOSession(ctx, "corp", "ann@example.com", []string{"eng"})
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := svc.CheckSession(ctx, value); !ok || id != "" {
		t.Errorf("CheckSession = %q, %v; want a session without a token ID", id, ok)
	}
	status := func() int {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/tunnels", nil)
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: value})
		req.Header.Set(CSRFHeader, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusOK {
		t.Errorf("GET /v1/tunnels with ann's session: %d, want 200", got)
	}
	allowed = "someone else"
	if got := status(); got != http.StatusUnauthorized {
		t.Errorf("GET /v1/tunnels with ann's session once she is no longer allowed: %d, want 401", got)
	}
}
